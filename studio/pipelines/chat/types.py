"""The chat request, the streamed chunks, and the backend protocol. Light: no torch here."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol

from studio.core.jobs import CancelToken

ROLES = ("system", "user", "assistant")
MAX_TOP_LOGPROBS = 20  # alternatives per token, as OpenAI's top_logprobs allows


@dataclass
class EmbedRequest:
    """Embeddings of ``texts`` from a local chat model: each text's last hidden state (the final
    layer, after its norm), averaged over its tokens. ``model`` as in :class:`ChatRequest`,
    local models only."""

    model: str
    texts: list[str] = field(default_factory=list)

    def validate(self) -> None:
        if not str(self.model).strip():
            raise ValueError("No chat model chosen.")
        if not self.texts or not all(isinstance(t, str) and t for t in self.texts):
            raise ValueError("Give one or more non-empty texts to embed.")


@dataclass
class Embeddings:
    """The vectors of an :class:`EmbedRequest`, in order, and the tokens read."""

    vectors: list[list[float]]
    prompt_tokens: int
    truncated: int = 0  # how many texts were cut to the model's context length


@dataclass
class AttentionRequest:
    """Where a local model's last layer looked when it wrote one token: ``input_ids`` are the
    tokens it had read then (the prompt and the reply before that token); the answer is the
    last position's attention over all of them.

    ``generated``: the last ``generated`` of ``input_ids`` are a reply the model wrote; the
    answer's ``rows`` then say, for each of them, where the model looked when it wrote it (the
    same pass: a causal model's position ``p`` reads only what came before)."""

    model: str
    input_ids: list[int] = field(default_factory=list)
    generated: int = 0

    def validate(self) -> None:
        if not str(self.model).strip():
            raise ValueError("No chat model chosen.")
        if not self.input_ids or not all(isinstance(i, int) and i >= 0 for i in self.input_ids):
            raise ValueError("Give the token ids the model read (at least one).")
        if not 0 <= self.generated < len(self.input_ids):
            raise ValueError("The reply's tokens must follow at least one prompt token.")


@dataclass
class AttentionMap:
    """The answer to an :class:`AttentionRequest`: each token read, as text, and the weight the
    last layer's attention gave it (averaged over its heads; they add up to 1)."""

    tokens: list[str]
    weights: list[float]
    heads: int
    left_out: int = 0  # tokens before the model's context that were not read
    # with AttentionRequest.generated: one row per reply token, its weights over ``tokens`` up
    # to (not including) itself
    rows: list[list[float]] = field(default_factory=list)


@dataclass
class ChatRequest:
    """One reply to generate. ``messages`` are ``{"role": ..., "content": ...}`` dicts in order;
    a message may add ``"images": [path, …]`` (image files shown to a vision-language model).

    ``model`` is a folder, a repo id in the HF cache, or ``openai:BASE_URL#MODEL`` for a remote
    OpenAI-compatible endpoint. ``temperature == 0`` means greedy decoding. ``seed`` None: random.

    ``complete``: Complete mode — no chat template and no roles; the messages' texts (system
    prompts left out) are joined into one raw text that the model continues (a remote server's
    ``/v1/completions``). ``logprobs``: None, or how many top alternatives (0 to
    :data:`MAX_TOP_LOGPROBS`) to report with each generated token's log-probability.

    ``continue_reply``: the last message is the beginning of the assistant's reply (a branch
    taken at a token), which the model continues in the chat template — transformers'
    ``continue_final_message`` — instead of opening a new turn; the reply is the continuation.
    """

    model: str
    messages: list[dict[str, str]] = field(default_factory=list)
    temperature: float = 0.7
    top_p: float = 0.95
    top_k: int = 50
    repetition_penalty: float = 1.0
    max_new_tokens: int = 512
    seed: int | None = None
    complete: bool = False
    logprobs: int | None = None
    continue_reply: bool = False

    def validate(self) -> None:
        """Raise ValueError with a one-line reason a person understands."""
        if not str(self.model).strip():
            raise ValueError("No chat model chosen.")
        if not self.messages:
            raise ValueError("There is nothing to answer: the conversation is empty.")
        for m in self.messages:
            if m.get("role") not in ROLES or not isinstance(m.get("content"), str):
                raise ValueError(f"Bad message {m!r}: role must be one of {ROLES}, content text.")
            images: object = m.get("images", [])
            if not isinstance(images, list) or not all(isinstance(i, str) for i in images):
                raise ValueError(f"Bad message {m!r}: images must be a list of image files.")
        if not 0 <= self.temperature <= 5:
            raise ValueError(f"Temperature must be between 0 and 5, not {self.temperature}.")
        if not 0 < self.top_p <= 1:
            raise ValueError(f"top-p must be in (0, 1], not {self.top_p}.")
        if self.top_k < 0:
            raise ValueError(f"top-k must be 0 (off) or more, not {self.top_k}.")
        if not 0 < self.repetition_penalty <= 10:
            raise ValueError(f"Repetition penalty must be in (0, 10], not {self.repetition_penalty}.")
        if not 1 <= self.max_new_tokens <= 1_000_000:
            raise ValueError(f"Max new tokens must be at least 1, not {self.max_new_tokens}.")
        if self.logprobs is not None and not (
                isinstance(self.logprobs, int) and not isinstance(self.logprobs, bool)
                and 0 <= self.logprobs <= MAX_TOP_LOGPROBS):
            raise ValueError(f"Token probabilities: the number of alternatives must be 0 to "
                             f"{MAX_TOP_LOGPROBS}, not {self.logprobs!r}.")
        if self.continue_reply and (self.complete or self.messages[-1].get("role") != "assistant"
                                    or not self.messages[-1]["content"]):
            raise ValueError("Only the beginning of an assistant's reply, as the last message of "
                             "a chat, can be continued.")

    def prompt_text(self) -> str:
        """Complete mode's raw text: every non-system message's content, joined as written."""
        return "".join(m["content"] for m in self.messages if m.get("role") != "system")

    def to_dict(self) -> dict[str, Any]:
        return {"kind": "chat", **dataclasses.asdict(self)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ChatRequest:
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


@dataclass
class TokenLogprob:
    """One generated token: its text, its log-probability under the model (the log-softmax of
    the raw logits, before temperature or top-k/top-p), and the most likely alternatives at that
    position as ``(text, logprob)`` pairs, most likely first."""

    token: str
    logprob: float
    top: list[tuple[str, float]] = field(default_factory=list)
    id: int = -1  # the token id (local models; -1: not known)


@dataclass
class ChatChunk:
    """A piece of a streamed reply, reported through ``progress.partial`` as it arrives.

    ``text`` is the new text only. The last chunk has ``finish_reason`` set: "stop" (end of turn),
    "length" (max_new_tokens), "cancelled" (the user pressed Stop) or "error" (``error`` says why;
    the text so far is kept).
    """

    text: str = ""
    completion_tokens: int = 0  # tokens generated so far in this reply
    prompt_tokens: int = 0  # tokens in the prompt after the chat template
    finish_reason: str | None = None
    error: str = ""
    dropped_messages: int = 0  # oldest turns left out to fit the context (never silently)
    warnings: list[str] = field(default_factory=list)
    # The whole conversation in the template, before anything was left out (0: not known, as
    # from a remote server: then prompt_tokens).
    conversation_tokens: int = 0
    # With ChatRequest.logprobs: the tokens this chunk adds (a local chunk is one token, whose
    # text may be held back into a later chunk while a UTF-8 character is incomplete).
    logprobs: list[TokenLogprob] = field(default_factory=list)
    # the first chunk of a local reply with logprobs: the prompt's token ids (what it read)
    prompt_ids: list[int] = field(default_factory=list)


@dataclass
class ChatReply:
    """The whole reply, returned by a chat job when it ends."""

    text: str
    completion_tokens: int
    prompt_tokens: int
    finish_reason: str
    seconds: float = 0.0
    time_to_first_token: float = 0.0
    dropped_messages: int = 0
    warnings: list[str] = field(default_factory=list)
    conversation_tokens: int = 0  # as in ChatChunk
    logprobs: list[TokenLogprob] = field(default_factory=list)  # every token, with logprobs
    prompt_ids: list[int] = field(default_factory=list)  # with logprobs, local: what was read

    @property
    def tokens_per_second(self) -> float:
        gen = self.seconds - self.time_to_first_token
        return (self.completion_tokens - 1) / gen if gen > 0 and self.completion_tokens > 1 else 0.0


class ChatBackend(Protocol):
    """Something that streams a reply: a local model or a remote server."""

    def stream(self, request: ChatRequest, cancel: CancelToken) -> Iterator[ChatChunk]: ...

    def list_models(self) -> list[str]: ...
