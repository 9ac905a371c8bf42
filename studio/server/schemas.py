"""OpenAI request validation and response bodies for ``studio serve``. No torch, no Qt.

Requests are turned into the studio's own request dataclasses (:class:`ChatRequest`,
:class:`Txt2ImgRequest`) so a served job is exactly the job the GUI or the CLI would run. Anything
the studio cannot honour is refused with a 400 naming the parameter, never silently ignored —
except fields OpenAI documents as hints (``user``, ``store``, ``metadata``, ...).

Chat defaults follow OpenAI's: ``temperature`` 1, ``top_p`` 1, no top-k. ``max_tokens`` (or
``max_completion_tokens``) defaults to the studio's 512. ``top_k`` and ``repetition_penalty`` are
accepted as extra fields, as vLLM and llama.cpp accept them.
"""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass, field
from typing import Any

from studio.core.requests import SEED_MAX, Txt2ImgRequest
from studio.pipelines.chat.types import ChatRequest

MAX_STOP_STRINGS = 4


class ApiError(Exception):
    """An error answered as OpenAI does: ``{"error": {"message", "type", "param", "code"}}``."""

    def __init__(self, status: int, message: str, param: str | None = None,
                 code: str | None = None, type_: str = "invalid_request_error") -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.param = param
        self.code = code
        self.type = type_

    def body(self) -> dict[str, Any]:
        return {"error": {"message": self.message, "type": self.type, "param": self.param,
                          "code": self.code}}


def _bad(message: str, param: str | None = None, code: str | None = None) -> ApiError:
    return ApiError(400, message, param, code)


def _number(body: dict, name: str, default: float | None, low: float, high: float,
            integer: bool = False) -> Any:
    value = body.get(name)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, (int, float)) or (
            integer and not isinstance(value, int)):
        kind = "an integer" if integer else "a number"
        raise _bad(f"'{name}' must be {kind}, not {value!r}.", name)
    if not low <= value <= high:
        raise _bad(f"'{name}' must be between {low:g} and {high:g}, not {value!r}.", name)
    return value


def _text_content(content: Any, index: int) -> str:
    """A message's text: a string, or OpenAI's list of ``{"type": "text"}`` parts."""
    param = f"messages[{index}].content"
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        texts = []
        for part in content:
            if not isinstance(part, dict) or part.get("type") != "text" or not isinstance(
                    part.get("text"), str):
                raise _bad("Only text message parts are supported (no images or audio).", param)
            texts.append(part["text"])
        return "".join(texts)
    raise _bad("Message content must be text.", param)


@dataclass
class ChatOptions:
    """What a chat completion asks for beyond the :class:`ChatRequest`."""

    stream: bool = False
    include_usage: bool = False
    stop: list[str] = field(default_factory=list)


_IGNORED_CHAT_FIELDS = {"user", "store", "metadata", "service_tier", "logit_bias",
                        "parallel_tool_calls", "prediction", "reasoning_effort", "modalities"}
_CHAT_FIELDS = {"model", "messages", "stream", "stream_options", "temperature", "top_p", "top_k",
                "repetition_penalty", "max_tokens", "max_completion_tokens", "seed", "stop", "n",
                "presence_penalty", "frequency_penalty", "logprobs", "top_logprobs",
                "response_format", "tools", "tool_choice", "functions", "function_call",
                } | _IGNORED_CHAT_FIELDS


def parse_chat(body: Any, model_spec: str) -> tuple[ChatRequest, ChatOptions]:
    """Validate a ``/v1/chat/completions`` body; ``model_spec`` is the resolved model."""
    if not isinstance(body, dict):
        raise _bad("The request body must be a JSON object.")
    unknown = sorted(set(body) - _CHAT_FIELDS)
    if unknown:
        raise _bad(f"Unrecognized request argument supplied: {unknown[0]}", unknown[0])
    raw = body.get("messages")
    if not isinstance(raw, list) or not raw:
        raise _bad("'messages' must be a non-empty list.", "messages")
    messages = []
    for i, m in enumerate(raw):
        if not isinstance(m, dict):
            raise _bad("Each message must be an object with 'role' and 'content'.",
                       f"messages[{i}]")
        role = "system" if m.get("role") == "developer" else m.get("role")
        if role not in ("system", "user", "assistant"):
            raise _bad(f"Unsupported role {m.get('role')!r}: use system, user or assistant.",
                       f"messages[{i}].role")
        messages.append({"role": role, "content": _text_content(m.get("content"), i)})
    if body.get("n", 1) != 1:
        raise _bad("Only n=1 is supported.", "n")
    for name in ("presence_penalty", "frequency_penalty"):
        if body.get(name) not in (None, 0, 0.0):
            raise _bad(f"'{name}' is not supported; use 'repetition_penalty'.", name)
    for name in ("logprobs", "tools", "functions", "tool_choice", "function_call"):
        if body.get(name) not in (None, False, [], "none"):
            raise _bad(f"'{name}' is not supported by this server.", name)
    fmt = body.get("response_format")
    if fmt not in (None, {"type": "text"}):
        raise _bad("Only response_format {'type': 'text'} is supported.", "response_format")
    stream = body.get("stream", False)
    if not isinstance(stream, bool):
        raise _bad("'stream' must be true or false.", "stream")
    stream_options = body.get("stream_options") or {}
    if not isinstance(stream_options, dict):
        raise _bad("'stream_options' must be an object.", "stream_options")
    stop = body.get("stop")
    stops = [stop] if isinstance(stop, str) else (stop or [])
    if not isinstance(stops, list) or not all(isinstance(s, str) and s for s in stops) \
            or len(stops) > MAX_STOP_STRINGS:
        raise _bad(f"'stop' must be a string or a list of up to {MAX_STOP_STRINGS} non-empty "
                   "strings.", "stop")
    max_tokens = body.get("max_completion_tokens", body.get("max_tokens"))
    request = ChatRequest(
        model=model_spec, messages=messages,
        temperature=_number(body, "temperature", 1.0, 0, 2),
        top_p=_number(body, "top_p", 1.0, 0, 1),
        top_k=_number(body, "top_k", 0, -1, 1_000_000, integer=True),
        repetition_penalty=_number(body, "repetition_penalty", 1.0, 0, 10),
        max_new_tokens=_number({"max_tokens": max_tokens}, "max_tokens", 512, 1, 1_000_000,
                               integer=True),
        seed=_number(body, "seed", None, -(2**63), 2**63 - 1, integer=True),
    )
    request.top_k = max(request.top_k, 0)  # vLLM spells "off" as -1
    if request.top_p == 0:  # OpenAI allows 0 (≈ greedy); the studio's request needs (0, 1]
        request.temperature = 0.0
        request.top_p = 1.0
    if request.seed is not None:
        request.seed %= 2**32  # torch seeds are 64-bit unsigned; keep it small and stable
    try:
        request.validate()
    except ValueError as exc:
        raise _bad(str(exc)) from exc
    options = ChatOptions(stream=stream, include_usage=bool(stream_options.get("include_usage")),
                          stop=stops)
    return request, options


_IMAGE_FIELDS = {"model", "prompt", "n", "size", "response_format", "steps", "seed",
                 "negative_prompt", "guidance_scale", "cfg_scale", "user", "quality", "style"}


def parse_image(body: Any, model_spec: str) -> Txt2ImgRequest:
    """Validate a ``/v1/images/generations`` body (b64_json answers only)."""
    if not isinstance(body, dict):
        raise _bad("The request body must be a JSON object.")
    unknown = sorted(set(body) - _IMAGE_FIELDS)
    if unknown:
        raise _bad(f"Unrecognized request argument supplied: {unknown[0]}", unknown[0])
    prompt = body.get("prompt")
    if not isinstance(prompt, str) or not prompt.strip():
        raise _bad("'prompt' must be a non-empty string.", "prompt")
    if body.get("response_format", "b64_json") not in ("b64_json", None):
        raise _bad("Only response_format 'b64_json' is supported (the images stay on this "
                   "machine; there is no URL to fetch them from).", "response_format")
    size = body.get("size") or "512x512"
    try:
        width, height = (int(v) for v in str(size).lower().split("x"))
    except ValueError:
        raise _bad(f"'size' must look like 512x512, not {size!r}.", "size") from None
    negative = body.get("negative_prompt") or ""
    if not isinstance(negative, str):
        raise _bad("'negative_prompt' must be a string.", "negative_prompt")
    cfg = body.get("guidance_scale", body.get("cfg_scale"))
    request = Txt2ImgRequest(
        model=model_spec, prompt=prompt, negative_prompt=negative,
        steps=_number(body, "steps", 20, 1, 500, integer=True),
        cfg=_number({"guidance_scale": cfg}, "guidance_scale", 7.0, 0, 100),
        width=width, height=height,
        seed=_number(body, "seed", None, 0, SEED_MAX, integer=True),
        count=_number(body, "n", 1, 1, 10, integer=True),
    )
    if request.seed is None:
        request.seed = secrets.randbelow(SEED_MAX + 1)
    try:
        request.validate()
    except ValueError as exc:
        param = "size" if "multiple of 8" in str(exc) or "pixels" in str(exc) else None
        raise _bad(str(exc), param) from exc
    return request


# -- responses --------------------------------------------------------------------------------


def completion_id() -> str:
    return "chatcmpl-" + secrets.token_hex(12)


def usage(prompt_tokens: int, completion_tokens: int) -> dict[str, int]:
    return {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens}


def chat_completion(cid: str, model: str, text: str, finish_reason: str, prompt_tokens: int,
                    completion_tokens: int) -> dict[str, Any]:
    return {"id": cid, "object": "chat.completion", "created": int(time.time()), "model": model,
            "system_fingerprint": None,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text},
                         "logprobs": None, "finish_reason": finish_reason}],
            "usage": usage(prompt_tokens, completion_tokens)}


def chat_chunk(cid: str, model: str, created: int, delta: dict[str, Any],
               finish_reason: str | None = None) -> dict[str, Any]:
    return {"id": cid, "object": "chat.completion.chunk", "created": created, "model": model,
            "system_fingerprint": None,
            "choices": [{"index": 0, "delta": delta, "logprobs": None,
                         "finish_reason": finish_reason}]}


def usage_chunk(cid: str, model: str, created: int, prompt_tokens: int,
                completion_tokens: int) -> dict[str, Any]:
    return {"id": cid, "object": "chat.completion.chunk", "created": created, "model": model,
            "system_fingerprint": None, "choices": [],
            "usage": usage(prompt_tokens, completion_tokens)}


def model_list(models: list[tuple[str, str]], created: int) -> dict[str, Any]:
    """``models``: (id, kind) pairs."""
    return {"object": "list",
            "data": [{"id": mid, "object": "model", "created": created, "owned_by": "studio",
                      "kind": kind} for mid, kind in models]}


def finish_reason(reason: str | None) -> str:
    """The studio's finish reasons in OpenAI's words."""
    return "length" if reason == "length" else "stop"
