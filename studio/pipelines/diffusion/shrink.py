"""Making an image model smaller ("Make smaller…" in Models, ``studio models shrink``).

The denoiser (the UNet of SD 1.x/2.x/SDXL, the transformer of SD 3.5/FLUX/Chroma) holds most of
an image model's bytes and all of its per-step work, so it is the part stored in 8 bits; the text
encoders and the VAE are copied as they are. Two methods, both diffusers' own:

- ``int8``: torchao weight-only int8 of the denoiser's linear layers (``TorchAoConfig``); diffusers
  writes torchao's tensors into safetensors with a JSON description in the file's metadata and
  puts ``quantization_config`` in the denoiser's ``config.json``, so ``from_pretrained`` rebuilds
  them from torchao's allow-list, never a pickle. The convolutions stay as they were.
- ``fp8``: the conv and linear weights stored as float8 e4m3 (diffusers' layer-wise casting: each
  layer is upcast to the compute dtype just for its own forward). safetensors stores the float8
  tensors as they are; the loader switches layer-wise casting back on from the copy's
  ``studio_shrink.json`` (:func:`apply_storage`). torchao's fp8 weight-only tensors would be the
  other way, but on this CPU they only run in the dtype they were made in (measured: fp16 and
  bf16 compute fail against fp32-made weights), which layer-wise casting does not need.

The copy is a diffusers folder next to the original (a single-file checkpoint is first written as
one), with ``studio_shrink.json`` saying what it was made from and how to make it again. Before
and after, the job loads the model through Generate's own loader, and measures the size on disk,
the denoiser's parameter bytes, the seconds per step and one sample image at a fixed seed and
prompt; the images' mean absolute pixel difference says how far the copy drifted. Runs on the GPU
lane; no Qt here.
"""

from __future__ import annotations

import json
import logging
import math
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from itertools import pairwise
from pathlib import Path
from typing import TYPE_CHECKING, Any

from studio.core.config import Paths, Settings
from studio.core.jobs import CancelToken, JobCancelled, ProgressSink, UserFacingError, checked
from studio.core.shrink_requests import IMAGE_SHRINK_METHODS, ImageShrinkRequest
from studio.library.detect import read_safetensors_header
from studio.library.families import family as family_of
from studio.library.models import ModelEntry, entry_for_path, resolve_model
from studio.library.shrunk import SHRINK_NOTE, quantized_denoiser, shrink_info
from studio.pipelines.chat.shrink import (
    _DTYPE_BYTES,
    DISK_MARGIN,
    ShrinkService,
    bytes_row,
    check_out_name,
    job_device,
    publish,
    work_folder,
)

if TYPE_CHECKING:
    import torch

log = logging.getLogger(__name__)

FP8_STORAGE = "float8_e4m3fn"
#: the prefix of the denoiser's keys in an original-layout single-file checkpoint
_SINGLE_FILE_DENOISER = "model.diffusion_model."
SAMPLE_FILES = ("shrink-sample-before.png", "shrink-sample-after.png")
SAMPLE_MAX_DEFAULT = 512  # the sample's side when the request leaves it to the family
DENOISER_NAMES = {"unet": "UNet", "transformer": "transformer"}
DENOISER_TITLES = {"unet": "UNet", "transformer": "Transformer"}


@dataclass
class ImageShrinkPlan:
    """What shrinking ``entry`` with ``method`` would do, checked before any weight is read."""

    entry: ModelEntry
    method: str
    denoiser: str  # "unet" or "transformer"
    out_name: str
    out_path: Path
    size_before: int
    size_estimate: int

    def describe(self) -> str:
        from studio.library.manage import human_size

        what = {"int8": "its linear layers in int8", "fp8": "its conv and linear weights in fp8"}
        return (f"{self.entry.name} → {self.out_name} ({self.method}): the "
                f"{DENOISER_NAMES.get(self.denoiser, self.denoiser)} with "
                f"{what[self.method]}; the text encoders and the VAE as they are. About "
                f"{human_size(self.size_estimate)} instead of {human_size(self.size_before)}.")


@dataclass
class ImageMeasure:
    """One side of the before/after table, and its sample image."""

    size_bytes: int
    denoiser_bytes: int  # the denoiser's parameters and buffers as they sit in memory
    seconds_per_step: float
    image: Any = field(default=None, repr=False)  # a PIL image

    def to_json(self) -> dict[str, Any]:
        return {"size_bytes": self.size_bytes, "denoiser_bytes": self.denoiser_bytes,
                "seconds_per_step": self.seconds_per_step}


@dataclass
class ImageShrinkReport:
    """The job's result: the new model, the numbers both ways and the two sample images."""

    request: ImageShrinkRequest
    source: str
    name: str
    path: Path
    method: str
    denoiser: str
    before: ImageMeasure
    after: ImageMeasure
    pixel_difference: float  # mean absolute difference of the samples, 0–255
    samples: tuple[Path, Path] | None = None
    warnings: list[str] = field(default_factory=list)

    def rows(self) -> list[tuple[str, str, str, str]]:
        """(what, before, after, change) for the table the dialog and the CLI show."""
        b, a = self.before, self.after
        return [
            bytes_row("Size on disk", b.size_bytes, a.size_bytes),
            bytes_row(f"{DENOISER_TITLES.get(self.denoiser, self.denoiser)} in memory",
                      b.denoiser_bytes, a.denoiser_bytes),
            ("Seconds per step", f"{b.seconds_per_step:.3f}", f"{a.seconds_per_step:.3f}",
             f"× {a.seconds_per_step / max(b.seconds_per_step, 1e-9):.2f}"),
            ("Sample difference (mean |Δ| of 255)", "", f"{self.pixel_difference:.2f}", ""),
        ]

    def to_json(self) -> dict[str, Any]:
        return {"source": self.source, "name": self.name, "path": str(self.path),
                "method": self.method, "denoiser": self.denoiser,
                "before": self.before.to_json(), "after": self.after.to_json(),
                "pixel_difference": self.pixel_difference,
                "samples": [str(p) for p in self.samples] if self.samples else [],
                "warnings": self.warnings}


# -- checks -----------------------------------------------------------------------------------
def default_out_name(entry: ModelEntry, method: str) -> str:
    base = entry.name.split("/")[-1] if entry.source == "hf-cache" else \
        (entry.path.name if entry.path.is_dir() else entry.path.stem)
    return f"{base}-{method}"


def _denoiser_headers(entry: ModelEntry, denoiser: str) -> list[dict[str, Any]]:
    """The safetensors headers of the denoiser's weights (its keys only, for a single file)."""
    if entry.format != "diffusers":
        header = read_safetensors_header(entry.path)
        return [{k: v for k, v in header.items() if k.startswith(_SINGLE_FILE_DENOISER)}]
    folder = entry.path / denoiser
    files = sorted(folder.glob("*.safetensors"))
    plain = [f for f in files if ".fp16." not in f.name]
    return [read_safetensors_header(f) for f in (plain or files)]


def _already(entry: ModelEntry, denoiser: str, headers: list[dict[str, Any]]) -> str:
    """How ``entry`` is already made smaller ('' when it is not)."""
    if entry.format == "diffusers":
        info = shrink_info(entry.path)
        if info is not None:
            return f"{info.get('method')}, made from {info.get('source', 'another model')}"
        quant = quantized_denoiser(entry.path, denoiser)
        if quant:
            return f"its {denoiser} is quantized ({quant})"
    small = {"F8_E4M3": "fp8", "F8_E5M2": "fp8", "I8": "int8", "U8": "8-bit"}
    for header in headers:
        for key, info in header.items():
            if key != "__metadata__" and key.endswith(".weight") \
                    and info.get("dtype") in small and len(info.get("shape", ())) >= 2:
                return f"its {denoiser} weights are {small[info['dtype']]} ({key})"
    return ""


def _estimate(entry: ModelEntry, method: str, headers: list[dict[str, Any]]) -> int:
    """Bytes of the copy: everything but the denoiser as it is, the denoiser's linear (int8) or
    linear and conv (fp8) weights at one byte each plus, for int8, a float32 scale per row."""
    before = after = 0
    for header in headers:
        for key, info in header.items():
            if key == "__metadata__":
                continue
            shape = info.get("shape") or []
            count = math.prod(shape)
            stored = count * _DTYPE_BYTES.get(info.get("dtype"), 4)
            before += stored
            small = key.endswith(".weight") and (len(shape) == 2 or (method == "fp8"
                                                                    and len(shape) == 4))
            after += count + (4 * shape[0] if method == "int8" else 0) if small else stored
    return max(entry.size_bytes - before, 0) + after


def plan_image_shrink(request: ImageShrinkRequest, settings: Settings, paths: Paths,
                      taken: Callable[[str], bool] | None = None) -> ImageShrinkPlan:
    """Check everything that can be checked before loading the weights: the model and its
    family, the method, whether it is already small, the name and the free disk space. Raises
    UserFacingError."""
    checked(request)
    entry = resolve_model(request.model, settings, paths)
    family = family_of(entry.family)
    if entry.format == "gan" or family is None:
        what = {"gan": "a GAN trained in Studio", "ddpm": "a pixel diffusion model trained in "
                "Studio"}.get(entry.family, f"a model of an unrecognised kind ({entry.family})")
        raise UserFacingError(f"{entry.name} is {what}; Make smaller takes Stable Diffusion, "
                              "SD 3.5 and FLUX-style models, whose denoiser diffusers can "
                              f"store in {' or '.join(IMAGE_SHRINK_METHODS)}.")
    if entry.format == "single-file" and entry.path.suffix.lower() != ".safetensors":
        raise UserFacingError(f"{entry.path.name} is a pickled checkpoint; Make smaller reads "
                              ".safetensors checkpoints and diffusers folders. Save it as "
                              ".safetensors first.")
    headers = _denoiser_headers(entry, family.denoiser)
    if not any(len(h) for h in headers):
        raise UserFacingError(f"{entry.name} has no {family.denoiser} weights in safetensors "
                              "files (only .bin weights?), so its size cannot be planned. "
                              "Re-save it as safetensors first.")
    already = _already(entry, family.denoiser, headers)
    if already:
        raise UserFacingError(f"{entry.name} is already made smaller: {already}. Rounding it "
                              "again only loses detail; make the original model smaller "
                              "instead.")
    out_name = request.out_name.strip() or default_out_name(entry, request.method)
    out = check_out_name(out_name, paths, taken)
    estimate = _estimate(entry, request.method, headers)
    # a single file is written out as a diffusers folder first, then its denoiser replaced
    needed = estimate + DISK_MARGIN + (entry.size_bytes if entry.format != "diffusers" else 0)
    paths.models_dir.mkdir(parents=True, exist_ok=True)
    free = shutil.disk_usage(paths.models_dir).free
    if needed > free:
        from studio.library.manage import human_size

        raise UserFacingError(f"Not enough disk space: the {request.method} copy of {entry.name} "
                              f"needs about {human_size(needed)} while it is made and "
                              f"{paths.models_dir} has {human_size(free)} free. Free some space "
                              "first.")
    return ImageShrinkPlan(entry, request.method, family.denoiser, out_name, out,
                           entry.size_bytes, estimate)


# -- storing ----------------------------------------------------------------------------------
def apply_storage(pipe: Any, folder: Path, dtype: torch.dtype) -> None:
    """Switch a loaded shrunk copy's storage back on: fp8 copies keep their denoiser's weights in
    float8 between layers (``from_pretrained`` upcast them to ``dtype`` on the way in, exactly;
    casting them back is exact too). int8 copies need nothing: diffusers rebuilt them."""
    info = shrink_info(folder)
    if info is None or info.get("method") != "fp8":
        return
    import torch

    denoiser = getattr(pipe, str(info.get("denoiser") or "unet"), None)
    if denoiser is not None:
        denoiser.enable_layerwise_casting(storage_dtype=getattr(torch, FP8_STORAGE),
                                          compute_dtype=dtype)
        pipe.studio_fp8_storage = True  # LoRAs refuse it (loras.apply_loras): peft cannot add
        # its layers to float8 weights on the CPU


def _stored_dtype(folder: Path) -> Any:
    """The floating dtype most of a denoiser folder's bytes are stored in."""
    import torch

    from studio.library.classify import files_precision

    files = sorted(folder.glob("*.safetensors"))
    plain = [f for f in files if ".fp16." not in f.name] or files
    first = files_precision(plain).split(" + ")[0]
    return {"fp16": torch.float16, "bf16": torch.bfloat16}.get(first, torch.float32)


def _denoiser_class(folder: Path) -> Any:
    import diffusers

    config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    cls = getattr(diffusers, str(config.get("_class_name", "")), None)
    if cls is None:
        raise UserFacingError(f"{folder}'s class {config.get('_class_name')!r} is not one "
                              "diffusers has.")
    return cls


def shrink_denoiser(src: Path, dest: Path, method: str) -> None:
    """Load the denoiser in ``src`` (a diffusers sub-folder), store it with ``method`` and save
    it as safetensors into ``dest``."""
    import torch

    cls, dtype = _denoiser_class(src), _stored_dtype(src)
    variant = "fp16" if not any(f for f in src.glob("*.safetensors") if ".fp16." not in f.name) \
        and any(src.glob("*.fp16.safetensors")) else None
    kwargs: dict[str, Any] = {"local_files_only": True, "torch_dtype": dtype, "variant": variant}
    try:
        if method == "int8":
            import torchao.quantization as tq
            from diffusers import TorchAoConfig

            model = cls.from_pretrained(str(src), quantization_config=TorchAoConfig(
                tq.Int8WeightOnlyConfig()), **kwargs)
        else:
            model = cls.from_pretrained(str(src), **kwargs)
            model.enable_layerwise_casting(storage_dtype=getattr(torch, FP8_STORAGE),
                                           compute_dtype=dtype)
    except (OSError, ValueError, RuntimeError, TypeError, NotImplementedError) as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]
        raise UserFacingError(f"diffusers could not store {src.name} in {method}: {first}. "
                              "Try the other method.") from exc
    model.save_pretrained(str(dest), safe_serialization=True)
    del model


def _copy_components(src: Path, dest: Path, denoiser: str) -> None:
    """Everything of a diffusers folder but its denoiser (and a note of an earlier shrink)."""
    dest.mkdir(parents=True)
    for item in src.iterdir():
        if item.name in (denoiser, SHRINK_NOTE, *SAMPLE_FILES) or item.name.startswith("."):
            continue
        if item.is_dir():
            shutil.copytree(item, dest / item.name)
        else:
            shutil.copy2(item, dest / item.name)


def write_copy(plan: ImageShrinkPlan, work: Path, original: Any, dtype: torch.dtype) -> None:
    """The shrunk diffusers folder in ``work``: the original's components, the denoiser stored
    with the plan's method. ``original`` is the loaded pipeline (a single file is saved from it
    in the checkpoint's own dtype first)."""
    if plan.entry.format == "diffusers":
        _copy_components(plan.entry.path, work, plan.denoiser)
        shrink_denoiser(plan.entry.path / plan.denoiser, work / plan.denoiser, plan.method)
        return
    import torch

    from studio.library.classify import files_precision

    stored = {"fp16": torch.float16, "bf16": torch.bfloat16}.get(
        files_precision([plan.entry.path]).split(" + ")[0], torch.float32)
    original.to(dtype=stored)
    try:
        original.save_pretrained(str(work), safe_serialization=True)
    finally:
        original.to(dtype=dtype)
    full = work / f".{plan.denoiser}-full"
    (work / plan.denoiser).rename(full)
    shrink_denoiser(full, work / plan.denoiser, plan.method)
    shutil.rmtree(full)


# -- measuring --------------------------------------------------------------------------------
def folder_bytes(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()
               and p.name not in SAMPLE_FILES and p.name != SHRINK_NOTE)


def denoiser_bytes(pipe: Any, denoiser: str) -> int:
    from studio.pipelines.train.compress import model_bytes

    return model_bytes(getattr(pipe, denoiser))


def sample(pipe: Any, plan: ImageShrinkPlan, request: ImageShrinkRequest,
           cancel: CancelToken) -> tuple[Any, float]:
    """(the sample image, seconds per step) at the request's seed, prompt, steps and size."""
    import torch

    family = family_of(plan.entry.family)
    # the family's size, at most 512 px: SDXL/FLUX at 1024 take minutes a step on a CPU
    side = int(request.size) or min(family.default_size[0] if family is not None else 512,
                                    SAMPLE_MAX_DEFAULT)
    stamps: list[float] = []

    def on_step(_pipe: Any, _i: int, _t: Any, kwargs: dict[str, Any]) -> dict[str, Any]:
        stamps.append(time.perf_counter())
        if cancel.cancelled:
            raise JobCancelled()
        return kwargs

    kwargs: dict[str, Any] = {"prompt": request.prompt, "num_inference_steps": int(request.steps),
                              "width": side, "height": side, "output_type": "pil",
                              "generator": torch.Generator("cpu").manual_seed(int(request.seed)),
                              "callback_on_step_end": on_step}
    if family is not None:
        kwargs["guidance_scale"] = family.default_cfg
    start = time.perf_counter()
    with torch.inference_mode():
        image = pipe(**kwargs).images[0]
    # the first step carries one-time work (allocations, the text encoder): time the rest
    spans = [b - a for a, b in pairwise(stamps)] or [stamps[0] - start if stamps else 0.0]
    return image, sum(spans) / len(spans)


def pixel_difference(a: Any, b: Any) -> float:
    """Mean absolute difference of two images' RGB values, 0–255."""
    import numpy as np

    x = np.asarray(a.convert("RGB"), dtype=np.float64)
    y = np.asarray(b.convert("RGB").resize(a.size), dtype=np.float64)
    return float(np.abs(x - y).mean())


def measure(pipe: Any, plan: ImageShrinkPlan, path: Path, request: ImageShrinkRequest,
            cancel: CancelToken) -> ImageMeasure:
    image, per_step = sample(pipe, plan, request, cancel)
    return ImageMeasure(folder_bytes(path), denoiser_bytes(pipe, plan.denoiser), per_step, image)


# -- the job ----------------------------------------------------------------------------------
class ImageShrinkService(ShrinkService):
    """The ``image-shrink`` job: plan, measure the original, store its denoiser in 8 bits as a
    new folder, load that through Generate's loader and measure it."""

    def run(self, request: ImageShrinkRequest, progress: ProgressSink,  # type: ignore[override]
            cancel: CancelToken) -> ImageShrinkReport:
        from studio.core.devices import resolve_dtype
        from studio.pipelines.diffusion.loading import load_txt2img_pipeline

        settings, paths = self._settings(), self._paths()
        plan = plan_image_shrink(request, settings, paths, self._taken(settings, paths))
        device = job_device(settings)
        dtype = resolve_dtype(settings.precision, device)
        total = 4
        progress(0, total, None)
        progress.message(f"Drawing the sample with {plan.entry.name}…")
        original = load_txt2img_pipeline(plan.entry, device, dtype, paths)
        before = measure(original, plan, plan.entry.path, request, cancel)
        progress(1, total, None)
        progress.message(f"Storing {plan.entry.name}'s {plan.denoiser} in {plan.method}…")
        work = work_folder(paths, plan.out_name)
        try:
            write_copy(plan, work, original, dtype)
            del original
            if cancel.cancelled:
                raise JobCancelled()
            note = {"source": plan.entry.name, "source_path": str(plan.entry.path),
                    "method": plan.method, "denoiser": plan.denoiser,
                    "storage": (FP8_STORAGE + " (layer-wise casting)" if plan.method == "fp8"
                                else "torchao Int8WeightOnlyConfig"),
                    "recreate": f"studio models shrink {plan.entry.path} --method "
                                f"{plan.method} --out {plan.out_name}",
                    "before": before.to_json()}
            (work / SHRINK_NOTE).write_text(json.dumps(note, indent=1), encoding="utf-8")
            publish(work, plan.out_path)
        except OSError as exc:
            from studio.core.wording import write_failure

            raise UserFacingError(write_failure(exc, f"the {plan.method} copy of "
                                                     f"{plan.entry.name}", paths.models_dir)) \
                from exc
        finally:
            if work.exists():
                shutil.rmtree(work, ignore_errors=True)
        progress(2, total, None)
        progress.message(f"Drawing the sample with {plan.out_name}…")
        try:
            entry = entry_for_path(plan.out_path, "studio")
            if entry is None:
                raise UserFacingError(f"{plan.out_path} was written but is not an image model "
                                      "folder.")
            loaded = load_txt2img_pipeline(entry, device, dtype, paths)  # Generate's own loader
            progress(3, total, None)
            after = measure(loaded, plan, plan.out_path, request, cancel)
            del loaded
            samples = (plan.out_path / SAMPLE_FILES[0], plan.out_path / SAMPLE_FILES[1])
            before.image.save(samples[0])
            after.image.save(samples[1])
        except (JobCancelled, UserFacingError):
            shutil.rmtree(plan.out_path, ignore_errors=True)  # Cancel: nothing is kept
            raise
        progress(total, total, None)
        warnings = []
        if plan.method == "int8":
            warnings.append("int8 quantizes the linear layers only; the convolutions keep their "
                            "precision (fp8 stores those in 8 bits too).")
        log.info("shrunk %s to %s: %s", plan.entry.name, plan.out_path, after)
        return ImageShrinkReport(request, plan.entry.name, plan.out_name, plan.out_path,
                                 plan.method, plan.denoiser, before, after,
                                 pixel_difference(before.image, after.image), samples, warnings)
