"""Rebuild a Transform request from a result image ("reuse parameters"). No Qt, no torch.

Transform results carry their request in the ``studio`` PNG chunk
(:func:`studio.media.outputs.save_image_with_metadata`):

- CycleGAN: ``{"transform": TransformRequest.to_dict(), "source": <input file>}``;
- upscaling: ``{"upscale": UpscaleRequest.to_dict(), "source": <input file>}``;
- img2img / inpaint: ``{"request": Img2ImgRequest.to_dict() (kind img2img|inpaint), "seed": <this
  image's seed>}``.

:func:`read_transform_reuse` turns that back into a request for this one image, and says which
picture to open: the recorded input when it still exists, else the result itself (with a note),
and for inpainting the recorded mask when it still exists (else a note: paint it again).
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from studio.core.requests import SEED_MAX, Img2ImgRequest, TransformRequest, UpscaleRequest
from studio.media.image_text import read_image_text
from studio.media.infotext import parse_infotext


@dataclass
class TransformReuse:
    """What the Transform workspace needs to repeat a result: mode, request, files, notes."""

    mode: str  # cyclegan | img2img | inpaint | upscale (an SD upscale too)
    request: TransformRequest | Img2ImgRequest | UpscaleRequest  # for this one image
    image: Path  # the picture to open
    mask: Path | None = None  # inpaint: the mask to load (None: gone, or not inpainting)
    result: Path | None = None  # the result image this was read from
    notes: list[str] = field(default_factory=list)  # what could not be restored, in words
    #: The model's name as the library shows it (CycleGAN: the "CycleGAN" field the result's
    #: text recorded, else the name its file gives — never the file name ``latest_net_G.pth``).
    model_name: str = ""

    @property
    def summary(self) -> str:
        return " ".join(self.notes)


def _existing(name: Any) -> Path | None:
    if not isinstance(name, str) or not name.strip():
        return None
    path = Path(name)
    try:
        return path if path.is_file() else None
    except OSError:  # an unreadable path or a name the platform cannot hold
        return None


def transform_reuse_from_text(raw: dict[str, str], result: Path) -> TransformReuse | None:
    """:func:`read_transform_reuse` for text chunks already read; None when they hold no
    Transform request (a text-to-image result, another app's image, odd JSON)."""
    try:
        data = json.loads(raw["studio"])
    except (KeyError, TypeError, ValueError):
        return None
    if not isinstance(data, dict):
        return None
    result = Path(result)
    try:
        if isinstance(data.get("transform"), dict):
            return _cyclegan(data, result, raw.get("parameters", ""))
        if isinstance(data.get("upscale"), dict):
            reuse = _one_input(data, UpscaleRequest.from_dict(data["upscale"]), "upscale",
                               result)
            reuse.model_name = str(parse_infotext(raw.get("parameters", "")).get("Upscaler")
                                   or Path(reuse.request.model).stem)
            return reuse
        request = data.get("request")
        if isinstance(request, dict) and request.get("kind") in ("img2img", "inpaint", "edit"):
            return _diffusion(data, request, result)
    except (TypeError, ValueError):
        return None
    return None


def read_transform_reuse(path: Path) -> TransformReuse | None:
    """The Transform request stored in the image at ``path``; None when it has none. Reads only
    the file's text chunks; never raises for a missing or foreign file."""
    try:
        raw = read_image_text(Path(path))
    except Exception:  # noqa: BLE001 - an unreadable file simply has nothing to reuse
        return None
    return transform_reuse_from_text(raw, Path(path))


def _cyclegan(data: dict[str, Any], result: Path, parameters: str = "") -> TransformReuse:
    from studio.library.cyclegan_models import model_name

    reuse = _one_input(data, TransformRequest.from_dict(data["transform"]), "cyclegan", result)
    name = str(parse_infotext(parameters).get("CycleGAN") or "") if parameters else ""
    reuse.model_name = name or model_name(Path(reuse.request.model))
    return reuse


def _one_input(data: dict[str, Any], request: TransformRequest | UpscaleRequest, mode: str, result: Path) -> TransformReuse:
    """A request over ``inputs`` (CycleGAN, upscaling) for the recorded source again, or this
    result when the source is gone (with a note)."""
    recorded = str(data.get("source") or (request.inputs[0] if request.inputs else ""))
    notes: list[str] = []
    image = _existing(recorded)
    if image is None:
        image = result
        notes.append(_gone_text(recorded))
    request = dataclasses.replace(request, inputs=[str(image)])
    return TransformReuse(mode, request, image, None, result, notes)


def _diffusion(data: dict[str, Any], fields: dict[str, Any], result: Path) -> TransformReuse:
    request = Img2ImgRequest.from_dict(fields)
    seed = int(data.get("seed", request.seed))
    if not 0 <= seed <= SEED_MAX:
        seed = request.seed
    notes: list[str] = []
    image = _existing(request.image)
    if image is None:
        image = result
        notes.append(_gone_text(request.image))
    mode = "edit" if request.edit else "upscale" if request.sd_upscale else \
        "inpaint" if request.inpaint else "img2img"
    mask = _existing(request.mask) if request.inpaint else None
    if request.inpaint and mask is None:
        notes.append(f"The mask ({Path(request.mask).name}) no longer exists — paint the area "
                     "to repaint again.")
    request = dataclasses.replace(request, image=str(image), mask=str(mask) if mask else "",
                                  seed=seed, count=1)
    return TransformReuse(mode, request, image, mask, result, notes)


def _gone_text(recorded: str) -> str:
    name = Path(recorded).name if recorded else "the input image"
    return (f"The source image ({name}) no longer exists — opened this result instead, so the "
            "new image will differ from it.")
