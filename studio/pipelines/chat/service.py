"""The ``chat`` job handler: one :class:`ChatRequest` in, a streamed :class:`ChatReply` out.

Every chunk is reported through ``progress.partial(chunk)`` as it arrives and as
``progress(step=tokens so far, total=max_new_tokens)``. A model spec ``openai:BASE_URL#MODEL``
goes to the remote backend (:mod:`studio.pipelines.chat.remote`), anything else to the local one.
A reply cut short by Stop is returned (finish_reason "cancelled"), so the job ends ``done`` and
the text is kept; an error in the middle of a reply fails the job after the partial text has
been reported.
"""

from __future__ import annotations

import importlib
import time
from collections.abc import Callable, Iterable
from typing import Any

from studio.config import Paths, Settings
from studio.jobs import CancelToken, ProgressSink, UserFacingError
from studio.pipelines.chat.types import ChatChunk, ChatReply, ChatRequest

REMOTE_PREFIX = "openai:"


def parse_remote_spec(spec: str) -> tuple[str, str]:
    """``openai:BASE_URL#MODEL`` → (base_url, model); raises UserFacingError when malformed."""
    body = spec[len(REMOTE_PREFIX):] if spec.startswith(REMOTE_PREFIX) else spec
    base_url, sep, model = body.rpartition("#")
    if not sep or not base_url.strip() or not model.strip():
        raise UserFacingError(f"{spec!r} is not a remote model: write openai:BASE_URL#MODEL, "
                              "e.g. openai:http://localhost:11434/v1#llama3.2")
    return base_url.strip(), model.strip()


def is_remote(spec: str) -> bool:
    return str(spec).startswith(REMOTE_PREFIX)


class ChatService:
    """Runs chat requests on the GPU worker: local models through one cached backend."""

    def __init__(self, settings_getter: Callable[[], Settings],
                 paths_getter: Callable[[], Paths]) -> None:
        self._settings = settings_getter
        self._paths = paths_getter
        self._local: Any = None

    @property
    def local(self) -> Any:
        """The local backend (built on first use; it owns the chat model cache)."""
        if self._local is None:
            from studio.pipelines.chat.local import LocalChatBackend

            self._local = LocalChatBackend(self._settings, self._paths)
        return self._local

    def remote_backend(self, spec: str) -> Any:
        """A remote backend for ``openai:BASE_URL#MODEL``, with the endpoint's API key."""
        base_url, model = parse_remote_spec(spec)
        try:
            remote = importlib.import_module("studio.pipelines.chat.remote")
        except ImportError as exc:
            raise UserFacingError("Remote models are not available in this build "
                                  f"(studio.pipelines.chat.remote: {exc}).") from exc
        api_key = None
        for endpoint in self._settings().remote_endpoints:
            if str(endpoint.get("base_url", "")).rstrip("/") == base_url.rstrip("/"):
                resolver = getattr(remote, "resolve_api_key", None)
                api_key = resolver(endpoint) if resolver else endpoint.get("api_key")
                break
        return remote.RemoteChatBackend(base_url, model, api_key)

    def run(self, request: ChatRequest, progress: ProgressSink, cancel: CancelToken) -> ChatReply:
        """The job handler for kind ``"chat"``."""
        try:
            request.validate()
        except ValueError as exc:
            raise UserFacingError(str(exc)) from exc
        total = request.max_new_tokens
        last: list[ChatChunk] = []

        def report(chunk: ChatChunk) -> None:
            last[:] = [chunk]
            progress.partial(chunk)
            progress(chunk.completion_tokens, total)

        if is_remote(request.model):
            progress.message("Connecting…")
            reply = self._consume(self.remote_backend(request.model).stream(request, cancel),
                                  report)
        else:
            progress.message("Loading model…")
            local = self.local
            # Loading is reported before generation so the status line is honest.
            local.load(request.model)
            progress.message("Generating…")
            reply = local.generate(request, cancel, report)
        if reply.finish_reason == "error":
            error = last[0].error if last and last[0].error else "the reply stopped with an error"
            raise UserFacingError(f"The reply was cut short: {error}")
        return reply

    @staticmethod
    def _consume(chunks: Iterable[ChatChunk], report: Callable[[ChatChunk], None]) -> ChatReply:
        """Collect a stream of chunks into a reply (the remote path)."""
        started = time.perf_counter()
        first = 0.0
        texts: list[str] = []
        end = ChatChunk(finish_reason="stop")
        for chunk in chunks:
            if chunk.text and not first:
                first = time.perf_counter() - started
            texts.append(chunk.text)
            report(chunk)
            end = chunk
        return ChatReply(text="".join(texts), completion_tokens=end.completion_tokens,
                         prompt_tokens=end.prompt_tokens, finish_reason=end.finish_reason or "stop",
                         seconds=time.perf_counter() - started, time_to_first_token=first,
                         dropped_messages=end.dropped_messages, warnings=list(end.warnings))
