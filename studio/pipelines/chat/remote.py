"""A chat backend that talks to any OpenAI-compatible server (vLLM, Ollama, LM Studio, llama.cpp
server, text-generation-webui, ``studio serve``) over plain HTTP with server-sent events.

Stdlib only (``http.client``): no new dependency, and direct access to the socket, which is what
makes Stop prompt — a small watcher thread shuts the socket down the moment the cancel token is
set, so a read blocked on a quiet server returns at once instead of after the read timeout.

Sampling: ``temperature``, ``top_p``, ``max_tokens`` and ``seed`` are standard OpenAI fields.
``top_k`` and ``repetition_penalty`` are not; vLLM, llama.cpp server, text-generation-webui and
``studio serve`` accept them as extra fields, so they are sent only when they change something
(``top_k > 0``, ``repetition_penalty != 1``) and, if the server rejects the request naming one of
them, the request is sent once more without them. ``stream_options.include_usage`` asks for exact
token counts; without it the count is the number of streamed content pieces (one token each on the
servers above).

Complete mode (``request.complete``) posts the raw text to ``/v1/completions`` as ``prompt`` and
reads ``choices[].text``. A reply continued from a chosen token (``request.continue_reply``)
ends the messages with its beginning and asks ``continue_final_message: true,
add_generation_prompt: false`` (vLLM's fields, which studio serve takes too). Token
probabilities (``request.logprobs``) are asked for as OpenAI spells them (chat: ``logprobs:
true`` + ``top_logprobs``; completions: ``logprobs: K``, at most 5) among the optional fields,
and read from either answer shape.

Errors: before the first token a failure raises :class:`~studio.core.jobs.UserFacingError` with a
message a person can act on; after it, the stream ends with a chunk whose ``finish_reason`` is
``"error"``, so the text so far is kept.
"""

from __future__ import annotations

import http.client
import json
import re
import socket
import ssl
import threading
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from studio import __version__
from studio.core.jobs import CancelToken, UserFacingError
from studio.pipelines.chat.types import ChatChunk, ChatRequest, TokenLogprob

if TYPE_CHECKING:
    from studio.core.config import Paths

SPEC_PREFIX = "openai:"
DEFAULT_TIMEOUT = 120.0  # seconds without a byte from the server (a big model may load first)
CONNECT_TIMEOUT = 10.0
OPTIONAL_FIELDS = ("top_k", "repetition_penalty", "stream_options", "logprobs")
COMPLETIONS_MAX_LOGPROBS = 5  # the legacy /v1/completions allows at most 5 alternatives


def parse_model_spec(spec: str) -> tuple[str, str]:
    """``"openai:BASE_URL#MODEL"`` → ``(BASE_URL, MODEL)``; raises ValueError when malformed.

    The one parser of remote specs. It splits at the FIRST ``#``: a base URL cannot carry a
    fragment, while a model id may contain ``#``, so everything after the first ``#`` is the model.
    """
    text = str(spec).strip()
    example = "e.g. openai:http://localhost:11434/v1#llama3.2"
    if not text.startswith(SPEC_PREFIX):
        raise ValueError(f"{redact(spec)!r} is not a remote model: write openai:BASE_URL#MODEL, {example}.")
    base, sep, model = text[len(SPEC_PREFIX):].partition("#")
    base, model = base.strip().rstrip("/"), model.strip()
    parts = urlsplit(base)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"{redact(base)!r} is not an http(s) URL: write openai:BASE_URL#MODEL, "
                         f"{example}.")
    if not sep or not model:
        raise ValueError(f"No model named in {redact(spec)!r}: write openai:BASE_URL#MODEL, "
                         f"e.g. openai:{redact(base)}#MODEL.")
    return base, model


_USERINFO = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://)[^/@\s]+@")


def redact(text: str, *secrets: str | None) -> str:
    """``text`` without credentials: ``scheme://user:password@host`` loses its ``user:password@``
    (a proxy's or a gateway's, wherever it appears) and each of ``secrets`` becomes ``***``."""
    text = _USERINFO.sub(r"\1", str(text))
    for secret in secrets:
        if secret and len(secret) >= 4:
            text = text.replace(secret, "***")
    return text


def make_spec(base_url: str, model: str) -> str:
    """The spec :func:`parse_model_spec` reads back: ``openai:BASE_URL#MODEL``."""
    return f"{SPEC_PREFIX}{str(base_url).strip().rstrip('/')}#{str(model).strip()}"


def is_remote_spec(spec: str) -> bool:
    """True for ``openai:…`` specs (well-formed or not: :func:`parse_model_spec` says which)."""
    return str(spec).strip().startswith(SPEC_PREFIX)


def _error_text(body: bytes) -> str:
    """The human part of an error body: OpenAI's ``{"error": {"message"}}``, or the raw text."""
    text = body.decode("utf-8", "replace").strip()
    try:
        data = json.loads(text)
    except ValueError:
        return text[:300]
    err = data.get("error", data) if isinstance(data, dict) else data
    if isinstance(err, dict):
        return str(err.get("message") or err.get("detail") or err)[:300]
    return str(err)[:300]


def _finish_reason(value: Any) -> str:
    return "length" if value == "length" else "stop"


class RemoteChatBackend:
    """:class:`~studio.pipelines.chat.types.ChatBackend` for one model on one OpenAI-compatible
    server. ``base_url`` may end in ``/v1`` or not; ``timeout`` is the longest silence tolerated
    while waiting for the server (seconds)."""

    def __init__(self, base_url: str, model: str, api_key: str | None = None,
                 timeout: float = DEFAULT_TIMEOUT,
                 connect_timeout: float = CONNECT_TIMEOUT) -> None:
        self.base_url = base_url.rstrip("/")
        self.model = model
        self.api_key = api_key or None
        self.timeout = float(timeout)
        self.connect_timeout = float(connect_timeout)
        parts = urlsplit(self.base_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"{redact(base_url)!r} is not an http(s) URL.")
        self._parts = parts
        #: the URL as messages show it: never the user:password@ a proxy or gateway URL may hold
        self.where = redact(self.base_url)
        prefix = parts.path.rstrip("/")
        self._prefix = prefix if prefix.endswith("/v1") else prefix + "/v1"

    @classmethod
    def from_spec(cls, spec: str, api_key: str | None = None, **kwargs: Any) -> RemoteChatBackend:
        """A backend for ``openai:BASE_URL#MODEL``."""
        base, model = parse_model_spec(spec)
        return cls(base, model, api_key=api_key, **kwargs)

    # -- HTTP plumbing -------------------------------------------------------------------------
    def _connect(self) -> http.client.HTTPConnection:
        p = self._parts
        if p.scheme == "https":
            conn: http.client.HTTPConnection = http.client.HTTPSConnection(
                p.hostname or "", p.port, timeout=self.connect_timeout,
                context=ssl.create_default_context())
        else:
            conn = http.client.HTTPConnection(p.hostname or "", p.port,
                                              timeout=self.connect_timeout)
        try:
            conn.connect()
        except ConnectionRefusedError as exc:
            raise UserFacingError(f"Cannot reach {self.where}: connection refused — is the "
                                  "server running?") from exc
        except socket.gaierror as exc:
            raise UserFacingError(f"Cannot reach {self.where}: unknown host "
                                  f"{p.hostname!r}.") from exc
        except TimeoutError as exc:
            raise UserFacingError(f"Cannot reach {self.where}: no answer within "
                                  f"{self.connect_timeout:g} s.") from exc
        except ssl.SSLError as exc:
            raise UserFacingError(f"Cannot reach {self.where}: TLS failed ({self._redact(exc)}).") from exc
        except OSError as exc:
            raise UserFacingError(f"Cannot reach {self.where}: "
                                  f"{self._redact(exc.strerror or exc)}.") from exc
        conn.sock.settimeout(self.timeout)  # from now on: the longest silence we wait through
        return conn

    def _redact(self, exc: object) -> str:
        """``exc``'s text without credentials: URLs' user:password@ and the API key."""
        return redact(str(exc), self.api_key)

    def _headers(self, stream: bool) -> dict[str, str]:
        headers = {"User-Agent": f"studio/{__version__}",
                   "Accept": "text/event-stream" if stream else "application/json"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        return headers

    def _http_error(self, status: int, body: bytes, what: str) -> UserFacingError:
        detail = redact(_error_text(body), self.api_key)
        where = self.where
        if status in (401, 403):
            return UserFacingError(f"The server at {where} refused the API key (HTTP {status}: "
                                   f"{detail}). Check the key for this server.")
        if status == 404:
            if "model" in detail.lower() or what == "chat":
                return UserFacingError(f"The server at {where} has no model {self.model!r} "
                                       f"(HTTP 404: {detail}).")
            return UserFacingError(f"{where} has no {self._prefix}/models — is it an "
                                   "OpenAI-compatible server?")
        if status == 429:
            return UserFacingError(f"The server at {where} is busy or rate-limited (HTTP 429: "
                                   f"{detail}). Try again in a moment.")
        if status >= 500:
            return UserFacingError(f"The server at {where} failed (HTTP {status}: {detail}).")
        if "continue_final_message" in detail:
            return UserFacingError(f"The server at {where} cannot continue a reply from a "
                                   f"chosen token (HTTP {status}: {detail}); vLLM and studio "
                                   "serve can (continue_final_message), or branch with a local "
                                   "model.")
        return UserFacingError(f"The server at {where} rejected the request (HTTP {status}: "
                               f"{detail}).")

    def _timeout_error(self, exc: BaseException) -> UserFacingError:
        return UserFacingError(f"The server at {self.where} sent nothing for "
                               f"{self.timeout:g} s — it may be loading the model or overloaded. "
                               "Try again, or allow a longer wait.")

    # -- ChatBackend ---------------------------------------------------------------------------
    def list_models(self) -> list[str]:
        """Model ids from ``GET /v1/models``."""
        conn = self._connect()
        try:
            conn.request("GET", f"{self._prefix}/models", headers=self._headers(False))
            resp = conn.getresponse()
            body = resp.read()
        except TimeoutError as exc:
            raise self._timeout_error(exc) from exc
        except (OSError, http.client.HTTPException) as exc:
            raise UserFacingError(f"{self.where} broke off: {self._redact(exc)}") from exc
        finally:
            conn.close()
        if resp.status != 200:
            raise self._http_error(resp.status, body, "models")
        try:
            data = json.loads(body)
            return [str(m["id"]) for m in data["data"]]
        except (ValueError, KeyError, TypeError) as exc:
            raise UserFacingError(f"{self.where}{self._prefix}/models did not answer with an "
                                  "OpenAI model list.") from exc

    def payload(self, request: ChatRequest, extras: bool = True) -> dict[str, Any]:
        """The JSON body for ``request`` (``extras``: the non-standard fields, see module doc)."""
        body: dict[str, Any] = {"model": self.model}
        if request.complete:
            body["prompt"] = request.prompt_text()
        else:
            body["messages"] = [{"role": m["role"], "content": message_content(m)}
                                for m in request.messages]
        body.update({
            "stream": True,
            "temperature": request.temperature,
            "top_p": request.top_p,
            "max_tokens": request.max_new_tokens,
        })
        if request.seed is not None:
            body["seed"] = request.seed
        if request.continue_reply:  # vLLM's and studio serve's way; others refuse it (said)
            body.update(continue_final_message=True, add_generation_prompt=False)
        if extras:
            body["stream_options"] = {"include_usage": True}
            if request.logprobs is not None and request.complete:
                body["logprobs"] = min(request.logprobs, COMPLETIONS_MAX_LOGPROBS)
            elif request.logprobs is not None:
                body["logprobs"], body["top_logprobs"] = True, request.logprobs
            if request.top_k > 0:
                body["top_k"] = request.top_k
            if request.repetition_penalty != 1.0:
                body["repetition_penalty"] = request.repetition_penalty
        return body

    @staticmethod
    def route(request: ChatRequest) -> str:
        """Where a request goes: ``/completions`` in Complete mode, else ``/chat/completions``."""
        return "/completions" if request.complete else "/chat/completions"

    def _open_stream(self, request: ChatRequest) -> tuple[http.client.HTTPConnection,
                                                          http.client.HTTPResponse,
                                                          socket.socket]:
        for extras in (True, False):
            conn = self._connect()
            # Kept here: http.client drops conn.sock when the response is delimited by close.
            sock = conn.sock
            data = json.dumps(self.payload(request, extras)).encode("utf-8")
            headers = {**self._headers(True), "Content-Type": "application/json"}
            try:
                conn.request("POST", f"{self._prefix}{self.route(request)}", body=data,
                             headers=headers)
                resp = conn.getresponse()
            except TimeoutError as exc:
                conn.close()
                raise self._timeout_error(exc) from exc
            except (OSError, http.client.HTTPException) as exc:
                conn.close()
                raise UserFacingError(f"{self.where} broke off the connection: {self._redact(exc)}") from exc
            if resp.status == 200:
                return conn, resp, sock
            try:
                body = resp.read()
            except OSError:
                body = b""
            conn.close()
            # Servers that validate strictly (OpenAI itself) reject fields they do not know.
            if resp.status in (400, 422) and extras and any(
                    f.encode() in body for f in OPTIONAL_FIELDS):
                continue
            raise self._http_error(resp.status, body, "chat")
        raise AssertionError("unreachable")

    def stream(self, request: ChatRequest, cancel: CancelToken) -> Iterator[ChatChunk]:
        """Stream the reply; stops within one chunk (and at once if blocked) on ``cancel``."""
        conn, resp, sock = self._open_stream(request)
        done = threading.Event()
        watcher = threading.Thread(target=self._watch, args=(sock, cancel, done), daemon=True,
                                   name="studio-remote-cancel")
        watcher.start()
        try:
            yield from self._read_events(resp, cancel)
        finally:
            done.set()
            resp.close()
            conn.close()

    @staticmethod
    def _watch(sock: socket.socket, cancel: CancelToken, done: threading.Event) -> None:
        """Shut the socket down when the user cancels, to wake a read blocked on the server."""
        while not done.wait(0.05):
            if cancel.cancelled:
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                return

    def _read_events(self, resp: http.client.HTTPResponse,
                     cancel: CancelToken) -> Iterator[ChatChunk]:
        parser = EventParser(self)
        while True:
            if cancel.cancelled:
                yield parser.final("cancelled")
                return
            try:
                raw = resp.readline()
            except TimeoutError as exc:
                if cancel.cancelled:
                    continue
                yield parser.failed(self._timeout_error(exc))
                return
            except (OSError, http.client.HTTPException, ValueError) as exc:
                if cancel.cancelled:
                    continue
                yield parser.failed(UserFacingError(
                    f"The connection to {self.where} broke: {self._redact(exc)}"))
                return
            if not raw and cancel.cancelled:
                continue
            yield from parser.feed(raw.decode("utf-8", "replace") if raw else None)
            if parser.ended:
                return


class EventParser:
    """Server-sent events of an OpenAI chat stream → :class:`ChatChunk` s. Before the first
    token a failure raises :class:`UserFacingError`; after it, it becomes the final chunk."""

    def __init__(self, backend: RemoteChatBackend) -> None:
        self.backend = backend
        self.pieces = 0  # content pieces seen (the token count when the server sends no usage)
        self.usage: dict[str, Any] = {}
        self.finish: str | None = None
        self.started = False
        self.ended = False
        self._data: list[str] = []

    def final(self, reason: str, error: str = "") -> ChatChunk:
        self.ended = True
        completion = int(self.usage.get("completion_tokens") or self.pieces)
        return ChatChunk(text="", completion_tokens=completion,
                         prompt_tokens=int(self.usage.get("prompt_tokens") or 0),
                         finish_reason=reason, error=error)

    def failed(self, error: UserFacingError) -> ChatChunk:
        if not self.started:
            raise error
        return self.final("error", str(error))

    def feed(self, line: str | None) -> list[ChatChunk]:
        """One line of the stream (None at its end)."""
        if line is None:
            if self.finish is not None:
                return [self.final(self.finish)]
            return [self.failed(UserFacingError(
                f"The server at {self.backend.where} closed the connection before the reply "
                "was complete."))]
        line = line.rstrip("\r\n")
        if line.startswith("data:"):
            self._data.append(line[5:].lstrip(" "))
            return []
        if line or not self._data:  # comments (": ping"), event:/id: fields, stray blanks
            return []
        data, self._data = "\n".join(self._data), []
        if data.strip() == "[DONE]":
            return [self.final(self.finish or "stop")]
        try:
            event = json.loads(data)
        except ValueError:
            return [self.final("error", f"The server at {self.backend.where} sent something "
                                        f"that is not JSON: {data[:100]!r}")]
        if not isinstance(event, dict):
            return []
        if "error" in event:
            return [self.failed(UserFacingError(
                f"The server at {self.backend.where} reported an error: "
                + _error_text(json.dumps(event).encode())))]
        if isinstance(event.get("usage"), dict):
            self.usage = event["usage"]
        out = []
        for choice in event.get("choices") or []:
            if choice.get("index", 0) != 0:
                continue
            delta = choice.get("delta")
            text = (delta.get("content") if isinstance(delta, dict) else choice.get("text")) or ""
            scored = _logprobs(choice.get("logprobs"))
            if text or scored:
                self.started = True
                self.pieces += 1
                out.append(ChatChunk(text=str(text), completion_tokens=self.pieces,
                                     logprobs=scored))
            if choice.get("finish_reason"):
                self.finish = _finish_reason(choice["finish_reason"])
        return out


def _logprobs(data: Any) -> list[TokenLogprob]:
    """A streamed choice's ``logprobs`` in either OpenAI shape (chat: ``content`` entries;
    completions: parallel ``tokens`` / ``token_logprobs`` / ``top_logprobs`` lists); anything
    malformed reads as none — the text is what matters."""
    out: list[TokenLogprob] = []
    try:
        if isinstance(data, dict) and isinstance(data.get("content"), list):
            for e in data["content"]:
                top = [(str(t["token"]), float(t["logprob"])) for t in e.get("top_logprobs") or []]
                out.append(TokenLogprob(str(e["token"]), float(e["logprob"]), top))
        elif isinstance(data, dict) and isinstance(data.get("tokens"), list):
            tops = data.get("top_logprobs") or [None] * len(data["tokens"])
            for token, logprob, alts in zip(data["tokens"], data["token_logprobs"], tops,
                                            strict=True):
                top = sorted(((str(t), float(lp)) for t, lp in (alts or {}).items()),
                             key=lambda pair: -pair[1])
                out.append(TokenLogprob(str(token), float(logprob), top))
    except (KeyError, TypeError, ValueError, AttributeError):
        return []
    return out


def backend_for_spec(spec: str, paths: Paths | None = None, timeout: float = DEFAULT_TIMEOUT
                     ) -> RemoteChatBackend:
    """The backend for ``openai:BASE_URL#MODEL`` with the API key stored for BASE_URL (if any)."""
    from studio.library.secrets import get_api_key

    try:
        base, model = parse_model_spec(spec)
    except ValueError as exc:
        raise UserFacingError(str(exc)) from exc
    return RemoteChatBackend(base, model, api_key=get_api_key(base, paths), timeout=timeout)


def resolve_api_key(endpoint: dict, paths: Paths | None = None) -> str | None:
    """The API key for a ``Settings.remote_endpoints`` entry: stored under its ``api_key_ref``
    (or, without one, its base URL) in :mod:`studio.library.secrets`."""
    from studio.library.secrets import get_api_key

    ref = str(endpoint.get("api_key_ref") or endpoint.get("base_url") or "").strip()
    return get_api_key(ref, paths) if ref else None


MAX_IMAGE_SIDE = 1024  # pixels: what is sent of an attached image (vision models see far less)


def message_content(message: dict[str, Any]) -> Any:
    """A message's OpenAI ``content``: its text, or with images the parts a vision model on the
    server reads (text, then each image as a PNG data URL at most MAX_IMAGE_SIDE a side)."""
    images = message.get("images") or []
    if not images:
        return message["content"]
    import base64
    import io

    from PIL import Image

    parts: list[dict[str, Any]] = [{"type": "text", "text": message["content"]}]
    for path in images:
        try:
            with Image.open(path) as im:
                im = im.convert("RGB")
        except (OSError, ValueError) as exc:
            raise UserFacingError(f"The image {path} cannot be read ({exc}); attach it "
                                  "again.") from exc
        im.thumbnail((MAX_IMAGE_SIDE, MAX_IMAGE_SIDE))
        buf = io.BytesIO()
        im.save(buf, format="PNG")
        url = "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")
        parts.append({"type": "image_url", "image_url": {"url": url}})
    return parts
