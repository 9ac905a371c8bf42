"""What every request passes before it reaches a route: Host, Origin, API key, type and size.

A web page the user happens to visit can send requests to ``http://127.0.0.1:8000`` (CSRF), and a
name it controls can be re-pointed at 127.0.0.1 (DNS rebinding). So, as an ASGI middleware in
front of FastAPI's routing:

* the ``Host`` header must be a loopback name (``localhost``, ``127.0.0.1``, ``[::1]``), the
  address the server is bound to, or a name given with ``--allow-host`` (else 403);
* a browser's ``Origin`` header, when sent, must be a loopback origin or one given with
  ``--cors-origin`` (else 403);
* with an API key, every ``/v1`` request needs ``Authorization: Bearer KEY`` (else 401);
* a POST body must be ``application/json`` (415) — a form or ``text/plain`` body, which a page can
  send without asking the browser first, is never read;
* a body is cut off at :data:`MAX_BODY` bytes whatever ``Content-Length`` says (absent, chunked or
  a lie): the bytes are counted as they arrive (413).
"""

from __future__ import annotations

import hmac
import json
from collections.abc import Iterable
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from studio.server.schemas import ApiError

if TYPE_CHECKING:
    from starlette.types import ASGIApp, Message, Receive, Scope, Send

MAX_BODY = 16 * 1024 * 1024
LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "::1"})
JSON_TYPES = ("application/json",)
FORM_TYPES = ("multipart/form-data",)


def host_name(value: str) -> str:
    """``"[::1]:8000"`` → ``"::1"``, ``"Example.com.:80"`` → ``"example.com"``."""
    value = value.strip().lower()
    if value.startswith("["):
        value = value[1:value.find("]")] if "]" in value else value[1:]
    elif value.count(":") == 1:
        value = value.split(":", 1)[0]
    return value.rstrip(".")


def allowed_hosts(bound: str, extra: Iterable[str]) -> frozenset[str]:
    """Loopback names, the bound address (unless a wildcard) and the ``--allow-host`` names."""
    names = set(LOOPBACK_NAMES) | {host_name(h) for h in extra if h.strip()}
    if bound not in ("", "0.0.0.0", "::"):
        names.add(host_name(bound if ":" not in bound else f"[{bound}]"))
    return frozenset(names)


def _origin_ok(origin: str, cors_origins: frozenset[str]) -> bool:
    if origin.rstrip("/") in cors_origins or "*" in cors_origins:
        return True
    parts = urlsplit(origin)
    return parts.scheme in ("http", "https") and (parts.hostname or "") in LOOPBACK_NAMES


class BodyTooLarge(ApiError):
    def __init__(self) -> None:
        super().__init__(413, f"The request body is over {MAX_BODY // 2**20} MiB.",
                         code="request_too_large")


class Guard:
    """The ASGI middleware described in the module's docstring."""

    def __init__(self, app: ASGIApp, *, hosts: frozenset[str], api_key: str | None,
                 cors_origins: frozenset[str], max_body: int = MAX_BODY) -> None:
        self.app = app
        self.hosts = hosts
        self.api_key = api_key
        self.cors_origins = cors_origins
        self.max_body = max_body

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        try:
            self._check(scope)
        except ApiError as err:
            await _send_error(send, err)
            return
        seen = 0

        async def counted() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_body:
                    raise BodyTooLarge()
            return message

        await self.app(scope, counted, send)

    def _check(self, scope: Scope) -> None:
        headers = {k.decode("latin-1").lower(): v.decode("latin-1")
                   for k, v in scope.get("headers", [])}
        host = host_name(headers.get("host", ""))
        if host not in self.hosts:
            raise ApiError(403, f"This server does not answer to the host name {host!r}: it "
                                "answers to localhost and 127.0.0.1 (a page on another site "
                                "could otherwise reach it). Start it with --allow-host "
                                f"{host or 'NAME'} to allow that name.", code="host_not_allowed")
        origin = headers.get("origin")
        if origin is not None and not _origin_ok(origin, self.cors_origins):
            raise ApiError(403, f"Requests from web pages on {origin} are refused: only this "
                                "machine's own pages may call this server. Start it with "
                                f"--cors-origin {origin} to allow that site.",
                           code="origin_not_allowed")
        path = scope.get("path", "")
        if self.api_key is not None and path.startswith("/v1"):
            given = headers.get("authorization", "")
            token = given[7:].strip() if given[:7].lower() == "bearer " else ""
            if not hmac.compare_digest(token.encode(), self.api_key.encode()):
                raise ApiError(401, "Incorrect API key provided." if token else
                               "You didn't provide an API key (Authorization: Bearer KEY).",
                               code="invalid_api_key")
        if scope.get("method") == "POST":
            ctype = headers.get("content-type", "").split(";", 1)[0].strip().lower()
            accepted = FORM_TYPES if path.endswith("/images/edits") else JSON_TYPES
            if ctype not in accepted:
                raise ApiError(415, f"Send the request body as {accepted[0]} (Content-Type: "
                                    f"{accepted[0]}), not {ctype or 'without a type'}.",
                               code="unsupported_media_type")
            length = headers.get("content-length")
            if length is not None and length.strip().isdigit() and int(length) > self.max_body:
                raise BodyTooLarge()


async def _send_error(send: Send, err: ApiError) -> None:
    data = json.dumps(err.body(), ensure_ascii=False).encode("utf-8")
    await send({"type": "http.response.start", "status": err.status,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(data)).encode()),
                            (b"connection", b"close")]})
    await send({"type": "http.response.body", "body": data})
