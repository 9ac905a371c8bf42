"""Text to image: one :class:`Txt2ImgRequest` in, saved images out (DESIGN rule 4).

Image ``i`` of a batch uses seed ``request.seed + i`` on a CPU ``torch.Generator``, and the call
is plain diffusers: the step callback only reads the latents (for previews and progress) and sets
``pipe._interrupt`` on cancel, so the studio's image equals plain diffusers bit for bit. Each
finished image is saved at once and reported through ``progress.partial``; a cancel keeps those.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from studio.core.config import Paths, Settings
from studio.core.jobs import CancelToken, ProgressSink, UserFacingError
from studio.core.requests import HIRES_UPSCALERS, GeneratedImage, Txt2ImgRequest
from studio.library.families import family as family_of
from studio.library.models import ModelEntry, resolve_model
from studio.pipelines.diffusion.batch import (
    DiffusersService,
    NotedProgress,
    cfg_kwargs,
    model_family,
    model_hash,
    prepare_call,
    render_image,
    run_batch,
    validate_request,
)
from studio.pipelines.diffusion.hires import HiresFix, hires_infotext
from studio.pipelines.diffusion.variation import variation_infotext

if TYPE_CHECKING:
    import torch
    from PIL import Image

    from studio.pipelines.diffusion.batch import PreparedCall
    from studio.pipelines.diffusion.controlnet import Control
    from studio.pipelines.model_cache import ModelCache
    from studio.pipelines.upscale.service import UpscaleService

log = logging.getLogger(__name__)

SD2_SINGLE_FILE_NOTE = ("SD 2.x single-file checkpoints are loaded with the 512-px "
                        "noise-prediction configuration; a 768-px v-prediction model gives noise "
                        "this way — use its diffusers folder instead.")


class Txt2ImgService(DiffusersService):
    """Runs text-to-image requests on the GPU worker, with the worker's model cache.

    ``upscalers`` gives the :class:`~studio.pipelines.upscale.service.UpscaleService` whose models
    the hires fix uses (the engine's; one of this service's own when None)."""

    def __init__(self, settings_getter: Callable[[], Settings],
                 paths_getter: Callable[[], Paths], cache: ModelCache | None = None, *,
                 upscalers: Callable[[], UpscaleService] | None = None) -> None:
        super().__init__(settings_getter, paths_getter, cache, upscalers=upscalers)
        from studio.pipelines.diffusion.controlnet import ControlNetCache

        self.controlnet_cache = ControlNetCache(settings_getter)  # loaded ControlNets stay

    # -- the job handler -----------------------------------------------------------------------
    def run(self, request: Txt2ImgRequest, progress: ProgressSink,
            cancel: CancelToken) -> list[GeneratedImage]:
        """Generate ``request.count`` images; returns them (each was saved as it finished)."""
        validate_request(request)
        settings, paths = self._settings(), self._paths()
        entry = resolve_model(request.model, settings, paths)
        if entry.format == "gan":  # a GAN trained in Studio: seed → image, no diffusion
            from studio.pipelines.gan.service import run_gan

            if request.hires:
                raise UserFacingError(f"{entry.name} is a GAN trained in Studio: it has no "
                                      "hires fix. Turn the hires fix off to use it.")

            return run_gan(request, settings, paths, progress, cancel)
        edits = family_of(entry.family)
        if edits is not None and edits.edit:
            raise UserFacingError(f"{entry.name} ({edits.label}) edits pictures from "
                                  "instructions: use it in Transform → Edit with instructions.")
        if entry.family == "ddpm":  # a pixel model from Train: refused before it is loaded
            from studio.pipelines.diffusion.pixel import check_request

            check_request(entry, request)
        from studio.media.outputs import writable_image_folder

        writable_image_folder(paths.outputs_dir, paths.dated_outputs)  # before minutes of work
        progress = NotedProgress(progress)  # memory notes reach every image's warnings
        pipe, device, dtype = self._load(entry, settings, paths, progress, cancel)
        if entry.family == "ddpm":  # a pixel model from Train: a class instead of a prompt
            from studio.pipelines.diffusion.pixel import generate

            return generate(pipe, entry, request, settings, paths, progress, cancel)
        return self._generate(pipe, entry, request, settings, paths, device, dtype, progress,
                              cancel)

    # -- internals ---------------------------------------------------------------------------
    def _generate(self, pipe: Any, entry: ModelEntry, request: Txt2ImgRequest,
                  settings: Settings, paths: Paths, device: str, dtype: torch.dtype,
                  progress: ProgressSink, cancel: CancelToken) -> list[GeneratedImage]:
        from studio.media import outputs

        control = self._controlnets(pipe, entry, request, settings, paths, device, dtype) \
            if request.controlnets else None
        call = prepare_call(pipe, entry, request, settings, paths, device, dtype,
                            derive=control.derive if control else None, progress=progress)
        call.previewer.keep_timelines(settings.timeline_frames)  # bounded, see media.timeline
        warnings = list(call.loras.warnings) + list(call.prompt.warnings)
        if control is not None and request.hires:
            warnings.append("The ControlNets guided the first pass; the hires fix refined it "
                            "without them.")
        if entry.format == "single-file" and call.family == "sd2":
            warnings.append(SD2_SINGLE_FILE_NOTE)
        hash_ = model_hash(entry, paths, progress)
        # A1111's text names every LoRA used: typed tags as typed, picked ones appended as tags.
        infotext_prompt = call.loras.infotext_prompt(request.prompt)
        extra = call.network_hashes(paths)

        kwargs = dict(call.prompt.kwargs, num_inference_steps=request.steps,
                      width=request.width, height=request.height,
                      **cfg_kwargs(call.family, request.cfg))
        control_kwargs = control.kwargs if control is not None else {}
        if control is not None:
            extra = {**extra, **control.infotext}

        def render(index: int, seed: int) -> Image.Image:
            return render_image(call.pipe, dict(kwargs, **control_kwargs), request, seed, index,
                                call.previewer, progress, cancel, dtype, call.prompt.schedule)

        if request.hires:
            hires = self._hires(pipe, call, request, settings, paths, device, dtype, progress,
                                cancel)
            hires.first, hires.first_kwargs = call.pipe, control_kwargs
            render = hires.render
            extra = {**hires_infotext(request), **extra}

        def save(index: int, seed: int, image: Image.Image) -> GeneratedImage:
            timeline = call.previewer.take_timeline(index)
            if timeline is not None:
                timeline.finish(image)
            path, parameters = outputs.save_txt2img_image(
                image, request, seed, paths.outputs_dir, model_name=entry.name,
                model_hash=hash_, sampler=call.sampler, schedule_type=call.schedule_type,
                extra={**variation_infotext(request, index), **extra}, prompt=infotext_prompt,
                dated=paths.dated_outputs)
            return GeneratedImage(request=request, seed=seed, index=index, path=path,
                                  image=image, parameters=parameters, warnings=list(warnings),
                                  loras=call.loras.used(), timeline=timeline)

        return run_batch(request, render, save, progress, cancel)

    def _controlnets(self, pipe: Any, entry: ModelEntry, request: Txt2ImgRequest,
                     settings: Settings, paths: Paths, device: str, dtype: torch.dtype
                     ) -> Control:
        """The request's ControlNets loaded, their control images made, and how to derive the
        ControlNet pipeline from ``pipe`` (:mod:`.controlnet`)."""
        from studio.pipelines.diffusion import controlnet as cn

        family = model_family(pipe, entry)
        checked, entries = cn.resolve_units(request, family, settings, paths)
        adapters = cn.check_adapters(checked, entries, family)
        images = [cn.control_image(u, request.width, request.height) for u in checked]
        models = self.controlnet_cache.models(entries, device, dtype, paths)
        if adapters:
            return cn.Control(lambda base: cn.adapter_pipeline(base, models, family),
                              cn.adapter_kwargs(checked, images, family),
                              cn.infotext(checked, entries), images)
        return cn.Control(lambda base: cn.controlnet_pipeline(base, models),
                          cn.call_kwargs(checked, images), cn.infotext(checked, entries), images)

    def _hires(self, pipe: Any, call: PreparedCall, request: Txt2ImgRequest, settings: Settings,
               paths: Paths, device: str, dtype: torch.dtype, progress: ProgressSink,
               cancel: CancelToken) -> HiresFix:
        """The hires fix over ``pipe`` and its img2img twin (an upscaler model loaded first)."""
        from studio.pipelines.diffusion.hires import LATENT_MODES
        from studio.pipelines.diffusion.img2img import derive_pipeline

        found = family_of(call.family)
        if found is not None and not found.img2img:
            raise UserFacingError(f"{found.label} has no image-to-image pipeline, so the hires "
                                  "fix cannot refine its images: turn the hires fix off and "
                                  "generate at the size you want.")
        if found is not None and found.packed_latents and request.hires_upscaler in LATENT_MODES:
            raise UserFacingError(f"{found.label} keeps its latents packed, so the hires fix "
                                  "cannot resize them: choose the Lanczos upscaler or an "
                                  "upscaler model.")

        model_upscale = None
        if request.hires_upscaler not in HIRES_UPSCALERS:
            model_upscale = self.upscalers().image_upscaler(request.hires_upscaler, settings,
                                                            paths, device, progress, cancel)
        return HiresFix(pipe, derive_pipeline(pipe, inpaint=False), request,
                        dict(call.prompt.kwargs, **cfg_kwargs(call.family, request.cfg)),
                        call.previewer, progress, cancel, dtype,
                        call.prompt.schedule, model_upscale)
