"""The OpenAI-shaped answers of ``studio serve``: completions, their streamed chunks, token
probabilities, usage and the model list (the request bodies are :mod:`.schemas`'s).
"""

from __future__ import annotations

import secrets
import time
from typing import Any

from studio.pipelines.chat.types import TokenLogprob


def completion_id(text: bool = False) -> str:
    return ("cmpl-" if text else "chatcmpl-") + secrets.token_hex(12)


def usage(prompt_tokens: int, completion_tokens: int) -> dict[str, int]:
    return {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens}


def _entry(token: str, logprob: float) -> dict[str, Any]:
    return {"token": token, "logprob": logprob, "bytes": list(token.encode("utf-8"))}


def chat_logprobs(tokens: list[TokenLogprob] | None) -> dict[str, Any] | None:
    """A chat choice's ``logprobs``: ``{"content": [{token, logprob, bytes, top_logprobs}]}``."""
    if tokens is None:
        return None
    return {"content": [_entry(t.token, t.logprob) | {
        "top_logprobs": [_entry(a, lp) for a, lp in t.top]} for t in tokens], "refusal": None}


def text_logprobs(tokens: list[TokenLogprob] | None, offset: int = 0) -> dict[str, Any] | None:
    """A text completion choice's ``logprobs``: parallel ``tokens`` / ``token_logprobs`` /
    ``top_logprobs`` (a dict per token) / ``text_offset`` lists, offsets from ``offset``."""
    if tokens is None:
        return None
    offsets = []
    for t in tokens:
        offsets.append(offset)
        offset += len(t.token)
    return {"tokens": [t.token for t in tokens], "token_logprobs": [t.logprob for t in tokens],
            "top_logprobs": [dict(t.top) for t in tokens], "text_offset": offsets}


def chat_completion(cid: str, model: str, text: str, finish_reason: str, prompt_tokens: int,
                    completion_tokens: int,
                    logprobs: list[TokenLogprob] | None = None) -> dict[str, Any]:
    return {"id": cid, "object": "chat.completion", "created": int(time.time()), "model": model,
            "system_fingerprint": None,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text},
                         "logprobs": chat_logprobs(logprobs), "finish_reason": finish_reason}],
            "usage": usage(prompt_tokens, completion_tokens)}


def text_completion(cid: str, model: str, text: str, finish_reason: str, prompt_tokens: int,
                    completion_tokens: int,
                    logprobs: list[TokenLogprob] | None = None) -> dict[str, Any]:
    return {"id": cid, "object": "text_completion", "created": int(time.time()), "model": model,
            "system_fingerprint": None,
            "choices": [{"index": 0, "text": text, "logprobs": text_logprobs(logprobs),
                         "finish_reason": finish_reason}],
            "usage": usage(prompt_tokens, completion_tokens)}


def chat_chunk(cid: str, model: str, created: int, delta: dict[str, Any],
               finish_reason: str | None = None,
               logprobs: list[TokenLogprob] | None = None) -> dict[str, Any]:
    return {"id": cid, "object": "chat.completion.chunk", "created": created, "model": model,
            "system_fingerprint": None,
            "choices": [{"index": 0, "delta": delta, "logprobs": chat_logprobs(logprobs),
                         "finish_reason": finish_reason}]}


def text_chunk(cid: str, model: str, created: int, text: str, finish_reason: str | None = None,
               logprobs: list[TokenLogprob] | None = None, offset: int = 0) -> dict[str, Any]:
    return {"id": cid, "object": "text_completion", "created": created, "model": model,
            "system_fingerprint": None,
            "choices": [{"index": 0, "text": text, "logprobs": text_logprobs(logprobs, offset),
                         "finish_reason": finish_reason}]}


def usage_chunk(cid: str, model: str, created: int, prompt_tokens: int,
                completion_tokens: int, text: bool = False) -> dict[str, Any]:
    return {"id": cid, "object": "text_completion" if text else "chat.completion.chunk",
            "created": created, "model": model, "system_fingerprint": None, "choices": [],
            "usage": usage(prompt_tokens, completion_tokens)}


def model_list(models: list[tuple[str, str]], created: int) -> dict[str, Any]:
    """``models``: (id, kind) pairs."""
    return {"object": "list",
            "data": [{"id": mid, "object": "model", "created": created, "owned_by": "studio",
                      "kind": kind} for mid, kind in models]}


def finish_reason(reason: str | None) -> str:
    """The studio's finish reasons in OpenAI's words."""
    return "length" if reason == "length" else "stop"
