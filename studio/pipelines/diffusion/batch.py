"""The steps every image job runs the same way: check the request, pick the device, load the model,
set up the diffusers call, report its steps, turn out-of-memory into a message a person can act on
— and the one batch loop (:func:`run_batch`, :func:`render_image`) that txt2img, img2img and
inpaint share: the same seeds, the same status lines, the same out-of-memory message and retry,
the same NaN check, and each image saved and reported as it finishes.

Shared by :mod:`studio.pipelines.diffusion.txt2img`, :mod:`studio.pipelines.diffusion.img2img` and (device and memory
handling) :mod:`studio.pipelines.cyclegan.service`. Nothing here changes what diffusers computes: the step
callback only reads the latents, so results stay bit-for-bit equal to plain diffusers.

A diffusers pipeline is ``Any`` here and in the modules that call it (``pipe``, ``base``): mypy
resolves ``DiffusionPipeline`` without the attributes each pipeline class has.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any, TypeVar

from studio.core.config import Paths, Settings
from studio.core.devices import resolve_device, resolve_dtype
from studio.core.jobs import (
    CancelToken,
    Checkable,
    JobCancelled,
    ProgressSink,
    UserFacingError,
    checked,
)
from studio.library.families import FAMILIES
from studio.library.families import family as family_of
from studio.library.models import ModelEntry
from studio.pipelines.diffusion.memory import run_with_offload_retry
from studio.pipelines.model_cache import ModelCache

if TYPE_CHECKING:
    import torch

    from studio.core.config import MemoryOptions
    from studio.core.requests import DiffusionRequest, SamplingFields
    from studio.pipelines.diffusion.embeddings import EmbeddingPlan
    from studio.pipelines.diffusion.loras import LoraPlan
    from studio.pipelines.diffusion.planner import Plan
    from studio.pipelines.diffusion.previews import Previewer
    from studio.pipelines.diffusion.prompts import PromptInputs, StepConditioning
    from studio.pipelines.diffusion.quantize import Quantized
    from studio.pipelines.upscale.service import UpscaleService

log = logging.getLogger(__name__)

_Image = TypeVar("_Image")  # what a batch's render makes (a PIL image, latents)
_Result = TypeVar("_Result")  # what its save reports (a GeneratedImage, a TransformedImage)

OOM_MESSAGE = ("Out of memory at {size} — try a smaller size, or close other programs that use "
               "the GPU.")
NAN_MESSAGE = ("The image came out empty (NaN values) at {precision}: the model overflowed in "
               "half precision. Set Precision to fp32 or bf16 in Settings, or use a VAE fixed "
               "for fp16.")


def validate_request(request: Checkable) -> None:
    """``request.validate()``, its ``ValueError`` turned into the job's message."""
    checked(request)


def job_device(settings: Settings) -> str:
    """The device the settings choose; one this machine lacks fails the job with the reason."""
    try:
        return resolve_device(settings.device)
    except (RuntimeError, ValueError) as exc:
        raise UserFacingError(str(exc)) from exc


def is_out_of_memory(exc: BaseException) -> bool:
    """Whether ``exc`` is an accelerator (or CPU allocator) running out of memory."""
    return exc.__class__.__name__ == "OutOfMemoryError" or "out of memory" in str(exc).lower()


@contextlib.contextmanager
def out_of_memory_as(message: str) -> Iterator[None]:
    """Turn running out of memory inside the block into a job failure saying ``message``."""
    import torch

    try:
        yield
    except RuntimeError as exc:  # torch.OutOfMemoryError is a RuntimeError
        if not is_out_of_memory(exc):
            raise
        if torch.cuda.is_available():
            torch.cuda.empty_cache()  # give the memory back before the next job asks
        raise UserFacingError(message) from exc


def generating_message(index: int, count: int) -> str:
    """The status line while image ``index`` of ``count`` is made."""
    return f"Generating image {index + 1} of {count}…" if count > 1 else "Generating…"


class NotedProgress:
    """A :class:`ProgressSink` that adds the job's notes to every result it reports.

    Notes are what the user should know about the whole job rather than one image — a memory
    option that cannot run here, a retry with offload after running out of memory — and are
    only known while the job runs; each result reported after a note carries it in its
    ``warnings``. Everything else goes to the wrapped sink unchanged."""

    def __init__(self, sink: ProgressSink) -> None:
        self._sink = sink
        self.notes: list[str] = []

    def note(self, text: str) -> None:
        if text not in self.notes:
            self.notes.append(text)

    def __call__(self, step: int, total: int, preview: Any = None) -> None:
        self._sink(step, total, preview)

    def message(self, text: str) -> None:
        self._sink.message(text)

    def partial(self, result: Any) -> None:
        warnings = getattr(result, "warnings", None)
        if isinstance(warnings, list):
            warnings.extend(n for n in self.notes if n not in warnings)
        self._sink.partial(result)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._sink, name)


def add_note(progress: ProgressSink, text: str) -> None:
    """Tell the job's results ``text`` (see :class:`NotedProgress`); logged when the sink cannot."""
    note = getattr(progress, "note", None)
    if callable(note):
        note(text)
    else:
        log.warning("%s", text)


class DiffusersService:
    """Base of the services that run diffusers requests with the worker's shared model cache."""

    def __init__(self, settings_getter: Callable[[], Settings],
                 paths_getter: Callable[[], Paths], cache: ModelCache | None = None, *,
                 upscalers: Callable[[], UpscaleService] | None = None) -> None:
        self._settings = settings_getter
        self._paths = paths_getter
        self.cache = cache if cache is not None else ModelCache(settings_getter=settings_getter)
        if self.cache.settings_getter is None:  # a shared cache follows the settings' budget too
            self.cache.settings_getter = settings_getter
        self._upscalers = upscalers
        self._own_upscalers: UpscaleService | None = None

    def upscalers(self) -> UpscaleService:
        """The :class:`~studio.pipelines.upscale.service.UpscaleService` whose models the hires
        fix and SD upscale use: the engine's (``upscalers``), or one of this service's own."""
        if self._upscalers is not None:
            return self._upscalers()
        if self._own_upscalers is None:
            from studio.pipelines.upscale.service import UpscaleService

            self._own_upscalers = UpscaleService(self._settings, self._paths)
        return self._own_upscalers

    def _load(self, entry: ModelEntry, settings: Settings, paths: Paths,
              progress: ProgressSink, cancel: CancelToken) -> tuple[Any, str, torch.dtype]:
        """(the cached pipeline, device, dtype) for ``entry``, loading it if needed, with the
        model's memory options applied (their warnings become notes of the job's results)."""
        from studio.pipelines.diffusion.interrupt import watch_for_cancel
        from studio.pipelines.diffusion.memory import apply_memory_options, offload_supported

        device = job_device(settings)
        dtype = resolve_dtype(settings.precision, device)
        options = settings.memory_options_for(entry.path)
        cancel.raise_if_cancelled()
        plan = self._memory_plan(entry, options, device, dtype, progress)
        progress.message("Loading model…")
        load_dtype = quantized_load(entry, options, plan, device, dtype, progress)
        from studio.pipelines.diffusion.quantize import LABELS, Quantized

        # quantized_load gives ``dtype`` itself or a Quantized
        if isinstance(load_dtype, Quantized) and not self.cache.holds(entry, device, load_dtype):
            progress.message(f"Loading model: {', '.join(load_dtype.components)} in "
                             f"{LABELS[load_dtype.mode]} through bitsandbytes…")
        # A model that will be offloaded is read into RAM: it may not fit on the GPU whole.
        offloaded = options.offload != "none" and offload_supported(device)
        planned_cpu = plan is not None and plan.mode in ("text_encoder_cpu", "model",
                                                         "sequential") \
            and offload_supported(device)
        pipe = self.cache.get(entry, device, load_dtype, paths=paths,
                              load_device="cpu" if offloaded or planned_cpu else None)
        if planned_cpu and plan is not None:
            place_as_planned(pipe, plan, device)
        for warning in apply_memory_options(pipe, options, device):
            add_note(progress, warning)
        watch_for_cancel(pipe)  # a cancel stops inside a step and inside prompt encoding too
        cancel.raise_if_cancelled()
        return pipe, device, dtype


    def _memory_plan(self, entry: ModelEntry, options: MemoryOptions, device: str,
                     dtype: torch.dtype, progress: ProgressSink) -> Plan | None:
        """The memory planner's choice for a model about to be loaded with no memory options
        of the user's (None when it is in memory already or cannot be estimated); its sentence
        goes to the status line, and to the results' notes when it changes how the model runs."""
        from studio.core.config import MemoryOptions
        from studio.pipelines.diffusion.planner import plan_for

        if options != MemoryOptions() or self.cache.holds(entry, device, dtype):
            return None
        key = (str(entry.path), device, str(dtype))
        held = _PLANS.get(key)
        if held is not None and held.quantize and self.cache.holds(
                entry, device, planned_dtype(held, dtype)):
            return held  # loaded as planned already: the memory it holds is not free again
        plan = plan_for(entry, dtype, device)
        if plan is None:
            return None
        _PLANS[key] = plan
        progress.message(plan.sentence)
        if plan.mode != "full":
            add_note(progress, plan.sentence)
        return plan


#: the last memory plan per (model path, device, dtype): a model loaded in NF4 as planned is found
#: in the cache under its quantized key, and is not planned again with its own memory taken
_PLANS: dict[tuple[str, str, str], Plan] = {}


def planned_dtype(plan: Plan | None, dtype: torch.dtype) -> torch.dtype | Quantized:
    """What the model cache is asked for under ``plan``: ``dtype``, or its NF4 stand-in."""
    from studio.pipelines.diffusion.quantize import Quantized

    if plan is None or not plan.quantize:
        return dtype
    return Quantized(dtype, plan.quantize, tuple(plan.quantized))


def quantized_load(entry: ModelEntry, options: MemoryOptions, plan: Plan | None, device: str,
                   dtype: torch.dtype, progress: ProgressSink) -> torch.dtype | Quantized:
    """The dtype to load ``entry`` with: ``dtype``, or a :class:`~.quantize.Quantized` when the
    model's options ask for NF4/int8 or the memory plan chose it; what cannot be done (no
    bitsandbytes, a transformer on a CPU, not a diffusers folder) becomes a note of the job."""
    from studio.pipelines.diffusion.quantize import LABELS, requested

    if options.quantize in LABELS:
        if entry.format != "diffusers":
            add_note(progress, f"{LABELS[options.quantize]} weights apply to diffusers folders; "
                               f"{entry.name} ({entry.format}) runs as it is stored.")
            return dtype
        quant, notes = requested(entry.path, options.quantize, device, dtype)
        for note in notes:
            add_note(progress, note)
        return quant if quant is not None else dtype
    return planned_dtype(plan, dtype)


def place_as_planned(pipe: Any, plan: Plan, device: str) -> None:
    """Put a pipeline loaded into RAM where the memory plan says: one text encoder on the CPU
    and the rest on the GPU, or offloaded (kept until the model is unloaded)."""
    from studio.pipelines.diffusion.memory import PLAN_ATTR
    from studio.pipelines.diffusion.planner import run_component_on_cpu

    if plan.mode == "text_encoder_cpu":
        run_component_on_cpu(pipe, plan.cpu_component, device)
    else:
        setattr(pipe, PLAN_ATTR, plan.offload)  # apply_memory_options turns it on and keeps it


@dataclasses.dataclass
class PreparedCall:
    """What a diffusers call needs besides the seed: the pipeline, its prompt inputs, previews."""

    pipe: Any
    family: str
    sampler: str
    schedule_type: str
    previewer: Previewer
    prompt: PromptInputs  # .kwargs and .warnings
    loras: LoraPlan  # the LoRAs applied, their warnings
    embeddings: EmbeddingPlan

    def network_hashes(self, paths: Paths) -> dict[str, str]:
        """A1111's ``Lora hashes`` and ``TI hashes`` for the infotext (only those used)."""
        out = {}
        if self.loras.loras:
            out["Lora hashes"] = self.loras.hashes_text()
        ti = self.embeddings.hashes_text(paths)
        if ti:
            out["TI hashes"] = ti
        return out


def model_family(pipe: Any, entry: ModelEntry) -> str:
    """The family (``sd1``, ``sd2``, ``sdxl``, ``sd3`` …): which text encoders and preview decoder
    the model uses. A single file's pipeline class has the last word over the entry."""
    name = type(pipe).__name__
    if name.startswith("StableDiffusionXL"):
        return "sdxl"
    # SD 3.5, FLUX …: their img2img/inpaint/edit classes share a stem; the longest stem wins
    # (Flux2KleinPipeline is FLUX.2's, not FLUX.1's)
    stems = sorted(((cls[:-len("Pipeline")], f.key) for f in FAMILIES.values()
                    for cls in f.diffusers_classes), key=lambda item: -len(item[0]))
    for stem, key in stems:
        if name.startswith(stem):
            return key
    if entry.family in FAMILIES and entry.family != "sdxl":
        return entry.family
    return "sd1"


def prepare_call(base: Any, entry: ModelEntry, request: DiffusionRequest, settings: Settings,
                 paths: Paths,
                 device: str, dtype: torch.dtype,
                 derive: Callable[[Any], Any] | None = None,
                 progress: ProgressSink | None = None) -> PreparedCall:
    """Scheduler, LoRAs, previewer and prompt inputs for ``request`` on the cached ``base``.

    The request's LoRAs (``<lora:…>`` tags in its prompt and ``request.loras``) are applied to
    ``base`` — none unloads any left from an earlier job — and the prompt is encoded without its
    tags; textual-inversion embeddings named in either prompt are loaded the same way
    (:mod:`.embeddings`). ``derive`` builds the pipeline actually called (img2img / inpaint) from ``base``; it
    runs after the scheduler and the LoRAs are set, so the derived pipeline shares both.
    """
    from studio.pipelines.diffusion.embeddings import (
        apply_embeddings,
        find_embeddings,
        spell_as_named,
    )
    from studio.pipelines.diffusion.loras import add_hashes, apply_loras, plan_loras
    from studio.pipelines.diffusion.previews import make_previewer
    from studio.pipelines.diffusion.prompts import prepare_prompt_inputs
    from studio.pipelines.diffusion.schedulers import a1111_sampler_names, apply_scheduler

    family = model_family(base, entry)
    found = family_of(family)
    if found is not None and found.samplers and request.scheduler not in found.samplers:
        raise UserFacingError(f"{found.label} samples with its own scheduler: choose the sampler "
                              "“Model default”.")
    loras = plan_loras(request.prompt, request.loras, settings, paths)
    if loras.loras and progress is not None:
        progress.message("Applying LoRAs…")
    apply_loras(base, loras, family, entry.name)
    # Textual-inversion embeddings are A1111 prompt syntax: only where that syntax is computed.
    a1111 = found is None or found.a1111_prompts
    embeddings = find_embeddings(loras.prompt if a1111 else "",
                                 request.negative_prompt if a1111 else "", settings, paths)
    apply_embeddings(base, embeddings, family)
    text = spell_as_named(loras.prompt, embeddings)
    negative = spell_as_named(request.negative_prompt, embeddings)
    add_hashes(loras, paths)
    scheduler = apply_scheduler(base, request.scheduler)
    pipe = derive(base) if derive is not None else base
    sampler, schedule_type = a1111_sampler_names(request.scheduler, scheduler)
    previewer = make_previewer(settings.preview_mode, family, settings.taesd_every, paths,
                               device, dtype)
    prompt = prepare_prompt_inputs(pipe, family, text, negative, None, steps=request.steps)
    prompt.warnings[:0] = embeddings.warnings
    return PreparedCall(pipe, family, sampler, schedule_type, previewer, prompt, loras,
                        embeddings)


def cfg_kwargs(family: str, cfg: float) -> dict[str, float]:
    """The CFG number under the argument the family's pipeline takes it as (Qwen-Image:
    ``true_cfg_scale``; the others ``guidance_scale``)."""
    found = family_of(family)
    return {found.cfg_argument if found is not None else "guidance_scale": cfg}


def size_kwargs(pipe: Any, width: int, height: int) -> dict[str, int]:
    """``width``/``height`` for an image-to-image call whose pipeline takes them: SD 3.5's
    otherwise resizes the input to its default size (SD 1.x/SDXL's take the input's size and
    have no such arguments)."""
    import inspect

    params = inspect.signature(type(pipe).__call__).parameters
    return {"width": width, "height": height} if "width" in params and "height" in params else {}


def model_hash(entry: ModelEntry, paths: Paths, progress: ProgressSink) -> str:
    """A1111's "Model hash" of ``entry`` (10 hex digits; hashed once, then cached); "" when the
    file cannot be read."""
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


def unpacked_latents(pipe: Any, latents: torch.Tensor, height: int, width: int) -> Any:
    """A pipeline's packed latents (a token sequence: FLUX, Qwen-Image, FLUX.2) as a new
    channels×h×w batch for the preview; the pipeline's own tensor is not touched."""
    if hasattr(pipe, "_unpatchify_latents"):  # FLUX.2: 2×2 patches of 32 channels, raster order
        rows, cols = height // (pipe.vae_scale_factor * 2), width // (pipe.vae_scale_factor * 2)
        grid = latents[:, :rows * cols].reshape(latents.shape[0], rows, cols, -1)
        return pipe._unpatchify_latents(grid.permute(0, 3, 1, 2))
    if hasattr(pipe, "_unpack_latents"):
        latents = pipe._unpack_latents(latents, height, width, pipe.vae_scale_factor)
        return latents[:, :, 0] if latents.ndim == 5 else latents  # Qwen-Image: one frame
    return latents


def step_callback(request: DiffusionRequest, index: int, previewer: Previewer,
                  progress: ProgressSink, cancel: CancelToken,
                  conditioning: StepConditioning | None = None
                  ) -> Callable[[Any, int, Any, dict], dict]:
    """diffusers' ``callback_on_step_end`` for image ``index`` of the batch.

    No latents are changed and no random numbers are drawn here. Progress counts the steps of
    the whole batch; a cancel sets ``pipe._interrupt`` so diffusers stops at this step. A prompt
    that changes during sampling (``conditioning``, a
    :class:`~studio.pipelines.diffusion.prompts.StepConditioning`) has its next step's
    embeddings swapped in here.
    """

    def on_step_end(p: Any, step_index: int, timestep: Any, kwargs: dict) -> dict:
        total = int(getattr(p, "num_timesteps", 0) or request.steps)
        if cancel.cancelled:
            p._interrupt = True
            return kwargs
        step = step_index + 1
        latents = kwargs.get("latents")
        if latents is not None and latents.ndim == 3:
            latents = unpacked_latents(p, latents, request.height, request.width)
        preview = previewer(step, total, latents)
        keep = getattr(previewer, "keep", None)  # the denoising timeline (also read-only)
        if keep is not None:
            keep(index, step, total, latents, preview, getattr(p, "scheduler", None), timestep)
        progress(index * total + step, request.count * total, preview)
        if conditioning is not None:
            kwargs.update(conditioning.update(p, step_index))
        return kwargs

    return on_step_end


def render_image(pipe: Any, call_kwargs: dict[str, Any], request: DiffusionRequest, seed: int,
                 index: int, previewer: Previewer, progress: ProgressSink, cancel: CancelToken,
                 dtype: torch.dtype, conditioning: StepConditioning | None = None,
                 latents: bool = False) -> Any:
    """One image of a batch: ``pipe(**call_kwargs)`` with a CPU generator seeded ``seed`` and the
    step callback (read-only unless the prompt's ``conditioning`` changes per step); a PIL image.
    A request with a variation strength has its starting noise slerped with the noise of image
    ``index``'s variation seed (:mod:`.variation`). With ``latents`` the pipeline's latents come
    back instead, not decoded (the hires fix's latent upscale starts from them).

    The pipeline returns numpy pixels, checked for NaN (a half-precision overflow gives a black
    image otherwise), then converted the way diffusers converts for ``output_type="pil"`` (bit
    for bit). Out of memory retries once with offloading (:mod:`.memory`), then fails the job
    with :data:`OOM_MESSAGE`.
    """
    import numpy as np
    import torch

    from studio.pipelines.diffusion.variation import image_seeds, varied_noise

    tensors = ["latents", *(conditioning.tensor_inputs if conditioning is not None else ())]
    _, variation_seed = image_seeds(request, index)
    mark = getattr(previewer, "timeline_mark", None)  # the denoising timeline (previews.py)
    back_to_start = mark(index) if mark is not None else None
    attempts = 0

    def call() -> Any:  # a fresh generator each time: a retry makes the same image
        nonlocal attempts
        if attempts and back_to_start is not None:
            back_to_start()  # the retry's steps replace the failed attempt's in the timeline
        attempts += 1
        with varied_noise(pipe, variation_seed, float(request.variation_strength)):
            return pipe(**call_kwargs, generator=torch.Generator("cpu").manual_seed(seed),
                        output_type="latent" if latents else "np",
                        callback_on_step_end=step_callback(request, index, previewer, progress,
                                                           cancel, conditioning),
                        callback_on_step_end_tensor_inputs=tensors)

    size = f"{request.width}×{request.height}"
    with out_of_memory_as(OOM_MESSAGE.format(size=size)):
        out = run_with_offload_retry(call, pipe, size, lambda text: add_note(progress, text))
    if cancel.cancelled:
        raise JobCancelled()
    pixels = out.images
    if bool(torch.isnan(pixels).any()) if latents else np.isnan(pixels).any():
        raise UserFacingError(NAN_MESSAGE.format(precision=str(dtype).replace("torch.", "")))
    return pixels if latents else pipe.image_processor.numpy_to_pil(pixels)[0]


def run_batch(request: SamplingFields, render: Callable[[int, int], _Image],
              save: Callable[[int, int, _Image], _Result], progress: ProgressSink,
              cancel: CancelToken) -> list[_Result]:
    """Image ``i`` of ``request.count`` uses seed ``request.seed + i`` (with a variation: the same
    seed and variation seed ``variation_seed + i``, see :func:`.variation.image_seeds`):
    ``render(index, seed)`` makes it, ``save(index, seed, image)`` writes it and returns the
    result, which is reported with ``progress.partial`` at once (a cancel keeps the finished
    ones)."""
    from studio.pipelines.diffusion.variation import image_seeds

    results: list[_Result] = []
    for index in range(request.count):
        cancel.raise_if_cancelled()
        seed, _ = image_seeds(request, index)
        progress.message(generating_message(index, request.count))
        result = save(index, seed, render(index, seed))
        results.append(result)
        progress.partial(result)
    return results
