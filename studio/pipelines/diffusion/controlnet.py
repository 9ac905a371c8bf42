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
from dataclasses import dataclass
from typing import Any

from studio.core.config import Paths, Settings
from studio.core.control import A1111_MODULES, ControlUnit, units
from studio.core.jobs import UserFacingError

log = logging.getLogger(__name__)

SUPPORTED_FAMILIES = ("sd1", "sd2", "sdxl")


# -- preprocessing ---------------------------------------------------------------------------

def crop_and_resize(image: Any, width: int, height: int) -> Any:
    """A1111's "Crop and Resize": the largest centred crop of the request's aspect, resized."""
    from PIL import Image, ImageOps

    return ImageOps.fit(image.convert("RGB"), (width, height), Image.Resampling.LANCZOS)


def preprocess(name: str, image: Any) -> Any:
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


def control_image(unit: ControlUnit, width: int, height: int) -> Any:
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
    images: list[Any]


class ControlNetCache:
    """The ControlNet models of the last job, kept loaded for the next one (the same units are
    usually used again); others are released when a job names new ones."""

    def __init__(self) -> None:
        self._loaded: dict[tuple[str, str, str], Any] = {}

    def models(self, entries: list[Any], device: str, dtype: Any) -> list[Any]:
        from diffusers import ControlNetModel

        keys = [(str(e.path.resolve()), device, str(dtype)) for e in entries]
        keep = {k: v for k, v in self._loaded.items() if k in keys}
        self._loaded = keep
        out = []
        for key, entry in zip(keys, entries, strict=True):
            if key not in self._loaded:
                try:
                    model = ControlNetModel.from_pretrained(str(entry.path), torch_dtype=dtype,
                                                            local_files_only=True,
                                                            use_safetensors=_has_safetensors(
                                                                entry.path))
                except (OSError, ValueError) as exc:
                    raise UserFacingError(f"The ControlNet {entry.name} cannot be loaded: "
                                          f"{exc}") from None
                self._loaded[key] = model.to(device).eval()
            out.append(self._loaded[key])
        return out

    def clear(self) -> None:
        self._loaded.clear()


def _has_safetensors(folder: Any) -> bool:
    return any(folder.glob("*.safetensors"))


def resolve_units(request: Any, family: str, settings: Settings,
                  paths: Paths) -> tuple[list[ControlUnit], list[Any]]:
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
            names = {"sd1": "SD 1.x", "sd2": "SD 2.x", "sdxl": "SDXL"}
            raise UserFacingError(
                f"The ControlNet {entry.name} is for {names.get(entry.family, entry.family)} "
                f"models and the model is {names.get(family, family)}: pick a ControlNet made "
                "for it.")
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


def call_kwargs(checked: list[ControlUnit], images: list[Any]) -> dict[str, Any]:
    """The ControlNet arguments of a diffusers call (scalars for one unit, lists for several)."""
    if len(checked) == 1:
        unit = checked[0]
        return {"image": images[0], "controlnet_conditioning_scale": unit.weight,
                "control_guidance_start": unit.start, "control_guidance_end": unit.end}
    return {"image": list(images),
            "controlnet_conditioning_scale": [u.weight for u in checked],
            "control_guidance_start": [u.start for u in checked],
            "control_guidance_end": [u.end for u in checked]}


def infotext(checked: list[ControlUnit], entries: list[Any]) -> dict[str, str]:
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
