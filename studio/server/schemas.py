"""OpenAI request validation and response bodies for ``studio serve``. No torch, no Qt.

Requests are turned into the studio's own request dataclasses (:class:`ChatRequest`,
:class:`Txt2ImgRequest`) so a served job is exactly the job the GUI or the CLI would run. Anything
the studio cannot honour is refused with a 400 naming the parameter, never silently ignored —
except fields OpenAI documents as hints (``user``, ``store``, ``metadata``, ...).

Chat defaults follow OpenAI's: ``temperature`` 1, ``top_p`` 1, no top-k. ``max_tokens`` (or
``max_completion_tokens``) defaults to the studio's 512. ``top_k`` and ``repetition_penalty`` are
accepted as extra fields, as vLLM and llama.cpp accept them.

``/v1/completions`` (the legacy text completion, Complete mode: the prompt is continued with no
chat template) takes one prompt string; its ``max_tokens`` defaults to OpenAI's 16. Token
probabilities as OpenAI gives them: chat ``logprobs: true`` with ``top_logprobs`` 0–20,
completions ``logprobs`` 0–5 (the alternatives per token).
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from pydantic_core import from_json

from studio.core.control import MAX_CONTROLNETS
from studio.core.jobs import Checkable
from studio.core.requests import (
    MAX_HIRES_SCALE,
    MAX_SIDE,
    OUTPAINT_SIDES,
    SEED_MAX,
    Img2ImgRequest,
    Txt2ImgRequest,
)
from studio.pipelines.chat.types import MAX_TOP_LOGPROBS, ChatRequest, EmbedRequest

MAX_STOP_STRINGS = 4
MAX_COMPLETION_LOGPROBS = 5  # OpenAI's limit for /v1/completions' logprobs
_B = TypeVar("_B", bound="_Body")
_Request = TypeVar("_Request", bound=Checkable)


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


# -- request bodies ---------------------------------------------------------------------------
# pydantic v2 models of what each endpoint accepts. Strict: JSON types are taken as they come
# (no "1" for 1, no 1.5 for an integer); extra fields are refused, except the hints OpenAI
# documents (``user``, ``store``, ...), which are accepted and ignored. The same models give the
# OpenAPI schema at /openapi.json.
_STRICT = ConfigDict(strict=True, extra="forbid")
_UNION_TAGS = {"str", "int", "float", "bool", "list", "dict", "none", "list[str]",
               "list[dict[str,any]]", "dict[str,any]"}


class _Body(BaseModel):
    model_config = _STRICT
    model: str | None = None


class Message(BaseModel):
    model_config = ConfigDict(strict=True, extra="allow")  # name, tool_call_id, ...: checked
    role: str
    content: str | list[dict[str, Any]] | None = None


class StreamOptions(BaseModel):
    model_config = ConfigDict(strict=True, extra="allow")
    include_usage: bool = False


class StudioOptions(BaseModel):
    """Studio's own extension of chat and text completions (the ``studio`` field)."""

    model_config = _STRICT
    #: the last layer's attention when the model wrote each reply token (local models)
    attention: bool = False


class _SamplingBody(_Body):
    """The fields chat and text completions share."""

    stream: bool = False
    stream_options: StreamOptions | None = None
    temperature: float | None = Field(None, ge=0, le=2)
    top_p: float | None = Field(None, ge=0, le=1)
    top_k: int | None = Field(None, ge=-1, le=1_000_000)
    repetition_penalty: float | None = Field(None, ge=0, le=10)
    max_tokens: int | None = Field(None, ge=1, le=1_000_000)
    seed: int | None = Field(None, ge=-(2**63), le=2**63 - 1)
    stop: str | list[str] | None = None
    n: int | None = None
    presence_penalty: float | None = None
    frequency_penalty: float | None = None
    # hints OpenAI documents; accepted and ignored
    user: Any = None
    logit_bias: Any = None
    # Studio's own: {"attention": true} → "studio_attention" in the answer
    studio: StudioOptions | None = None


class ChatBody(_SamplingBody):
    """``POST /v1/chat/completions``."""

    messages: list[Message] = Field(min_length=1)
    max_completion_tokens: int | None = Field(None, ge=1, le=1_000_000)
    logprobs: bool | None = None
    top_logprobs: int | None = None
    response_format: dict[str, Any] | None = None
    tools: list[Any] | None = None
    functions: list[Any] | None = None
    tool_choice: Any = None
    function_call: Any = None
    # Studio's own: answer from this named document collection (GET /v1/collections)
    studio_collection: str | None = Field(None, min_length=1, max_length=200)
    # vLLM's: continue the last (assistant) message instead of opening a new turn
    continue_final_message: bool | None = None
    add_generation_prompt: bool | None = None
    # hints OpenAI documents; accepted and ignored
    store: Any = None
    metadata: Any = None
    service_tier: Any = None
    parallel_tool_calls: Any = None
    prediction: Any = None
    reasoning_effort: Any = None
    modalities: Any = None


class CompletionBody(_SamplingBody):
    """``POST /v1/completions`` (text completion: the prompt is continued as written)."""

    prompt: str | list[str]
    best_of: int | None = None
    echo: bool | None = None
    suffix: str | None = None
    logprobs: int | None = None


class ControlNetBody(BaseModel):
    """Studio's extension of ``/v1/images/generations``: one ControlNet guiding the image."""

    model_config = _STRICT
    #: a ControlNet of this machine's library, by name (as 'studio models list' prints it)
    model: str = Field(min_length=1, max_length=200)
    #: the control image: base64 PNG / JPEG / WebP, or a ``data:image/…;base64,`` URL
    image: str = Field(min_length=1)
    #: none (the image is a control map already), canny, softedge, lineart, invert
    preprocess: str = Field("none", max_length=16)
    weight: float = Field(1.0, ge=0, le=2)
    #: the part of the steps it acts on, as fractions
    start: float = Field(0.0, ge=0, lt=1)
    end: float = Field(1.0, gt=0, le=1)


class ImageBody(_Body):
    """``POST /v1/images/generations``."""

    prompt: str
    n: int = Field(1, ge=1, le=10)
    size: str | None = None
    response_format: str | None = None
    steps: int = Field(20, ge=1, le=500)
    seed: int | None = Field(None, ge=0, le=SEED_MAX)
    negative_prompt: str | None = None
    guidance_scale: float | None = Field(None, ge=0, le=100)
    cfg_scale: float | None = Field(None, ge=0, le=100)
    #: A1111's variation seed ("subseed"): 0 < strength ≤ 1 mixes its noise into ``seed``'s
    variation_seed: int | None = Field(None, ge=0, le=SEED_MAX)
    variation_strength: float = Field(0.0, ge=0, le=1)
    #: Studio's own: ControlNets, each with its control image inline (see ControlNetBody)
    controlnets: list[ControlNetBody] = Field(default_factory=list, max_length=MAX_CONTROLNETS)
    #: Studio's own: A1111's hires fix, off at 0 — made at ``size``, upscaled ``hires_scale``
    #: times with ``hires_upscaler`` (Latent, Latent (nearest), Lanczos or a library upscaler),
    #: then refined in ``hires_steps`` steps (0: ``steps``) at ``hires_denoise``
    hires_scale: float = Field(0.0, ge=0, le=MAX_HIRES_SCALE)
    hires_upscaler: str = "Latent"
    hires_steps: int = Field(0, ge=0, le=500)
    hires_denoise: float = Field(0.7, gt=0, le=1)
    user: Any = None
    quality: Any = None
    style: Any = None


class EditBody(ImageBody):
    """``POST /v1/images/edits`` (multipart form fields; ``image`` and ``mask`` are files)."""

    strength: float = Field(0.75, gt=0, le=1)
    mask_blur: int = Field(4, ge=0, le=64)
    #: Studio's own: outpaint — pixels added on each side (multiples of 8), the new area painted
    outpaint_left: int = Field(0, ge=0, le=MAX_SIDE)
    outpaint_right: int = Field(0, ge=0, le=MAX_SIDE)
    outpaint_top: int = Field(0, ge=0, le=MAX_SIDE)
    outpaint_bottom: int = Field(0, ge=0, le=MAX_SIDE)
    outpaint_fill: str = Field("edge", max_length=16)


class EmbeddingBody(_Body):
    """``POST /v1/embeddings`` (local chat models: the mean-pooled last hidden state)."""

    input: str | list[str]
    encoding_format: str | None = None
    dimensions: int | None = None
    user: Any = None


MAX_EMBED_INPUTS = 256


def parse_embeddings(body: Any, model_spec: str) -> tuple[EmbedRequest, bool]:
    """Validate a ``/v1/embeddings`` body: (the request, whether base64 was asked for)."""
    b = _validated(EmbeddingBody, body)
    texts = [b.input] if isinstance(b.input, str) else b.input
    if not texts or len(texts) > MAX_EMBED_INPUTS:
        raise _bad(f"'input' must be a string or a list of 1 to {MAX_EMBED_INPUTS} strings.",
                   "input")
    if not all(texts):
        raise _bad("'input' must not contain empty strings.", "input")
    if b.encoding_format not in (None, "float", "base64"):
        raise _bad("'encoding_format' must be 'float' or 'base64'.", "encoding_format")
    if b.dimensions is not None:
        raise _bad("'dimensions' is not supported: the vectors have the model's hidden size.",
                   "dimensions")
    return EmbedRequest(model=model_spec, texts=list(texts)), b.encoding_format == "base64"


def embedding_list(model: str, vectors: list[list[float]], tokens: int,
                   base64_floats: bool) -> dict[str, Any]:
    import base64
    import struct

    def encoded(vector: list[float]) -> Any:
        if not base64_floats:
            return vector
        return base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode("ascii")

    return {"object": "list", "model": model,
            "data": [{"object": "embedding", "index": i, "embedding": encoded(v)}
                     for i, v in enumerate(vectors)],
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens}}


def _param(loc: tuple[Any, ...]) -> str:
    """``("messages", 0, "role")`` → ``messages[0].role`` (pydantic's union tags left out)."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif str(part).replace(" ", "").lower() not in _UNION_TAGS:
            out += f".{part}" if out else str(part)
    return out


def validation_error(exc: ValidationError) -> ApiError:
    """The first problem pydantic found, as an OpenAI 400 naming the field."""
    err = exc.errors(include_url=False)[0]
    param = _param(tuple(err["loc"])) or None
    if err["type"] == "extra_forbidden":
        return _bad(f"Unrecognized request argument supplied: {param}", param)
    if err["type"] == "missing":
        return _bad(f"'{param}' is required.", param)
    shown = repr(err.get("input"))
    shown = shown if len(shown) <= 60 else shown[:57] + "..."
    return _bad(f"'{param}': {err['msg']}, not {shown}.", param)


def _validated(model: type[_B], body: Any) -> _B:
    if not isinstance(body, dict):
        raise _bad("The request body must be a JSON object.")
    try:
        return model.model_validate(body)
    except ValidationError as exc:
        raise validation_error(exc) from None


def parse_json(raw: bytes) -> Any:
    """A request body as JSON, with a bounded parser: nesting deeper than pydantic-core's limit
    and lone surrogates (``"\\ud800"``) are a 400 here, not a RecursionError or an encoding error
    later."""
    try:
        return from_json(raw)
    except ValueError as exc:
        raise _bad(f"We could not parse the JSON body of your request ({exc}). "
                   "(HINT: send a JSON object.)") from None


def _text_content(content: Any, index: int,
                  images: list[dict[str, Any]] | None = None) -> str:
    """A message's text: a string, or OpenAI's list of ``{"type": "text"}`` parts; its
    ``{"type": "image_url"}`` parts go into ``images`` (None: refused), read by
    :mod:`.chat_images`."""
    param = f"messages[{index}].content"
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        texts = []
        for part in content:
            if part.get("type") == "image_url" and images is not None:
                images.append(part)
                continue
            if part.get("type") != "text" or not isinstance(part.get("text"), str):
                raise _bad("Only text and image_url message parts are supported (no audio or "
                           "files)." if images is not None else
                           "Only text message parts are supported here.", param)
            texts.append(part["text"])
        return "".join(texts)
    raise _bad("Message content must be text.", param)


@dataclass
class ChatOptions:
    """What a chat completion asks for beyond the :class:`ChatRequest`."""

    stream: bool = False
    include_usage: bool = False
    stop: list[str] = field(default_factory=list)
    collection: str | None = None  # the named document collection to answer from
    # message index → its image_url content parts (chat_images.py decodes and checks them)
    image_parts: dict[int, list[dict[str, Any]]] = field(default_factory=dict)
    attention: bool = False  # "studio": {"attention": true}
    logprobs: bool = False  # the client asked for them (attention asks the engine for ids)


def _studio_options(b: _SamplingBody, request: ChatRequest, options: ChatOptions) -> ChatOptions:
    """``options`` with the ``studio`` extension read: attention needs the reply's token ids,
    which the engine keeps with its token probabilities (sent only when asked for)."""
    options.logprobs = request.logprobs is not None
    options.attention = bool(b.studio and b.studio.attention)
    if options.attention and request.logprobs is None:
        request.logprobs = 0
    return options


def _stops(stop: str | list[str] | None) -> list[str]:
    stops = [stop] if isinstance(stop, str) else (stop or [])
    if not all(stops) or len(stops) > MAX_STOP_STRINGS:
        raise _bad(f"'stop' must be a string or a list of up to {MAX_STOP_STRINGS} non-empty "
                   "strings.", "stop")
    return stops


def _sampled_request(b: _SamplingBody, model_spec: str, max_tokens: int | None,
                     default_max: int, **fields: Any) -> ChatRequest:
    """The :class:`ChatRequest` of a chat or text completion body (the sampling fields both
    share), validated."""
    if b.n not in (None, 1):
        raise _bad("Only n=1 is supported.", "n")
    for name in ("presence_penalty", "frequency_penalty"):
        if getattr(b, name) not in (None, 0, 0.0):
            raise _bad(f"'{name}' is not supported; use 'repetition_penalty'.", name)
    request = ChatRequest(
        model=model_spec,
        temperature=1.0 if b.temperature is None else b.temperature,
        top_p=1.0 if b.top_p is None else b.top_p,
        top_k=max(b.top_k or 0, 0),  # vLLM spells "off" as -1
        repetition_penalty=1.0 if b.repetition_penalty is None else b.repetition_penalty,
        max_new_tokens=default_max if max_tokens is None else max_tokens,
        seed=b.seed, **fields)
    if request.top_p == 0:  # OpenAI allows 0 (≈ greedy); the studio's request needs (0, 1]
        request.temperature = 0.0
        request.top_p = 1.0
    if request.seed is not None:
        request.seed %= 2**32  # torch seeds are 64-bit unsigned; keep it small and stable
    try:
        request.validate()
    except ValueError as exc:
        raise _bad(str(exc)) from exc
    return request


def _continues(b: ChatBody, messages: list[dict[str, Any]]) -> bool:
    """vLLM's ``continue_final_message`` (with ``add_generation_prompt`` false or left out):
    the last message, an assistant's, is continued rather than answered."""
    if not b.continue_final_message:
        if b.add_generation_prompt is False:
            raise _bad("'add_generation_prompt': false is taken only with "
                       "'continue_final_message': true.", "add_generation_prompt")
        return False
    if b.add_generation_prompt:
        raise _bad("'continue_final_message' continues the last message, so "
                   "'add_generation_prompt' must be false or left out.", "add_generation_prompt")
    if messages[-1]["role"] != "assistant" or not messages[-1]["content"]:
        raise _bad("'continue_final_message' needs the last message to be the beginning of an "
                   "assistant's reply.", "continue_final_message")
    return True


def parse_chat(body: Any, model_spec: str) -> tuple[ChatRequest, ChatOptions]:
    """Validate a ``/v1/chat/completions`` body; ``model_spec`` is the resolved model."""
    b = _validated(ChatBody, body)
    messages = []
    image_parts: dict[int, list[dict[str, Any]]] = {}
    for i, m in enumerate(b.messages):
        role = "system" if m.role == "developer" else m.role
        if role not in ("system", "user", "assistant"):
            raise _bad(f"Unsupported role {m.role!r}: use system, user or assistant.",
                       f"messages[{i}].role")
        parts: list[dict[str, Any]] = []
        messages.append({"role": role, "content": _text_content(m.content, i, parts)})
        if parts:
            image_parts[i] = parts
    for name in ("tools", "functions", "tool_choice", "function_call"):
        if getattr(b, name) not in (None, False, [], "none"):
            raise _bad(f"'{name}' is not supported by this server.", name)
    if b.response_format not in (None, {"type": "text"}):
        raise _bad("Only response_format {'type': 'text'} is supported.", "response_format")
    if b.top_logprobs is not None and not 0 <= b.top_logprobs <= MAX_TOP_LOGPROBS:
        raise _bad(f"'top_logprobs' must be an integer from 0 to {MAX_TOP_LOGPROBS}, not "
                   f"{b.top_logprobs}.", "top_logprobs")
    if b.top_logprobs is not None and not b.logprobs:
        raise _bad("'top_logprobs' needs 'logprobs': true.", "top_logprobs")
    stops = _stops(b.stop)
    max_tokens = b.max_completion_tokens if b.max_completion_tokens is not None \
        else b.max_tokens
    request = _sampled_request(b, model_spec, max_tokens, 512, messages=messages,
                               logprobs=(b.top_logprobs or 0) if b.logprobs else None,
                               continue_reply=_continues(b, messages))
    include_usage = bool(b.stream_options and b.stream_options.include_usage)
    collection = b.studio_collection.strip() if b.studio_collection is not None else None
    if collection == "":
        raise _bad("'studio_collection' must name a collection (GET /v1/collections).",
                   "studio_collection")
    return request, _studio_options(b, request, ChatOptions(
        stream=b.stream, include_usage=include_usage, stop=stops, collection=collection,
        image_parts=image_parts))


def parse_completion(body: Any, model_spec: str) -> tuple[ChatRequest, ChatOptions]:
    """Validate a ``/v1/completions`` body: a Complete-mode :class:`ChatRequest` whose one
    message is the prompt."""
    b = _validated(CompletionBody, body)
    prompts = [b.prompt] if isinstance(b.prompt, str) else b.prompt
    if len(prompts) != 1:
        raise _bad("'prompt' must be one string (batches of prompts are not supported).",
                   "prompt")
    if not prompts[0].strip():
        raise _bad("'prompt' must be a non-empty string: the text to continue.", "prompt")
    if b.best_of not in (None, 1):
        raise _bad("Only best_of=1 is supported.", "best_of")
    if b.echo:
        raise _bad("'echo' is not supported: the answer holds the continuation only.", "echo")
    if b.suffix:
        raise _bad("'suffix' (insertion) is not supported by this server.", "suffix")
    if b.logprobs is not None and not 0 <= b.logprobs <= MAX_COMPLETION_LOGPROBS:
        raise _bad(f"'logprobs' must be an integer from 0 to {MAX_COMPLETION_LOGPROBS}, not "
                   f"{b.logprobs}.", "logprobs")
    stops = _stops(b.stop)
    request = _sampled_request(b, model_spec, b.max_tokens, 16, complete=True,
                               logprobs=b.logprobs,
                               messages=[{"role": "user", "content": prompts[0]}])
    include_usage = bool(b.stream_options and b.stream_options.include_usage)
    return request, _studio_options(b, request, ChatOptions(
        stream=b.stream, include_usage=include_usage, stop=stops))


def _image_fields(b: ImageBody, default_cfg: float = 7.0) -> dict[str, Any]:
    """The request fields generations and edits share, as the CLI builds them (the prompt goes
    verbatim: A1111 weights, BREAK, editing and embeddings are read by the pipeline)."""
    from studio.core.requests import variation_fields

    if not b.prompt.strip():
        raise _bad("'prompt' must be a non-empty string.", "prompt")
    if b.response_format not in ("b64_json", None):
        raise _bad("Only response_format 'b64_json' is supported (the images stay on this "
                   "machine; there is no URL to fetch them from).", "response_format")
    cfg = b.guidance_scale if b.guidance_scale is not None else b.cfg_scale
    try:
        variation = variation_fields(b.variation_seed, b.variation_strength)
    except ValueError as exc:
        raise _bad(str(exc), "variation_seed") from exc
    return dict(prompt=b.prompt, negative_prompt=b.negative_prompt or "", steps=b.steps,
                cfg=default_cfg if cfg is None else cfg, count=b.n,
                seed=secrets.randbelow(SEED_MAX + 1) if b.seed is None else b.seed, **variation)


def _size(size: str) -> tuple[int, int]:
    try:
        width, height = (int(v) for v in size.lower().split("x"))
    except ValueError:
        raise _bad(f"'size' must look like 512x512, not {size!r}.", "size") from None
    return width, height


def _checked(request: _Request) -> _Request:
    try:
        request.validate()
    except ValueError as exc:
        param = "size" if "multiple of 8" in str(exc) or "pixels" in str(exc) else None
        raise _bad(str(exc), param) from exc
    return request


def parse_image(body: Any, model_spec: str, upload_dir: Path | None = None,
                default_cfg: float = 7.0) -> Txt2ImgRequest:
    """Validate a ``/v1/images/generations`` body (b64_json answers only); its ControlNets'
    control images are written into ``upload_dir`` (decoded, not yet checked as images);
    ``default_cfg``: the guidance when the body gives none (the model family's own)."""
    b = _validated(ImageBody, body)
    width, height = _size(b.size or "512x512")
    if b.controlnets and upload_dir is None:
        raise _bad("ControlNets are not taken here.", "controlnets")
    controlnets = [_control_unit(i, c, upload_dir) for i, c in enumerate(b.controlnets)
                   if upload_dir is not None]
    return _checked(Txt2ImgRequest(model=model_spec, width=width, height=height,
                                   controlnets=controlnets, **_hires_fields(b),
                                   **_image_fields(b, default_cfg)))


def _hires_fields(b: ImageBody) -> dict[str, Any]:
    """The hires fix of a generations body as a request's fields (none while it is off); an
    upscaler model is named as the library lists it, never by a path on this machine."""
    if not b.hires_scale:
        return {}
    if any(sep in b.hires_upscaler for sep in "/\\"):
        raise _bad("'hires_upscaler' names Latent, Latent (nearest), Lanczos or an upscaler "
                   "model as `studio models list` shows it, not a path.", "hires_upscaler")
    return {"hires": True, "hires_scale": b.hires_scale, "hires_upscaler": b.hires_upscaler,
            "hires_steps": b.hires_steps, "hires_denoise": b.hires_denoise}


def _control_unit(index: int, c: ControlNetBody, folder: Path) -> dict[str, Any]:
    """A ControlNet of the body as a request's unit, its image decoded into ``folder``."""
    import base64
    import binascii

    data = c.image
    if data.startswith("data:"):
        head, _, data = data.partition(",")
        if ";base64" not in head:
            raise _bad(f"controlnets[{index}].image: a data URL must be base64 "
                       "(data:image/png;base64,…).", f"controlnets[{index}].image")
    try:
        raw = base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        raise _bad(f"controlnets[{index}].image must be a base64-encoded image (PNG, JPEG or "
                   "WebP).", f"controlnets[{index}].image") from None
    path = folder / f"control-{index}"
    path.write_bytes(raw)
    return {"model": c.model, "image": str(path), "preprocess": c.preprocess,
            "weight": c.weight, "start": c.start, "end": c.end}


def parse_edit(fields: dict[str, Any], model_spec: str, image: str, mask: str,
               edit_cfg: float | None = None) -> Img2ImgRequest:
    """Validate ``/v1/images/edits`` form ``fields`` (strings, as a form sends them, read as
    JSON values where they parse); ``image``/``mask``: the uploaded files as saved here.
    ``edit_cfg``: the model edits from instructions (FLUX.1 Kontext …) and no mask came: the
    prompt is the instruction, and this is the guidance when the form gives none."""
    values: dict[str, Any] = {}
    for name, value in fields.items():
        try:
            values[name] = from_json(value) if name not in ("prompt", "negative_prompt",
                                                            "size", "model") else value
        except ValueError:
            values[name] = value
    b = _validated(EditBody, values)
    if b.controlnets:
        raise _bad("ControlNets guide /v1/images/generations only; an edit takes none.",
                   "controlnets")
    if b.hires_scale:
        raise _bad("The hires fix is for /v1/images/generations; an edit takes none.",
                   "hires_scale")
    width, height = _size(b.size) if b.size else (0, 0)
    outpaint = {f"outpaint_{side}": getattr(b, f"outpaint_{side}") for side in OUTPAINT_SIDES}
    shared = _image_fields(b)
    if edit_cfg is not None:
        if b.guidance_scale is None and b.cfg_scale is None:
            shared["cfg"] = edit_cfg
        return _checked(Img2ImgRequest(model=model_spec, image=image, edit=True, width=width,
                                       height=height, **shared))
    return _checked(Img2ImgRequest(model=model_spec, image=image, mask=mask,
                                   mask_blur=b.mask_blur if mask or any(outpaint.values()) else 0,
                                   strength=b.strength, width=width, height=height,
                                   outpaint_fill=b.outpaint_fill, **outpaint, **shared))
