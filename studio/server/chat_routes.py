"""``POST /v1/chat/completions`` for ``studio serve``: a chat reply, whole or streamed as
Server-Sent Events, and the prompt-length check in front of the queue (shared with embeddings).
Split out of :mod:`.app`, which keeps the server, the other routes and the error handlers."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Callable
from contextlib import aclosing
from pathlib import Path
from typing import Any

from fastapi import Request
from fastapi.responses import JSONResponse, Response, StreamingResponse

from studio.core.jobs import JobState
from studio.core.wording import count_of
from studio.server import documents as served_docs
from studio.server import schemas
from studio.server.catalog import CHAT, ServedModel
from studio.server.limits import Limits
from studio.server.openapi_doc import body_doc
from studio.server.schemas import ApiError
from studio.server.streaming import SHUTTING_DOWN, ClientGone, StopMatcher

CHARS_PER_TOKEN = 4  # the cheap first check of a prompt's length, before any tokenizer runs


def add_chat_routes(app: Any, server: Any, body_of: Callable, pick: Callable,
                    job_events: Callable) -> None:
    """Add the chat route to ``app`` (``body_of``, ``pick`` and ``job_events``: app.py's
    helpers every route shares)."""

    @app.post("/v1/chat/completions", summary="A chat reply (stream: Server-Sent Events)",
              openapi_extra=body_doc(schemas.ChatBody))
    async def chat(request: Request) -> Response:
        body = await body_of(request)
        served = pick(body, CHAT)
        job_request, options = schemas.parse_chat(body, served.spec)
        cited = await served_docs.ground_request(server.documents, options.collection,
                                                 job_request)
        extra = {} if cited is None else {"studio_citations": cited}
        await check_prompt(served, job_request.messages, server.limits)
        if options.stream:
            return StreamingResponse(_chat_stream(job_events, request, served, job_request,
                                                  options, extra),
                                     media_type="text/event-stream",
                                     headers={"Cache-Control": "no-cache"})
        stops = StopMatcher(options.stop)
        text, last, job = "", None, None
        try:
            async with aclosing(job_events(request, job_request, "chat")) as stream:
                async for what, item in stream:
                    if what == "end":
                        job = item
                        break
                    last = item
                    text += stops.feed(getattr(item, "text", ""))
                    if stops.stopped:
                        break  # closing the stream cancels the job
        except ClientGone:
            return Response(status_code=499)  # nobody reads it
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
        reason = "stop" if stops.stopped else schemas.finish_reason(
            getattr(reply, "finish_reason", None) or getattr(last, "finish_reason", None))
        prompt_tokens, completion_tokens = _counts(reply if not stops.stopped else None, last)
        return JSONResponse(schemas.chat_completion(schemas.completion_id(), served.id, text,
                                                    reason, prompt_tokens, completion_tokens)
                            | extra)


async def _chat_stream(job_events: Callable, request: Request, served: ServedModel,
                       job_request: Any, options: Any,
                       extra: dict[str, Any]) -> AsyncIterator[bytes]:
    cid, created = schemas.completion_id(), int(time.time())
    stops = StopMatcher(options.stop)

    def sse(obj: Any) -> bytes:
        return b"data: " + (obj if isinstance(obj, bytes) else json.dumps(
            obj, ensure_ascii=False).encode("utf-8")) + b"\n\n"

    last, job = None, None
    yield sse(schemas.chat_chunk(cid, served.id, created, {"role": "assistant",
                                                           "content": ""}) | extra)
    try:
        async with aclosing(job_events(request, job_request, "chat")) as stream:
            async for what, item in stream:
                if what == "end":
                    job = item
                    break
                last = item
                piece = stops.feed(getattr(item, "text", ""))
                if piece:
                    yield sse(schemas.chat_chunk(cid, served.id, created,
                                                 {"content": piece}))
                if stops.stopped:
                    break  # closing the stream cancels the job
    except ClientGone:
        return  # events() has cancelled the job
    tail = stops.flush()
    if tail:
        yield sse(schemas.chat_chunk(cid, served.id, created, {"content": tail}))
    error_text = getattr(last, "error", "") if last is not None else ""
    failed = job is not None and job.state is JobState.FAILED
    if error_text or failed or (_cut_short(job) and not stops.stopped):
        message = error_text or (job.error if failed and job else SHUTTING_DOWN)
        yield sse({"error": {"message": message, "type": "server_error", "param": None,
                             "code": "generation_failed"}})
    else:
        reply = job.result if job is not None and not stops.stopped else None
        reason = "stop" if stops.stopped else schemas.finish_reason(
            getattr(reply, "finish_reason", None) or getattr(last, "finish_reason", None))
        yield sse(schemas.chat_chunk(cid, served.id, created, {}, reason))
        if options.include_usage:
            yield sse(schemas.usage_chunk(cid, served.id, created, *_counts(reply, last)))
    yield sse(b"[DONE]")


# -- limits in front of the queue --------------------------------------------------------------
async def check_prompt(served: ServedModel, messages: list[dict[str, Any]],
                       limits: Limits) -> None:
    """A 400 for a prompt over ``max_prompt_tokens``: first by its length in characters (a
    token is seldom under one character... a 4 MB prompt never reaches a tokenizer), then by the
    model's own tokenizer when it has a ``tokenizer.json``."""
    text = "\n".join(m["content"] for m in messages)
    limit = limits.max_prompt_tokens
    if len(text) > limit * CHARS_PER_TOKEN:
        raise ApiError(400, f"The prompt is {len(text):,} characters long; this server takes "
                            f"prompts of up to {count_of(limit, 'token')} (about "
                            f"{limit * CHARS_PER_TOKEN:,} characters). Shorten it, or start the "
                            "server with a larger --max-prompt-tokens.", "messages",
                       "prompt_too_long")
    tokenizer = Path(served.spec) / "tokenizer.json"
    if len(text) <= limit or not tokenizer.is_file():
        return
    from starlette.concurrency import run_in_threadpool

    count = await run_in_threadpool(_count_tokens, tokenizer, text)
    if count > limit:
        raise ApiError(400, f"The prompt is {count_of(count, 'token')} long; this server takes up to "
                            f"{limit:,}. Shorten it, or start the server with a larger "
                            "--max-prompt-tokens.", "messages", "prompt_too_long")


_tokenizers: dict[Path, Any] = {}


def _count_tokens(file: Path, text: str) -> int:
    from tokenizers import Tokenizer

    if file not in _tokenizers:
        _tokenizers[file] = Tokenizer.from_file(str(file))
    return len(_tokenizers[file].encode(text, add_special_tokens=False).ids)


def _counts(reply: Any, last: Any) -> tuple[int, int]:
    """(prompt, completion) tokens: from the reply when there is one, else the last chunk."""
    source = reply if reply is not None else last
    if source is None:
        return 0, 0
    return int(getattr(source, "prompt_tokens", 0) or getattr(last, "prompt_tokens", 0) or 0), \
        int(getattr(source, "completion_tokens", 0) or 0)


def _cut_short(job: Any) -> bool:
    """The job was cancelled by the server (shutdown), not finished by the model."""
    if job is None:
        return False
    return job.state is JobState.CANCELLED or (
        job.state is JobState.DONE and getattr(job.result, "finish_reason", "") == "cancelled")
