"""Images in ``studio serve``'s chat requests: OpenAI's content parts
``{"type": "image_url", "image_url": {"url": "data:image/png;base64,…"}}`` shown to a
vision-language model (the window's path: each message's ``images`` are files that
:func:`studio.pipelines.chat.local.vision_prompt` gives the model's processor).

The server works offline, so only inline ``data:`` URLs are taken; an ``http(s)`` URL is refused
with a sentence saying how to send the image instead. Limits: :data:`MAX_IMAGES` per request,
:data:`MAX_IMAGE_BYTES` each (decoded), and the pixel count every image Studio opens is checked
against (``media.images_in``). A model that reads text only answers 400 naming the served
models that can see. The images are written to a temporary folder for the job and removed when
its answer has been sent (or the client went away).
"""

from __future__ import annotations

import base64
import binascii
import re
import shutil
import tempfile
import weakref
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from studio.core.wording import count_of
from studio.server.catalog import CHAT, Catalog, ServedModel
from studio.server.schemas import ApiError

if TYPE_CHECKING:
    from studio.core.config import Paths, Settings
    from studio.pipelines.chat.types import ChatRequest
    from studio.server.app import StudioServer

MAX_IMAGES = 8  # per request, all messages together
MAX_IMAGE_BYTES = 8 * 1024 * 1024  # one image, decoded
_DATA_URL = re.compile(r"data:(image/[a-z0-9.+-]+)?(;[^,]*)?,", re.IGNORECASE)


def decode_image_part(part: dict[str, Any], param: str) -> bytes:
    """An ``image_url`` content part's bytes (a 400 with the reason when it cannot be taken)."""
    image_url = part.get("image_url")
    url = image_url.get("url") if isinstance(image_url, dict) else image_url
    if not isinstance(url, str) or not url:
        raise ApiError(400, "An image part needs 'image_url': {'url': 'data:image/png;base64,…'}.",
                       param)
    if url.lower().startswith(("http://", "https://")):
        raise ApiError(400, "This server works offline and does not fetch images from the web: "
                            "send the image itself as a data URL "
                            "('data:image/png;base64,…').", param, "image_url_not_supported")
    match = _DATA_URL.match(url)
    if match is None or "base64" not in (match.group(2) or "").lower():
        raise ApiError(400, "An image must be a base64 data URL ('data:image/png;base64,…').",
                       param)
    encoded = url[match.end():]
    if len(encoded) > (MAX_IMAGE_BYTES * 4) // 3 + 4:
        raise ApiError(400, f"An image is over {MAX_IMAGE_BYTES // 2**20} MiB; send a smaller "
                            "one (vision models see a few hundred pixels a side).", param,
                       "image_too_large")
    try:
        return base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        raise ApiError(400, "An image's data URL is not valid base64.", param) from None


def vision_models(catalog: Catalog, settings: Settings, paths: Paths) -> list[str]:
    """The served chat models that can see images (a remote one is taken as able to)."""
    return [m.id for m in catalog.models if m.kind == CHAT and sees(m, settings, paths)]


def sees(served: ServedModel, settings: Settings, paths: Paths) -> bool:
    from studio.core.jobs import UserFacingError
    from studio.library.chat_models import resolve_chat_model
    from studio.pipelines.chat.remote import is_remote_spec

    if is_remote_spec(served.spec):
        return True  # the server behind it says whether its model can see
    try:
        return resolve_chat_model(served.spec, settings, paths).vision
    except UserFacingError:
        return False


def save_images(images: dict[int, list[bytes]], messages: list[dict[str, Any]],
                served: ServedModel, catalog: Catalog, settings: Settings, paths: Paths) -> Path:
    """Write each message's images into a new temporary folder, check they open, and name them
    in the messages' ``images``; the folder (the caller removes it). 400 for a model that
    reads text only, or an image that is not one."""
    from studio.core.jobs import UserFacingError
    from studio.library.chat_models import VISION_HINT
    from studio.media.images_in import open_image

    if not sees(served, settings, paths):
        able = vision_models(catalog, settings, paths)
        here = (f" Served here: {', '.join(able)}." if able else
                " None is served here.")
        raise ApiError(400, f"{served.id} reads text only, so it cannot see images. "
                            f"{VISION_HINT}{here}", "messages", "model_cannot_see")
    folder = Path(tempfile.mkdtemp(prefix="studio-serve-images-"))
    try:
        for index, blobs in images.items():
            paths_here = []
            for j, blob in enumerate(blobs):
                path = folder / f"message{index}-image{j}"
                path.write_bytes(blob)
                try:
                    open_image(path)
                except UserFacingError as exc:
                    raise ApiError(400, str(exc).replace(str(path), f"image {j + 1}").replace(
                        path.name, f"image {j + 1}"), f"messages[{index}].content") from None
                paths_here.append(str(path))
            messages[index]["images"] = paths_here
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise
    return folder


async def attach(parts: dict[int, list[dict[str, Any]]], job_request: ChatRequest,
                 served: ServedModel, server: StudioServer) -> Path | None:
    """The request's image parts decoded, checked and written for the job (see the module);
    the temporary folder, or None without images."""
    if not parts:
        return None
    count = sum(len(p) for p in parts.values())
    if count > MAX_IMAGES:
        raise ApiError(400, f"{count_of(count, 'image')} in one request; this server takes up "
                            f"to {MAX_IMAGES}.", "messages", "too_many_images")
    images = {i: [decode_image_part(part, f"messages[{i}].content") for part in ps]
              for i, ps in parts.items()}
    from starlette.concurrency import run_in_threadpool

    engine = server.engine
    return await run_in_threadpool(save_images, images, job_request.messages, served,
                                   server.catalog, engine.settings(), engine.paths())


def removing(folder: Path | None, response: Any) -> Any:
    """``response`` with ``folder`` removed once it has been sent: after a streamed body's last
    event (or the client going away), at once for a whole answer."""
    if folder is None:
        return response
    iterator = getattr(response, "body_iterator", None)
    if iterator is None:
        shutil.rmtree(folder, ignore_errors=True)
        return response

    async def body() -> AsyncIterator[Any]:
        try:
            async for chunk in iterator:
                yield chunk
        finally:
            shutil.rmtree(folder, ignore_errors=True)

    response.body_iterator = body()
    # a client gone before the body began never runs the generator: then when it is dropped
    weakref.finalize(response, shutil.rmtree, folder, ignore_errors=True)
    return response
