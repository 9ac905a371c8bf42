"""The hires fix (A1111's "Hires. fix"): a first pass at the request's size, an upscale, and a
second img2img pass at the larger size with its own steps and denoising strength.

The upscale is one of :data:`~studio.core.requests.HIRES_UPSCALERS` — the first pass's latents
resized (``Latent``: bilinear, ``Latent (nearest)``), or its pixels resized with Lanczos — or an
upscaler model (:mod:`studio.pipelines.upscale`), whose output is then resized with Lanczos to
the hires size, as A1111 does. Both passes go through :func:`.batch.render_image` with the same
seed (and variation seed), so the result equals plain diffusers' txt2img followed by plain
diffusers' img2img on the upscaled image, bit for bit; the img2img pipeline shares the txt2img
pipeline's components (:func:`.img2img.derive_pipeline`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from studio.core.jobs import CancelToken, ProgressSink
from studio.core.requests import Txt2ImgRequest
from studio.media.infotext import format_number
from studio.pipelines.diffusion.batch import render_image, size_kwargs

if TYPE_CHECKING:
    import torch
    from PIL.Image import Image as PILImage

    from studio.pipelines.diffusion.previews import Previewer
    from studio.pipelines.diffusion.prompts import StepConditioning

#: Latent upscalers: A1111's name → torch's interpolation mode (no antialiasing, as A1111).
LATENT_MODES = {"Latent": "bilinear", "Latent (nearest)": "nearest"}


def second_pass_request(request: Txt2ImgRequest) -> Txt2ImgRequest:
    """The request as the hires pass sees it: the hires size and the hires steps."""
    width, height = request.hires_size()
    return dataclasses.replace(request, width=width, height=height,
                               steps=request.hires_steps or request.steps)


def hires_infotext(request: Txt2ImgRequest) -> dict[str, Any]:
    """A1111's infotext keys of a hires image (none without the hires fix)."""
    if not request.hires:
        return {}
    out: dict[str, Any] = {"Denoising strength": float(request.hires_denoise),
                           "Hires upscale": format_number(float(request.hires_scale))}
    if request.hires_steps:
        out["Hires steps"] = int(request.hires_steps)
    out["Hires upscaler"] = request.hires_upscaler
    return out


def upscale_latents(latents: torch.Tensor, width: int, height: int, factor: int,
                    mode: str) -> torch.Tensor:
    """``latents`` resized to ``width``×``height`` pixels' worth (``factor``: the VAE's)."""
    import torch.nn.functional as F

    return F.interpolate(latents, size=(height // factor, width // factor), mode=mode)


@dataclasses.dataclass
class HiresFix:
    """Makes one hires image: ``render(index, seed)`` as :func:`.batch.run_batch` calls it.

    ``first`` and ``second`` are the txt2img and img2img pipelines (sharing components),
    ``kwargs`` the prompt inputs and the CFG (under the family's argument) both passes use, ``model_upscale`` the loaded upscaler model's
    ``image → image`` (None for the latent and Lanczos upscalers), ``first_kwargs`` what only
    the first pass takes (its ControlNets' images and weights)."""

    first: Any
    second: Any
    request: Txt2ImgRequest
    kwargs: dict[str, Any]
    previewer: Previewer
    progress: ProgressSink
    cancel: CancelToken
    dtype: torch.dtype
    conditioning: StepConditioning | None = None
    model_upscale: Callable[[PILImage], PILImage] | None = None
    first_kwargs: dict[str, Any] = dataclasses.field(default_factory=dict)

    def render(self, index: int, seed: int) -> PILImage:
        from PIL import Image

        request, later = self.request, second_pass_request(self.request)
        mode = LATENT_MODES.get(request.hires_upscaler)
        first_kwargs = dict(self.kwargs, num_inference_steps=request.steps,
                            width=request.width,
                            height=request.height, **self.first_kwargs)
        first = render_image(self.first, first_kwargs, request, seed, index, self.previewer,
                             self.progress, self.cancel, self.dtype, self.conditioning,
                             latents=mode is not None)
        self.cancel.raise_if_cancelled()
        self.progress.message(f"Hires fix: upscaling to {later.width}×{later.height}…")
        if mode is not None:
            image = upscale_latents(first, later.width, later.height,
                                    int(self.first.vae_scale_factor), mode)
        else:
            if self.model_upscale is not None:
                first = self.model_upscale(first)
                self.cancel.raise_if_cancelled()
            image = first if first.size == (later.width, later.height) else \
                first.resize((later.width, later.height), Image.Resampling.LANCZOS)
        self.progress.message(f"Hires fix: refining at {later.width}×{later.height}…")
        second_kwargs = dict(self.kwargs, image=image, strength=float(request.hires_denoise),
                             num_inference_steps=later.steps,
                             **size_kwargs(self.second, later.width, later.height))
        return render_image(self.second, second_kwargs, later, seed, index, self.previewer,
                            self.progress, self.cancel, self.dtype, self.conditioning)
