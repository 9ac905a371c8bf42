"""The HTTP server behind ``studio serve``: FastAPI routes on uvicorn, jobs on the one engine.

The event loop only parses, waits and writes; every model call queues on the one
:class:`~studio.core.jobs.JobRunner` (DESIGN rule 5), as in the GUI. :mod:`.guard` checks Host,
Origin, the API key, the content type and the body size before any route runs; :mod:`.schemas`
validates bodies with pydantic; :mod:`.streaming` carries job events to clients and cancels the
job of a client that hangs up. Streams are Server-Sent Events ending in ``data: [DONE]``.
"""

from __future__ import annotations

import base64
import io
import ipaddress
import json
import logging
import socket
import threading
import time
from collections.abc import AsyncGenerator, Callable
from contextlib import aclosing
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response
from starlette.exceptions import HTTPException

from studio.core.engine import Engine
from studio.core.jobs import JobState
from studio.core.wording import count_of
from studio.server import documents as served_docs
from studio.server import responses, schemas
from studio.server.catalog import CHAT, IMAGE, Catalog, ServedModel
from studio.server.chat_routes import CHARS_PER_TOKEN, add_chat_routes, check_prompt
from studio.server.documents import ServedDocuments
from studio.server.guard import Guard, allowed_hosts
from studio.server.limits import Limits
from studio.server.openapi_doc import body_doc, docs_page, form_doc, openapi_document
from studio.server.schemas import ApiError
from studio.server.streaming import SHUTTING_DOWN, ClientGone, events

if TYPE_CHECKING:
    from types import FrameType

    import uvicorn
    from starlette.datastructures import UploadFile

    from studio.core.jobs import JobSnapshot
    from studio.core.requests import Img2ImgRequest, Txt2ImgRequest

log = logging.getLogger(__name__)

ROUTES = ("/v1/models", "/v1/chat/completions", "/v1/completions", "/v1/images/generations",
          "/v1/images/edits", "/v1/embeddings", "/v1/collections")


def is_loopback(host: str) -> bool:
    """True when every address ``host`` names is a loopback address."""
    if host.strip().lower() == "localhost":
        return True
    try:
        infos = socket.getaddrinfo(host, None)
    except (socket.gaierror, UnicodeError):
        return False
    return bool(infos) and all(
        ipaddress.ip_address(str(info[4][0]).split("%")[0]).is_loopback for info in infos)


# -- the uvicorn server, behind a small socketserver-like face ----------------------------------
def _uvicorn_server(config: uvicorn.Config, on_exit: Callable[[], None]) -> uvicorn.Server:
    import uvicorn

    class _Server(uvicorn.Server):
        def handle_exit(self, sig: int, frame: FrameType | None) -> None:
            # Ctrl+C / SIGTERM: cancel running jobs first, so every open stream ends with the
            # "shutting down" error and [DONE] and uvicorn's graceful shutdown does not wait.
            on_exit()
            super().handle_exit(sig, frame)

    return _Server(config)


class StudioServer:
    """An OpenAI-compatible API over the studio's models; jobs run on ``engine``.

    Bound at construction (port 0 picks a free one: see :attr:`server_address`); :meth:`serve_forever`
    runs uvicorn on that socket until :meth:`shutdown` or, on the main thread, SIGINT/SIGTERM.
    """

    def __init__(self, sock: socket.socket, engine: Engine, catalog: Catalog,
                 api_key: str | None = None, *, allow_hosts: tuple[str, ...] = (),
                 cors_origins: tuple[str, ...] = (), limits: Limits | None = None,
                 access_log: bool = False, documents: ServedDocuments | None = None) -> None:
        import uvicorn

        self.socket = sock
        self.server_address = sock.getsockname()
        self.engine = engine
        self.catalog = catalog
        self.api_key = api_key or None
        self.limits = limits or Limits()
        self.documents = documents  # the named collections a chat may answer from
        self.app = create_app(self, allowed_hosts(str(self.server_address[0]), allow_hosts),
                              frozenset(o.rstrip("/") for o in cors_origins))
        config = uvicorn.Config(self.app, http="h11", loop="asyncio", lifespan="off",
                                ws="none", log_config=None, access_log=access_log,
                                timeout_graceful_shutdown=10, server_header=False)
        self._server = _uvicorn_server(config, engine.cancel_all)
        self._done = threading.Event()

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        host = f"[{host}]" if ":" in str(host) else host
        return f"http://{host}:{port}/v1"

    def serve_forever(self, poll_interval: float = 0.25) -> None:
        """Serve until :meth:`shutdown` (uvicorn checks every 0.1 s; ``poll_interval`` is kept
        for socketserver's signature)."""
        self._done.clear()
        try:
            self._server.run(sockets=[self.socket])
        finally:
            self._done.set()

    def shutdown(self) -> None:
        self._server.should_exit = True
        self._done.wait(30)

    def server_close(self) -> None:
        self.socket.close()
        if self.documents is not None:
            self.documents.close()


def make_server(host: str, port: int, engine: Engine, catalog: Catalog,
                api_key: str | None = None, **options: Any) -> StudioServer:
    """Bind (port 0 picks a free one). Refuses a non-loopback host without an API key.
    ``options``: :class:`StudioServer`'s keyword arguments."""
    if not api_key and not is_loopback(host):
        raise PermissionError(
            f"Refusing to serve on {host!r} without an API key: anyone who can reach this "
            "machine could use it. Add an API key (--api-key-file FILE or $STUDIO_API_KEY), or serve on 127.0.0.1.")
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(2048)
    except OSError:
        sock.close()
        raise
    return StudioServer(sock, engine, catalog, api_key, **options)


# -- the FastAPI application -------------------------------------------------------------------
def create_app(server: StudioServer, hosts: frozenset[str], cors_origins: frozenset[str]
               ) -> FastAPI:
    from studio import __version__

    app = FastAPI(title="Studio", version=__version__, docs_url=None, redoc_url=None,
                  description="An OpenAI-compatible API over this machine's Studio models.")
    if cors_origins:
        from starlette.middleware.cors import CORSMiddleware

        app.add_middleware(CORSMiddleware, allow_origins=sorted(cors_origins),
                           allow_methods=["GET", "POST"],
                           allow_headers=["Authorization", "Content-Type"])
    app.add_middleware(Guard, hosts=hosts, api_key=server.api_key, cors_origins=cors_origins)

    def error(err: ApiError) -> JSONResponse:
        return JSONResponse(err.body(), status_code=err.status)

    @app.exception_handler(ApiError)
    async def _api_error(request: Request, err: ApiError) -> JSONResponse:
        return error(err)

    @app.exception_handler(HTTPException)
    async def _http_error(request: Request, exc: HTTPException) -> JSONResponse:
        path = request.url.path
        if exc.status_code == 405:
            return error(ApiError(405, f"{request.method} {path} is not supported here."))
        if exc.status_code == 404:
            return error(ApiError(404, f"Unknown URL {path}; this server offers "
                                       + ", ".join(ROUTES) + "."))
        return error(ApiError(exc.status_code, str(exc.detail)))

    @app.exception_handler(Exception)
    async def _bug(request: Request, exc: Exception) -> JSONResponse:
        from studio.core.jobs import describe_error

        log.error("%s %s failed", request.method, request.url.path, exc_info=exc)
        return error(ApiError(500, describe_error(exc), type_="server_error"))

    async def body_of(request: Request) -> Any:
        return schemas.parse_json(await request.body())

    def pick(body: Any, kind: str, embeddings: bool = False) -> ServedModel:
        catalog = server.catalog
        name = body.get("model") if isinstance(body, dict) else None
        if name is None:
            choices = catalog.only(kind)
            if len(choices) == 1:
                return choices[0]
            raise ApiError(400, "'model' is required: one of "
                           + ", ".join(m.id for m in choices), "model")
        if not isinstance(name, str):
            raise ApiError(400, "'model' must be a string.", "model")
        model = catalog.get(name)
        if model is None:
            offered = ", ".join(m.id for m in catalog.only(kind)) or "none"
            raise ApiError(404, f"The model '{name}' does not exist. Models here: {offered}.",
                           "model", "model_not_found")
        if model.kind != kind and embeddings:
            raise ApiError(400, f"'{name}' is an image model; embeddings come from this "
                                "server's local chat models.", "model", "embeddings_unsupported")
        if model.kind != kind:
            other = "/v1/images/generations" if model.kind == IMAGE else "/v1/chat/completions"
            raise ApiError(400, f"'{name}' is a {model.kind} model; use {other}.", "model")
        return model

    def job_events(request: Request, job_request: object,
                   kind: str) -> AsyncGenerator[tuple[str, Any], None]:
        title = f"serve: {getattr(job_request, 'prompt', '')[:30] or kind}"
        return events(server.engine, job_request, title, request.is_disconnected)

    @app.get("/v1/models", summary="The models on offer")
    async def models() -> JSONResponse:
        catalog = server.catalog
        return JSONResponse(responses.model_list([(m.id, m.kind) for m in catalog.models],
                                               catalog.created))

    @app.get("/v1/models/{name:path}", summary="One model")
    async def model(name: str) -> JSONResponse:
        found = server.catalog.get(name)
        if found is None:
            raise ApiError(404, f"The model '{name}' does not exist.", "model",
                           "model_not_found")
        return JSONResponse(responses.model_list([(found.id, found.kind)],
                                               server.catalog.created)["data"][0])

    add_chat_routes(app, server, body_of, pick, job_events)

    @app.post("/v1/images/generations", summary="Text to image (b64_json PNGs)",
              openapi_extra=body_doc(schemas.ImageBody))
    async def images(request: Request) -> Response:
        body = await body_of(request)
        served = pick(body, IMAGE)
        if not (isinstance(body, dict) and body.get("controlnets")):
            job_request = schemas.parse_image(body, served.spec, default_cfg=_family_cfg(served))
            _check_image(job_request, server.limits)
            return await image_answer(request, served, job_request, "txt2img", {})
        import tempfile

        from starlette.concurrency import run_in_threadpool

        with tempfile.TemporaryDirectory(prefix="studio-serve-") as folder:
            job_request = schemas.parse_image(body, served.spec, Path(folder),
                                             _family_cfg(served))
            _check_image(job_request, server.limits)
            await run_in_threadpool(_check_controlnets, job_request, server.engine, Path(folder))
            return await image_answer(request, served, job_request, "txt2img",
                                      {folder: "upload"})

    async def finished_job(request: Request, job_request: object, kind: str
                           ) -> JobSnapshot | None:
        """Run a job with no stream to the client: its end snapshot when done, None when the
        client left (the job is cancelled); a failed job is a 500, a cut-short one a 503."""
        job = None
        try:
            async with aclosing(job_events(request, job_request, kind)) as stream:
                async for what, item in stream:
                    if what == "end":
                        job = item
        except ClientGone:
            return None
        if job is None or job.state is not JobState.DONE:
            if job is not None and job.state is JobState.FAILED:
                raise ApiError(500, job.error or "The job failed.", type_="server_error",
                               code="generation_failed")
            raise ApiError(503, SHUTTING_DOWN, type_="server_error")
        return job

    async def image_answer(request: Request, served: ServedModel,
                           job_request: Txt2ImgRequest | Img2ImgRequest, kind: str,
                           private: dict[str, str]) -> Response:
        """Run an image job; its PNGs as b64_json, with ``private`` paths (the model's, an
        upload's) replaced by public names in their text."""
        job = await finished_job(request, job_request, kind)
        if job is None:
            return Response(status_code=499)  # the client left; nobody reads it
        from starlette.concurrency import run_in_threadpool

        names = {served.spec: served.id, **private}
        data = [{"b64_json": base64.b64encode(await run_in_threadpool(
                    _public_png, Path(image.path), names)).decode("ascii"),
                 "revised_prompt": job_request.prompt, "seed": image.seed}
                for image in job.result or []]
        return JSONResponse({"created": int(time.time()), "data": data})

    @app.post("/v1/images/edits", summary="Image to image; inpaint with a mask, or outpaint; "
                                          "with an editing model (FLUX.1 Kontext, "
                                          "Qwen-Image-Edit) and no mask, edit from the prompt "
                                          "as an instruction (multipart form)",
              openapi_extra=form_doc(schemas.EditBody))
    async def edits(request: Request) -> Response:
        import tempfile

        from starlette.concurrency import run_in_threadpool
        from starlette.datastructures import UploadFile

        try:
            form = await request.form(max_files=2, max_fields=32)
        except ApiError:
            raise
        except Exception as exc:  # noqa: BLE001 - a malformed form is the client's mistake
            raise ApiError(400, f"We could not read the multipart form ({exc}).") from None
        fields: dict[str, Any] = {}
        files: dict[str, Any] = {}
        for name, value in form.multi_items():
            name = name.removesuffix("[]")
            if isinstance(value, UploadFile):
                if name not in ("image", "mask") or name in files:
                    raise ApiError(400, f"Unexpected file field {name!r}: send one 'image' and "
                                        "at most one 'mask'.", name)
                files[name] = value
            else:
                fields[name] = value
        if "image" not in files:
            raise ApiError(400, "'image' is required: the picture to edit, as a file field.",
                           "image")
        served = pick(fields, IMAGE)
        if served.gan:
            from studio.library.gan_models import GAN_NO_IMG2IMG

            raise ApiError(400, GAN_NO_IMG2IMG.format(name=served.id), "model")
        with tempfile.TemporaryDirectory(prefix="studio-serve-") as folder:
            saved = {name: await run_in_threadpool(_save_upload, upload, Path(folder), name)
                     for name, upload in files.items()}
            job_request = schemas.parse_edit(fields, served.spec, str(saved["image"]),
                                             str(saved.get("mask", "")),
                                             _edit_cfg(served) if "mask" not in saved else None)
            await run_in_threadpool(_size_edit, job_request)
            _check_image(job_request, server.limits)
            return await image_answer(request, served, job_request, "img2img",
                                      {folder: "upload"})

    @app.post("/v1/embeddings", summary="Embeddings of local chat models (mean-pooled last "
                                        "hidden state)",
              openapi_extra=body_doc(schemas.EmbeddingBody))
    async def embeddings(request: Request) -> Response:
        from studio.pipelines.chat.remote import is_remote_spec

        body = await body_of(request)
        served = pick(body, CHAT, embeddings=True)
        if is_remote_spec(served.spec):
            raise ApiError(400, f"'{served.id}' is answered by another server; this server "
                                "makes embeddings with its local chat models only.", "model",
                           "embeddings_unsupported")
        job_request, as_base64 = schemas.parse_embeddings(body, served.spec)
        await check_prompt(served, [{"content": t} for t in job_request.texts], server.limits)
        job = await finished_job(request, job_request, "embed")
        if job is None:
            return Response(status_code=499)
        result = job.result
        return JSONResponse(schemas.embedding_list(served.id, result.vectors,
                                                   result.prompt_tokens, as_base64))

    @app.get("/v1/collections", summary="The named document collections a chat can answer "
             "from (its studio_collection field)")
    async def collections() -> JSONResponse:
        return JSONResponse(await served_docs.listing(server.documents))

    @app.get("/openapi.json", include_in_schema=False)
    async def openapi() -> JSONResponse:
        return JSONResponse(openapi_document(app))

    @app.get("/docs", include_in_schema=False)
    async def docs() -> HTMLResponse:
        return HTMLResponse(docs_page(openapi_document(app)))

    app.openapi_url = None  # served above (with the request bodies' schemas), not by FastAPI
    return app


# -- limits in front of the queue --------------------------------------------------------------
def _check_image(request: Txt2ImgRequest | Img2ImgRequest, limits: Limits) -> None:
    """Item 4 of issue 20: one request must not hold the one worker for hours; the prompt is
    bounded, and its LoRA tags may name library LoRAs only (a path would tell a caller whether
    a file exists on this machine)."""
    from studio.core.requests import Img2ImgRequest
    from studio.pipelines.diffusion.loras import parse_prompt_loras

    text = request.prompt + request.negative_prompt
    most = limits.max_prompt_tokens * CHARS_PER_TOKEN
    if len(text) > most:
        raise ApiError(400, f"The prompt is {len(text):,} characters long; this server takes up "
                            f"to {most:,}. Shorten it, or start the server with a larger "
                            "--max-prompt-tokens.", "prompt", "prompt_too_long")
    width, height = request.width, request.height
    if isinstance(request, Img2ImgRequest) and request.outpaint:  # the canvas is painted, not the picture
        left, right, top, bottom = request.outpaint_amounts()
        width, height = width + left + right, height + top + bottom
    work = width * height * request.steps * request.count
    if work > limits.max_pixel_steps:
        raise ApiError(400, f"This request asks for {width}x{height} × "
                            f"{count_of(request.steps, 'step')} × {count_of(request.count, 'image')} = {work:,} "
                            f"pixel-steps; this server's limit is {limits.max_pixel_steps:,} "
                            "(--max-pixel-steps). Ask for fewer steps, images or pixels.",
                       "size", "request_too_large")
    from studio.core.jobs import UserFacingError

    try:
        _, mentions, _ = parse_prompt_loras(request.prompt)
    except UserFacingError as exc:
        raise ApiError(400, str(exc), "prompt") from exc
    for mention in mentions:
        name = mention.name
        if any(c in name for c in "/\\") or ":" in name or name.startswith(".") \
                or Path(name).is_absolute():
            raise ApiError(400, f"<lora:{name}:…>: a served prompt names a LoRA by its library "
                                "name (as 'studio loras list' prints it), never by a path.",
                           "prompt", "lora_path_refused")


# -- answers -----------------------------------------------------------------------------------
def _public_png(path: Path, names: dict[str, str]) -> bytes:
    """The PNG as sent: in its text chunks each private path of ``names`` (the server's path to
    the model, an upload's temporary folder) becomes its public name, so no client learns where
    this machine keeps its files."""
    from PIL import Image, PngImagePlugin

    data = path.read_bytes()
    pairs = [(json.dumps(private)[1:-1], public) for private, public in names.items()
             if private != public] + [(private, public) for private, public in names.items()
                                      if private != public]
    if not any(private.encode() in data for private, _ in pairs):
        return data
    with Image.open(io.BytesIO(data)) as image:
        info = PngImagePlugin.PngInfo()
        for key, value in image.text.items():
            for private, public in pairs:
                value = value.replace(private, public)
            info.add_text(key, value)
        out = io.BytesIO()
        image.save(out, "PNG", pnginfo=info)
    return out.getvalue()


def _save_upload(upload: UploadFile, folder: Path, name: str) -> Path:
    """An uploaded file written to ``folder`` and checked as an image (400 with the reason)."""
    from studio.core.jobs import UserFacingError
    from studio.media.images_in import open_image, open_mask

    target = folder / name
    upload.file.seek(0)
    with target.open("wb") as out:
        while chunk := upload.file.read(1 << 20):
            out.write(chunk)
    try:
        if name == "mask":
            open_mask(target, (8, 8))
            _openai_mask(target)
        else:
            open_image(target)
    except UserFacingError as exc:
        raise ApiError(400, str(exc).replace(str(folder), "upload"), name) from None
    return target


def _check_controlnets(request: Txt2ImgRequest, engine: Engine, folder: Path) -> None:
    """A served request's ControlNets: each named by its library name (a path would tell a
    caller whether a file exists on this machine), each control image a readable image."""
    from studio.core.jobs import UserFacingError
    from studio.library.controlnets import find_controlnets
    from studio.media.images_in import open_image

    names = {n for c in find_controlnets(engine.settings(), engine.paths())
             for n in (c.name, c.repo_id) if n}
    for i, unit in enumerate(request.controlnets):
        if unit["model"] not in names:
            offered = ", ".join(sorted(names)) or "none: this machine has no ControlNet"
            raise ApiError(400, f"controlnets[{i}]: no ControlNet called {unit['model']!r} in "
                                f"this server's library (a served request names a ControlNet "
                                f"by its library name, never by a path; offered: {offered}).",
                           f"controlnets[{i}].model", "controlnet_not_found")
        try:
            open_image(unit["image"])
        except UserFacingError as exc:
            raise ApiError(400, f"controlnets[{i}].image: " +
                           str(exc).replace(str(folder), "upload"),
                           f"controlnets[{i}].image") from None


def _openai_mask(path: Path) -> None:
    """OpenAI's mask convention in Studio's: a mask with transparency edits where it is
    transparent (OpenAI), so it becomes white there and black elsewhere (Studio: white =
    repaint). A mask without alpha is read as Studio reads one: white = repaint."""
    from PIL import Image

    with Image.open(path) as image:
        if image.mode not in ("RGBA", "LA", "PA") and "transparency" not in image.info:
            return
        alpha = image.convert("RGBA").getchannel("A")
    alpha.point(lambda a: 255 if a == 0 else 0).save(path, "PNG")


def _family_cfg(served: ServedModel) -> float:
    """The guidance a generation starts at when the body gives none: the model family's own
    (FLUX.2's 4, Qwen-Image's 4 …), 7 for Stable Diffusion and unknown models."""
    from studio.library.families import family

    found = family(served.family)
    return found.default_cfg if found is not None else 7.0


def _edit_cfg(served: ServedModel) -> float | None:
    """An editing model's own guidance (FLUX.1 Kontext's 2.5 …): its edits follow the
    instruction; None for the other image models (image to image)."""
    from studio.library.families import family

    found = family(served.family)
    return found.default_cfg if found is not None and found.edit else None


def _size_edit(request: Img2ImgRequest) -> None:
    """An edit's size, when not asked for: the image's own, as the img2img job derives it (an
    instruction edit: about a megapixel at its shape, as the job makes it), so the
    pixel-steps limit counts what will run."""
    if request.width and request.height:
        return
    from PIL import Image

    from studio.pipelines.diffusion.edit import edit_size
    from studio.pipelines.diffusion.img2img import derived_size

    with Image.open(request.image) as image:
        size = edit_size if request.edit else derived_size
        request.width, request.height = size(*image.size)
