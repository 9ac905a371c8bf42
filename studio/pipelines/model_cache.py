"""The GPU worker's model caches: several models kept in memory, within one memory budget.

Each capability has its own :class:`ModelCache` — text to image (shared by img2img and inpaint),
chat, CycleGAN — and each cache keeps several models, least recently used first. All live caches
of the process together stay within one budget, :func:`budget_bytes`: ``memory_budget_gb`` from
the settings, or when that is 0 (automatic) 85 % of the GPU's total memory when models run on
CUDA (the rest is room for the activations of a generation and the CUDA context) and half of the
physical RAM otherwise (CPU, and Apple MPS whose memory is the RAM). So switching back to a
model that is still in memory costs nothing, and memory is given back only when a new model
needs the room.

Before a model is read, the least recently used models of *any* cache are evicted until its
estimate — the size of its weight files, scaled to the dtype it loads in — fits. After the load
its real size (parameters and buffers of every torch module in it) is measured and others are
evicted if it is still over. The model being handed out is never evicted, so one model larger
than the whole budget still loads (the log says so) and simply stays alone.

Every cache registers itself in a module-level weak set, so the model library can ask
:func:`loaded_model_paths` which models are in memory (a loaded model must not be deleted) and the
window can show :func:`memory_report`, without anyone passing caches around; a cache that is
garbage-collected drops out by itself. Handing out a model also records its use for the
library's "last used" column.

Thread safety: one lock guards the bookkeeping of all caches and is never held while a model
loads, so :func:`memory_report` is cheap on the GUI thread (no torch import, sizes measured once
at load). Each cache loads one model at a time. A model evicted while another thread still runs
it (``studio serve`` streams chat on a helper thread) is freed when that thread lets go of it.
"""

from __future__ import annotations

import dataclasses
import gc
import itertools
import logging
import os
import re
import sys
import threading
import weakref
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, cast

from studio.core.config import Paths, Settings

if TYPE_CHECKING:
    from studio.core.jobs import CancelToken, ProgressSink
    from studio.core.requests import UnloadRequest

log = logging.getLogger(__name__)

CacheKey = tuple[str, str, str]
AUTO_GPU_SHARE = 0.85  # of the GPU's total memory, when the budget is automatic
AUTO_RAM_SHARE = 0.5  # of the physical RAM (CPU / MPS), when the budget is automatic
KINDS = ("image", "chat", "transform", "upscale", "preview")
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pth", ".pt", ".ckpt")
# diffusers' variant infix in a weight file name: unet/diffusion_pytorch_model.fp16.safetensors
_VARIANT = re.compile(r"\.(fp16|bf16|fp32|ema|non_ema)(?=[.-])")
# Sub-folders a diffusers folder may hold that the loader never reads (it passes None for them).
_UNLOADED_COMPONENTS = {"safety_checker", "feature_extractor"}

_caches: weakref.WeakSet[ModelCache] = weakref.WeakSet()
_lock = threading.RLock()  # guards every cache's slots; never held while a model loads
_ticks = itertools.count(1)  # one clock for all caches, so "least recently used" spans them
_preview_sizes: weakref.WeakKeyDictionary[Any, int] = weakref.WeakKeyDictionary()
_cuda_total: int | None = None


@dataclasses.dataclass(frozen=True)
class LoadedModel:
    """One model in memory, as :func:`memory_report` describes it (for the window)."""

    name: str
    path: Path
    kind: str  # image | chat | transform | preview
    bytes: int
    device: str  # "cuda", "cpu", … ; "cuda (model offload)" when offloaded


@dataclasses.dataclass
class _Slot:
    key: CacheKey
    model: Any
    name: str
    path: Path
    device: str
    bytes: int
    used: int  # tick of the last hand-out


class CachedEntry(Protocol):
    """What a cache loads a model from: a library entry of any kind (an image, chat, CycleGAN,
    upscaler, ControlNet or CLIP model) — the cache reads its ``path`` (and ``name`` and
    ``usage_path`` when it has them)."""

    @property
    def path(self) -> Path: ...


#: How a model is loaded, as its cache's loader takes it: a torch dtype, a
#: :class:`~studio.pipelines.diffusion.quantize.Quantized`, a chat model's load options, None…
#: The cache only passes it on and keys by its ``str()``.
LoadAs = object


def cache_key(entry: CachedEntry, device: str, dtype: LoadAs) -> CacheKey:
    return (str(Path(entry.path).resolve()), device, str(dtype))


# -- budget -------------------------------------------------------------------------------------
def physical_memory() -> int:
    """Bytes of RAM in this machine (8 GiB when the platform will not say)."""
    try:
        import psutil  # accelerate depends on it

        return int(psutil.virtual_memory().total)
    except Exception:  # noqa: BLE001 - fall back to sysconf below
        pass
    try:
        return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    except (AttributeError, ValueError, OSError):
        return 8 * 2**30


def _cuda_total_memory(probe: bool) -> int:
    """Total memory of the current CUDA device, 0 when CUDA is not in use.

    Without ``probe`` CUDA is only asked once something (a job) has initialised it, so a call
    from the GUI thread never imports torch or starts a CUDA context."""
    global _cuda_total
    if _cuda_total is None:
        torch = sys.modules.get("torch")
        if torch is None and probe:
            import torch
        if torch is None or not torch.cuda.is_available():
            return 0
        if not probe and not torch.cuda.is_initialized():
            return 0
        _cuda_total = int(torch.cuda.get_device_properties(torch.cuda.current_device())
                          .total_memory)
    return _cuda_total


def budget_bytes(settings: Settings | None = None, *, probe: bool = False) -> int:
    """The memory all model caches together may use, in bytes.

    ``settings.memory_budget_gb`` when set; automatic (0): :data:`AUTO_GPU_SHARE` of the GPU when
    the device setting runs models on CUDA, else :data:`AUTO_RAM_SHARE` of the physical RAM.
    Cheap and safe on the GUI thread; the worker passes ``probe=True`` to ask CUDA first."""
    settings = settings or Settings()
    if settings.memory_budget_gb and settings.memory_budget_gb > 0:
        return int(settings.memory_budget_gb * 2**30)
    device = (settings.device or "auto").lower()
    if device == "auto" or device.startswith("cuda"):
        total = _cuda_total_memory(probe)
        if total:
            return int(total * AUTO_GPU_SHARE)
    return int(physical_memory() * AUTO_RAM_SHARE)


# -- sizes --------------------------------------------------------------------------------------
def _bytes_per_parameter(dtype: LoadAs) -> float:
    """Bytes a weight takes once loaded in ``dtype`` (a torch dtype, "float16", a chat model's
    ``LoadOptions`` such as "torch.float16|8bit", or None for float32)."""
    text = str(dtype).lower()
    if "4bit" in text:
        return 0.55  # 4-bit blocks plus their scales
    if "8bit" in text or "int8" in text:
        return 1.0
    if "16" in text or "half" in text:  # float16, bfloat16
        return 2.0
    return 4.0


def _weight_files(path: Path) -> list[Path]:
    """The weight files a load reads: the file itself, or per folder (the model's and its
    components') the safetensors — else the other weights — without duplicate variants."""
    path = Path(path)
    if path.is_file():
        return [path]
    if not path.is_dir():
        return []
    folders = [path] + sorted(p for p in path.iterdir() if p.is_dir()
                              and not p.name.startswith(".") and p.name not in _UNLOADED_COMPONENTS)
    files: list[Path] = []
    for folder in folders:
        here = [f for f in folder.iterdir() if f.is_file() and f.suffix.lower() in WEIGHT_SUFFIXES
                and f.name != "training_args.bin"]
        here = [f for f in here if f.suffix == ".safetensors"] or here
        plain = [f for f in here if not _VARIANT.search(f.name)]
        files += plain or here
    return sorted(files)


def _safetensors_parameters(path: Path) -> int:
    from studio.library.chat_models import safetensors_parameter_count

    return safetensors_parameter_count([path])


def estimate_bytes(path: Path, dtype: LoadAs) -> int:
    """Memory the model at ``path`` will take loaded in ``dtype``, from its files alone.

    safetensors headers give the exact parameter count; other files count by their size,
    taken as float32 storage (float16 when the name says so)."""
    per = _bytes_per_parameter(dtype)
    total = 0.0
    for file in _weight_files(path):
        try:
            if file.suffix == ".safetensors":
                total += _safetensors_parameters(file) * per
                continue
            stored = 2.0 if ".fp16" in file.name else 4.0
            total += file.stat().st_size * per / stored
        except Exception:  # noqa: BLE001 - a bad header is the loader's to report
            try:
                total += file.stat().st_size
            except OSError:
                pass
    return int(total)


def _torch_modules(obj: Any, torch: Any) -> list[Any]:
    if isinstance(obj, torch.nn.Module):
        return [obj]
    components = getattr(obj, "components", None)  # a diffusers pipeline
    values = components.values() if isinstance(components, dict) else \
        vars(obj).values() if hasattr(obj, "__dict__") else ()
    return [v for v in values if isinstance(v, torch.nn.Module)]


def measure_bytes(obj: Any) -> int:
    """Bytes of the parameters and buffers of every torch module in ``obj`` (a module, a diffusers
    pipeline, or an object holding modules such as a loaded chat model); 0 without torch.
    Shared tensors count once; tensors on the meta device (sequential offload) not at all."""
    torch = sys.modules.get("torch")
    if torch is None:
        return 0
    seen: set[int] = set()
    total = 0
    for module in _torch_modules(obj, torch):
        for tensor in itertools.chain(module.parameters(), module.buffers()):
            if id(tensor) in seen or tensor.device.type == "meta":
                continue
            seen.add(id(tensor))
            total += tensor.numel() * tensor.element_size()
    return total


def _gb(n: int | float) -> str:
    return f"{n / 2**30:.2f} GB"


# -- the cache ----------------------------------------------------------------------------------
class ModelCache:
    """Loads a model once per (path, device, dtype) and keeps it while the budget allows.

    ``loader(entry, device, dtype, [paths=])`` reads a model (the text-to-image loader when
    None); ``kind`` labels its models in :func:`memory_report`; ``settings_getter`` gives the
    settings whose budget applies (the automatic budget when None); ``estimator(path, dtype)``
    replaces :func:`estimate_bytes`.
    """

    def __init__(self, loader: Callable[..., Any] | None = None, *, kind: str = "image",
                 settings_getter: Callable[[], Settings] | None = None,
                 estimator: Callable[[Path, LoadAs], int] | None = None) -> None:
        self._loader = loader
        self.kind = kind
        self.settings_getter = settings_getter
        self._estimator = estimator or estimate_bytes
        self._slots: OrderedDict[CacheKey, _Slot] = OrderedDict()  # least recently used first
        self._load_lock = threading.Lock()
        self.loads = 0  # how many times a model was actually read from disk (for tests / status)
        _caches.add(self)

    def budget(self) -> int:
        """The budget in force for this cache's loads (asks CUDA; call on the worker)."""
        settings = self.settings_getter() if self.settings_getter is not None else None
        return budget_bytes(settings, probe=True)

    def holds(self, entry: CachedEntry, device: str, dtype: LoadAs) -> bool:
        """Whether ``entry`` is in memory already for ``device`` and ``dtype``."""
        with _lock:
            return cache_key(entry, device, dtype) in self._slots

    def get(self, entry: CachedEntry, device: str, dtype: LoadAs, paths: Paths | None = None,
            *, load_device: str | None = None) -> Any:
        """The model for ``entry``, from memory or loaded now (evicting others to fit).

        ``paths`` is passed on to the loader (single files materialise their configs there);
        ``load_device`` is where the loader puts the weights when that is not ``device`` (a model
        that will be CPU-offloaded is read into RAM, not onto the GPU)."""
        key = cache_key(entry, device, dtype)
        _record_use(entry)
        with self._load_lock:
            with _lock:
                slot = self._slots.get(key)
                if slot is not None:
                    slot.used = next(_ticks)
                    self._slots.move_to_end(key)
                    return slot.model
            return self._load(key, entry, device, dtype, paths, load_device)

    def _load(self, key: CacheKey, entry: CachedEntry, device: str, dtype: LoadAs,
              paths: Paths | None,
              load_device: str | None) -> Any:
        name = getattr(entry, "name", "") or Path(entry.path).name
        budget = self.budget()
        estimate = self._estimator(Path(entry.path), dtype)
        _release(_make_room(estimate, budget, keep=None))
        if estimate > budget:
            log.warning("%s needs about %s, more than the memory budget of %s: it is loaded "
                        "anyway, alone", name, _gb(estimate), _gb(budget))
        loader = self._loader
        if loader is None:
            from studio.pipelines.diffusion.loading import load_txt2img_pipeline

            # the image cache's entries are ModelEntry s and its dtypes torch's or Quantized
            loader = cast("Callable[..., Any]", load_txt2img_pipeline)
        model = loader(entry, load_device or device, dtype, **({"paths": paths} if paths else {}))
        size = measure_bytes(model) or estimate
        slot = _Slot(key, model, name, Path(key[0]), device, size, next(_ticks))
        with _lock:
            self._slots[key] = slot
            self.loads += 1
        log.info("loaded %s on %s: %s (estimated %s; budget %s)", name, device, _gb(size),
                 _gb(estimate), _gb(budget))
        _release(_make_room(0, budget, keep=model))
        return model

    def unload_all(self) -> int:
        """Free every model of this cache and give the memory back; returns the bytes freed."""
        with _lock:
            dropped = list(self._slots.values())
            self._slots.clear()
        return _release(dropped)

    @property
    def current(self) -> Any:
        """The most recently used model, or None."""
        with _lock:
            return next(reversed(self._slots.values())).model if self._slots else None

    def loaded_keys(self) -> list[CacheKey]:
        """Keys of the models in memory, least recently used first."""
        with _lock:
            return list(self._slots)

    def bytes_in_use(self) -> int:
        with _lock:
            return sum(s.bytes for s in self._slots.values())


def _all_slots() -> list[tuple[ModelCache, _Slot]]:
    return [(cache, slot) for cache in list(_caches) for slot in list(cache._slots.values())]


def _make_room(needed: int, budget: int, keep: Any) -> list[_Slot]:
    """Take least recently used models (not ``keep``) out of their caches until ``needed`` more
    bytes fit in ``budget``; returns them, to be released outside the lock."""
    dropped: list[_Slot] = []
    with _lock:
        used = sum(slot.bytes for _, slot in _all_slots())
        while used + needed > budget:
            candidates = [(slot.used, id(cache), cache, slot) for cache, slot in _all_slots()
                          if slot.model is not keep]
            if not candidates:
                break
            _, _, cache, slot = min(candidates, key=lambda c: c[:2])
            del cache._slots[slot.key]
            used -= slot.bytes
            dropped.append(slot)
    return dropped


def _empty_device_cache() -> None:
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.empty_cache()


def _release(dropped: list[_Slot], always: bool = False) -> int:
    """Drop the last references to evicted models and give their memory back; bytes freed.
    Nothing to drop skips the (slow) garbage collection unless ``always``."""
    if not dropped and not always:
        return 0
    freed = 0
    for slot in dropped:
        log.info("unloading %s (%s)", slot.name, _gb(slot.bytes))
        freed += slot.bytes
        slot.model = None
    dropped.clear()
    gc.collect()
    _empty_device_cache()
    return freed


def free_memory_except(model: Any) -> int:
    """Unload every cached model but ``model`` and give CUDA's cached blocks back (after running
    out of memory); returns the bytes freed."""
    dropped: list[_Slot] = []
    with _lock:
        for cache, slot in _all_slots():
            if slot.model is not model:
                del cache._slots[slot.key]
                dropped.append(slot)
    return _release(dropped, always=True)


class UnloadService:
    """The ``unload`` job (an :class:`~studio.core.requests.UnloadRequest`): free every
    model the worker's caches and the TAESD previewer hold; the result is the bytes freed.
    Queued like any job, so it never pulls a model from under a running generation."""

    def run(self, request: UnloadRequest, progress: ProgressSink, cancel: CancelToken) -> int:
        progress.message("Unloading all models…")
        return unload_all_models()


def unload_all_models() -> int:
    """Free every model of every cache and the TAESD previewer, collect garbage and give CUDA's
    cached blocks back (the "Unload all" action); returns the bytes freed."""
    with _lock:
        dropped = [slot for _, slot in _all_slots()]
        for cache in list(_caches):
            cache._slots.clear()
    freed = sum(_preview_bytes(p) for _, p in _previewers())
    previews = sys.modules.get("studio.pipelines.diffusion.previews")
    if previews is not None:
        previews._taesd_cache.clear()
    freed += _release(dropped, always=True)
    log.info("unloaded all models: %s freed", _gb(freed))
    return freed


# -- what the window and the library read -------------------------------------------------------
def _previewers() -> list[tuple[tuple, Any]]:
    previews = sys.modules.get("studio.pipelines.diffusion.previews")
    return list(getattr(previews, "_taesd_cache", {}).items()) if previews is not None else []


def _preview_bytes(previewer: Any) -> int:
    size = _preview_sizes.get(previewer)
    if size is None:
        size = measure_bytes(previewer)
        _preview_sizes[previewer] = size
    return size


def _device_label(slot: _Slot) -> str:
    from studio.pipelines.diffusion.memory import offload_mode

    mode = offload_mode(slot.model)
    return f"{slot.device} ({mode} offload)" if mode != "none" else slot.device


def memory_report() -> list[LoadedModel]:
    """Every model in memory (all caches and the TAESD previewer), most recently used first.

    Cheap and safe on the GUI thread: sizes were measured at load; torch is not imported."""
    with _lock:
        slots = sorted(((cache.kind, slot) for cache, slot in _all_slots()),
                       key=lambda item: -item[1].used)
        report = [LoadedModel(slot.name, slot.path, kind, slot.bytes, _device_label(slot))
                  for kind, slot in slots]
    for key, previewer in _previewers():
        folder = Path(key[0])
        report.append(LoadedModel(folder.name, folder, "preview", _preview_bytes(previewer),
                                  str(key[1])))
    return report


def loaded_model_paths() -> set[Path]:
    """Resolved paths of the models loaded in any live :class:`ModelCache` of this process."""
    with _lock:
        return {Path(slot.key[0]) for _, slot in _all_slots()}


def _record_use(entry: CachedEntry) -> None:
    from studio.library.usage import record_use

    try:
        record_use(Path(getattr(entry, "usage_path", None) or entry.path))
    except Exception:  # noqa: BLE001 - bookkeeping must never fail a job
        log.exception("could not record the use of %s", getattr(entry, "path", entry))
