"""CycleGAN translation jobs: one :class:`TransformRequest` in, saved images out (DESIGN rule 4).

Inputs go through :mod:`studio.media.images_in` (upright, RGB, safe); each is optionally
downscaled to ``max_side``, translated at its own resolution (in tiles when large), given back its
transparency, saved with ``parameters`` metadata and reported through ``progress.partial`` at once,
so a cancelled batch keeps every finished image. Progress counts tiles of the image at hand.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from studio.core.config import Paths, Settings
from studio.core.jobs import CancelToken, ProgressSink, UserFacingError
from studio.core.requests import TransformedImage, TransformRequest
from studio.core.wording import count_of
from studio.pipelines.diffusion.batch import job_device, out_of_memory_as, validate_request
from studio.pipelines.model_cache import ModelCache

if TYPE_CHECKING:
    import torch
    from PIL import Image

    from studio.core.requests import UpscaleRequest
    from studio.media.images_in import InputImage
    from studio.pipelines.cyclegan.model import CycleGANGenerator

log = logging.getLogger(__name__)


def transform_parameters(request: TransformRequest, model_name: str, source: Path,
                         size: tuple[int, int], tiles: int, version: str) -> str:
    """The ``parameters`` text of a CycleGAN result (A1111 style, without a prompt)."""
    from studio.media.infotext import format_infotext

    params = {"CycleGAN": model_name, "Direction": request.direction,
              "Size": f"{size[0]}x{size[1]}", "Source": source.name,
              "Max side": request.max_side or None, "Tiles": tiles if tiles > 1 else None,
              "Version": version}
    return format_infotext("", "", params)


@dataclasses.dataclass(frozen=True)
class GeneratorFile:
    """What the model cache needs to know of one CycleGAN generator file.

    ``path`` is the weights file (the cache key); ``usage_path`` the model as the library lists
    it (the folder of a G_A/G_B pair), whose "last used" a load updates."""

    name: str
    path: Path
    usage_path: Path


def load_generator(entry: GeneratorFile, device: str,
                   dtype: torch.dtype | None = None) -> CycleGANGenerator:
    """The model cache's loader for CycleGAN generators."""
    from studio.pipelines.cyclegan.model import CycleGANGenerator

    return CycleGANGenerator(Path(entry.path), device)


class TransformService:
    """Runs CycleGAN requests on the GPU worker; generators stay in a :class:`ModelCache`, so
    they count in the memory budget, show as loaded in the library and "Unload all" frees them."""

    def __init__(self, settings_getter: Callable[[], Settings],
                 paths_getter: Callable[[], Paths]) -> None:
        self._settings = settings_getter
        self._paths = paths_getter
        self.cache = ModelCache(loader=load_generator, kind="transform",
                                settings_getter=settings_getter)

    @property
    def loads(self) -> int:
        """How many times a generator was read from disk."""
        return self.cache.loads

    def generator(self, path: Path, device: str, model_path: Path | None = None,
                  name: str = "") -> CycleGANGenerator:
        """The loaded generator for ``path`` on ``device`` (loading it if needed); ``model_path``
        is the library's model it belongs to (``path`` itself when None)."""
        path = Path(path)
        entry = GeneratorFile(name or path.stem, path, Path(model_path or path))
        return self.cache.get(entry, device, None)

    def unload(self) -> None:
        self.cache.unload_all()

    def run(self, request: TransformRequest, progress: ProgressSink,
            cancel: CancelToken) -> list[TransformedImage]:
        from studio.library.cyclegan_models import resolve_cyclegan
        from studio.media import images_in, outputs

        validate_request(request)
        settings, paths = self._settings(), self._paths()
        model = resolve_cyclegan(request.model)
        weights = model.file_for(request.direction)
        outputs.writable_image_folder(paths.outputs_dir, paths.dated_outputs)  # before the work
        device = job_device(settings)
        progress.message(f"Loading {model.name}…")
        name = model.name if len(model.directions) == 1 else f"{model.name} ({request.direction})"
        generator = self.generator(weights, device, model.path, name)

        def translate(index: int, source: Path, loaded: InputImage) -> TransformedImage:
            image = images_in.fit_max_side(loaded.image, request.max_side)
            tiles = [1]

            def on_tile(done: int, total: int, tiles: list[int] = tiles) -> None:
                tiles[0] = max(1, total - 1)  # the statistics pass is not a tile
                progress(done, total, None)

            with out_of_memory_as(
                    f"Out of memory translating {source.name} at {image.width}×{image.height} — "
                    "set a smaller tile size or a max side."):
                out = generator.translate(image, tile=request.tile, overlap=request.overlap,
                                          progress=on_tile, cancel=cancel)
            parameters = transform_parameters(request, model.name, source, out.size, tiles[0],
                                              outputs.studio_version())
            return save_result(request, index, source, loaded, out, model.name, parameters,
                               paths)

        return each_input(request.inputs, "Translating", translate, progress, cancel)


def save_result(request: TransformRequest | UpscaleRequest, index: int, source: Path,
                loaded: InputImage, out: Image.Image, model_name: str,
                parameters: str, paths: Paths) -> TransformedImage:
    """``out`` given back ``loaded``'s transparency and saved as ``<model>-<source>.png`` with
    ``parameters`` and the request in the ``studio`` chunk (naming this input only, so "reuse"
    repeats just this image); the result to report."""
    from studio.media import outputs

    out = loaded.with_alpha(out)
    one = dataclasses.replace(request, inputs=[str(source)])
    path = outputs.save_image_with_metadata(
        out, paths.outputs_dir, f"{model_name}-{source.stem}", parameters,
        {one.to_dict()["kind"]: one.to_dict(), "source": str(source)}, dated=paths.dated_outputs)
    return TransformedImage(request=request, index=index, source=source, path=path, image=out,
                            parameters=parameters, warnings=list(loaded.warnings))


def each_input(inputs: list[str], verb: str,
               process: Callable[[int, Path, InputImage], TransformedImage],
               progress: ProgressSink,
               cancel: CancelToken) -> list[TransformedImage]:
    """``process(index, source, loaded)`` for each input image of a batch job (CycleGAN,
    upscaling), each result reported with ``progress.partial`` at once. An image that cannot be
    read is skipped with a message (one bad file must not cost the rest), unless it is the only
    one; none readable fails the job."""
    from studio.media import images_in

    results: list[TransformedImage] = []
    skipped: list[str] = []
    count = len(inputs)
    for index, name in enumerate(inputs):
        cancel.raise_if_cancelled()
        source = Path(name)
        progress.message(f"{verb} {source.name} ({index + 1} of {count})…"
                         if count > 1 else f"{verb} {source.name}…")
        try:
            loaded = images_in.open_image(source)
        except UserFacingError as exc:
            if count == 1:
                raise
            skipped.append(source.name)
            progress.message(f"Skipped: {exc}")
            continue
        result = process(index, source, loaded)
        results.append(result)
        progress.partial(result)
    if skipped and not results:
        raise UserFacingError(f"None of the {count_of(count, 'image')} could be read "
                              f"({', '.join(skipped[:3])}{'…' if len(skipped) > 3 else ''}).")
    return results
