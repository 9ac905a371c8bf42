"""Loading a text-to-image pipeline (SD 1.x, SD 2.x, SDXL and their Turbo variants) offline.

Diffusers folders go through ``from_pretrained(local_files_only=True)``; single files through
``from_single_file`` with a local config folder (:mod:`studio.library.single_file_configs`), so
no network is ever touched. The pipeline class comes from the detected family, never from a
guess, so an SDXL checkpoint is never loaded into an SD 1.5 pipeline. No safety checker is loaded.
torch and diffusers are imported inside the functions (DESIGN rule 7).
"""

from __future__ import annotations

import logging
import pickle
from pathlib import Path
from typing import TYPE_CHECKING, Any

from studio.core.config import Paths, default_paths
from studio.core.jobs import UserFacingError
from studio.library.detect import detect_from_header
from studio.library.families import FAMILIES
from studio.library.families import family as family_of
from studio.library.models import ModelEntry
from studio.library.safe_load import refusal_in

if TYPE_CHECKING:
    import torch

    from studio.pipelines.diffusion.quantize import Quantized

log = logging.getLogger(__name__)


def pipeline_class_name(family: str) -> str:
    """The diffusers text-to-image pipeline class for a family."""
    found = family_of(family)
    if found is not None and found.pipeline_class:
        return found.pipeline_class
    if family == "ddpm":  # pixel-space: what the Train workspace's ddpm lesson saves
        return "DDPMPipeline"
    names = ", ".join(f.label for f in FAMILIES.values())
    raise UserFacingError(f"This model's architecture ({family}) is not supported for text to "
                          f"image; Studio runs these families: {names}.")


def _has_fp16_variant(folder: Path, denoiser: str = "unet") -> bool:
    unet = folder / denoiser
    return any(unet.glob("*.fp16.safetensors")) or any(unet.glob("*.fp16.bin"))


def _missing_optional(folder: Path, names: tuple[str, ...]) -> dict[str, None]:
    """The optional components a folder lacks (no sub-folder, or null in model_index.json),
    given as None so diffusers builds the pipeline without them."""
    import json

    try:
        index = json.loads((folder / "model_index.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        index = {}
    missing: dict[str, None] = {}
    for name in names:
        spec = index.get(name)
        if not (folder / name).is_dir() or not isinstance(spec, list) or None in spec:
            missing[name] = None
    return missing


def _family_of_ckpt(path: Path) -> tuple[str, dict]:
    """Load a pickled checkpoint safely (weights_only) and detect its family from the keys."""
    from studio.library.safe_load import load_state_dict

    state = load_state_dict(path)
    while isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    header = {k: {"shape": list(getattr(v, "shape", []))} for k, v in state.items()}
    return detect_from_header(header).family, state


def folder_pipeline_class(folder: Path, family: str) -> str:
    """The pipeline class a diffusers folder of ``family`` is loaded with: the one its
    model_index.json names when the family lists it (FLUX.2 [dev] or klein), else the family's."""
    import json

    found = family_of(family)
    try:
        named = json.loads((folder / "model_index.json").read_text(encoding="utf-8"))
        named = named.get("_class_name") if isinstance(named, dict) else None
    except (OSError, ValueError):
        named = None
    if found is not None and named in found.diffusers_classes:
        return str(named)
    return pipeline_class_name(family)


def _load_diffusers(entry: ModelEntry, dtype: torch.dtype, quant: Any = None):
    import diffusers
    import torch

    from studio.pipelines.diffusion.quantize import load_kwargs
    from studio.pipelines.diffusion.vl_processor import processor_kwargs

    cls = getattr(diffusers, folder_pipeline_class(entry.path, entry.family))
    kwargs: dict[str, Any] = {"local_files_only": True, "dtype": dtype}
    if entry.family in ("sd1", "sd2"):
        kwargs.update(safety_checker=None, feature_extractor=None, requires_safety_checker=False)
    family = family_of(entry.family)
    denoiser = family.denoiser if family is not None else "unet"
    if family is not None and family.optional_components:
        kwargs.update(_missing_optional(entry.path, family.optional_components))
    if dtype == torch.float16 and _has_fp16_variant(entry.path, denoiser):
        kwargs["variant"] = "fp16"  # half the bytes to read; the weights are the same model
    kwargs.update(load_kwargs(entry, quant))  # NF4 / int8 (bitsandbytes), when asked for
    kwargs.update(processor_kwargs(entry.path))  # Qwen-Image-Edit without torchvision
    pipe = cls.from_pretrained(str(entry.path), **kwargs)
    from studio.pipelines.diffusion.shrink import apply_storage

    apply_storage(pipe, entry.path, dtype)  # a copy made smaller keeps its fp8 storage
    return pipe


def _load_single_file(entry: ModelEntry, dtype: torch.dtype, paths: Paths):
    import diffusers

    from studio.library.single_file_configs import single_file_config_dir

    family = entry.family
    if entry.path.suffix.lower() != ".safetensors":
        # diffusers reads .ckpt with torch.load(weights_only=True); we first load it the same safe
        # way ourselves to identify the architecture and to refuse pickles with a clear message.
        family, state = _family_of_ckpt(entry.path)
        del state
        if family == "unknown":
            raise UserFacingError(f"{entry.path.name} is not a Stable Diffusion 1.x/2.x/SDXL "
                                  "checkpoint.")
    cls = getattr(diffusers, pipeline_class_name(family))
    config = single_file_config_dir(family, paths)
    kwargs: dict[str, Any] = {"config": str(config), "local_files_only": True,
                              "dtype": dtype}
    if family != "sdxl":
        kwargs.update(safety_checker=None, feature_extractor=None, requires_safety_checker=False)
    return cls.from_single_file(str(entry.path), **kwargs)


def missing_package_text(name: str, exc: ImportError) -> str:
    """The sentence for a model whose loading needs a package that is not installed
    (Qwen-Image-Edit's processor needs torchvision)."""
    import re

    text = " ".join(str(exc).split())
    found = re.search(r"requires the (\w+) library", text)
    package = (found.group(1).lower() if found else getattr(exc, "name", None)) or ""
    first = text.split(". ")[0][:200]
    how = (f"install it into Studio's environment (pip install {package}) and try again"
           if package else "install the package it names and try again")
    return f"Could not load {name}: {first}. It needs a package that is not installed: {how}."


def torchvision_problem() -> str:
    """'' unless torchvision is installed and fails to import (a build for another torch: PyPI's
    CUDA torchvision beside the CPU torch stops at "operator torchvision::nms does not exist"),
    which breaks every transformers processor that uses it; then the sentence saying so."""
    import importlib.util

    if importlib.util.find_spec("torchvision") is None:
        return ""
    try:
        import torchvision  # noqa: F401
    except Exception as exc:  # noqa: BLE001 - whatever it raises, it is unusable
        import torch

        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
        return (f"torchvision is installed but does not load with this torch {torch.__version__} "
                f"({first}): install the torchvision built for it (for the CPU build: pip install "
                "torchvision --index-url https://download.pytorch.org/whl/cpu), or pip uninstall "
                "torchvision")
    return ""


def _import_engine(family: str, name: str = "") -> Any:
    """Import torch, diffusers and the family's pipeline module (with transformers' CLIP) without
    full garbage-collection passes, then freeze them (see :mod:`studio.core.gc_pauses`).

    Runs before every load, after the model cache has freed the previous pipeline: besides the
    first-time imports it keeps the objects the next full pass must walk down to those created
    since, so the worker never holds the GIL for a pass over the whole heap while reading a model
    and the window keeps answering."""
    from studio.core.gc_pauses import collector_paused_for_imports

    with collector_paused_for_imports():
        import diffusers
        import torch

        if family in FAMILIES:
            try:
                getattr(diffusers, pipeline_class_name(family))  # diffusers imports it lazily
            except RuntimeError as exc:  # diffusers words a failed import as a RuntimeError
                broken = torchvision_problem()
                if broken:
                    raise UserFacingError(f"Could not load {name or family}: {broken}.") from exc
                raise
    return torch


def load_txt2img_pipeline(entry: ModelEntry, device: str, dtype: torch.dtype | Quantized,
                          paths: Paths | None = None) -> Any:
    """Load ``entry`` onto ``device`` in ``dtype``; failures become :class:`UserFacingError`."""
    from studio.pipelines.diffusion.quantize import check_saved, load_kwargs, unwrap

    paths = paths or default_paths()
    dtype, quant = unwrap(dtype)  # a Quantized stands in for the dtype of an NF4/int8 load
    if entry.format == "diffusers":
        pipeline_class_name(entry.family)  # refuse unsupported families before reading weights
    check_saved(entry, device)  # a folder saved by bitsandbytes needs it (and, for NF4, CUDA)
    if entry.format != "diffusers":
        load_kwargs(entry, quant)  # NF4/int8 of a single or split file: a sentence
    torch = _import_engine(entry.family, entry.name)
    try:
        if entry.format == "diffusers":
            pipe = _load_diffusers(entry, dtype, quant)
        elif entry.format == "split":  # ComfyUI's separate transformer, encoders and VAE
            from studio.pipelines.diffusion import all_in_one_loading
            from studio.pipelines.diffusion.split_loading import load_split_pipeline

            if all_in_one_loading.loads_entry(entry):  # one file with its parts, or Chroma
                pipe = all_in_one_loading.load_all_in_one_pipeline(entry, dtype, paths)
            else:
                pipe = load_split_pipeline(entry, dtype, paths)
        else:
            pipe = _load_single_file(entry, dtype, paths)
        pipe.set_progress_bar_config(disable=True)
        pipe = pipe.to(device)
    except UserFacingError:
        raise
    except ImportError as exc:  # a component's class needs a package this install lacks
        raise UserFacingError(missing_package_text(entry.name, exc)) from exc
    except torch.OutOfMemoryError as exc:
        raise UserFacingError(f"Out of memory while loading {entry.name} on {device} — close other "
                              "programs or models, or choose a smaller precision.") from exc
    except (OSError, ValueError, KeyError, RuntimeError, TypeError, pickle.UnpicklingError) as exc:
        # diffusers reads a folder's .bin weights with weights_only=True and words a refused
        # pickle as "Unable to load weights"; say what really happened.
        refusal = refusal_in(exc, f"{entry.name} ({entry.path})")
        if refusal is not None:
            raise refusal from exc
        broken = torchvision_problem() if isinstance(exc, RuntimeError) else ""
        if broken:
            raise UserFacingError(f"Could not load {entry.name}: {broken}.") from exc
        first = (str(exc).strip().splitlines() or [exc.__class__.__name__])[0][:300]
        raise UserFacingError(
            f"Could not load {entry.name} ({entry.path}): {first}. The files may be incomplete "
            "or not a Stable Diffusion model; re-download or re-convert it."
        ) from exc
    log.info("loaded %s (%s, %s) on %s as %s", entry.name, entry.family, entry.format, device,
             dtype)
    return pipe
