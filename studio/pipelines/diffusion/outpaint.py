"""Outpainting: the canvas extended on any side, the new area inpainted.

:func:`outpaint_canvas` pads the picture by the request's amounts (multiples of 8) — filled with
its edge colours stretched outwards (``edge``, what A1111's "fill" gives the model as context) or
with noise seeded by the request's seed (``noise``) — and builds the mask: white over the new
area, black over the picture, with a linear seam ``feather`` px wide that reaches *into* the
picture (never into the new area, which is always repainted completely). The inpaint call is the
one of :mod:`.img2img` (plain diffusers: the inpaint pipeline derived from the loaded model, 4-
and 9-channel UNets alike), and the original is pasted back outside the mask with diffusers'
``apply_overlay``, so the picture stays exactly as it was beyond the seam.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from studio.core.jobs import UserFacingError
from studio.core.requests import MAX_SIDE, OUTPAINT_SIDES, Img2ImgRequest

if TYPE_CHECKING:
    from PIL import Image


def canvas_size(size: tuple[int, int], request: Img2ImgRequest) -> tuple[int, int]:
    """The outpainted canvas for a picture of ``size``; refused with a sentence when a side would
    exceed :data:`MAX_SIDE`."""
    left, right, top, bottom = request.outpaint_amounts()
    width, height = size[0] + left + right, size[1] + top + bottom
    if max(width, height) > MAX_SIDE:
        raise UserFacingError(f"Outpainting {size[0]}×{size[1]} by these amounts makes a "
                              f"{width}×{height} canvas; a side can be at most {MAX_SIDE} px. "
                              "Add less, or make the picture smaller first.")
    return width, height


def outpaint_mask(size: tuple[int, int], amounts: tuple[int, int, int, int],
                  feather: int) -> Image.Image:
    """The mask (PIL "L") of a ``size`` canvas whose picture was padded by ``amounts`` (left,
    right, top, bottom): 255 over the new area, 0 over the picture, and across the picture's
    outer ``feather`` px on each padded side a linear ramp down from the seam."""
    import numpy as np
    from PIL import Image

    width, height = size
    left, right, top, bottom = amounts
    xs = np.arange(width, dtype=np.float32)[None, :] + 0.5
    ys = np.arange(height, dtype=np.float32)[:, None] + 0.5
    # Distance of each pixel centre into the picture from the nearest padded side (< 0: outside).
    depth = np.full((height, width), np.inf, dtype=np.float32)
    for amount, distance in ((left, xs - left), (right, (width - right) - xs),
                             (top, ys - top), (bottom, (height - bottom) - ys)):
        if amount:
            depth = np.minimum(depth, distance)
    if feather > 0:
        weight = np.clip(1.0 - depth / feather, 0.0, 1.0)
    else:
        weight = (depth < 0).astype(np.float32)
    return Image.fromarray(np.round(weight * 255).astype(np.uint8), "L")


def outpaint_canvas(image: Image.Image, request: Img2ImgRequest) -> tuple[Image.Image, Image.Image]:
    """(the padded RGB canvas, its mask) for ``image`` (PIL RGB at the request's size)."""
    import numpy as np
    from PIL import Image

    left, right, top, bottom = request.outpaint_amounts()
    size = canvas_size(image.size, request)
    pixels = np.asarray(image.convert("RGB"))
    pad = ((top, bottom), (left, right), (0, 0))
    if request.outpaint_fill == "noise":
        rng = np.random.default_rng(int(request.seed))
        canvas = rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
        canvas[top:top + image.height, left:left + image.width] = pixels
    else:
        canvas = np.pad(pixels, pad, mode="edge")
    mask = outpaint_mask(size, request.outpaint_amounts(), int(request.mask_blur))
    return Image.fromarray(canvas, "RGB"), mask


def outpaint_alpha(alpha: Image.Image, request: Img2ImgRequest) -> Image.Image:
    """A picture's transparency on the outpainted canvas: the new area opaque."""
    from PIL import Image

    left, _, top, _ = request.outpaint_amounts()
    out = Image.new("L", canvas_size(alpha.size, request), 255)
    out.paste(alpha, (left, top))
    return out


def outpaint_infotext(request: Img2ImgRequest) -> dict[str, Any]:
    """The infotext keys of an outpainted image (none without outpainting): ``Outpaint left``
    … for each extended side, ``Outpaint fill`` and ``Mask blur`` (the seam's feather)."""
    if not request.outpaint:
        return {}
    out: dict[str, Any] = {f"Outpaint {side}": amount for side, amount
                           in zip(OUTPAINT_SIDES, request.outpaint_amounts(), strict=True)
                           if amount}
    out.update({"Outpaint fill": request.outpaint_fill, "Mask blur": int(request.mask_blur)})
    return out

