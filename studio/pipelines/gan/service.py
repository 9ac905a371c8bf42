"""GAN jobs on the engine: text-to-image requests naming a GAN folder, and latent walks.

A :class:`~studio.core.requests.Txt2ImgRequest` whose model is a GAN (Generate, ``studio
generate --model NAME``, the server) comes here from the text-to-image service: the prompt,
steps, CFG, scheduler and LoRAs mean nothing to a GAN and are left out of the image's
``parameters`` (a sentence says so when a prompt was given); seeds, batches, variation seeds,
PNG metadata and the gallery work as for any model. A :class:`~studio.core.requests.
GanWalkRequest` writes the frames of a latent walk as PNGs and, if asked, one animated GIF.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from studio.core.config import Paths, Settings
from studio.core.jobs import CancelToken, ProgressSink, UserFacingError
from studio.core.requests import GanWalkRequest, GeneratedImage, Txt2ImgRequest, image_seeds
from studio.core.wording import count_of

if TYPE_CHECKING:
    from PIL import Image

    from studio.library.models import ModelEntry
    from studio.pipelines.gan.model import GANModel

PROMPT_UNUSED = "A GAN draws from its seed alone: the prompt was not used."


def _load(model: str, settings: Settings, paths: Paths,
          progress: ProgressSink) -> tuple[ModelEntry, GANModel]:
    from studio.library.models import resolve_model
    from studio.pipelines.diffusion.batch import job_device
    from studio.pipelines.gan.model import GANModel

    entry = resolve_model(model, settings, paths)
    if entry.format != "gan":
        raise UserFacingError(f"{entry.name} is not a GAN trained in Studio: a latent walk needs "
                              "one (export it from Train → DCGAN).")
    progress.message(f"Loading {entry.name}…")
    return entry, GANModel(entry.path, job_device(settings))


def _parameters(name: str, gan: GANModel, seed: int, size: tuple[int, int],
                extra: dict[str, Any]) -> str:
    from studio.media.infotext import format_infotext
    from studio.media.outputs import studio_version

    info = gan.info
    return format_infotext("", "", {"GAN": name, "Seed": seed, **extra,
                                    "Size": f"{size[0]}x{size[1]}",
                                    "GAN size": f"{gan.size}x{gan.size}",
                                    "Trained": f"{count_of(int(info.get('trained_steps') or 0), 'step')} of "
                                               f"{info.get('lesson')} on {info.get('dataset')}",
                                    "Version": studio_version()})


def run_gan(request: Txt2ImgRequest, settings: Settings, paths: Paths, progress: ProgressSink,
            cancel: CancelToken) -> list[GeneratedImage]:
    """``request.count`` images of the GAN ``request.model`` (image i: seed + i, or with a
    variation, the seed's noise blended with variation seed + i's), saved as they finish."""
    from studio.media import outputs
    from studio.pipelines.diffusion.batch import run_batch

    outputs.writable_image_folder(paths.outputs_dir, paths.dated_outputs)
    entry, gan = _load(request.model, settings, paths, progress)
    warnings = [PROMPT_UNUSED] if request.prompt.strip() else []
    scale = gan.scale_for(request.width, request.height)
    strength = float(request.variation_strength or 0.0)

    def render(index: int, seed: int) -> Image.Image:
        _, variation = image_seeds(request, index)
        pixels = gan.draw(gan.varied_noise(seed, variation, strength))[0]
        progress(index + 1, request.count, None)
        return gan.to_image(pixels, scale)

    def save(index: int, seed: int, image: Image.Image) -> GeneratedImage:
        _, variation = image_seeds(request, index)
        extra = ({"Variation seed": variation, "Variation seed strength": strength}
                 if variation is not None else {})
        parameters = _parameters(entry.name, gan, seed, image.size, extra)
        path = outputs.save_image_with_metadata(
            image, paths.outputs_dir, seed, parameters,
            {"request": request.to_dict(), "seed": seed}, dated=paths.dated_outputs)
        return GeneratedImage(request=request, seed=seed, index=index, path=path, image=image,
                              parameters=parameters, warnings=list(warnings), seed_alone=True)

    return run_batch(request, render, save, progress, cancel)


class GanWalkService:
    """Runs latent walks on the GPU lane."""

    def __init__(self, settings_getter: Callable[[], Settings],
                 paths_getter: Callable[[], Paths]) -> None:
        self._settings = settings_getter
        self._paths = paths_getter

    def run(self, request: GanWalkRequest, progress: ProgressSink,
            cancel: CancelToken) -> list[GeneratedImage]:
        from studio.media import outputs

        request.validate()
        settings, paths = self._settings(), self._paths()
        folder = outputs.writable_image_folder(paths.outputs_dir, paths.dated_outputs)
        entry, gan = _load(request.model, settings, paths, progress)
        scale = gan.scale_for(request.width, request.height)
        progress.message(f"Walking from seed {request.seed} to {request.seed_to}…")
        frames = [gan.to_image(p, scale)
                  for p in gan.walk(request.seed, request.seed_to, request.frames)]
        results: list[GeneratedImage] = []
        walk = {"Walk": f"{request.seed} to {request.seed_to}"}
        for index, image in enumerate(frames):
            cancel.raise_if_cancelled()
            parameters = _parameters(entry.name, gan, request.seed, image.size,
                                     {**walk, "Frame": f"{index + 1} of {request.frames}"})
            path = outputs.save_image_with_metadata(
                image, paths.outputs_dir, f"walk-{request.seed}-{request.seed_to}-{index:03d}",
                parameters, {"gan_walk": request.to_dict(), "frame": index},
                dated=paths.dated_outputs)
            result = GeneratedImage(request=request, seed=request.seed, index=index,  # type: ignore[arg-type]
                                    path=path, image=image, parameters=parameters,
                                    seed_alone=True)
            results.append(result)
            progress.partial(result)
            progress(index + 1, request.frames, None)
        if request.gif:
            gif = _save_gif(frames, folder, request)
            result = GeneratedImage(request=request, seed=request.seed,  # type: ignore[arg-type]
                                    index=len(frames), path=gif, image=frames[0],
                                    seed_alone=True)
            results.append(result)
            progress.partial(result)
        return results


def _save_gif(frames: list[Image.Image], folder: Path, request: GanWalkRequest) -> Path:
    """The frames as one looping GIF beside them (written whole, then moved into place)."""
    from studio.core.files import atomic_write

    stem = f"walk-{request.seed}-{request.seed_to}"
    path = folder / f"{stem}.gif"
    n = 2
    while path.exists():
        path, n = folder / f"{stem}-{n}.gif", n + 1

    def write(fh: Any) -> None:
        frames[0].save(fh, format="GIF", save_all=True, append_images=frames[1:],
                       duration=request.frame_ms, loop=0)

    try:
        return atomic_write(path, write)
    except OSError as exc:
        from studio.core.wording import write_failure

        raise UserFacingError(write_failure(exc, "the GIF", folder)) from exc
