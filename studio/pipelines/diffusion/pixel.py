"""Pixel-space diffusion models (a diffusers ``UNet2DModel`` and a scheduler, no VAE and no text):
the models the Train workspace's ``ddpm`` lesson makes, sampled as diffusers' ``DDPMPipeline``
samples them.

:func:`denoise` is that pipeline's loop, one step at a time, with the class label a
class-conditional UNet needs (``DDPMPipeline`` passes none, so it cannot run one): the same noise
from the same generator, the same ``unet(x, t)`` and ``scheduler.step(…, generator=…)`` calls, so an
unconditional model gives plain diffusers' pixels bit for bit. The lesson's film strip and Generate
both sample through it. A saved model is a ``DDPMPipeline`` folder (``model_index.json``,
``unet/``, ``scheduler/``, safetensors) plus ``class_names.json`` when it is class-conditional.
No Qt here; torch and diffusers are imported by the functions that need them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from studio.core.jobs import UserFacingError

if TYPE_CHECKING:
    import numpy as np
    import torch
    from PIL.Image import Image as PILImage

    from studio.core.config import Paths, Settings
    from studio.core.jobs import CancelToken, ProgressSink
    from studio.core.requests import GeneratedImage, Txt2ImgRequest
    from studio.library.models import ModelEntry

UNCONDITIONAL = "Unconditional"


def class_index(wanted: str, names: list[str], model: str) -> int | None:
    """The class label ``wanted`` names (a class name, case-insensitive, or its number), None for
    an unconditional model; a name the model does not know is refused with the ones it does."""
    wanted = wanted.strip()
    if not names:
        if wanted and wanted.lower() != UNCONDITIONAL.lower():
            raise UserFacingError(f"{model} draws without classes or a prompt; leave the prompt "
                                  f"empty (it was {wanted!r}).")
        return None
    lowered = [n.lower() for n in names]
    if wanted.lower() in lowered:
        return lowered.index(wanted.lower())
    if wanted.isdigit() and int(wanted) < len(names):
        return int(wanted)
    raise UserFacingError(f"{model} draws the classes {', '.join(names)}; pick one of them "
                          f"(not {wanted!r}).")


def initial_noise(unet: Any, count: int, generator: torch.Generator | None,
                  device: torch.device) -> torch.Tensor:
    """The starting noise of ``DDPMPipeline`` for ``count`` images (its shape, dtype and draw)."""
    from diffusers.utils.torch_utils import randn_tensor

    size = unet.config.sample_size
    shape = (count, unet.config.in_channels,
             *((size, size) if isinstance(size, int) else size))
    return randn_tensor(shape, generator=generator, device=device, dtype=unet.dtype)


def denoise(unet: Any, scheduler: Any, image: torch.Tensor, steps: int,
            generator: torch.Generator | None = None, labels: torch.Tensor | None = None
            ) -> Iterator[tuple[int, torch.Tensor, torch.Tensor]]:
    """``DDPMPipeline``'s reverse chain from ``image``: yields (step index, timestep, image after
    that step). ``labels`` (a long tensor, one class per image) conditions a class-conditional
    UNet."""
    import torch

    scheduler.set_timesteps(steps)
    extra = {} if labels is None else {"class_labels": labels}
    for i, t in enumerate(scheduler.timesteps):
        # no_grad around each step only: a generator's ``with`` would stay open across its yields
        # and switch gradients off for whoever iterates it
        with torch.no_grad():
            model_output = unet(image, t, **extra).sample
            image = scheduler.step(model_output, t, image, generator=generator).prev_sample
        yield i, t, image


def to_pixels(image: torch.Tensor) -> np.ndarray:
    """A sampled batch as ``DDPMPipeline`` returns it for ``output_type="np"``: (n, h, w, c) in
    [0, 1]."""
    return (image / 2 + 0.5).clamp(0, 1).cpu().permute(0, 2, 3, 1).numpy()


def sample(pipe: Any, count: int, steps: int, generator: torch.Generator | None,
           labels: torch.Tensor | None = None,
           on_step: Callable[[int, torch.Tensor], None] | None = None) -> np.ndarray:
    """``count`` images from a loaded pipeline (``pipe.unet``, ``pipe.scheduler``) as numpy
    pixels; ``on_step(step index, image)`` sees each step and must not change it."""
    device = pipe.unet.device
    image = initial_noise(pipe.unet, count, generator, device)
    if labels is not None:
        labels = labels.to(device)
    for i, _, step_image in denoise(pipe.unet, pipe.scheduler, image, steps, generator, labels):
        image = step_image
        if on_step is not None:
            on_step(i, image)
    return to_pixels(image)


def pixels_preview(image: torch.Tensor) -> np.ndarray:
    """A step's image as an h×w×3 uint8 preview (the first of the batch; grey repeated)."""
    first = to_pixels(image[:1])[0]
    if first.shape[-1] == 1:
        first = first.repeat(3, axis=-1)
    return (first * 255).round().astype("uint8")


def check_request(entry: ModelEntry, request: Txt2ImgRequest) -> None:
    """Refuse, before the model is loaded, what a pixel model cannot do (as a GAN's hires fix
    is refused): a variation seed, LoRAs, the hires fix."""
    what = f"{entry.name} was trained in Train's image diffusion lesson"
    if request.variation_strength:
        raise UserFacingError(f"{what}: it draws from the seed alone. Set the variation "
                              "strength to 0 to use it.")
    if request.loras:
        raise UserFacingError(f"{what}; LoRAs are for Stable Diffusion models. Remove them.")
    if request.hires:
        raise UserFacingError(f"{what}: it has no hires fix. Turn the hires fix off to use it.")


def generate(pipe: Any, entry: ModelEntry, request: Txt2ImgRequest, settings: Settings,
             paths: Paths, progress: ProgressSink, cancel: CancelToken
             ) -> list[GeneratedImage]:
    """Generate's batch for a pixel model: the prompt names a class (or is empty for an
    unconditional model); the size is the model's. Seeds, the scheduler choice, step progress,
    previews, PNG metadata and partial results as for any model, through the one batch loop
    (:func:`studio.pipelines.diffusion.batch.run_batch`)."""
    import dataclasses

    import numpy as np
    import torch

    from studio.core.jobs import JobCancelled
    from studio.core.requests import GeneratedImage
    from studio.library.models import ddpm_class_names
    from studio.media import outputs
    from studio.pipelines.diffusion.batch import (
        NAN_MESSAGE,
        OOM_MESSAGE,
        model_hash,
        out_of_memory_as,
        run_batch,
    )
    from studio.pipelines.diffusion.schedulers import a1111_sampler_names, apply_scheduler

    check_request(entry, request)
    label = class_index(request.prompt, ddpm_class_names(entry.path), entry.name)
    labels = None if label is None else torch.tensor([label])
    size = int(pipe.unet.config.sample_size)
    request = dataclasses.replace(request, width=size, height=size, negative_prompt="")
    scheduler = apply_scheduler(pipe, request.scheduler)
    sampler, schedule_type = a1111_sampler_names(request.scheduler, scheduler)
    hash_ = model_hash(entry, paths, progress)
    previews = settings.preview_mode != "off"
    total = request.steps

    def render(index: int, seed: int) -> PILImage:
        def on_step(i: int, image: Any) -> None:
            if cancel.cancelled:
                raise JobCancelled()
            progress(index * total + i + 1, request.count * total,
                     pixels_preview(image) if previews else None)

        with out_of_memory_as(OOM_MESSAGE.format(size=f"{size}×{size}")):
            pixels = sample(pipe, 1, total, torch.Generator("cpu").manual_seed(seed), labels,
                            on_step)
        if np.isnan(pixels).any():
            raise UserFacingError(NAN_MESSAGE.format(
                precision=str(pipe.unet.dtype).replace("torch.", "")))
        return pipe.numpy_to_pil(pixels)[0]

    def save(index: int, seed: int, image: PILImage) -> GeneratedImage:
        path, parameters = outputs.save_txt2img_image(
            image, request, seed, paths.outputs_dir, model_name=entry.name, model_hash=hash_,
            sampler=sampler, schedule_type=schedule_type, dated=paths.dated_outputs)
        return GeneratedImage(request=request, seed=seed, index=index, path=path, image=image,
                              parameters=parameters, warnings=[])

    return run_batch(request, render, save, progress, cancel)
