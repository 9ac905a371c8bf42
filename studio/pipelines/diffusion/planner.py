"""The memory planner: before an image model is loaded, how much memory it needs, how much is
free, and the lightest way to run it that fits — said in one sentence.

Each component's need is estimated from its files' safetensors headers (element counts × the
bytes of the precision it will run in; an fp8 file run in bf16 needs twice its size), plus a
working margin for activations. That is compared with free GPU memory (``torch.cuda.mem_get_info``)
and free RAM (``psutil``), and the first setting that fits is chosen:

1. ``full``: every component on the GPU;
2. ``text encoder on CPU``: the largest text encoder (FLUX's / SD 3.5's T5) runs on the CPU,
   everything else on the GPU — as fast as full once the prompt is encoded;
3. ``text_encoder_nf4``: that text encoder in 4 bits (NF4, bitsandbytes) on the GPU with the
   rest — when bitsandbytes can run (:mod:`.quantize`) and RAM is short for step 2;
4. ``model`` offload: components wait in RAM and go to the GPU one at a time (accelerate);
5. ``nf4``: the transformer and the large text encoders in 4 bits, all on the GPU (bitsandbytes);
6. ``sequential`` offload: layer by layer (slowest, least GPU memory).

On a CPU the RAM is compared, and when the model does not fit but would with its large text
encoders in NF4 (bitsandbytes' CPU backend; diffusers quantizes a transformer only on CUDA),
that is step 3 there. Without bitsandbytes, where 4 bits would have fitted the sentence says so,
with the line that installs it. Quantized steps apply to diffusers folders.

"FLUX.1 needs ~13 GB; you have 12 GB free: the T5 encoder runs on the CPU" is shown in
Generate's status and printed by the command line. The planner only chooses when the user has not
set memory options for the model (Models → memory options): their choice wins. The arithmetic
(:func:`plan`) takes the free numbers as arguments, so it is tested without a GPU; torch is
imported only by :func:`free_memory`.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from studio.core.jobs import UserFacingError
from studio.library.detect import read_safetensors_header
from studio.pipelines.component_sizes import (  # the size model shared with LoRA training
    DTYPE_BYTES,
    GB,
    WORKING_MIN,
    WORKING_SHARE,
    dtype_bytes,
    header_bytes,
    tensor_bytes,
    working_bytes,
)

if TYPE_CHECKING:
    import torch

    from studio.library.models import ModelEntry

log = logging.getLogger(__name__)

__all__ = ["DTYPE_BYTES", "GB", "WORKING_MIN", "WORKING_SHARE", "dtype_bytes", "header_bytes",
           "tensor_bytes"]
#: the text encoders a plan may leave on the CPU, largest first when several
TEXT_ENCODERS = ("text_encoder_3", "text_encoder_2", "text_encoder")
_T5_NAMES = {"t5xxl", "T5"}

MODES = ("full", "text_encoder_cpu", "text_encoder_nf4", "model", "nf4", "sequential")


@dataclass(frozen=True)
class Component:
    """One part of a pipeline and the bytes its weights take in the precision it runs in."""

    key: str  # the pipeline's attribute ("transformer", "text_encoder_2", "vae")
    label: str  # how the sentence names it ("the T5 encoder")
    bytes: int
    #: its bytes in NF4 (bitsandbytes), 0 when it is not quantized (CLIP, VAE, split files)
    nf4: int = 0


@dataclass(frozen=True)
class Plan:
    mode: str  # one of MODES
    need: int  # bytes the model needs whole on the GPU (weights + working margin)
    free: int  # free bytes where it runs
    sentence: str
    #: the text encoder left on the CPU (mode text_encoder_cpu)
    cpu_component: str = ""
    #: modes text_encoder_nf4 and nf4: "nf4", and the components loaded in it
    quantize: str = ""
    quantized: tuple[str, ...] = ()

    @property
    def offload(self) -> str:
        """The MemoryOptions offload this plan means ("none" for full and text_encoder_cpu)."""
        return self.mode if self.mode in ("model", "sequential") else "none"


def _gb(n: int) -> str:
    value = n / GB
    return f"{value:.0f} GB" if value >= 10 else f"{value:.1f} GB".replace(".0 GB", " GB")


#: what bitsandbytes leaves unquantized: embeddings (T5's tied ``shared``, its relative-position
#: bias), the language-model head; and, per model type, what transformers keeps in float32
_NOT_LINEAR = ("embed", "shared.weight", "relative_attention_bias", "lm_head")
_KEPT_FP32 = {"t5": (".wo.",), "umt5": (".wo.",)}


def _model_type(folder: Path) -> str:
    """A transformers component's ``model_type`` ("t5", "qwen2_5_vl" …; '' when none)."""
    import json

    try:
        config = json.loads((Path(folder) / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return ""
    return str(config.get("model_type", "")) if isinstance(config, dict) else ""


def kept_fp32(folder: Path) -> tuple[str, ...]:
    """Name parts of the weights transformers keeps in float32 for the model in ``folder``."""
    return _KEPT_FP32.get(_model_type(folder), ())


def quantized_bytes(files: list[Path], run_bytes: int, fp32: tuple[str, ...] = ()) -> int:
    """The bytes of ``files`` loaded in NF4: linear-layer weights (2-D float tensors named
    ``*.weight``, not embeddings) at NF4's half byte and scales, names containing one of
    ``fp32`` in float32, the rest as :func:`tensor_bytes`."""
    from studio.pipelines.diffusion.quantize import NF4_BYTES

    total = 0.0
    for path in files:
        for name, info in read_safetensors_header(path).items():
            if name == "__metadata__":
                continue
            count = math.prod(info["shape"])
            dtype = str(info["dtype"]).upper()
            if not dtype.startswith(("F", "BF")):
                start, end = info["data_offsets"]
                total += end - start
            elif any(part in name for part in fp32):
                total += count * 4
            elif (len(info["shape"]) == 2 and name.endswith(".weight")
                  and not any(part in name for part in _NOT_LINEAR)):
                total += count * NF4_BYTES
            else:
                total += count * run_bytes
    return int(total)


def _label(key: str, family_parts: dict[str, str]) -> str:
    role = family_parts.get(key, "")
    if role == "t5xxl" or key == "text_encoder_3":
        return "the T5 encoder"
    if key.startswith("text_encoder"):
        return "the text encoder" if key == "text_encoder" else f"text encoder {key[-1]}"
    return f"the {key.replace('_', ' ')}"


def components_of(entry: ModelEntry, run_bytes: int) -> list[Component]:
    """The components of a library entry (``ModelEntry``) with their estimated bytes."""
    found: list[Component] = []
    if entry.format == "split":
        from studio.pipelines.diffusion.all_in_one_loading import part_bytes
        from studio.pipelines.diffusion.split_loading import COMPONENTS

        roles = {sub: role for role, (sub, _) in COMPONENTS.get(entry.family, {}).items()}
        found.append(Component("transformer", "the transformer",
                               part_bytes(entry, "transformer", run_bytes)))
        for role in entry.parts:  # an all-in-one file's parts are counted from its header
            key = "vae" if role == "vae" else COMPONENTS[entry.family][role][0]
            found.append(Component(key, _label(key, roles), part_bytes(entry, role, run_bytes)))
        return found
    if entry.format == "diffusers":
        from studio.pipelines.diffusion.quantize import denoiser_of, large_text_encoders

        quantizable = (denoiser_of(entry.path),) + large_text_encoders(entry.path)
        for sub in sorted(p for p in Path(entry.path).iterdir() if p.is_dir()):
            files = sorted(sub.glob("*.safetensors"))
            plain = [f for f in files if ".fp16." not in f.name] or files
            if plain:
                nf4 = quantized_bytes(plain, run_bytes, kept_fp32(sub)) \
                    if sub.name in quantizable else 0
                t5 = sub.name.startswith("text_encoder") and _model_type(sub) in _KEPT_FP32
                found.append(Component(sub.name, "the T5 encoder" if t5 else _label(sub.name, {}),
                                       tensor_bytes(plain, run_bytes), nf4))
        return found
    size = Path(entry.path).stat().st_size
    if Path(entry.path).suffix.lower() == ".safetensors":
        size = tensor_bytes([Path(entry.path)], run_bytes)
    return [Component("checkpoint", "the checkpoint", size)]


def _working(weights: int) -> int:
    return working_bytes(weights)


def gpu_need(components: list[Component], mode: str) -> int:
    """What ``components`` hold on the GPU at the peak under ``mode`` (one of MODES): the
    weights there plus the working margin of the largest part that runs there. Sequential
    offload keeps one layer at a time: the working margin alone (a layer is far below it)."""
    largest = max((c.bytes for c in components), default=0)
    if mode == "full":
        return sum(c.bytes for c in components) + _working(largest)
    if mode == "text_encoder_cpu":
        encoders = sorted((c for c in components if c.key in TEXT_ENCODERS),
                          key=lambda c: c.bytes, reverse=True)
        rest = [c.bytes for c in components if not encoders or c is not encoders[0]]
        return sum(rest) + _working(max(rest, default=0))
    if mode == "model":
        return largest + _working(largest)
    if mode in ("nf4", "text_encoder_nf4"):  # the quantizable parts (or the big encoder) in NF4
        encoders = sorted((c for c in components if c.key in TEXT_ENCODERS and c.nf4),
                          key=lambda c: c.bytes, reverse=True)
        big = encoders[0] if encoders else None
        sizes = [c.nf4 if c.nf4 and (mode == "nf4" or c is big) else c.bytes
                 for c in components]
        return sum(sizes) + _working(max(sizes, default=0))
    return _working(largest)


def _fits(sizes: list[int], free: int) -> bool:
    return sum(sizes) + _working(max(sizes, default=0)) <= free


def _names(parts: list[Component]) -> str:
    labels = [c.label for c in parts]
    return labels[0] if len(labels) == 1 else ", ".join(labels[:-1]) + " and " + labels[-1]


def _nf4_encoder(components: list[Component], free: int) -> Component | None:
    """The largest text encoder whose NF4 form makes ``components`` fit in ``free``, if any."""
    encoders = sorted((c for c in components if c.key in TEXT_ENCODERS and c.nf4),
                      key=lambda c: c.bytes, reverse=True)
    for big in encoders[:1]:
        if _fits([c.nf4 if c is big else c.bytes for c in components], free):
            return big
    return None


def plan(name: str, components: list[Component], device: str, free_gpu: int,
         free_ram: int, bnb: str = "") -> Plan:
    """The lightest setting under which ``components`` fit: the free numbers are arguments.

    ``bnb`` says what bitsandbytes can quantize here (:func:`bnb_reach`): "all" (CUDA),
    "text_encoder" (its CPU backend), "" (nothing) or "missing" (not installed)."""
    total = sum(c.bytes for c in components)
    need = gpu_need(components, "full")
    if not str(device).startswith("cuda"):
        text = f"{name} needs ~{_gb(need)}; you have {_gb(free_ram)} of RAM free"
        if need <= free_ram:
            return Plan("full", need, free_ram, f"{text}: it runs whole in memory.")
        big = _nf4_encoder(components, free_ram) if bnb in ("all", "text_encoder") else None
        if big is not None:
            return Plan("text_encoder_nf4", need, free_ram, f"{text}: {big.label} runs in 4 "  # plural-ok: a name
                        "bits (NF4, bitsandbytes) to fit.", quantize="nf4",
                        quantized=(big.key,))
        hint = ""
        if bnb == "missing" and _nf4_encoder(components, free_ram) is not None:
            hint = (" With bitsandbytes (pip install bitsandbytes) its text encoder could run "
                    "in 4 bits and fit.")
        return Plan("full", need, free_ram, f"{text}: it may swap to disk and run slowly; close "
                    f"other programs, or use a smaller (fp8 or GGUF) file.{hint}")
    head = f"{name} needs ~{_gb(need)}; you have {_gb(free_gpu)} free on the GPU"
    if need <= free_gpu:
        return Plan("full", need, free_gpu, f"{head}: it runs whole on the GPU.")
    encoders = sorted((c for c in components if c.key in TEXT_ENCODERS),
                      key=lambda c: c.bytes, reverse=True)
    if encoders:
        big = encoders[0]
        if gpu_need(components, "text_encoder_cpu") <= free_gpu and big.bytes <= free_ram:
            return Plan("text_encoder_cpu", need, free_gpu,
                        f"{head}: {big.label} runs on the CPU.",  # plural-ok: a name
                        cpu_component=big.key)
    if bnb == "all":
        small = _nf4_encoder(components, free_gpu)
        if small is not None:
            return Plan("text_encoder_nf4", need, free_gpu, f"{head}: {small.label} runs in 4 "  # plural-ok: a name
                        "bits (NF4, bitsandbytes) on the GPU.", quantize="nf4",
                        quantized=(small.key,))
    if total <= free_ram and gpu_need(components, "model") <= free_gpu:
        return Plan("model", need, free_gpu, f"{head}: its parts wait in RAM and go to the GPU "
                    "one at a time (model offload).")
    quantizable = [c for c in components if c.nf4]
    nf4_fits = bool(quantizable) and _fits([c.nf4 or c.bytes for c in components], free_gpu)
    if bnb == "all" and nf4_fits:
        return Plan("nf4", need, free_gpu, f"{head}: {_names(quantizable)} run in 4 bits (NF4, "
                    "bitsandbytes), which fits.", quantize="nf4",
                    quantized=tuple(c.key for c in quantizable))
    hint = (" With bitsandbytes (pip install bitsandbytes) it would fit on the GPU in 4 bits "
            "(NF4) instead." if bnb == "missing" and nf4_fits else "")
    if total <= free_ram:
        return Plan("sequential", need, free_gpu, f"{head}: it runs layer by layer from RAM "
                    f"(sequential offload, slow).{hint}")
    # An estimate, not a certainty: try the lightest setting, and say what would help.
    return Plan("sequential", need, free_gpu, f"{head} and {_gb(free_ram)} of RAM free, which may "
                "be too little even layer by layer (sequential offload); if it fails, close other "
                "programs or use a smaller (fp8 or GGUF) file of it.")


def free_memory(device: str) -> tuple[int, int]:
    """(free GPU bytes, free RAM bytes) now; GPU 0 when ``device`` is not CUDA."""
    import psutil

    ram = int(psutil.virtual_memory().available)
    if not str(device).startswith("cuda"):
        return 0, ram
    import torch

    free, _total = torch.cuda.mem_get_info(torch.device(device))
    return int(free), ram


def bnb_reach(device: str) -> str:
    """What bitsandbytes can quantize on ``device``: "all", "text_encoder", "" or "missing"."""
    from studio.pipelines.diffusion import quantize

    if not quantize.bnb_installed():
        return "missing"
    if not quantize.problem(device, "denoiser"):
        return "all"
    return "" if quantize.problem(device, "text_encoder") else "text_encoder"


def plan_for(entry: ModelEntry, dtype: torch.dtype, device: str) -> Plan | None:
    """The plan for loading ``entry`` in ``dtype`` on ``device`` with the memory free now; None
    when its files cannot be estimated (the loader then says what is wrong with them)."""
    try:
        components = components_of(entry, dtype_bytes(dtype))
    except (OSError, ValueError, KeyError, TypeError, UserFacingError) as exc:
        log.info("no memory plan for %s: %s", entry.name, exc)
        return None
    free_gpu, free_ram = free_memory(device)
    need = sum(c.bytes for c in components) + _working(max((c.bytes for c in components),
                                                           default=0))
    free = free_gpu if str(device).startswith("cuda") else free_ram
    # bitsandbytes is asked (on a CPU it is imported for its backend check) only when it matters
    bnb = bnb_reach(device) if need > free else ""
    return plan(entry.name, components, device, free_gpu, free_ram, bnb)


#: on a pipeline: the text encoder the plan left on the CPU
CPU_COMPONENT_ATTR = "_studio_cpu_component"


def run_component_on_cpu(pipe: Any, key: str, device: str) -> None:
    """Put every component of ``pipe`` (loaded into RAM) on ``device`` except ``key``, which
    stays on the CPU and runs there: accelerate's hook moves its inputs to the CPU and its
    outputs back to where they came from, so the pipeline's code is unchanged."""
    import torch
    from accelerate.hooks import AlignDevicesHook, add_hook_to_module

    for name, module in pipe.components.items():
        if isinstance(module, torch.nn.Module) and name != key:
            module.to(device)
    module = getattr(pipe, key)
    add_hook_to_module(module, AlignDevicesHook(execution_device=torch.device("cpu"),
                                                io_same_device=True))
    setattr(pipe, CPU_COMPONENT_ATTR, key)
    if pipe._execution_device.type != torch.device(device).type:
        # diffusers took the hook's device for the whole pipeline's (it reads the first
        # component's hook): fall back to model offload, which is always right
        from accelerate.hooks import remove_hook_from_module

        remove_hook_from_module(module)
        delattr(pipe, CPU_COMPONENT_ATTR)
        from studio.pipelines.diffusion.memory import PLAN_ATTR

        setattr(pipe, PLAN_ATTR, "model")
