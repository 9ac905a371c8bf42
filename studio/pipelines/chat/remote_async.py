"""The remote chat backend on the I/O lane (issue 13): asyncio and httpx2 instead of
:mod:`http.client` and a watcher thread, with :class:`~studio.pipelines.chat.remote.
RemoteChatBackend`'s payloads, sentences and event parsing.
"""

from __future__ import annotations

import json
import socket
import ssl
from collections.abc import AsyncGenerator, AsyncIterator
from typing import Any

from studio.core.jobs import UserFacingError
from studio.pipelines.chat.remote import OPTIONAL_FIELDS, EventParser, RemoteChatBackend
from studio.pipelines.chat.types import ChatChunk, ChatRequest


class AsyncRemoteChat:
    """The same backend for the I/O lane: asyncio and httpx2 (the HTTP client huggingface_hub
    itself uses), so a remote reply never waits behind a job on the GPU worker and Stop is a
    task cancellation that aborts a blocked read at once (no watcher thread).

    Errors and the event parsing are :class:`RemoteChatBackend`'s: the same sentences, the same
    chunks."""

    def __init__(self, backend: RemoteChatBackend) -> None:
        self.backend = backend

    def _client(self) -> Any:
        import httpx2

        b = self.backend
        timeout = httpx2.Timeout(b.timeout, connect=b.connect_timeout)
        return httpx2.AsyncClient(timeout=timeout, trust_env=False)

    def _url(self, path: str) -> str:
        p = self.backend._parts
        host = f"[{p.hostname}]" if ":" in (p.hostname or "") else p.hostname
        port = f":{p.port}" if p.port else ""
        return f"{p.scheme}://{host}{port}{self.backend._prefix}{path}"

    def _transport_error(self, exc: BaseException) -> UserFacingError:
        import httpx2

        b = self.backend
        causes: list[BaseException] = []
        link = exc.__cause__ or exc.__context__
        while link is not None and len(causes) < 8:  # httpx2 → httpcore2 → OSError → the cause
            causes.append(link)
            link = link.__cause__ or link.__context__

        def caused_by(kind: type) -> bool:
            return any(isinstance(c, kind) for c in causes)

        if isinstance(exc, httpx2.ConnectTimeout):
            return UserFacingError(f"Cannot reach {b.where}: no answer within "
                                   f"{b.connect_timeout:g} s.")
        if isinstance(exc, httpx2.TimeoutException):
            return b._timeout_error(exc)
        if isinstance(exc, httpx2.ConnectError):
            if caused_by(socket.gaierror):
                return UserFacingError(f"Cannot reach {b.where}: unknown host "
                                       f"{b._parts.hostname!r}.")
            if caused_by(ConnectionRefusedError):
                return UserFacingError(f"Cannot reach {b.where}: connection refused — is the "
                                       "server running?")
            if caused_by(ssl.SSLError):
                return UserFacingError(f"Cannot reach {b.where}: TLS failed ({b._redact(exc)}).")
            return UserFacingError(f"Cannot reach {b.where}: {b._redact(exc)}.")
        return UserFacingError(f"The connection to {b.where} broke: {b._redact(exc)}")

    async def list_models(self) -> list[str]:
        """Model ids from ``GET /v1/models``."""
        import httpx2

        b = self.backend
        async with self._client() as client:
            try:
                resp = await client.get(self._url("/models"), headers=b._headers(False))
            except httpx2.HTTPError as exc:
                raise self._transport_error(exc) from exc
        if resp.status_code != 200:
            raise b._http_error(resp.status_code, resp.content, "models")
        try:
            return [str(m["id"]) for m in json.loads(resp.content)["data"]]
        except (ValueError, KeyError, TypeError) as exc:
            raise UserFacingError(f"{b.where}{b._prefix}/models did not answer with an "
                                  "OpenAI model list.") from exc

    async def stream(self, request: ChatRequest) -> AsyncGenerator[ChatChunk, None]:
        """Stream the reply. Cancel the task that iterates to stop it; the connection closes."""
        import httpx2

        b = self.backend
        async with self._client() as client:
            for extras in (True, False):
                body = json.dumps(b.payload(request, extras)).encode("utf-8")
                headers = {**b._headers(True), "Content-Type": "application/json"}
                try:
                    async with client.stream("POST", self._url(b.route(request)),
                                             content=body, headers=headers) as resp:
                        if resp.status_code != 200:
                            error = await resp.aread()
                            # Strict servers (OpenAI itself) reject fields they do not know.
                            if resp.status_code in (400, 422) and extras and any(
                                    f.encode() in error for f in OPTIONAL_FIELDS):
                                continue
                            raise b._http_error(resp.status_code, error, "chat")
                        async for chunk in self._events(resp):
                            yield chunk
                        return
                except httpx2.HTTPError as exc:
                    raise self._transport_error(exc) from exc

    async def _events(self, resp: Any) -> AsyncIterator[ChatChunk]:
        import httpx2

        parser = EventParser(self.backend)
        lines = resp.aiter_lines()
        while True:
            try:
                line = await lines.__anext__()
            except StopAsyncIteration:
                line = None
            except httpx2.TimeoutException as exc:
                yield parser.failed(self.backend._timeout_error(exc))
                return
            except httpx2.HTTPError as exc:
                yield parser.failed(UserFacingError(
                    f"The connection to {self.backend.where} broke: {self.backend._redact(exc)}"))
                return
            for chunk in parser.feed(line):
                yield chunk
            if parser.ended:
                return
