"""SD upscale (A1111's "SD upscale" script): enlarge an image, then refine it tile by tile with
img2img and blend the tiles' overlaps.

The enlargement is Lanczos, or an upscaler model (the engine's ``upscale`` service, as the hires
fix borrows it) followed by Lanczos to the exact size; the size is ``sd_upscale`` times the input,
rounded down to multiples of 8. The tiles are :func:`~studio.pipelines.cyclegan.model.tile_grid`'s
(the upscaler's own tiling: ``sd_upscale_tile`` px, neighbours overlapping by at least
``sd_upscale_overlap``, the last flush with the edge) and each is one
:func:`.batch.render_image` call of the img2img pipeline on the crop, with the image's seed. The
refined tiles are blended with :func:`~studio.pipelines.cyclegan.model.blend_tiles`' linear
ramps, whose weights sum to 1 at every pixel. An image that fits in one tile is exactly plain
diffusers' img2img on the enlarged image.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import PurePath
from typing import TYPE_CHECKING, Any

from studio.core.jobs import CancelToken, ProgressSink, UserFacingError
from studio.core.requests import MAX_SIDE, Img2ImgRequest
from studio.media.infotext import format_number
from studio.pipelines.diffusion.batch import render_image, size_kwargs

if TYPE_CHECKING:
    import torch
    from PIL import Image

    from studio.pipelines.diffusion.previews import Previewer
    from studio.pipelines.diffusion.prompts import StepConditioning


def sd_upscale_size(size: tuple[int, int], scale: float) -> tuple[int, int]:
    """``size`` times ``scale``, rounded down to multiples of 8; refused with a sentence when a
    side would exceed :data:`MAX_SIDE`."""
    width, height = (max(8, int(side * scale) // 8 * 8) for side in size)
    if max(width, height) > MAX_SIDE:
        raise UserFacingError(f"SD upscale of {size[0]}×{size[1]} by {format_number(scale)} "
                              f"makes {width}×{height}; a side can be at most {MAX_SIDE} px. "
                              "Lower the scale, or upscale without SD refinement.")
    return width, height


def sd_upscale_grid(width: int, height: int,
                    request: Img2ImgRequest) -> list[tuple[int, int, int, int]]:
    """``(y0, x0, height, width)`` of every tile of the enlarged image, row by row."""
    from studio.pipelines.cyclegan.model import tile_grid

    return tile_grid(height, width, int(request.sd_upscale_tile),
                     int(request.sd_upscale_overlap))


def sd_upscale_infotext(request: Img2ImgRequest) -> dict[str, Any]:
    """The infotext keys of an SD-upscaled image (none without SD upscale)."""
    if not request.sd_upscale:
        return {}
    upscaler = str(request.sd_upscaler)
    if "/" in upscaler or "\\" in upscaler:  # a file: its name (the text never shows folders)
        upscaler = PurePath(upscaler.replace("\\", "/")).stem
    return {"SD upscale": format_number(float(request.sd_upscale)),
            "SD upscale upscaler": upscaler,
            "SD upscale tile": int(request.sd_upscale_tile),
            "SD upscale overlap": int(request.sd_upscale_overlap)}


class TileProgress:
    """A progress sink for one tile's steps that reports them as part of the whole batch:
    image ``index`` of ``count``, tile ``tile`` of ``tiles``."""

    def __init__(self, sink: ProgressSink, index: int, count: int, tile: int,
                 tiles: int) -> None:
        self._sink, self._index, self._count = sink, index, count
        self._tile, self._tiles = tile, tiles

    def __call__(self, step: int, total: int, preview: Any = None) -> None:
        per = max(1, total // max(1, self._count))  # the steps of one tile
        done = step - self._index * per
        self._sink((self._index * self._tiles + self._tile) * per + done,
                   self._count * self._tiles * per, preview)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._sink, name)


@dataclasses.dataclass
class SdUpscale:
    """Makes one SD-upscaled image: ``render(index, seed)`` as :func:`.batch.run_batch` calls it.

    ``pipe`` is the img2img pipeline, ``kwargs`` its prompt inputs with strength, steps and CFG,
    ``enlarged`` the upscaled input (made once for the whole batch)."""

    pipe: Any
    request: Img2ImgRequest
    kwargs: dict[str, Any]
    enlarged: Image.Image
    previewer: Previewer
    progress: ProgressSink
    cancel: CancelToken
    dtype: torch.dtype
    conditioning: StepConditioning | None = None

    def render(self, index: int, seed: int) -> Image.Image:
        import numpy as np
        import torch
        from PIL import Image

        from studio.pipelines.cyclegan.model import blend_tiles

        width, height = self.enlarged.size
        grid = sd_upscale_grid(width, height, self.request)
        x = torch.from_numpy(np.asarray(self.enlarged, dtype=np.float32) / 255.0)
        x = x.permute(2, 0, 1)[None]
        tiles = iter(range(len(grid)))

        def refine(crop: Any) -> Any:
            tile = next(tiles)
            th, tw = crop.shape[-2:]
            self.progress.message(f"SD upscale: refining tile {tile + 1} of {len(grid)}…")
            pixels = (crop[0].permute(1, 2, 0).numpy() * 255.0).round().astype(np.uint8)
            request = dataclasses.replace(self.request, width=tw, height=th)
            kwargs = dict(self.kwargs, image=Image.fromarray(pixels, "RGB"),
                          **size_kwargs(self.pipe, tw, th))
            out = render_image(self.pipe, kwargs, request, seed, index, self.previewer,
                               TileProgress(self.progress, index, self.request.count, tile,
                                            len(grid)),
                               self.cancel, self.dtype, self.conditioning)
            return torch.from_numpy(np.asarray(out, dtype=np.float32) / 255.0).permute(
                2, 0, 1)[None]

        if len(grid) == 1:  # one tile: the image itself, no round trip through floats
            request = dataclasses.replace(self.request, width=width, height=height)
            return render_image(self.pipe, dict(self.kwargs, image=self.enlarged,
                                                **size_kwargs(self.pipe, width, height)),
                                request, seed, index, self.previewer, self.progress,
                                self.cancel, self.dtype, self.conditioning)
        out = blend_tiles(x, grid, int(self.request.sd_upscale_overlap), refine, 3,
                          cancel=self.cancel)
        pixels = (out[0].clamp(0, 1).permute(1, 2, 0).numpy() * 255.0).round()
        return Image.fromarray(pixels.astype(np.uint8), "RGB")


def enlarge(image: Image.Image, request: Img2ImgRequest,
            model_upscale: Callable[[Image.Image], Image.Image] | None) -> Image.Image:
    """``image`` at the SD upscale's size: the upscaler model's output (if any) resized with
    Lanczos to :func:`sd_upscale_size`."""
    from PIL import Image

    size = sd_upscale_size(image.size, float(request.sd_upscale))
    if model_upscale is not None:
        image = model_upscale(image)
    return image if image.size == size else image.resize(size, Image.Resampling.LANCZOS)
