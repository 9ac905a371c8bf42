"""Text to image: one :class:`Txt2ImgRequest` in, saved images out (DESIGN rule 4).

Image ``i`` of a batch uses seed ``request.seed + i`` on a CPU ``torch.Generator``, and the call
is plain diffusers: the step callback only reads the latents (for previews and progress) and sets
``pipe._interrupt`` on cancel, so the studio's image equals plain diffusers bit for bit. Each
finished image is saved at once and reported through ``progress.partial``; a cancel keeps those.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from studio.config import Paths, Settings
from studio.devices import resolve_device, resolve_dtype
from studio.jobs import CancelToken, JobCancelled, ProgressSink, UserFacingError
from studio.library.models import ModelEntry, resolve_model
from studio.pipelines.model_cache import ModelCache
from studio.pipelines.requests import GeneratedImage, Txt2ImgRequest

log = logging.getLogger(__name__)

SD2_SINGLE_FILE_NOTE = ("SD 2.x single-file checkpoints are loaded with the 512-px "
                        "noise-prediction configuration; a 768-px v-prediction model gives noise "
                        "this way — use its diffusers folder instead.")
NAN_MESSAGE = ("The image came out empty (NaN values) at {precision}: the model overflowed in "
               "half precision. Set Precision to fp32 or bf16 in Settings, or use a VAE fixed "
               "for fp16.")


def _is_oom(exc: BaseException) -> bool:
    return exc.__class__.__name__ == "OutOfMemoryError" or "out of memory" in str(exc).lower()


class Txt2ImgService:
    """Runs text-to-image requests on the GPU worker, with the worker's model cache."""

    def __init__(self, settings_getter: Callable[[], Settings],
                 paths_getter: Callable[[], Paths], cache: ModelCache | None = None) -> None:
        self._settings = settings_getter
        self._paths = paths_getter
        self.cache = cache if cache is not None else ModelCache()

    # -- the job handler -----------------------------------------------------------------------
    def run(self, request: Txt2ImgRequest, progress: ProgressSink,
            cancel: CancelToken) -> list[GeneratedImage]:
        """Generate ``request.count`` images; returns them (each was saved as it finished)."""
        try:
            request.validate()
        except ValueError as exc:
            raise UserFacingError(str(exc)) from exc
        settings, paths = self._settings(), self._paths()
        entry = resolve_model(request.model, settings, paths)
        try:
            device = resolve_device(settings.device)
        except (RuntimeError, ValueError) as exc:
            raise UserFacingError(str(exc)) from exc
        dtype = resolve_dtype(settings.precision, device)
        cancel.raise_if_cancelled()
        progress.message("Loading model…")
        pipe = self.cache.get(entry, device, dtype, paths=paths)
        cancel.raise_if_cancelled()
        return self._generate(pipe, entry, request, settings, paths, device, dtype, progress,
                              cancel)

    # -- internals ---------------------------------------------------------------------------
    def _generate(self, pipe: Any, entry: ModelEntry, request: Txt2ImgRequest,
                  settings: Settings, paths: Paths, device: str, dtype: Any,
                  progress: ProgressSink, cancel: CancelToken) -> list[GeneratedImage]:
        from studio.pipelines import outputs
        from studio.pipelines.previews import make_previewer
        from studio.pipelines.prompts import prepare_prompt_inputs
        from studio.pipelines.schedulers import a1111_sampler_names, apply_scheduler

        family = "sdxl" if type(pipe).__name__.startswith("StableDiffusionXL") else (
            entry.family if entry.family in ("sd1", "sd2") else "sd1")
        scheduler = apply_scheduler(pipe, request.scheduler)
        sampler, schedule_type = a1111_sampler_names(request.scheduler, scheduler)
        previewer = make_previewer(settings.preview_mode, family, settings.taesd_every, paths,
                                   device, dtype)
        prompt_inputs = prepare_prompt_inputs(pipe, family, request.prompt,
                                              request.negative_prompt, pipe._execution_device)
        warnings = list(prompt_inputs.warnings)
        if entry.format == "single-file" and family == "sd2":
            warnings.append(SD2_SINGLE_FILE_NOTE)
        hash_ = self._model_hash(entry, paths, progress)

        results: list[GeneratedImage] = []
        for index in range(request.count):
            cancel.raise_if_cancelled()
            seed = request.seed + index
            progress.message(f"Generating image {index + 1} of {request.count}…"
                             if request.count > 1 else "Generating…")
            image = self._one_image(pipe, request, prompt_inputs.kwargs, seed, index, previewer,
                                    progress, cancel, dtype)
            path, parameters = outputs.save_txt2img_image(
                image, request, seed, paths.outputs_dir, model_name=entry.name,
                model_hash=hash_, sampler=sampler, schedule_type=schedule_type, extra=None)
            result = GeneratedImage(request=request, seed=seed, index=index, path=path,
                                    image=image, parameters=parameters, warnings=list(warnings))
            results.append(result)
            progress.partial(result)
        return results

    def _one_image(self, pipe: Any, request: Txt2ImgRequest, prompt_kwargs: dict[str, Any],
                   seed: int, index: int, previewer: Any, progress: ProgressSink,
                   cancel: CancelToken, dtype: Any) -> Any:
        import numpy as np
        import torch

        def on_step_end(p: Any, step_index: int, timestep: Any, kwargs: dict) -> dict:
            # Read-only: latents are not modified and no random numbers are drawn here.
            total = int(getattr(p, "num_timesteps", 0) or request.steps)
            step = step_index + 1
            if cancel.cancelled:
                p._interrupt = True
                return kwargs
            preview = previewer(step, total, kwargs.get("latents"))
            progress(index * total + step, request.count * total, preview)
            return kwargs

        generator = torch.Generator("cpu").manual_seed(seed)
        try:
            out = pipe(**prompt_kwargs, num_inference_steps=request.steps,
                       guidance_scale=request.cfg, width=request.width, height=request.height,
                       generator=generator, output_type="np", callback_on_step_end=on_step_end,
                       callback_on_step_end_tensor_inputs=["latents"])
        except (torch.OutOfMemoryError, RuntimeError) as exc:
            if not _is_oom(exc):
                raise
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
            raise UserFacingError(
                f"Out of memory at {request.width}×{request.height} — try a smaller size, or "
                "close other programs that use the GPU.") from exc
        if cancel.cancelled:
            raise JobCancelled()
        pixels = out.images
        if np.isnan(pixels).any():
            raise UserFacingError(NAN_MESSAGE.format(precision=str(dtype).replace("torch.", "")))
        # The same conversion diffusers applies for output_type="pil" (bit-identical).
        return pipe.image_processor.numpy_to_pil(pixels)[0]

    def _model_hash(self, entry: ModelEntry, paths: Paths, progress: ProgressSink) -> str:
        from studio.library.hashing import cached_sha256, full_sha256

        try:
            cached = cached_sha256(entry.path, paths)
            if cached is not None:
                return cached[:10]
            progress.message("Hashing model (first use only)…")
            return full_sha256(entry.path, paths)[:10]
        except OSError as exc:
            log.warning("cannot hash %s: %s", entry.path, exc)
            return ""
