"""CycleGAN translation jobs: one :class:`TransformRequest` in, saved images out (DESIGN rule 4).

Inputs go through :mod:`studio.pipelines.images_in` (upright, RGB, safe); each is optionally
downscaled to ``max_side``, translated at its own resolution (in tiles when large), given back its
transparency, saved with ``parameters`` metadata and reported through ``progress.partial`` at once,
so a cancelled batch keeps every finished image. Progress counts tiles of the image at hand.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from studio.config import Paths, Settings
from studio.jobs import CancelToken, ProgressSink, UserFacingError
from studio.pipelines.requests import TransformedImage, TransformRequest
from studio.pipelines.run_common import job_device, out_of_memory_as, validate_request

log = logging.getLogger(__name__)


def transform_parameters(request: TransformRequest, model_name: str, source: Path,
                         size: tuple[int, int], tiles: int, version: str) -> str:
    """The ``parameters`` text of a CycleGAN result (A1111 style, without a prompt)."""
    from studio.pipelines.infotext import format_infotext

    params = {"CycleGAN": model_name, "Direction": request.direction,
              "Size": f"{size[0]}x{size[1]}", "Source": source.name,
              "Max side": request.max_side or None, "Tiles": tiles if tiles > 1 else None,
              "Version": version}
    return format_infotext("", "", params)


class TransformService:
    """Runs CycleGAN requests on the GPU worker; keeps the last generator loaded."""

    def __init__(self, settings_getter: Callable[[], Settings],
                 paths_getter: Callable[[], Paths]) -> None:
        self._settings = settings_getter
        self._paths = paths_getter
        self._key: tuple[str, str] | None = None
        self._generator: Any = None
        self.loads = 0

    def generator(self, path: Path, device: str) -> Any:
        """The loaded generator for ``path`` on ``device`` (loading it if needed)."""
        from studio.pipelines.cyclegan import CycleGANGenerator

        key = (str(Path(path).resolve()), device)
        if key != self._key:
            self._generator = None  # free the old one before reading the next
            self._generator = CycleGANGenerator(Path(path), device)
            self._key = key
            self.loads += 1
        return self._generator

    def unload(self) -> None:
        self._generator, self._key = None, None

    def run(self, request: TransformRequest, progress: ProgressSink,
            cancel: CancelToken) -> list[TransformedImage]:
        from studio.library.cyclegan_models import resolve_cyclegan
        from studio.pipelines import images_in, outputs

        validate_request(request)
        settings, paths = self._settings(), self._paths()
        model = resolve_cyclegan(request.model)
        weights = model.file_for(request.direction)
        device = job_device(settings)
        progress.message(f"Loading {model.name}…")
        generator = self.generator(weights, device)
        results: list[TransformedImage] = []
        skipped: list[str] = []
        count = len(request.inputs)
        for index, name in enumerate(request.inputs):
            cancel.raise_if_cancelled()
            source = Path(name)
            progress.message(f"Translating {source.name} ({index + 1} of {count})…"
                             if count > 1 else f"Translating {source.name}…")
            try:
                loaded = images_in.open_image(source)
            except UserFacingError as exc:
                if count == 1:
                    raise
                # In a batch one bad file must not cost the rest: skip it and say so.
                skipped.append(source.name)
                progress.message(f"Skipped: {exc}")
                continue
            image = images_in.fit_max_side(loaded.image, request.max_side)
            tiles = [1]

            def on_tile(done: int, total: int, tiles: list[int] = tiles) -> None:
                tiles[0] = max(1, total - 1)  # the guide pass is not a tile
                progress(done, total, None)

            with out_of_memory_as(
                    f"Out of memory translating {source.name} at {image.width}×{image.height} — "
                    "set a smaller tile size or a max side."):
                out = generator.translate(image, tile=request.tile, overlap=request.overlap,
                                          progress=on_tile, cancel=cancel)
            out = loaded.with_alpha(out)
            parameters = transform_parameters(request, model.name, source, out.size, tiles[0],
                                              outputs.studio_version())
            # The metadata names this image only, so "reuse" repeats just this translation.
            one = dataclasses.replace(request, inputs=[str(source)])
            path = outputs.save_image_with_metadata(
                out, paths.outputs_dir, f"{model.name}-{source.stem}", parameters,
                {"transform": one.to_dict(), "source": str(source)})
            result = TransformedImage(request=request, index=index, source=source, path=path,
                                      image=out, parameters=parameters,
                                      warnings=list(loaded.warnings))
            results.append(result)
            progress.partial(result)
        if skipped and not results:
            raise UserFacingError(f"None of the {count} images could be read "
                                  f"({', '.join(skipped[:3])}{'…' if len(skipped) > 3 else ''}).")
        return results
