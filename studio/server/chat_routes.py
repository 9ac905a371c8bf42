"""``POST /v1/chat/completions`` and ``POST /v1/completions`` for ``studio serve``: a chat reply
or a text continuation (Complete mode: no chat template), whole or streamed as Server-Sent
Events, with OpenAI's ``logprobs`` when asked; and the prompt-length check in front of the queue
(shared with embeddings). Split out of :mod:`.app`, which keeps the server, the other routes and
the error handlers.

A streamed token's log-probabilities go out with the first piece of text that includes it (a
stop string may hold text back); tokens cut off by a stop string are left out."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import aclosing
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse

from studio.core.jobs import JobState
from studio.core.wording import count_of
from studio.server import chat_attention, chat_images, responses, schemas
from studio.server import documents as served_docs
from studio.server.catalog import CHAT, ServedModel
from studio.server.limits import Limits
from studio.server.openapi_doc import body_doc
from studio.server.schemas import ApiError
from studio.server.streaming import SHUTTING_DOWN, ClientGone, JobEvents, StopMatcher

if TYPE_CHECKING:
    from tokenizers import Tokenizer

    from studio.core.jobs import JobSnapshot
    from studio.pipelines.chat.types import ChatChunk, ChatReply, ChatRequest, TokenLogprob
    from studio.server.app import StudioServer
    from studio.server.schemas import ChatOptions

CHARS_PER_TOKEN = 4  # the cheap first check of a prompt's length, before any tokenizer runs


def add_chat_routes(app: FastAPI, server: StudioServer,
                    body_of: Callable[[Request], Awaitable[Any]],
                    pick: Callable[..., ServedModel], job_events: JobEvents) -> None:
    """Add the chat and text completion routes to ``app`` (``body_of``, ``pick`` and
    ``job_events``: app.py's helpers every route shares)."""

    async def parsed(request: Request, parse: Callable) -> tuple[ServedModel, Any, Any]:
        """The served chat model a request's body names, the job request ``parse`` makes of the
        body and its options (attention checked against the model)."""
        body = await body_of(request)
        served = pick(body, CHAT)
        job_request, options = parse(body, served.spec)
        chat_attention.check(served, options.attention)
        return served, job_request, options

    @app.post("/v1/chat/completions", summary="A chat reply (stream: Server-Sent Events)",
              openapi_extra=body_doc(schemas.ChatBody))
    async def chat(request: Request) -> Response:
        served, job_request, options = await parsed(request, schemas.parse_chat)
        folder = await chat_images.attach(options.image_parts, job_request, served, server)
        try:
            cited = await served_docs.ground_request(server.documents, options.collection,
                                                     job_request)
            extra = {} if cited is None else {"studio_citations": cited}
            await check_prompt(served, job_request.messages, server.limits)
            answer = await _answer(job_events, request, served, job_request, options, extra)
        except BaseException:
            chat_images.removing(folder, None)
            raise
        return chat_images.removing(folder, answer)

    @app.post("/v1/completions", summary="A text completion: the prompt continued as written, "
              "no chat template (stream: Server-Sent Events)",
              openapi_extra=body_doc(schemas.CompletionBody))
    async def completions(request: Request) -> Response:
        served, job_request, options = await parsed(request, schemas.parse_completion)
        await check_prompt(served, job_request.messages, server.limits, "prompt")
        return await _answer(job_events, request, served, job_request, options, {})


class _Run:
    """One reply's job, read through the stop strings: :meth:`pieces` yields each chunk's text
    that may be sent and its scored tokens; then ``last`` is the last chunk and ``job`` the end
    snapshot (None when a stop string ended it: closing the stream cancels the job)."""

    def __init__(self, stops: StopMatcher) -> None:
        self.stops = stops
        self.last: ChatChunk | None = None
        self.job: JobSnapshot | None = None
        self.prompt_ids: list[int] = []  # a local reply with logprobs: what it read

    async def pieces(self, job_events: JobEvents, request: Request,
                     job_request: ChatRequest
                     ) -> AsyncIterator[tuple[str, list[TokenLogprob]]]:
        async with aclosing(job_events(request, job_request, "chat")) as stream:
            async for what, item in stream:
                if what == "end":
                    self.job = item
                    return
                self.last = item
                self.prompt_ids = list(getattr(item, "prompt_ids", None) or self.prompt_ids)
                yield self.stops.feed(getattr(item, "text", "")), list(
                    getattr(item, "logprobs", []))
                if self.stops.stopped:
                    return


async def _answer(job_events: JobEvents, request: Request, served: ServedModel,
                  job_request: ChatRequest, options: ChatOptions,
                  extra: dict[str, Any]) -> Response:
    """The reply to a chat (or, for a Complete-mode request, a text) completion: streamed, or
    whole once the job ends."""
    if options.stream:
        return StreamingResponse(_stream(job_events, request, served, job_request, options,
                                         extra),
                                 media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache"})
    stops = StopMatcher(options.stop)
    run = _Run(stops)
    text = ""
    scored: list[TokenLogprob] = []
    try:
        async for piece, tokens in run.pieces(job_events, request, job_request):
            text += piece
            scored.extend(tokens)
    except ClientGone:
        return Response(status_code=499)  # nobody reads it
    last, job = run.last, run.job
    text += stops.flush()
    reply = job.result if job is not None else None
    error_text = getattr(last, "error", "") if last is not None else ""
    if job is not None and job.state is JobState.FAILED or error_text:
        raise ApiError(500, (job.error if job and job.error else error_text)
                       or "The job failed.", type_="server_error", code="generation_failed")
    if _cut_short(job) and not stops.stopped:
        raise ApiError(503, SHUTTING_DOWN, type_="server_error")
    if not text and reply is not None and not stops.stopped:
        text = stops.feed(reply.text) + stops.flush()
    reason = "stop" if stops.stopped else responses.finish_reason(
        getattr(reply, "finish_reason", None) or getattr(last, "finish_reason", None))
    prompt_tokens, completion_tokens = _counts(reply if not stops.stopped else None, last)
    whole = responses.text_completion if job_request.complete else responses.chat_completion
    logprobs = scored if options.logprobs else None
    if options.attention:
        try:
            extra = extra | {chat_attention.FIELD: await chat_attention.attention_of(
                job_events, request, served, run.prompt_ids, scored)}
        except ClientGone:
            return Response(status_code=499)
    return JSONResponse(whole(responses.completion_id(job_request.complete), served.id, text,
                              reason, prompt_tokens, completion_tokens, logprobs) | extra)


async def _stream(job_events: JobEvents, request: Request, served: ServedModel,
                  job_request: ChatRequest, options: ChatOptions,
                  extra: dict[str, Any]) -> AsyncIterator[bytes]:
    complete = job_request.complete
    cid, created = responses.completion_id(complete), int(time.time())
    stops = StopMatcher(options.stop)
    want_logprobs = options.logprobs
    pending: list[TokenLogprob] = []  # tokens whose logprobs go out with the next piece of text
    sent: list[TokenLogprob] = []  # the tokens whose text went out (their attention, when asked)
    offset = 0  # text completions: where the next token starts in the reply

    def sse(obj: Any) -> bytes:
        return b"data: " + (obj if isinstance(obj, bytes) else json.dumps(
            obj, ensure_ascii=False).encode("utf-8")) + b"\n\n"

    def piece(text: str, reason: str | None = None) -> bytes:
        nonlocal offset
        logprobs = list(pending) if want_logprobs else None
        sent.extend(pending)
        pending.clear()
        if complete:
            out = responses.text_chunk(cid, served.id, created, text, reason, logprobs, offset)
            offset += sum(len(t.token) for t in logprobs or [])
            return sse(out)
        return sse(responses.chat_chunk(cid, served.id, created, {"content": text} if text or
                                      reason is None else {}, reason, logprobs))

    if not complete:
        yield sse(responses.chat_chunk(cid, served.id, created, {"role": "assistant",
                                                               "content": ""}) | extra)
    run = _Run(stops)
    try:
        async for text, tokens in run.pieces(job_events, request, job_request):
            pending.extend(tokens)
            if text:
                yield piece(text)
    except ClientGone:
        return  # events() has cancelled the job
    last, job = run.last, run.job
    tail = stops.flush()
    if tail:
        yield piece(tail)
    error_text = getattr(last, "error", "") if last is not None else ""
    failed = job is not None and job.state is JobState.FAILED
    if error_text or failed or (_cut_short(job) and not stops.stopped):
        message = error_text or (job.error if failed and job else SHUTTING_DOWN)
        yield sse({"error": {"message": message, "type": "server_error", "param": None,
                             "code": "generation_failed"}})
    else:
        reply = job.result if job is not None and not stops.stopped else None
        reason = "stop" if stops.stopped else responses.finish_reason(
            getattr(reply, "finish_reason", None) or getattr(last, "finish_reason", None))
        if stops.stopped:
            pending.clear()  # tokens past the stop string are not part of the answer
        yield piece("", reason)
        if options.attention:
            try:
                seen = await chat_attention.attention_of(job_events, request, served,
                                                         run.prompt_ids, sent)
            except ClientGone:
                return
            yield sse({"id": cid, "object": "text_completion" if complete else
                       "chat.completion.chunk", "created": created, "model": served.id,
                       "choices": [], chat_attention.FIELD: seen})
        if options.include_usage:
            yield sse(responses.usage_chunk(cid, served.id, created, *_counts(reply, last),
                                          text=complete))
    yield sse(b"[DONE]")


# -- limits in front of the queue --------------------------------------------------------------
async def check_prompt(served: ServedModel, messages: list[dict[str, Any]],
                       limits: Limits, param: str = "messages") -> None:
    """A 400 for a prompt over ``max_prompt_tokens``: first by its length in characters (a
    token is seldom under one character... a 4 MB prompt never reaches a tokenizer), then by the
    model's own tokenizer when it has a ``tokenizer.json``."""
    text = "\n".join(m["content"] for m in messages)
    limit = limits.max_prompt_tokens
    if len(text) > limit * CHARS_PER_TOKEN:
        raise ApiError(400, f"The prompt is {len(text):,} characters long; this server takes "
                            f"prompts of up to {count_of(limit, 'token')} (about "
                            f"{limit * CHARS_PER_TOKEN:,} characters). Shorten it, or start the "
                            "server with a larger --max-prompt-tokens.", param,
                       "prompt_too_long")
    tokenizer = Path(served.spec) / "tokenizer.json"
    if len(text) <= limit or not tokenizer.is_file():
        return
    from starlette.concurrency import run_in_threadpool

    count = await run_in_threadpool(_count_tokens, tokenizer, text)
    if count > limit:
        raise ApiError(400, f"The prompt is {count_of(count, 'token')} long; this server takes up to "
                            f"{limit:,}. Shorten it, or start the server with a larger "
                            "--max-prompt-tokens.", param, "prompt_too_long")


_tokenizers: dict[Path, Tokenizer] = {}


def _count_tokens(file: Path, text: str) -> int:
    from tokenizers import Tokenizer

    if file not in _tokenizers:
        _tokenizers[file] = Tokenizer.from_file(str(file))
    return len(_tokenizers[file].encode(text, add_special_tokens=False).ids)


def _counts(reply: ChatReply | None, last: ChatChunk | None) -> tuple[int, int]:
    """(prompt, completion) tokens: from the reply when there is one, else the last chunk."""
    source = reply if reply is not None else last
    if source is None:
        return 0, 0
    return int(getattr(source, "prompt_tokens", 0) or getattr(last, "prompt_tokens", 0) or 0), \
        int(getattr(source, "completion_tokens", 0) or 0)


def _cut_short(job: JobSnapshot | None) -> bool:
    """The job was cancelled by the server (shutdown), not finished by the model."""
    if job is None:
        return False
    return job.state is JobState.CANCELLED or (
        job.state is JobState.DONE and getattr(job.result, "finish_reason", "") == "cancelled")
