"""Edit with instructions (issue 15): FLUX.1 Kontext and Qwen-Image-Edit take a picture and an
instruction ("make it winter") and return the edited picture.

An :class:`~studio.core.requests.Img2ImgRequest` with ``edit`` set runs here, through the same
steps as image to image — the model cache, scheduler, LoRAs, previews each step, the batch loop
with seeds ``seed + i``, metadata — and a plain diffusers call of the edit pipeline, so the result
equals plain diffusers' bit for bit. The output size is the request's, or about a megapixel at the
picture's aspect ratio (what both models were trained at, and what Qwen-Image-Edit picks itself).
"""

from __future__ import annotations

import dataclasses
import inspect
from pathlib import Path
from typing import Any

from studio.core.config import Paths, Settings
from studio.core.jobs import CancelToken, ProgressSink, UserFacingError
from studio.core.requests import Img2ImgRequest, TransformedImage
from studio.library.families import FAMILIES
from studio.library.families import family as family_of
from studio.library.models import ModelEntry
from studio.pipelines.diffusion.batch import (
    DiffusersService,
    cfg_kwargs,
    model_family,
    model_hash,
    prepare_call,
    render_image,
    run_batch,
)

#: the area an edit is made at when the request gives no size (1024 × 1024, as trained)
EDIT_AREA = 1024 * 1024


def edit_models_text() -> str:
    """The families that edit from instructions, for a sentence ("FLUX.1 Kontext or …")."""
    return " or ".join(f.label for f in FAMILIES.values() if f.edit)


def not_an_edit_model(name: str) -> UserFacingError:
    return UserFacingError(f"{name} does not edit from instructions: choose an instruction-"
                           f"editing model ({edit_models_text()}) for Edit with instructions.")


def edit_size(width: int, height: int) -> tuple[int, int]:
    """About :data:`EDIT_AREA` pixels at ``width``:``height``, in multiples of 16."""
    ratio = width / height
    w = max(16, round((EDIT_AREA * ratio) ** 0.5) // 16 * 16)
    h = max(16, round((EDIT_AREA / ratio) ** 0.5) // 16 * 16)
    return w, h


def edit_call_kwargs(pipe: Any, width: int, height: int) -> dict[str, int]:
    """Size arguments: FLUX.1 Kontext rescales any size to its ``max_area`` (a megapixel)
    unless told the area too."""
    params = inspect.signature(type(pipe).__call__).parameters
    out = {"width": width, "height": height}
    if "max_area" in params:
        out["max_area"] = width * height
    return out


def run_edit(service: DiffusersService, entry: ModelEntry, request: Img2ImgRequest, settings: Settings,
             paths: Paths, progress: ProgressSink, cancel: CancelToken) -> list[TransformedImage]:
    """The edit job on ``service``'s model cache (an
    :class:`~studio.pipelines.diffusion.img2img.Img2ImgService`)."""
    from studio.media import images_in
    from studio.media.outputs import writable_image_folder
    from studio.pipelines.diffusion.batch import NotedProgress
    from studio.pipelines.diffusion.img2img import result_saver

    found = family_of(entry.family)
    if entry.format == "diffusers" and (found is None or not found.edit):
        raise not_an_edit_model(entry.name)  # before minutes of loading
    writable_image_folder(paths.outputs_dir, paths.dated_outputs)
    loaded = images_in.open_image(request.image)
    width, height = (request.width, request.height) if request.width and request.height \
        else edit_size(*loaded.size)
    request = dataclasses.replace(request, width=width, height=height)
    progress = NotedProgress(progress)
    pipe, device, dtype = service._load(entry, settings, paths, progress, cancel)
    found = family_of(model_family(pipe, entry))
    if found is None or not found.edit:
        raise not_an_edit_model(entry.name)
    call = prepare_call(pipe, entry, request, settings, paths, device, dtype, progress=progress)
    warnings = list(loaded.warnings) + list(call.loras.warnings) + list(call.prompt.warnings)
    hash_ = model_hash(entry, paths, progress)
    kwargs = dict(call.prompt.kwargs, image=loaded.image, num_inference_steps=request.steps,
                  **cfg_kwargs(call.family, request.cfg),
                  **edit_call_kwargs(call.pipe, width, height))
    extra: dict[str, Any] = {"Init image": Path(request.image).name,
                             "Edit": "instructions", **call.network_hashes(paths)}

    def render(index: int, seed: int) -> Any:
        out = render_image(call.pipe, kwargs, request, seed, index, call.previewer, progress,
                           cancel, dtype, call.prompt.schedule)
        return loaded.with_alpha(out)

    save = result_saver(request, entry, call, paths, hash_, extra, warnings)
    return run_batch(request, render, save, progress, cancel)
