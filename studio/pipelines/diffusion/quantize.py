"""bitsandbytes NF4 / int8 weights for image models: what can run where, and how a load asks.

``MemoryOptions.quantize`` ("nf4" or "int8", Models → memory options) and the memory planner's
quantized steps load a diffusers folder through diffusers' ``PipelineQuantizationConfig``: the
denoiser (transformer or UNet) through diffusers' ``BitsAndBytesConfig`` and the large text
encoders (T5, Qwen2.5-VL, Qwen3, Mistral — never the small CLIP ones) through transformers'.
Nothing is quantized by hand: the library's own classes do it as the weights are read.

What runs where (bitsandbytes 0.50.2, diffusers 0.42.1, transformers 5.25):

* on CUDA, both: the denoiser and the text encoders in NF4 or int8;
* on a CPU, bitsandbytes' CPU backend runs NF4 and int8 linear layers, and transformers loads
  text encoders with them; diffusers refuses to quantize a denoiser without a GPU ("No GPU
  found"), so there only the text encoders are quantized and the result says so;
* without bitsandbytes, nothing: the option is greyed (Models) or refused with the install line.

A quantized load is cached apart from the plain one: :class:`Quantized` stands in for the dtype
in the model cache's key (its text says "4bit"/"8bit", which the cache's size estimate reads).
``bench/gpu.py`` asks for a mode with :func:`quantization_config` (a plain function over a
folder) or through ``MemoryOptions(quantize="nf4")``. torch, diffusers and transformers are
imported inside the functions.
"""

from __future__ import annotations

import functools
import importlib.util
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from studio.core.files import read_json_dict
from studio.core.jobs import UserFacingError
from studio.library.bnb_folders import saved_quantization

if TYPE_CHECKING:
    import torch

    from studio.library.models import ModelEntry

log = logging.getLogger(__name__)

#: the MemoryOptions.quantize values, and how the window and the sentences name them
MODES = ("none", "nf4", "int8")
LABELS = {"nf4": "NF4 (4-bit)", "int8": "int8 (8-bit)"}
INSTALL = "pip install bitsandbytes"
NOT_INSTALLED = ("NF4 and int8 weights need the bitsandbytes package, which is not installed: "
                 f"{INSTALL} (or pip install \"studio[bnb]\").")
NO_CPU_BACKEND = ("bitsandbytes is installed but its CPU backend does not run here ({reason}); "
                  "NF4 and int8 weights need an NVIDIA GPU (CUDA) on this machine.")
DENOISER_NEEDS_CUDA = ("diffusers quantizes an image model's transformer or UNet with "
                       "bitsandbytes only on an NVIDIA GPU (CUDA)")
#: text-encoder classes too small to be worth quantizing (the pooled CLIP vectors)
_SMALL_ENCODERS = ("CLIPTextModel", "CLIPTextModelWithProjection")
#: bytes a weight element takes quantized: NF4 packs two per byte with one float32 scale per
#: block of 64 (bitsandbytes' default); int8 one byte and a float32 scale per row
NF4_BYTES = 0.5 + 4 / 64
INT8_BYTES = 1.0


@dataclass(frozen=True)
class Quantized:
    """The dtype a quantized load runs in and what is quantized; the model cache keys on it."""

    dtype: torch.dtype  # the torch dtype the rest runs in (and the 4-bit compute dtype)
    mode: str  # nf4 | int8
    components: tuple[str, ...]  # the pipeline's attributes quantized ("transformer", …)

    def __str__(self) -> str:  # the cache key; "4bit"/"8bit" let the size estimate see it
        bits = "4bit" if self.mode == "nf4" else "8bit"
        return f"{self.dtype}|{bits}:{','.join(self.components)}"


def unwrap(dtype: torch.dtype | Quantized) -> tuple[torch.dtype, Quantized | None]:
    """(the torch dtype, the quantization or None) of what the cache passed to the loader."""
    return (dtype.dtype, dtype) if isinstance(dtype, Quantized) else (dtype, None)


def bnb_installed() -> bool:
    return importlib.util.find_spec("bitsandbytes") is not None


@functools.lru_cache(maxsize=1)
def cpu_backend_problem() -> str:
    """'' when bitsandbytes' CPU backend quantizes and runs an NF4 and an int8 layer here, else
    what went wrong (asked once per process: it imports bitsandbytes)."""
    try:
        import bitsandbytes as bnb
        import torch

        with torch.no_grad():
            plain = torch.nn.Linear(64, 64)
            x = torch.ones(1, 64)
            four = bnb.nn.Linear4bit(64, 64, compute_dtype=torch.float32, quant_type="nf4")
            four.weight = bnb.nn.Params4bit(plain.weight.data.clone(), requires_grad=False,
                                            quant_type="nf4")
            four.bias = torch.nn.Parameter(plain.bias.data.clone(), requires_grad=False)
            four = four.to("cpu")
            eight = bnb.nn.Linear8bitLt(64, 64, has_fp16_weights=False)
            eight.weight = bnb.nn.Int8Params(plain.weight.data.clone(), requires_grad=False,
                                             has_fp16_weights=False)
            eight = eight.to("cpu")
            for layer in (four, eight):
                out = layer(x)
                if not bool(torch.isfinite(out).all()):
                    return f"{type(layer).__name__} gave non-finite values"
    except Exception as exc:  # noqa: BLE001 - any failure means "not here"
        return (str(exc).splitlines() or [type(exc).__name__])[0][:160]
    return ""


def problem(device: str, part: str = "denoiser") -> str:
    """'' when bitsandbytes can quantize ``part`` ("denoiser" or "text_encoder") on ``device``;
    else the sentence that says why not (with the install line when it is missing)."""
    if not bnb_installed():
        return NOT_INSTALLED
    if str(device).startswith("cuda"):
        return ""
    if part == "denoiser":
        return f"{DENOISER_NEEDS_CUDA}; jobs run on {str(device).upper()} here."
    reason = cpu_backend_problem() if str(device) == "cpu" else f"jobs run on {device}"
    return NO_CPU_BACKEND.format(reason=reason) if reason else ""


def _index(folder: Path) -> dict:
    return read_json_dict(Path(folder) / "model_index.json")


def large_text_encoders(folder: Path) -> tuple[str, ...]:
    """The text encoders of a diffusers folder worth quantizing: transformers models other than
    CLIP (T5, Qwen2.5-VL, Qwen3, Mistral …), in the folder's order."""
    found = []
    for name, spec in _index(folder).items():
        if (name.startswith("text_encoder") and isinstance(spec, list) and len(spec) == 2
                and spec[0] == "transformers" and spec[1] not in _SMALL_ENCODERS
                and (Path(folder) / name).is_dir()):
            found.append(name)
    return tuple(sorted(found))


def denoiser_of(folder: Path) -> str:
    """The denoiser sub-folder of a diffusers folder ("transformer" or "unet"; '' if neither)."""
    index = _index(folder)
    return next((n for n in ("transformer", "unet") if n in index
                 and (Path(folder) / n).is_dir()), "")


def requested(folder: Path, mode: str, device: str, dtype: torch.dtype,
              components: tuple[str, ...] | None = None) -> tuple[Quantized | None, list[str]]:
    """What a load of the diffusers ``folder`` in ``mode`` quantizes on ``device``: (the
    :class:`Quantized` or None, sentences for the user). ``components`` narrows it (the
    planner's text encoder alone); by default the denoiser and the large text encoders."""
    if mode not in LABELS:
        return None, []
    label = LABELS[mode]
    wanted = components if components is not None else \
        tuple(c for c in (denoiser_of(folder),) if c) + large_text_encoders(folder)
    if not wanted:
        return None, [f"{label} weights: this model has no part bitsandbytes quantizes."]
    missing = problem(device, "text_encoder")
    if missing:
        return None, [f"{label} weights are off: {missing}"]
    notes: list[str] = []
    denoiser = denoiser_of(folder)
    if denoiser in wanted and problem(device, "denoiser"):
        wanted = tuple(c for c in wanted if c != denoiser)
        kept = f"; only its {', '.join(wanted)} is quantized" if wanted else ""
        notes.append(f"{label} weights: {DENOISER_NEEDS_CUDA}, so the {denoiser} runs in full "  # plural-ok
                     f"precision on {str(device).upper()}{kept}.")
        if not wanted:
            return None, notes
    return Quantized(dtype, mode, tuple(wanted)), notes


def quantization_config(mode: str, library: str, dtype: torch.dtype) -> Any:
    """The ``BitsAndBytesConfig`` of ``library`` ("diffusers" or "transformers") for ``mode``:
    NF4 with ``dtype`` as its compute dtype, or int8 (LLM.int8, the default threshold)."""
    import diffusers
    import transformers

    config: Any = (diffusers if library == "diffusers" else transformers).BitsAndBytesConfig
    if mode == "nf4":
        return config(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_compute_dtype=dtype)
    if mode == "int8":
        return config(load_in_8bit=True)
    raise ValueError(f"unknown quantization {mode!r}; one of {', '.join(LABELS)}")


def pipeline_quantization(quant: Quantized) -> Any:
    """diffusers' ``PipelineQuantizationConfig`` for ``quant``, component by component: the
    denoiser with diffusers' ``BitsAndBytesConfig``, text encoders with transformers'."""
    from diffusers import PipelineQuantizationConfig

    mapping = {name: quantization_config(quant.mode, "transformers" if name.startswith(
        "text_encoder") else "diffusers", quant.dtype) for name in quant.components}
    return PipelineQuantizationConfig(quant_mapping=mapping)


def load_kwargs(entry: ModelEntry, quant: Quantized | None) -> dict[str, Any]:
    """The ``from_pretrained`` keywords that quantize a diffusers folder's load (none for
    ``None``); a quantized load of anything but a diffusers folder is a sentence."""
    if quant is None:
        return {}
    if entry.format != "diffusers":
        raise UserFacingError(f"{LABELS[quant.mode]} weights apply to diffusers folders; "
                              f"{entry.name} is a {entry.format} model. Use an fp8 or GGUF file "
                              "of it instead, or turn the option off in Models → memory options.")
    return {"quantization_config": pipeline_quantization(quant)}


# -- folders saved quantized (studio.library.bnb_folders reads them) -----------------------------
def check_saved(entry: ModelEntry, device: str) -> None:
    """Refuse, with a sentence, a folder saved in bitsandbytes form that cannot load here."""
    if entry.format != "diffusers":
        return
    saved = saved_quantization(entry.path)
    if not saved:
        return
    what = ", ".join(f"{name} in {mode.upper()}" for name, mode in sorted(saved.items()))
    if not bnb_installed():
        raise UserFacingError(f"{entry.name} is saved quantized by bitsandbytes ({what}): "
                              f"{NOT_INSTALLED}")
    denoiser = denoiser_of(entry.path)
    if denoiser in saved and problem(device, "denoiser"):
        raise UserFacingError(f"{entry.name} is saved quantized by bitsandbytes ({what}) and "
                              f"{DENOISER_NEEDS_CUDA}; jobs run on {str(device).upper()} here. "
                              "Use a full-precision, fp8 or GGUF copy of it on this machine.")
    cpu = problem(device, "text_encoder")
    if cpu:
        raise UserFacingError(f"{entry.name} is saved quantized by bitsandbytes ({what}): {cpu}")
