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

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from studio.core.jobs import UserFacingError

CLASS_NAMES_FILE = "class_names.json"
UNCONDITIONAL = "Unconditional"


def class_names(folder: Path) -> list[str]:
    """The classes a saved class-conditional model draws (empty: unconditional)."""
    path = Path(folder) / CLASS_NAMES_FILE
    if not path.is_file():
        return []
    try:
        names = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise UserFacingError(f"{path} is unreadable ({exc}); save the model from Train "
                              "again.") from exc
    return [str(n) for n in names] if isinstance(names, list) else []


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


def initial_noise(unet: Any, count: int, generator: Any, device: Any) -> Any:
    """The starting noise of ``DDPMPipeline`` for ``count`` images (its shape, dtype and draw)."""
    from diffusers.utils.torch_utils import randn_tensor

    size = unet.config.sample_size
    shape = (count, unet.config.in_channels,
             *((size, size) if isinstance(size, int) else size))
    return randn_tensor(shape, generator=generator, device=device, dtype=unet.dtype)


def denoise(unet: Any, scheduler: Any, image: Any, steps: int, generator: Any = None,
            labels: Any = None) -> Iterator[tuple[int, Any, Any]]:
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


def to_pixels(image: Any) -> Any:
    """A sampled batch as ``DDPMPipeline`` returns it for ``output_type="np"``: (n, h, w, c) in
    [0, 1]."""
    return (image / 2 + 0.5).clamp(0, 1).cpu().permute(0, 2, 3, 1).numpy()


def sample(pipe: Any, count: int, steps: int, generator: Any, labels: Any = None,
           on_step: Callable[[int, Any], None] | None = None) -> Any:
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
