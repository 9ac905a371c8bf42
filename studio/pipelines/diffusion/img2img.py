"""Image to image and inpainting with the loaded text-to-image model (DESIGN rule 4).

The pipeline is derived from the one the shared :class:`ModelCache` holds with diffusers'
``AutoPipelineForImage2Image.from_pipe`` / ``AutoPipelineForInpainting.from_pipe``: the new
pipeline *references* the same UNet, VAE and text encoders, so no second copy is ever in memory,
and switching between Generate and Transform never reloads the model. The call is plain diffusers
(CPU generator seeded ``seed + i``, a read-only step callback for previews, progress and cancel), so
the result equals plain diffusers' img2img / inpaint pipeline bit for bit on CPU.

The input is read by :mod:`studio.media.images_in` and resized to ``width×height``: by default
its own size rounded down to multiples of 8 (what diffusers would do), the longer side limited to
``MAX_SIDE``. Inpainting with a regular (4-channel) checkpoint uses diffusers' latent blending;
with ``keep_unmasked`` the original pixels are pasted back outside the mask (diffusers'
``apply_overlay``), so the untouched region stays exactly as it was. ``mask_blur`` softens the
mask first (a Gaussian blur of that radius, as diffusers' ``mask_processor.blur`` and A1111's "Mask
blur" do), so the repainted region fades into the picture instead of ending at a hard edge.

Outpainting (:mod:`.outpaint`) is this inpaint call on the picture padded to a larger canvas with
a mask of its own; SD upscale (:mod:`.sd_upscale`) is this img2img call on the tiles of the
enlarged picture, blended.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from studio.core.config import Paths, Settings
from studio.core.jobs import CancelToken, ProgressSink, UserFacingError
from studio.core.requests import MAX_SIDE, Img2ImgRequest, TransformedImage
from studio.library.families import family as family_of
from studio.library.gan_models import GAN_NO_IMG2IMG
from studio.library.models import resolve_model
from studio.pipelines.diffusion.batch import (
    DiffusersService,
    NotedProgress,
    cfg_kwargs,
    model_family,
    model_hash,
    prepare_call,
    render_image,
    run_batch,
    size_kwargs,
    validate_request,
)
from studio.pipelines.diffusion.outpaint import outpaint_infotext
from studio.pipelines.diffusion.sd_upscale import sd_upscale_infotext
from studio.pipelines.diffusion.variation import variation_infotext

if TYPE_CHECKING:
    import torch
    from PIL import Image

    from studio.library.models import ModelEntry
    from studio.media.images_in import InputImage
    from studio.pipelines.diffusion.batch import PreparedCall
    from studio.pipelines.diffusion.sd_upscale import SdUpscale

log = logging.getLogger(__name__)


def derived_size(width: int, height: int, max_side: int = MAX_SIDE) -> tuple[int, int]:
    """An image's size for the model: scaled down to ``max_side`` if larger, then rounded down to
    multiples of 8 (at least 8)."""
    scale = min(1.0, max_side / max(width, height))
    w, h = int(width * scale), int(height * scale)
    return max(8, w // 8 * 8), max(8, h // 8 * 8)


def derive_pipeline(pipe: Any, inpaint: bool) -> Any:
    """The img2img / inpaint pipeline sharing ``pipe``'s components (same objects, no copies)."""
    from diffusers import AutoPipelineForImage2Image, AutoPipelineForInpainting

    from studio.pipelines.diffusion.memory import share_offload_state

    auto = AutoPipelineForInpainting if inpaint else AutoPipelineForImage2Image
    derived = auto.from_pipe(pipe)
    derived.set_progress_bar_config(disable=True)
    share_offload_state(pipe, derived)  # an offloaded model stays offloaded after this call
    return derived


def prepare_inputs(request: Img2ImgRequest
                   ) -> tuple[Image.Image, Image.Image | None, InputImage, list[str]]:
    """(RGB image at the request's size, mask or None, the InputImage, warnings)."""
    from PIL import Image

    from studio.media import images_in

    loaded = images_in.open_image(request.image)
    size = (request.width, request.height) if request.width and request.height else \
        derived_size(*loaded.size)
    image = loaded.image if loaded.size == size else \
        loaded.image.resize(size, Image.Resampling.LANCZOS)
    mask = images_in.open_mask(request.mask, size) if request.inpaint else None
    if mask is not None:
        mask = blur_mask(mask, request.mask_blur)
    warnings = list(loaded.warnings)
    if size != loaded.size:
        warnings.append(f"The image was resized from {loaded.size[0]}×{loaded.size[1]} to "
                        f"{size[0]}×{size[1]} (multiples of 8, as the model needs).")
    return image, mask, loaded, warnings


def blur_mask(mask: Image.Image, radius: int) -> Image.Image:
    """The mask (a PIL "L" image) softened by a Gaussian blur of ``radius`` px (0: as it is)."""
    from PIL import ImageFilter

    return mask.filter(ImageFilter.GaussianBlur(radius)) if radius > 0 else mask


def result_saver(request: Img2ImgRequest, entry: ModelEntry, call: PreparedCall, paths: Paths,
                 hash_: str, extra: dict[str, Any], warnings: list[str]
                 ) -> Callable[[int, int, Image.Image], TransformedImage]:
    """``save(index, seed, image)`` for :func:`.batch.run_batch`: one image to image, inpaint
    or instruction-edit result written with its metadata, as a :class:`TransformedImage`."""
    from studio.media import outputs

    def save(index: int, seed: int, out: Image.Image) -> TransformedImage:
        timeline = call.previewer.take_timeline(index)
        if timeline is not None:
            timeline.finish(out)
        path, parameters = outputs.save_img2img_image(
            out, request, seed, paths.outputs_dir, model_name=entry.name, model_hash=hash_,
            sampler=call.sampler, schedule_type=call.schedule_type,
            extra={**variation_infotext(request, index), **extra},
            prompt=call.loras.infotext_prompt(request.prompt), dated=paths.dated_outputs)
        return TransformedImage(request=request, index=index, source=Path(request.image),
                                path=path, image=out, parameters=parameters, seed=seed,
                                warnings=list(warnings), loras=call.loras.used(),
                                timeline=timeline)

    return save


class Img2ImgService(DiffusersService):
    """Runs img2img / inpaint requests with the worker's (shared) model cache."""

    def run(self, request: Img2ImgRequest, progress: ProgressSink,
            cancel: CancelToken) -> list[TransformedImage]:
        validate_request(request)
        settings, paths = self._settings(), self._paths()
        entry = resolve_model(request.model, settings, paths)
        if entry.format == "gan":
            raise UserFacingError(GAN_NO_IMG2IMG.format(name=entry.name))
        if entry.family == "ddpm":
            raise UserFacingError(f"{entry.name} was trained in Train's image diffusion lesson "
                                  "and draws new images from noise only: use it in Generate. "
                                  "Image to image needs a Stable Diffusion model.")
        if request.edit:  # an instruction-editing model: the picture and what to change
            from studio.pipelines.diffusion.edit import run_edit

            return run_edit(self, entry, request, settings, paths, progress, cancel)
        found = family_of(entry.family)
        if found is not None and found.edit:
            raise UserFacingError(f"{entry.name} edits pictures from instructions: choose "
                                  "Edit with instructions and write what to change.")
        from studio.media.outputs import writable_image_folder

        writable_image_folder(paths.outputs_dir, paths.dated_outputs)  # before minutes of work
        image, mask, loaded, warnings = prepare_inputs(request)
        request = dataclasses.replace(request, width=image.width, height=image.height)
        if request.outpaint:  # the picture on a larger canvas, the new area masked
            from studio.pipelines.diffusion.outpaint import outpaint_alpha, outpaint_canvas

            image, mask = outpaint_canvas(image, request)
            if loaded.alpha is not None:
                alpha = loaded.alpha.resize((request.width, request.height))
                loaded = dataclasses.replace(loaded, alpha=outpaint_alpha(alpha, request))
        elif request.sd_upscale:
            from studio.pipelines.diffusion.sd_upscale import sd_upscale_size

            sd_upscale_size(image.size, float(request.sd_upscale))  # too large: refused now
        progress = NotedProgress(progress)  # memory notes reach every image's warnings
        base, device, dtype = self._load(entry, settings, paths, progress, cancel)
        return self._generate(base, entry, request, image, mask, loaded, warnings, settings,
                              paths, device, dtype, progress, cancel)

    def _generate(self, base: Any, entry: ModelEntry, request: Img2ImgRequest, image: Image.Image,
                  mask: Image.Image | None, loaded: InputImage, warnings: list[str], settings: Settings, paths: Paths,
                  device: str, dtype: torch.dtype, progress: ProgressSink,
                  cancel: CancelToken) -> list[TransformedImage]:

        masked = request.inpaint or request.outpaint
        found = family_of(model_family(base, entry))
        if found is not None and not found.img2img:
            raise UserFacingError(f"{found.label} has no image-to-image pipeline (a picture "
                                  "given to it is a reference, not a start): use it in "
                                  "Generate, or pick another model here.")
        call = prepare_call(base, entry, request, settings, paths, device, dtype,
                            derive=lambda base: derive_pipeline(base, masked),
                            progress=progress)
        warnings = warnings + list(call.loras.warnings) + list(call.prompt.warnings)
        if not request.sd_upscale:  # one denoising per image (SD upscale: one per tile)
            call.previewer.keep_timelines(settings.timeline_frames)  # bounded, media.timeline
        hash_ = model_hash(entry, paths, progress)
        extra: dict[str, Any] = {"Denoising strength": float(request.strength),
                                 "Init image": Path(request.image).name}
        if request.outpaint:
            extra.update(outpaint_infotext(request))
        elif mask is not None:
            covered = sum(mask.point(lambda v: 255 if v >= 128 else 0).histogram()[255:]) / (
                mask.width * mask.height)
            extra.update({"Mask blur": int(request.mask_blur), "Mask": Path(request.mask).name,
                          "Masked area": f"{covered:.0%}",
                          "Inpaint keep unmasked": request.keep_unmasked})
        extra.update(sd_upscale_infotext(request))
        extra.update(call.network_hashes(paths))
        kwargs: dict[str, Any] = dict(call.prompt.kwargs, image=image,
                                      strength=request.strength,
                                      num_inference_steps=request.steps,
                                      **cfg_kwargs(call.family, request.cfg))
        # The call's size is the canvas's (outpainting: larger than the request's picture).
        sized = dataclasses.replace(request, width=image.width, height=image.height)
        if mask is not None:
            kwargs.update(mask_image=mask, width=image.width, height=image.height)
        else:
            kwargs.update(size_kwargs(call.pipe, image.width, image.height))
        if request.sd_upscale:
            refine = self._sd_upscale(call, request, image, kwargs, settings, paths, device,
                                      dtype, progress, cancel).render
        else:
            def refine(index: int, seed: int) -> Image.Image:
                return render_image(call.pipe, kwargs, sized, seed, index, call.previewer,
                                    progress, cancel, dtype, call.prompt.schedule)

        def render(index: int, seed: int) -> Image.Image:
            out = refine(index, seed)
            if mask is not None and (request.keep_unmasked or request.outpaint):
                out = call.pipe.image_processor.apply_overlay(mask, image, out)
            return loaded.with_alpha(out)

        save = result_saver(request, entry, call, paths, hash_, extra, warnings)
        return run_batch(request, render, save, progress, cancel)

    def _sd_upscale(self, call: PreparedCall, request: Img2ImgRequest, image: Image.Image,
                    kwargs: dict[str, Any], settings: Settings, paths: Paths, device: str,
                    dtype: torch.dtype, progress: ProgressSink, cancel: CancelToken
                    ) -> SdUpscale:
        """SD upscale over ``call``'s img2img pipeline: the input enlarged once (an upscaler
        model loaded first), then refined tile by tile for each image of the batch."""
        from studio.core.requests import HIRES_UPSCALERS
        from studio.pipelines.diffusion.sd_upscale import SdUpscale, enlarge

        model_upscale = None
        if request.sd_upscaler not in HIRES_UPSCALERS:  # else Lanczos (validate refuses Latent)
            model_upscale = self.upscalers().image_upscaler(request.sd_upscaler, settings,
                                                            paths, device, progress, cancel)
        progress.message(f"SD upscale: enlarging {image.width}×{image.height} "
                         f"{request.sd_upscale:g} times…")
        enlarged = enlarge(image, request, model_upscale)
        cancel.raise_if_cancelled()
        return SdUpscale(call.pipe, request, {k: v for k, v in kwargs.items()
                                              if k not in ("image", "width", "height")},
                         enlarged, call.previewer, progress, cancel, dtype,
                         call.prompt.schedule)
