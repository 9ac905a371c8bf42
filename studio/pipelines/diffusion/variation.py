"""Variation seeds (A1111's "Variation seed" and "Variation seed strength").

The starting noise of an image is the spherical interpolation (:func:`slerp`) of the noise of its
seed and the noise of its variation seed: strength 0 is the plain image, 1 the variation seed's
noise alone, and values between give pictures close to the plain one. A1111's rules, which
:func:`~studio.core.requests.image_seeds` follows: while a variation is on, every image of a batch keeps the request's
seed and image ``i`` uses ``variation_seed + i`` — a batch of variations of one picture.

The noise is the one diffusers draws itself: :func:`varied_noise` wraps the ``randn_tensor`` the
pipeline's ``prepare_latents`` calls, so the seed's noise is drawn from the job's generator as
always (the generator ends where it would have, and an ancestral sampler's later noise is
unchanged) and the variation noise is drawn the same way from a generator seeded with the
variation seed. For txt2img that noise is the starting latents; for img2img and inpainting it is
the noise diffusers adds to the image's latents. Strength 0 never enters this module's code path,
so the image is bit for bit what plain diffusers makes.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from studio.core.requests import image_seeds
from studio.media.infotext import format_number

if TYPE_CHECKING:
    import torch

    from studio.core.requests import SamplingFields

__all__ = ["image_seeds", "slerp", "varied_noise", "variation_infotext"]


def variation_infotext(request: SamplingFields, index: int) -> dict[str, int | str]:
    """A1111's infotext keys for image ``index`` (none when the variation is off)."""
    _, variation_seed = image_seeds(request, index)
    if variation_seed is None:
        return {}
    return {"Variation seed": variation_seed,
            "Variation seed strength": format_number(float(request.variation_strength))}


def slerp(strength: float, low: torch.Tensor, high: torch.Tensor) -> torch.Tensor:
    """Spherical interpolation from ``low`` (0) to ``high`` (1), as A1111 computes it.

    A1111 works on one image's noise of shape (channels, height, width) and takes the angle
    between the two noises along the height axis, separately for every channel and column; here
    the height axis is ``-2``, so a batch dimension in front changes nothing. When the two noises
    point the same way (mean cosine above 0.9995, e.g. the same seed twice) it falls back to
    linear interpolation. (A1111's fallback swaps the two weights; it only runs when the noises
    are equal, where both give the same.) Computed in float32, returned in ``low``'s dtype.
    """
    import torch

    a, b = low.float(), high.float()
    a_unit = a / torch.norm(a, dim=-2, keepdim=True)
    b_unit = b / torch.norm(b, dim=-2, keepdim=True)
    dot = (a_unit * b_unit).sum(-2)
    if dot.mean() > 0.9995:
        return (a * (1.0 - strength) + b * strength).to(low.dtype)
    omega = torch.acos(dot.clamp(-1.0, 1.0))
    so = torch.sin(omega)
    out = ((torch.sin((1.0 - strength) * omega) / so).unsqueeze(-2) * a
           + (torch.sin(strength * omega) / so).unsqueeze(-2) * b)
    return out.to(low.dtype)


@contextlib.contextmanager
def varied_noise(pipe: Any, variation_seed: int | None, strength: float) -> Iterator[None]:
    """While inside, ``pipe``'s first initial-noise draw is ``slerp(strength, noise, noise of
    variation_seed)``; nothing changes when ``variation_seed`` is None.

    The name ``randn_tensor`` is swapped in the module that defines ``pipe.prepare_latents``
    (diffusers' one call site for the starting noise) and put back on leaving; the GPU lane runs
    one job at a time, so no other call sees it. Later draws (none in diffusers' SD and SDXL
    pipelines) pass through unchanged.
    """
    if variation_seed is None:
        yield
        return
    import torch

    module: Any = sys.modules[type(pipe).prepare_latents.__module__]
    original = module.randn_tensor
    drawn = False

    def randn_tensor(shape: Any, generator: Any = None, device: Any = None, dtype: Any = None,
                     layout: Any = None) -> Any:
        nonlocal drawn
        noise = original(shape, generator=generator, device=device, dtype=dtype, layout=layout)
        if drawn:
            return noise
        drawn = True
        other = original(shape, generator=torch.Generator("cpu").manual_seed(variation_seed),
                         device=device, dtype=dtype, layout=layout)
        return slerp(strength, noise, other)

    module.randn_tensor = randn_tensor
    try:
        yield
    finally:
        module.randn_tensor = original
