"""Upscale jobs: one :class:`UpscaleRequest` in, saved images out; and the loaded upscalers the
hires fix uses.

Inputs go through :mod:`studio.media.images_in` (upright, RGB, safe); each is upscaled by the
model in tiles (:mod:`.model`; progress counts tiles, a cancel stops between two), resized with
Lanczos when the request asks for another factor than the model's, given back its transparency,
saved with ``parameters`` metadata and reported at once, so a cancelled batch keeps every finished
image. Models stay in a :class:`ModelCache` of their own (kind ``upscale``): they count in the
memory budget, show as loaded and "Unload all" frees them.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from studio.core.config import Paths, Settings
from studio.core.jobs import CancelToken, ProgressSink
from studio.core.requests import TransformedImage, UpscaleRequest
from studio.library.upscalers import UpscalerFile, resolve_upscaler
from studio.media.infotext import format_number
from studio.pipelines.cyclegan.service import each_input, save_result
from studio.pipelines.diffusion.batch import job_device, out_of_memory_as, validate_request
from studio.pipelines.model_cache import ModelCache

if TYPE_CHECKING:
    import torch
    from PIL import Image

    from studio.media.images_in import InputImage
    from studio.pipelines.upscale.model import Upscaler


def load_upscaler(entry: UpscalerFile, device: str,
                  dtype: torch.dtype | None = None) -> Upscaler:
    """The model cache's loader: the weights read safely (no code runs), the network built."""
    from studio.library.safe_load import load_state_dict
    from studio.pipelines.upscale.model import Upscaler

    return Upscaler(load_state_dict(Path(entry.path)), device, entry.name)


def upscale_parameters(request: UpscaleRequest, name: str, source: Path, size: tuple[int, int],
                       scale: float, tiles: int, version: str) -> str:
    """The ``parameters`` text of an upscaled image (A1111 style, without a prompt)."""
    from studio.media.infotext import format_infotext

    params = {"Upscaler": name, "Upscale": format_number(scale), "Size": f"{size[0]}x{size[1]}",
              "Source": source.name, "Tiles": tiles if tiles > 1 else None, "Version": version}
    return format_infotext("", "", params)


class UpscaleService:
    """Runs upscale requests on the GPU lane, and lends loaded upscalers to the hires fix."""

    def __init__(self, settings_getter: Callable[[], Settings],
                 paths_getter: Callable[[], Paths]) -> None:
        self._settings = settings_getter
        self._paths = paths_getter
        self.cache = ModelCache(loader=load_upscaler, kind="upscale",
                                settings_getter=settings_getter)

    def upscaler(self, spec: str, settings: Settings, paths: Paths, device: str,
                 progress: ProgressSink) -> Upscaler:
        """The loaded :class:`~.model.Upscaler` ``spec`` names (a name or a file)."""
        entry = resolve_upscaler(spec, settings, paths)
        progress.message(f"Loading {entry.name}…")
        return self.cache.get(entry, device, None)

    def image_upscaler(self, spec: str, settings: Settings, paths: Paths, device: str,
                       progress: ProgressSink, cancel: CancelToken
                       ) -> Callable[[Image.Image], Image.Image]:
        """``image → image`` with the model ``spec`` names, tiled and cancellable (the hires
        fix's upscale step); the model is loaded now, before any image is made."""
        model = self.upscaler(spec, settings, paths, device, progress)

        def upscale(image: Image.Image) -> Image.Image:
            with out_of_memory_as(f"Out of memory upscaling {image.width}×{image.height} with "
                                  f"{model.name} — lower the hires upscale or the size."):
                return model.upscale(image, cancel=cancel)

        return upscale

    def run(self, request: UpscaleRequest, progress: ProgressSink,
            cancel: CancelToken) -> list[TransformedImage]:
        from PIL import Image

        from studio.media import outputs

        validate_request(request)
        settings, paths = self._settings(), self._paths()
        outputs.writable_image_folder(paths.outputs_dir, paths.dated_outputs)  # before the work
        device = job_device(settings)
        model = self.upscaler(request.model, settings, paths, device, progress)
        scale = float(request.scale or model.scale)

        def upscale(index: int, source: Path, loaded: InputImage) -> TransformedImage:
            tiles = [1]

            def on_tile(done: int, total: int) -> None:
                tiles[0] = total
                progress(done, total, None)

            image = loaded.image
            with out_of_memory_as(
                    f"Out of memory upscaling {source.name} at {image.width}×{image.height} — "
                    "set a smaller tile size."):
                out = model.upscale(image, tile=request.tile, overlap=request.overlap,
                                    progress=on_tile, cancel=cancel)
            size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
            if out.size != size:
                out = out.resize(size, Image.Resampling.LANCZOS)
            parameters = upscale_parameters(request, model.name, source, out.size, scale,
                                            tiles[0], outputs.studio_version())
            return save_result(request, index, source, loaded, out, model.name, parameters,
                               paths)

        return each_input(request.inputs, "Upscaling", upscale, progress, cancel)
