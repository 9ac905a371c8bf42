"""The HTTP server behind ``studio serve``: routing, authentication, and the three endpoints.

Stdlib ``ThreadingHTTPServer``: one thread per connection does nothing but parse, wait and write,
while every model call queues on the one :class:`~studio.core.jobs.JobRunner` (DESIGN rule 5), so a
heavier framework would buy nothing here and would add dependencies to a desktop install.
HTTP/1.1 with keep-alive; streamed replies use chunked transfer encoding.
"""

from __future__ import annotations

import base64
import hmac
import ipaddress
import json
import logging
import socket
import time
from collections.abc import Iterator
from contextlib import closing
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from studio.core.engine import Engine
from studio.core.jobs import JobState
from studio.server import schemas
from studio.server.catalog import CHAT, IMAGE, Catalog, ServedModel
from studio.server.schemas import ApiError
from studio.server.streaming import ClientGone, StopMatcher, events

log = logging.getLogger(__name__)

MAX_BODY = 16 * 1024 * 1024
SHUTTING_DOWN = "The server is shutting down; the reply was cut short."


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


class StudioServer(ThreadingHTTPServer):
    """An OpenAI-compatible API over the studio's models; jobs run on ``engine``."""

    daemon_threads = True  # a stuck client never blocks Ctrl+C

    def __init__(self, address: tuple[str, int], engine: Engine, catalog: Catalog,
                 api_key: str | None = None) -> None:
        self.engine = engine
        self.catalog = catalog
        self.api_key = api_key or None
        super().__init__(address, _Handler)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client resetting an idle keep-alive connection is normal; anything else is logged
        (instead of socketserver's traceback on stderr)."""
        import sys

        exc = sys.exc_info()[1]
        if isinstance(exc, (ConnectionResetError, BrokenPipeError, TimeoutError)):
            return
        log.exception("request from %s failed", client_address)

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        host = f"[{host}]" if ":" in str(host) else host
        return f"http://{host}:{port}/v1"


class _StudioServer6(StudioServer):
    address_family = socket.AF_INET6


def make_server(host: str, port: int, engine: Engine, catalog: Catalog,
                api_key: str | None = None) -> StudioServer:
    """Bind (port 0 picks a free one). Refuses a non-loopback host without an API key."""
    if not api_key and not is_loopback(host):
        raise PermissionError(
            f"Refusing to serve on {host!r} without an API key: anyone who can reach this "
            "machine could use it. Add --api-key KEY, or serve on 127.0.0.1.")
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    cls = _StudioServer6 if family == socket.AF_INET6 else StudioServer
    return cls((host, port), engine, catalog, api_key)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "StudioServe"
    timeout = 300  # an idle keep-alive connection frees its thread after this long
    server: StudioServer

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base's name
        log.info("%s %s", self.address_string(), format % args)

    # -- plumbing ------------------------------------------------------------------------------
    def _send_json(self, status: int, body: dict[str, Any]) -> None:
        data = json.dumps(body, ensure_ascii=False).encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _send_error(self, err: ApiError) -> None:
        self._send_json(err.status, err.body())

    def _read_body(self) -> Any:
        length = self.headers.get("Content-Length")
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked" or length is None:
            self.close_connection = True
            raise ApiError(411, "Send the request body with a Content-Length header.")
        try:
            size = int(length)
        except ValueError:
            self.close_connection = True
            raise ApiError(400, "Bad Content-Length header.") from None
        if size > MAX_BODY:
            self.close_connection = True
            raise ApiError(413, f"The request body is over {MAX_BODY // 2**20} MiB.")
        raw = self.rfile.read(size)
        try:
            return json.loads(raw)
        except (ValueError, UnicodeDecodeError):
            raise ApiError(400, "We could not parse the JSON body of your request. "
                                "(HINT: send a JSON object.)") from None

    def _authorize(self) -> None:
        key = self.server.api_key
        if key is None:
            return
        given = self.headers.get("Authorization", "")
        token = given[7:].strip() if given[:7].lower() == "bearer " else ""
        if not hmac.compare_digest(token.encode(), key.encode()):
            raise ApiError(401, "Incorrect API key provided." if token else
                           "You didn't provide an API key (Authorization: Bearer KEY).",
                           code="invalid_api_key")

    def _dispatch(self, method: str) -> None:
        path = self.path.split("?", 1)[0].rstrip("/")
        self._streaming = False  # once the 200 of a stream is out, no error status can follow
        body_read = method == "GET"
        try:
            self._authorize()
            if method == "GET" and path == "/v1/models":
                self._models()
            elif method == "GET" and path.startswith("/v1/models/"):
                self._model(path[len("/v1/models/"):])
            elif method == "POST" and path in ("/v1/chat/completions", "/v1/images/generations"):
                body = self._read_body()
                body_read = True
                if path.endswith("completions"):
                    self._chat(body)
                else:
                    self._images(body)
            else:
                known = path in ("/v1/models", "/v1/chat/completions", "/v1/images/generations")
                raise ApiError(405 if known else 404,
                               f"{method} {path} is not supported here." if known else
                               f"Unknown URL {path}; this server offers /v1/models, "
                               "/v1/chat/completions and /v1/images/generations.")
        except ApiError as err:
            if not body_read:  # the unread body would be taken for the next request
                self.close_connection = True
            self._send_error(err)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True
        except Exception as exc:  # noqa: BLE001 - errors are data (rule 8), even our own bugs
            log.exception("%s %s failed", method, path)
            self.close_connection = True
            if not self._streaming:
                from studio.core.jobs import describe_error

                self._send_error(ApiError(500, describe_error(exc), type_="server_error"))

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        self._dispatch("GET")

    def do_POST(self) -> None:  # noqa: N802
        self._dispatch("POST")

    # -- models --------------------------------------------------------------------------------
    def _models(self) -> None:
        catalog = self.server.catalog
        self._send_json(200, schemas.model_list([(m.id, m.kind) for m in catalog.models],
                                                catalog.created))

    def _model(self, name: str) -> None:
        from urllib.parse import unquote

        model = self.server.catalog.get(unquote(name))
        if model is None:
            raise ApiError(404, f"The model '{unquote(name)}' does not exist.", "model",
                           "model_not_found")
        self._send_json(200, schemas.model_list([(model.id, model.kind)],
                                                self.server.catalog.created)["data"][0])

    def _pick(self, body: Any, kind: str) -> ServedModel:
        catalog = self.server.catalog
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
        if model.kind != kind:
            other = "/v1/images/generations" if model.kind == IMAGE else "/v1/chat/completions"
            raise ApiError(400, f"'{name}' is a {model.kind} model; use {other}.", "model")
        return model

    def _events(self, kind: str, request: Any) -> Iterator[tuple[str, Any]]:
        title = f"serve: {getattr(request, 'prompt', '')[:30] or kind}"
        return events(self.server.engine, request, title, self.connection)

    # -- chat ----------------------------------------------------------------------------------
    def _chat(self, body: Any) -> None:
        model = self._pick(body, CHAT)
        request, options = schemas.parse_chat(body, model.spec)
        if options.stream:
            self._chat_stream(model, request, options)
            return
        stops = StopMatcher(options.stop)
        text, last, job = "", None, None
        try:
            with closing(self._events("chat", request)) as stream:
                for what, item in stream:
                    if what == "end":
                        job = item
                        break
                    last = item
                    text += stops.feed(getattr(item, "text", ""))
                    if stops.stopped:
                        break  # closing the stream cancels the job
        except ClientGone:
            self.close_connection = True
            return
        text += stops.flush()
        reply = job.result if job is not None else None
        error = getattr(last, "error", "") if last is not None else ""
        if job is not None and job.state is JobState.FAILED or error:
            raise ApiError(500, (job.error if job and job.error else error) or "The job failed.",
                           type_="server_error", code="generation_failed")
        if _cut_short(job) and not stops.stopped:
            raise ApiError(503, SHUTTING_DOWN, type_="server_error")
        if not text and reply is not None and not stops.stopped:
            text = stops.feed(reply.text) + stops.flush()
        reason = "stop" if stops.stopped else schemas.finish_reason(
            getattr(reply, "finish_reason", None) or getattr(last, "finish_reason", None))
        prompt_tokens, completion_tokens = _counts(reply if not stops.stopped else None, last)
        self._send_json(200, schemas.chat_completion(schemas.completion_id(), model.id, text,
                                                     reason, prompt_tokens, completion_tokens))

    def _chat_stream(self, model: ServedModel, request: Any, options: Any) -> None:
        cid, created = schemas.completion_id(), int(time.time())
        stops = StopMatcher(options.stop)
        self._streaming = True
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()

        def send(obj: Any) -> None:
            data = b"data: " + (obj if isinstance(obj, bytes) else json.dumps(
                obj, ensure_ascii=False).encode("utf-8")) + b"\n\n"
            self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
            self.wfile.flush()

        last, job = None, None
        try:
            send(schemas.chat_chunk(cid, model.id, created, {"role": "assistant",
                                                             "content": ""}))
            with closing(self._events("chat", request)) as stream:
                for what, item in stream:
                    if what == "end":
                        job = item
                        break
                    last = item
                    piece = stops.feed(getattr(item, "text", ""))
                    if piece:
                        send(schemas.chat_chunk(cid, model.id, created, {"content": piece}))
                    if stops.stopped:
                        break  # closing the stream cancels the job
            tail = stops.flush()
            if tail:
                send(schemas.chat_chunk(cid, model.id, created, {"content": tail}))
            error = getattr(last, "error", "") if last is not None else ""
            failed = job is not None and job.state is JobState.FAILED
            if error or failed or (_cut_short(job) and not stops.stopped):
                message = error or (job.error if failed else SHUTTING_DOWN)
                send({"error": {"message": message, "type": "server_error", "param": None,
                                "code": "generation_failed"}})
            else:
                reply = job.result if job is not None and not stops.stopped else None
                reason = "stop" if stops.stopped else schemas.finish_reason(
                    getattr(reply, "finish_reason", None) or getattr(last, "finish_reason", None))
                send(schemas.chat_chunk(cid, model.id, created, {}, reason))
                if options.include_usage:
                    send(schemas.usage_chunk(cid, model.id, created, *_counts(reply, last)))
            send(b"[DONE]")
            self.wfile.write(b"0\r\n\r\n")
            self.wfile.flush()
        except (ClientGone, BrokenPipeError, ConnectionResetError):
            self.close_connection = True  # events() has cancelled the job

    # -- images --------------------------------------------------------------------------------
    def _images(self, body: Any) -> None:
        model = self._pick(body, IMAGE)
        request = schemas.parse_image(body, model.spec)
        job = None
        try:
            with closing(self._events("txt2img", request)) as stream:
                for what, item in stream:
                    if what == "end":
                        job = item
        except ClientGone:
            self.close_connection = True
            return
        if job is None or job.state is not JobState.DONE:
            if job is not None and job.state is JobState.FAILED:
                raise ApiError(500, job.error or "The job failed.", type_="server_error",
                               code="generation_failed")
            raise ApiError(503, SHUTTING_DOWN, type_="server_error")
        data = [{"b64_json": base64.b64encode(Path(image.path).read_bytes()).decode("ascii"),
                 "revised_prompt": request.prompt, "seed": image.seed}
                for image in job.result or []]
        self._send_json(200, {"created": int(time.time()), "data": data})


def _cut_short(job: Any) -> bool:
    """The job was cancelled by the server (shutdown), not finished by the model."""
    if job is None:
        return False
    return job.state is JobState.CANCELLED or (
        job.state is JobState.DONE and getattr(job.result, "finish_reason", "") == "cancelled")


def _counts(reply: Any, last: Any) -> tuple[int, int]:
    """(prompt, completion) tokens: from the reply when there is one, else the last chunk."""
    source = reply if reply is not None else last
    if source is None:
        return 0, 0
    return int(getattr(source, "prompt_tokens", 0) or getattr(last, "prompt_tokens", 0) or 0), \
        int(getattr(source, "completion_tokens", 0) or 0)
