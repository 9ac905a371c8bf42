"""The ``chat`` job handler: one :class:`ChatRequest` in, a streamed :class:`ChatReply` out.

Every chunk is reported through ``progress.partial(chunk)`` as it arrives and as
``progress(step=tokens so far, total=max_new_tokens)``. A model spec ``openai:BASE_URL#MODEL``
goes to the remote backend (:mod:`studio.pipelines.chat.remote`), anything else to the local one.
A reply cut short by Stop is returned (finish_reason "cancelled"), so the job ends ``done`` and
the text is kept; an error in the middle of a reply fails the job after the partial text has
been reported.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

from studio.core.config import Paths, Settings
from studio.core.jobs import CancelToken, ProgressSink, UserFacingError, checked
from studio.pipelines.chat import remote
from studio.pipelines.chat.remote_async import AsyncRemoteChat
from studio.pipelines.chat.types import (
    AttentionMap,
    AttentionRequest,
    ChatChunk,
    ChatReply,
    ChatRequest,
    Embeddings,
    EmbedRequest,
)

if TYPE_CHECKING:
    from studio.pipelines.chat.local import LocalChatBackend


class ChatService:
    """Runs chat requests on the GPU worker: local models through one cached backend."""

    def __init__(self, settings_getter: Callable[[], Settings],
                 paths_getter: Callable[[], Paths]) -> None:
        self._settings = settings_getter
        self._paths = paths_getter
        self._local: LocalChatBackend | None = None

    @property
    def local(self) -> LocalChatBackend:
        """The local backend (built on first use; it owns the chat model cache)."""
        if self._local is None:
            from studio.pipelines.chat.local import LocalChatBackend

            self._local = LocalChatBackend(self._settings, self._paths)
        return self._local

    def remote_backend(self, spec: str) -> remote.RemoteChatBackend:
        """A remote backend for ``openai:BASE_URL#MODEL``, with the endpoint's API key.

        The key is the one stored for the endpoint when the URL is listed in Settings'
        ``remote_endpoints`` (under its ``api_key_ref``), else the one stored under the URL itself,
        so ``studio chat --model openai:URL#M`` works with a key saved for URL.
        """
        try:
            base_url, model = remote.parse_model_spec(spec)
        except ValueError as exc:
            raise UserFacingError(str(exc)) from exc
        paths = self._paths()
        endpoint = next((e for e in self._settings().remote_endpoints
                         if str(e.get("base_url", "")).strip().rstrip("/") == base_url), None)
        api_key = remote.resolve_api_key(endpoint, paths) if endpoint is not None else None
        if api_key:
            return remote.RemoteChatBackend(base_url, model, api_key)
        return remote.backend_for_spec(spec, paths)

    def run(self, request: ChatRequest, progress: ProgressSink, cancel: CancelToken) -> ChatReply:
        """The GPU lane's handler for kind ``"chat"`` (local models; remote ones too when run
        without an I/O lane, as a plain call)."""
        request = checked(request)
        total = request.max_new_tokens
        last: list[ChatChunk] = []

        def report(chunk: ChatChunk) -> None:
            last[:] = [chunk]
            progress.partial(chunk)
            progress(chunk.completion_tokens, total)

        if remote.is_remote_spec(request.model):
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

    async def arun(self, request: ChatRequest, progress: ProgressSink,
                   cancel: CancelToken) -> ChatReply:
        """The I/O lane's handler: a remote model's reply, streamed on the event loop. Stop
        cancels the task; the text so far is kept (finish_reason "cancelled")."""
        request = checked(request)
        if not remote.is_remote_spec(request.model):
            raise UserFacingError("Local chat models run on the GPU worker, not the I/O lane.")
        total = request.max_new_tokens
        started = time.perf_counter()
        first = 0.0
        texts: list[str] = []
        scored: list = []
        end = ChatChunk(finish_reason="stop")
        progress.message("Connecting…")
        stream = AsyncRemoteChat(self.remote_backend(request.model)).stream(request)
        try:
            async for chunk in stream:
                if chunk.text and not first:
                    first = time.perf_counter() - started
                texts.append(chunk.text)
                scored.extend(chunk.logprobs)
                progress.partial(chunk)
                progress(chunk.completion_tokens, total)
                end = chunk
        except asyncio.CancelledError:
            if not cancel.cancelled:
                raise
            end = ChatChunk(completion_tokens=end.completion_tokens,
                            prompt_tokens=end.prompt_tokens, finish_reason="cancelled")
            progress.partial(end)
        finally:
            await stream.aclose()
        reply = ChatReply(text="".join(texts), completion_tokens=end.completion_tokens,
                          prompt_tokens=end.prompt_tokens,
                          finish_reason=end.finish_reason or "stop",
                          seconds=time.perf_counter() - started, time_to_first_token=first,
                          dropped_messages=end.dropped_messages, warnings=list(end.warnings),
                          logprobs=scored)
        if reply.finish_reason == "error":
            raise UserFacingError(f"The reply was cut short: {end.error or 'an error'}")
        return reply

    @staticmethod
    def _consume(chunks: Iterable[ChatChunk], report: Callable[[ChatChunk], None]) -> ChatReply:
        """Collect a stream of chunks into a reply (the remote path)."""
        started = time.perf_counter()
        first = 0.0
        texts: list[str] = []
        scored: list = []
        end = ChatChunk(finish_reason="stop")
        for chunk in chunks:
            if chunk.text and not first:
                first = time.perf_counter() - started
            texts.append(chunk.text)
            scored.extend(chunk.logprobs)
            report(chunk)
            end = chunk
        return ChatReply(text="".join(texts), completion_tokens=end.completion_tokens,
                         prompt_tokens=end.prompt_tokens, finish_reason=end.finish_reason or "stop",
                         seconds=time.perf_counter() - started, time_to_first_token=first,
                         dropped_messages=end.dropped_messages, warnings=list(end.warnings),
                         conversation_tokens=end.conversation_tokens, logprobs=scored)


class _LocalModelService:
    """A job the chat service's local backend answers, on its model cache (a model loaded to
    chat is not loaded a second time); a remote model is refused with ``refusal``."""

    refusal = "{where} is on another server."

    def __init__(self, chat: ChatService) -> None:
        self.chat = chat

    def _local(self, model: str) -> LocalChatBackend:
        if remote.is_remote_spec(model):
            raise UserFacingError(self.refusal.format(where=remote.redact(model)))
        return self.chat.local


class EmbedService(_LocalModelService):
    """The ``embed`` job handler: a local chat model's embeddings."""

    refusal = "Embeddings come from local chat models only; {where} is on another server."

    def run(self, request: EmbedRequest, progress: ProgressSink,
            cancel: CancelToken) -> Embeddings:
        return self._local(request.model).embed(request, cancel)


class AttentionService(_LocalModelService):
    """The ``attention`` job handler: where a local chat model's last layer looked when it wrote
    a token."""

    refusal = "Attention is shown for local chat models only; {where} is on another server."

    def run(self, request: AttentionRequest, progress: ProgressSink,
            cancel: CancelToken) -> AttentionMap:
        local = self._local(request.model)
        progress.message("Reading the attention…")
        return local.attention(request, cancel)
