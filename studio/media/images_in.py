"""Reading the images a user hands to Transform: any common format, any mode, safely. No Qt, no torch.

:func:`open_image` returns an 8-bit RGB picture for the model plus what was set aside (the alpha
channel) and what the user should know (warnings). It applies the EXIF orientation (a phone photo
comes out upright), converts grayscale, palette, CMYK (through its ICC profile when there is one)
and 16-bit / float images correctly, refuses decompression bombs before decoding a pixel, and turns
corrupt files and non-images into a :class:`~studio.core.jobs.UserFacingError` with a readable message.
"""

from __future__ import annotations

import io
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import cast

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from studio.core.jobs import UserFacingError

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff")
ALPHA_NOTE = ("{name} has transparency: the model sees the colours only, and the transparency is "
              "put back on the result.")
_FALLBACK_MAX_PIXELS = 178_956_970  # Pillow's own hard limit (2 × its warning threshold)


@dataclass
class InputImage:
    """An image ready for a model: ``image`` is 8-bit RGB; ``alpha`` (mode L) or None."""

    image: Image.Image  # mode RGB
    path: Path | None = None
    alpha: Image.Image | None = None  # mode L, same size as ``image``
    source_mode: str = ""
    warnings: list[str] = field(default_factory=list)

    @property
    def size(self) -> tuple[int, int]:
        return self.image.size

    def with_alpha(self, result: Image.Image) -> Image.Image:
        """``result`` (RGB) with this image's transparency put back, resized to fit it."""
        if self.alpha is None:
            return result
        alpha = self.alpha
        if alpha.size != result.size:
            alpha = alpha.resize(result.size, Image.Resampling.LANCZOS)
        out = result.convert("RGB")
        out.putalpha(alpha)
        return out


def max_pixels() -> int:
    """The decompression-bomb limit in force: Pillow's ``Image.MAX_IMAGE_PIXELS`` (or its default)."""
    limit = Image.MAX_IMAGE_PIXELS
    return int(limit) if limit else _FALLBACK_MAX_PIXELS


def check_pixels(name: str, width: int, height: int) -> None:
    """Refuse an image (or a mask) over :func:`max_pixels` before its pixels are decoded."""
    limit = max_pixels()
    if width * height > limit:
        raise UserFacingError(
            f"{name} is {width}×{height} ({width * height / 1e6:.0f} megapixels), more "
            f"than the {limit / 1e6:.0f}-megapixel limit that protects against "
            "decompression bombs. Downscale it in an image editor first.")


def is_image_file(path: Path) -> bool:
    return Path(path).suffix.lower() in IMAGE_SUFFIXES


def list_images(folder: Path) -> list[Path]:
    """The image files directly inside ``folder`` (by extension), sorted by name."""
    folder = Path(folder)
    try:
        return sorted((p for p in folder.iterdir() if p.is_file() and is_image_file(p)
                       and not p.name.startswith(".")), key=lambda p: p.name.lower())
    except OSError as exc:
        raise UserFacingError(f"Cannot read the folder {folder}: {exc}") from exc


def _high_bit_to_8(image: Image.Image) -> Image.Image:
    """A 16-bit ("I;16", "I") or float ("F") single-channel image as 8-bit L, scaled, not clipped."""
    arr = np.asarray(image)
    if image.mode == "F":
        arr = arr.astype(np.float64)
        finite = arr[np.isfinite(arr)]
        top = float(finite.max()) if finite.size else 1.0
        # Float images are usually 0..1; anything larger is treated as 0..max.
        scale = 255.0 if top <= 1.0 else 255.0 / top
        arr = np.nan_to_num(arr) * scale
    else:
        arr = arr.astype(np.float64)
        top = 65535.0 if arr.max(initial=0) > 255 or image.mode.startswith("I;16") else 255.0
        arr = arr * (255.0 / top)
    return Image.fromarray(np.clip(np.rint(arr), 0, 255).astype(np.uint8), mode="L")


def _cmyk_to_rgb(image: Image.Image) -> Image.Image:
    profile = image.info.get("icc_profile")
    if profile:
        try:
            from PIL import ImageCms

            src = ImageCms.ImageCmsProfile(io.BytesIO(profile))
            dst = ImageCms.createProfile("sRGB")
            converted = ImageCms.profileToProfile(image, src, dst, outputMode="RGB")
            if converted is not None:
                return converted
        except Exception as exc:  # noqa: BLE001 - a broken profile: fall back to the plain formula
            log.info("CMYK ICC conversion failed (%s); using the plain conversion", exc)
    return image.convert("RGB")


def to_rgb(image: Image.Image, name: str = "The image"
           ) -> tuple[Image.Image, Image.Image | None, list[str]]:
    """(RGB image, alpha or None, warnings) for a decoded PIL image of any mode."""
    warnings: list[str] = []
    alpha = None
    mode = image.mode
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        return _high_bit_to_8(image).convert("RGB"), None, warnings
    if mode == "CMYK":
        return _cmyk_to_rgb(image), None, warnings
    if mode == "P":
        image = image.convert("RGBA" if "transparency" in image.info else "RGB")
    elif mode == "PA":
        image = image.convert("RGBA")
    elif mode in ("1", "L"):
        image = image.convert("RGB")
    elif mode == "LA":
        image = image.convert("RGBA")
    elif mode not in ("RGB", "RGBA"):
        image = image.convert("RGBA" if "A" in mode else "RGB")
    if image.mode == "RGBA":
        a = image.getchannel("A")
        lowest, _ = cast("tuple[int, int]", a.getextrema())  # one band: (min, max)
        if lowest < 255:  # an alpha channel that is fully opaque carries nothing
            alpha = a
            warnings.append(ALPHA_NOTE.format(name=name))
        image = image.convert("RGB")
    return image, alpha, warnings


def open_image(path: Path | str) -> InputImage:
    """Read ``path`` as an :class:`InputImage`; raises UserFacingError with the reason if it can't."""
    path = Path(path)
    name = path.name
    if not path.exists():
        raise UserFacingError(f"{path} does not exist.")
    if path.is_dir():
        raise UserFacingError(f"{path} is a folder, not an image.")
    try:
        with Image.open(path) as im:
            check_pixels(name, *im.size)
            source_mode = im.mode
            im.load()
            upright = ImageOps.exif_transpose(im)
            rgb, alpha, warnings = to_rgb(upright, name)
    except UserFacingError:
        raise
    except Image.DecompressionBombError as exc:
        raise UserFacingError(f"{name} is too large to open safely ({exc}).") from exc
    except UnidentifiedImageError as exc:
        raise UserFacingError(f"{name} is not an image Studio can read (PNG, JPEG, WebP, BMP or "
                              "TIFF).") from exc
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        first = (str(exc).splitlines() or [exc.__class__.__name__])[0][:200]
        raise UserFacingError(f"{name} is damaged or incomplete and cannot be read ({first}).") \
            from exc
    if rgb.width < 1 or rgb.height < 1:
        raise UserFacingError(f"{name} has no pixels.")
    return InputImage(rgb, path, alpha, source_mode, warnings)


def open_mask(path: Path | str, size: tuple[int, int]) -> Image.Image:
    """A painted mask as mode L at ``size`` (white = repaint). A transparent PNG mask uses its
    alpha channel (painted = opaque); otherwise the brightness."""
    path = Path(path)
    try:
        with Image.open(path) as opened:
            check_pixels(f"The mask {path.name}", *opened.size)  # the same limit as images
            opened.load()
            im: Image.Image = ImageOps.exif_transpose(opened)
            lowest_alpha = im.getchannel("A").getextrema()[0] if im.mode in ("RGBA", "LA") \
                else 255
            if isinstance(lowest_alpha, (int, float)) and lowest_alpha < 255:
                mask = im.getchannel("A")
            elif im.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
                mask = _high_bit_to_8(im)
            else:
                mask = im.convert("L")
    except Image.DecompressionBombError as exc:
        raise UserFacingError(f"The mask {path.name} is too large to open safely ({exc}).") \
            from exc
    except UnidentifiedImageError as exc:
        raise UserFacingError(f"The mask {path.name} is not an image.") from exc
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise UserFacingError(f"The mask {path.name} cannot be read ({exc}).") from exc
    width, height = size
    if mask.size != (width, height):
        mask = mask.resize((width, height), Image.Resampling.NEAREST)
    return mask


def fit_max_side(image: Image.Image, max_side: int) -> Image.Image:
    """``image`` scaled down (never up) so its longer side is at most ``max_side`` (0: as is)."""
    if not max_side or max(image.size) <= max_side:
        return image
    scale = max_side / max(image.size)
    size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
    return image.resize(size, Image.Resampling.LANCZOS)
