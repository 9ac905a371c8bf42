"""ControlNet for text to image (issue 14): a control image guides the composition.

A request's ``controlnets`` (see :class:`~studio.core.requests.Txt2ImgRequest`) name up to
:data:`~studio.core.requests.MAX_CONTROLNETS` ControlNets, each with its control image, a
preprocessor, a weight and the part of the sampling it acts on (start/end, as fractions of the
steps). The text-to-image pipeline of the cached model is derived with diffusers'
``AutoPipelineForText2Image.from_pipe(base, controlnet=…)``, so the UNet, VAE and text encoders are
shared, and called as plain diffusers would be (bit for bit on CPU).

Most preprocessors are image processing and need no model:

- ``none``: the image is the control map already (an edge map, a pose skeleton, a depth map);
- ``canny``: Canny edges (scikit-image), white on black, as A1111's ``canny`` module;
- ``softedge``: the gradient magnitude of the softened image, a stand-in for HED/PiDiNet;
- ``lineart``: controlnet_aux's ``lineart_standard`` (a blurred copy minus the image);
- ``invert``: black lines on white (a drawing, a scribble) become white on black.

``depth`` and ``openpose`` run a depth or pose model from the Hugging Face cache
(:mod:`studio.pipelines.diffusion.control_models`); without one the request gets the
``hf download`` line.

The control image is cropped to the request's aspect and resized to its size first (A1111's
"Crop and Resize").
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from studio.core.config import Paths, Settings
from studio.core.control import A1111_MODULES, ControlUnit, units
from studio.core.jobs import UserFacingError

if TYPE_CHECKING:
    import torch
    from PIL import Image

    from studio.core.requests import Txt2ImgRequest
    from studio.library.controlnets import ControlNetEntry

log = logging.getLogger(__name__)

SUPPORTED_FAMILIES = ("sd1", "sd2", "sdxl")
_NAMES = {"sd1": "SD 1.x", "sd2": "SD 2.x", "sdxl": "SDXL"}


# -- preprocessing ---------------------------------------------------------------------------

def crop_and_resize(image: Image.Image, width: int, height: int) -> Image.Image:
    """A1111's "Crop and Resize": the largest centred crop of the request's aspect, resized."""
    from PIL import Image, ImageOps

    return ImageOps.fit(image.convert("RGB"), (width, height), Image.Resampling.LANCZOS)


def preprocess(name: str, image: Image.Image) -> Image.Image:
    """The control map of ``image`` (an RGB PIL image) by preprocessor ``name``."""
    import numpy as np
    from PIL import Image, ImageFilter, ImageOps

    if name == "none":
        return image
    if name == "invert":
        return ImageOps.invert(image)
    if name == "canny":
        from skimage.feature import canny

        grey = np.asarray(image.convert("L"), dtype=np.float64)
        edges = canny(grey, sigma=1.0, low_threshold=100, high_threshold=200)
        return Image.fromarray((edges * 255).astype(np.uint8)).convert("RGB")
    if name == "softedge":
        grey = np.asarray(image.convert("L").filter(ImageFilter.GaussianBlur(2)),
                          dtype=np.float32)
        gy, gx = np.gradient(grey)
        magnitude = np.hypot(gx, gy)
        top = float(np.percentile(magnitude, 99)) or 1.0
        soft = np.clip(magnitude / top, 0, 1) ** 0.5 * 255
        return Image.fromarray(soft.astype(np.uint8)).convert("RGB")
    if name == "lineart":
        pixels = np.asarray(image, dtype=np.float32)
        blurred = np.asarray(image.filter(ImageFilter.GaussianBlur(6)), dtype=np.float32)
        intensity = np.min(blurred - pixels, axis=2).clip(0, 255)
        bright = intensity[intensity > 8]
        intensity /= max(16.0, float(np.median(bright)) if bright.size else 16.0)
        return Image.fromarray((intensity * 127).clip(0, 255).astype(np.uint8)).convert("RGB")
    if name == "depth":
        from studio.pipelines.diffusion.control_models import depth_map

        return depth_map(image)
    if name == "openpose":
        from studio.pipelines.diffusion.control_models import pose_map

        return pose_map(image)
    raise UserFacingError(f"Unknown preprocessor {name!r}.")


def control_image(unit: ControlUnit, width: int, height: int) -> Image.Image:
    """The unit's control map at the request's size."""
    from studio.media import images_in

    try:
        loaded = images_in.open_image(unit.image)
    except UserFacingError as exc:
        raise UserFacingError(f"The control image of {unit.model}: {exc}") from None
    return preprocess(unit.preprocess, crop_and_resize(loaded.image, width, height))


# -- models and the pipeline -----------------------------------------------------------------

@dataclass(frozen=True)
class Control:
    """A job's ControlNets ready to run: ``derive(base)`` makes the pipeline, ``kwargs`` go into
    its call, ``infotext`` into the image's parameters; ``images`` are the control maps."""

    derive: Callable[[Any], Any]
    kwargs: dict[str, Any]
    infotext: dict[str, str]
    images: list[Image.Image]


def load_controlnet(entry: ControlNetEntry, device: str, dtype: torch.dtype, paths: Paths | None = None) -> Any:
    """The model cache's loader: a diffusers folder with ``from_pretrained``, a single file
    (A1111 / ComfyUI, original or diffusers layout) with ``from_single_file`` and the config
    shipped for its family; offline either way, pickles only as plain tensors."""
    from diffusers import ControlNetModel

    try:
        if getattr(entry, "adapter", False):
            from diffusers import T2IAdapter

            model = T2IAdapter.from_pretrained(str(entry.path), torch_dtype=dtype,
                                               local_files_only=True,
                                               use_safetensors=_has_safetensors(entry.path))
        elif Path(entry.path).is_file():
            model = _single_file(entry, dtype)
        else:
            model = ControlNetModel.from_pretrained(str(entry.path), torch_dtype=dtype,
                                                    local_files_only=True,
                                                    use_safetensors=_has_safetensors(entry.path))
    except (OSError, ValueError, RuntimeError, KeyError) as exc:
        raise UserFacingError(f"The {getattr(entry, 'label', 'ControlNet')} {entry.name} cannot "
                              f"be loaded: {exc}") from None
    return model.to(device).eval()


def _single_file(entry: ControlNetEntry, dtype: torch.dtype) -> Any:
    from diffusers import ControlNetModel

    from studio.library.controlnets import SINGLE_FILE_CONFIGS
    from studio.library.safe_load import load_state_dict

    config = SINGLE_FILE_CONFIGS.get(entry.family)
    if config is None:
        raise UserFacingError(f"The ControlNet {entry.name} is a single file whose base model "
                              "Studio cannot tell: use it with an SD 1.x, SD 2.x or SDXL model, "
                              "or use its diffusers folder.")
    state = load_state_dict(Path(entry.path))  # .pth: torch.load(weights_only=True) or refused
    try:
        return ControlNetModel.from_single_file(state, config=str(config), torch_dtype=dtype,
                                                local_files_only=True)
    except (ValueError, RuntimeError, KeyError, IndexError, TypeError, AttributeError) as exc:
        # a missing tensor surfaces as a TypeError deep in diffusers: say what it means instead
        log.info("single-file ControlNet %s: %r", entry.path, exc)
        why = f" ({exc})" if isinstance(exc, (ValueError, RuntimeError)) else \
            " (tensors it needs are missing)"
        raise UserFacingError(
            f"The ControlNet {entry.name} does not fit the {_NAMES.get(entry.family, '')} "
            f"ControlNet layout Studio knows{why}; use its diffusers folder.") from None


class ControlNetCache:
    """The ControlNet models jobs use, in a :class:`~studio.pipelines.model_cache.ModelCache` of
    kind ``controlnet``: they stay loaded for the next job (the same units are usually used
    again), count in the memory budget, show as loaded and "Unload all" frees them."""

    def __init__(self, settings_getter: Callable[[], Settings] | None = None) -> None:
        from studio.pipelines.model_cache import ModelCache

        self.cache = ModelCache(loader=load_controlnet, kind="controlnet",
                                settings_getter=settings_getter)

    def models(self, entries: list[ControlNetEntry], device: str, dtype: torch.dtype,
               paths: Paths | None = None) -> list[Any]:
        return [self.cache.get(entry, device, dtype, paths) for entry in entries]

    def clear(self) -> None:
        self.cache.unload_all()


def _has_safetensors(folder: Path) -> bool:
    return any(Path(folder).glob("*.safetensors"))


def resolve_units(request: Txt2ImgRequest, family: str, settings: Settings,
                  paths: Paths) -> tuple[list[ControlUnit], list[ControlNetEntry]]:
    """The request's units and their library entries, each checked against the model's
    family."""
    from studio.library.controlnets import resolve_controlnet
    from studio.library.families import family as family_of

    checked = units(request.controlnets)
    if family not in SUPPORTED_FAMILIES:
        found = family_of(family)
        label = found.label if found is not None else family
        raise UserFacingError(f"ControlNet works with SD 1.x, SD 2.x and SDXL models here; "
                              f"{label} models need their own ControlNets, which Studio does "  # plural-ok
                              "not run yet. Remove the ControlNet or pick another model.")
    entries = []
    for unit in checked:
        entry = resolve_controlnet(unit.model, settings, paths)
        if entry.family and entry.family != family:
            raise UserFacingError(
                f"The ControlNet {entry.name} is for {_NAMES.get(entry.family, entry.family)} "
                f"models and the model is {_NAMES.get(family, family)}: pick a ControlNet made "
                "for it.")
        if not entry.family and entry.single_file:  # a file that does not say: the model's
            entry = replace(entry, family=family)
        entries.append(entry)
    return checked, entries


def controlnet_pipeline(base: Any, models: list[Any]) -> Any:
    """The ControlNet text-to-image pipeline sharing ``base``'s components."""
    from diffusers import AutoPipelineForText2Image

    from studio.pipelines.diffusion.memory import share_offload_state

    controlnet = models[0] if len(models) == 1 else models
    derived = AutoPipelineForText2Image.from_pipe(base, controlnet=controlnet)
    derived.set_progress_bar_config(disable=True)
    share_offload_state(base, derived)
    return derived


# -- T2I-Adapters ----------------------------------------------------------------------------

def check_adapters(checked: list[ControlUnit], entries: list[ControlNetEntry],
                   family: str) -> bool:
    """True when the units are T2I-Adapters (all of them: a request mixes none with ControlNets,
    as diffusers has no pipeline for both); their start/end checked against what diffusers'
    adapter pipelines offer (SDXL: one end for all, as the fraction of the steps; SD: all)."""
    adapters = [e.adapter for e in entries]
    if not any(adapters):
        return False
    if not all(adapters):
        raise UserFacingError("T2I-Adapters and ControlNets cannot guide one image together: "
                              "use either ControlNets or T2I-Adapters.")
    for unit, entry in zip(checked, entries, strict=True):
        if unit.start > 0:
            raise UserFacingError(f"The T2I-Adapter {entry.name} acts from the first step: set "
                                  "its start to 0.")
    ends = {unit.end for unit in checked}
    if family != "sdxl" and ends != {1.0}:
        raise UserFacingError("T2I-Adapters on SD 1.x / 2.x models act on every step: set the "
                              "end to 1.")
    if len(ends) > 1:
        raise UserFacingError("Several T2I-Adapters share one end: give them the same end.")
    return True


_STEP_END_PIPELINES: dict[Any, Any] = {}


def _with_step_end_callback(cls: Any) -> Any:
    """``cls`` taking ``callback_on_step_end`` as every other pipeline does: diffusers' adapter
    pipelines still take the old ``callback(step, timestep, latents)`` only, so Studio's step
    callback (previews, progress, the timeline) is called from it, and a cancel stops at the
    step (the old loop has no ``_interrupt``; it skips the callback in a multistep scheduler's
    warm-up steps). The latents are only read, so the image is plain diffusers'."""
    if cls in _STEP_END_PIPELINES:
        return _STEP_END_PIPELINES[cls]
    from studio.core.jobs import JobCancelled

    def __call__(self: Any, *args: Any, callback_on_step_end: Any = None,
                 callback_on_step_end_tensor_inputs: Any = None, **kwargs: Any) -> Any:
        if set(callback_on_step_end_tensor_inputs or ()) - {"latents"}:
            raise UserFacingError("Prompt editing ([from:to:when]) and alternation ([a|b]) "
                                  "change the prompt during sampling, which diffusers' "
                                  "T2I-Adapter pipelines cannot: write the prompt plainly or "
                                  "use a ControlNet.")
        self._interrupt = False
        if callback_on_step_end is not None:
            def callback(step: int, timestep: Any, latents: torch.Tensor) -> None:
                callback_on_step_end(self, step, timestep, {"latents": latents})
                if self._interrupt:
                    raise JobCancelled()

            kwargs.update(callback=callback, callback_steps=1)
        return cls.__call__(self, *args, **kwargs)

    def num_timesteps(self: Any) -> int:  # what the newer pipelines say, for the progress
        timesteps = getattr(self.scheduler, "timesteps", None)
        return 0 if timesteps is None else len(timesteps)

    made = type(cls.__name__, (cls,), {"__call__": __call__, "__module__": __name__,
                                       "num_timesteps": property(num_timesteps)})
    _STEP_END_PIPELINES[cls] = made
    return made


def adapter_pipeline(base: Any, models: list[Any], family: str) -> Any:
    """The T2I-Adapter text-to-image pipeline sharing ``base``'s components (several adapters:
    diffusers' ``MultiAdapter``)."""
    import diffusers

    from studio.pipelines.diffusion.memory import share_offload_state

    name = "StableDiffusionXLAdapterPipeline" if family == "sdxl" else \
        "StableDiffusionAdapterPipeline"
    adapter = models[0] if len(models) == 1 else diffusers.MultiAdapter(models)
    derived = _with_step_end_callback(getattr(diffusers, name)).from_pipe(base, adapter=adapter)
    derived.set_progress_bar_config(disable=True)
    share_offload_state(base, derived)
    return derived


def adapter_kwargs(checked: list[ControlUnit], images: list[Image.Image],
                   family: str) -> dict[str, Any]:
    """The T2I-Adapter arguments of a diffusers call."""
    one = len(checked) == 1
    out: dict[str, Any] = {
        "image": images[0] if one else list(images),
        "adapter_conditioning_scale": checked[0].weight if one else [u.weight for u in checked]}
    if family == "sdxl":
        out["adapter_conditioning_factor"] = checked[0].end
    return out


def call_kwargs(checked: list[ControlUnit], images: list[Image.Image]) -> dict[str, Any]:
    """The ControlNet arguments of a diffusers call (scalars for one unit, lists for several)."""
    if len(checked) == 1:
        unit = checked[0]
        return {"image": images[0], "controlnet_conditioning_scale": unit.weight,
                "control_guidance_start": unit.start, "control_guidance_end": unit.end}
    return {"image": list(images),
            "controlnet_conditioning_scale": [u.weight for u in checked],
            "control_guidance_start": [u.start for u in checked],
            "control_guidance_end": [u.end for u in checked]}


def infotext(checked: list[ControlUnit], entries: list[ControlNetEntry]) -> dict[str, str]:
    """The units as A1111's ControlNet extension writes them: ``ControlNet 0: "Module: canny,
    Model: control_v11p_sd15_canny, Weight: 1, …"``."""
    from studio.media.infotext import format_number

    out = {}
    for i, (unit, entry) in enumerate(zip(checked, entries, strict=True)):
        out[f"ControlNet {i}"] = (
            f"Module: {A1111_MODULES[unit.preprocess]}, Model: {entry.name}, "
            f"Weight: {format_number(unit.weight)}, Resize Mode: Crop and Resize, "
            f"Guidance Start: {format_number(unit.start)}, "
            f"Guidance End: {format_number(unit.end)}")
    return out
