"""Turning a conversation into prompt tokens that fit the model's context.

The conversation is rendered with the tokenizer's chat template and counted in tokens. When the
prompt plus the room kept for the reply (:func:`reply_reserve`) does not fit the context length
(:func:`history_fits`), the oldest turns are dropped — whole user/assistant exchanges, never the
system prompt, never the last message — and the number dropped is reported, so the user always
sees what the model did not. The Chat window's context meter asks :func:`history_fits` too, so it
reads "full" exactly when messages are being left out.

Complete mode (:func:`complete_prompt`) has no template: the raw text is tokenized as the
tokenizer does by default (``tokenizer(text)``, so a BOS where the model adds one), exactly the
ids plain transformers would give ``generate``; a text longer than the context loses its
beginning, and says so.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from studio.core.jobs import UserFacingError
from studio.core.wording import count_of


class PromptTokenizer(Protocol):
    """What the prompt builder asks of a tokenizer: a transformers tokenizer or llama.cpp's
    (:class:`~studio.pipelines.chat.gguf.GGUFTokenizer`): the chat template as text, and the
    ids of a text (``tokenizer(text)["input_ids"]``)."""

    def apply_chat_template(self, conversation: list[dict[str, str]], /, *, tokenize: bool,
                            add_generation_prompt: bool, continue_final_message: bool) -> Any: ...

    def __call__(self, text: str, /, *, add_special_tokens: bool = True) -> Mapping[str, Any]: ...


@dataclass
class PreparedPrompt:
    """Prompt token ids, how many messages were left out, and the reply budget that fits.

    ``conversation_tokens`` is the whole conversation's length in the template, before anything
    was left out (``len(input_ids)`` when nothing was)."""

    input_ids: list[int]
    dropped_messages: int = 0
    max_new_tokens: int = 0
    warnings: list[str] = field(default_factory=list)
    conversation_tokens: int = 0


def reply_reserve(context_length: int, max_new_tokens: int) -> int:
    """How much of the context is kept free for the reply when deciding how much history fits:
    the reply budget, but never more than a quarter of the context. A "Max new tokens" as large
    as a small model's whole context must not throw away a conversation that fits; the reply is
    then cut at the context's end instead (and says so)."""
    return max(1, min(int(max_new_tokens), int(context_length) // 4))


def history_fits(conversation_tokens: int, context_length: int, max_new_tokens: int) -> bool:
    """Whether a conversation of this many tokens is sent whole (True) or its oldest messages
    are left out (False) — the one rule the engine and the context meter share."""
    return conversation_tokens + reply_reserve(context_length, max_new_tokens) <= context_length


def _merge_system(messages: list[dict[str, str]]) -> list[dict[str, str]]:
    """For templates that refuse a system role: the system text goes before the first user turn."""
    system = "\n\n".join(m["content"] for m in messages if m["role"] == "system")
    rest = [dict(m) for m in messages if m["role"] != "system"]
    if system and rest and rest[0]["role"] == "user":
        rest[0]["content"] = f"{system}\n\n{rest[0]['content']}"
    return rest


def turn_options(continue_reply: bool) -> dict[str, bool]:
    """``apply_chat_template``'s arguments for the assistant's turn: opened for a new reply, or
    (``continue_reply``: the last message is the reply's beginning) left open after it."""
    return {"add_generation_prompt": not continue_reply,
            "continue_final_message": continue_reply}


def render_ids(tokenizer: PromptTokenizer, messages: list[dict[str, str]],
               continue_reply: bool = False) -> list[int]:
    """Token ids of ``messages`` in the chat template, with the assistant's turn opened (or,
    ``continue_reply``, the last message — the reply's beginning — left open to go on)."""
    clean = [{"role": m["role"], "content": m["content"]} for m in messages]
    turn = turn_options(continue_reply)
    try:
        text = tokenizer.apply_chat_template(clean, tokenize=False, **turn)
    except Exception as exc:  # noqa: BLE001 - jinja raises its own TemplateError types
        if not any(m["role"] == "system" for m in clean):
            raise UserFacingError(f"The model's chat template rejected the conversation: "
                                  f"{exc}") from exc
        # Some templates (older Mistral, Gemma) raise on a system message: fold it in.
        text = tokenizer.apply_chat_template(_merge_system(clean), tokenize=False, **turn)
    # The template already writes BOS where the model wants it.
    return list(tokenizer(text, add_special_tokens=False)["input_ids"])


def _cut_points(rest: list[dict[str, str]], continue_reply: bool = False) -> list[int]:
    """Where the kept part may start: at a user message, so user/assistant keep alternating
    (a reply being continued keeps the question it answers)."""
    last = len(rest) - 1 - (continue_reply and len(rest) > 1)
    return [i for i in range(1, last + 1) if rest[i]["role"] == "user" or i == last]


def fit_conversation(tokenizer: PromptTokenizer, messages: list[dict[str, str]], context_length: int,
                     max_new_tokens: int, continue_reply: bool = False) -> PreparedPrompt:
    """The prompt for ``messages`` within ``context_length`` (see the module docstring);
    ``continue_reply``: the last message is the beginning of the reply, continued."""
    system = [m for m in messages if m["role"] == "system"]
    rest = [m for m in messages if m["role"] != "system"]
    ids = render_ids(tokenizer, messages, continue_reply)
    whole = len(ids)
    budget = context_length - reply_reserve(context_length, max_new_tokens)
    dropped = 0
    if not history_fits(whole, context_length, max_new_tokens) and len(rest) > 1:
        # Fewer messages never make more tokens, so binary-search the first cut that fits.
        cuts = _cut_points(rest, continue_reply)
        lo, hi, best = 0, len(cuts) - 1, None
        while lo <= hi:
            mid = (lo + hi) // 2
            trial = render_ids(tokenizer, system + rest[cuts[mid]:], continue_reply)
            if len(trial) <= budget:
                best, hi = (cuts[mid], trial), mid - 1
            else:
                lo = mid + 1
        if best is None:  # even the last message alone leaves too little room for the reply
            best = (cuts[-1], render_ids(tokenizer, system + rest[cuts[-1]:], continue_reply))
        dropped, ids = best
    warnings: list[str] = []
    if len(ids) >= context_length:
        raise UserFacingError(
            f"The message is too long for this model: {count_of(len(ids), 'token')} with the system "
            f"prompt, but its context holds {context_length}. Shorten the message or the system prompt.")
    new_tokens = max_new_tokens
    if len(ids) + new_tokens > context_length:
        new_tokens = context_length - len(ids)
        warnings.append(f"Only {count_of(new_tokens, 'token')} were left for the reply (context "
                        f"{count_of(context_length, 'token')}).")
    return PreparedPrompt(ids, dropped, new_tokens, warnings, whole)


def complete_prompt(tokenizer: PromptTokenizer, text: str, context_length: int,
                    max_new_tokens: int) -> PreparedPrompt:
    """Complete mode's prompt: ``text`` tokenized as is; when it does not leave room for the
    reply, its first tokens are left out (a warning counts them)."""
    if not text.strip():
        raise UserFacingError("There is no text to continue: in Complete mode type the "
                              "beginning of a text and the model writes what comes next.")
    ids = list(tokenizer(text)["input_ids"])
    whole = len(ids)
    warnings: list[str] = []
    budget = context_length - reply_reserve(context_length, max_new_tokens)
    if whole > budget:
        ids = ids[whole - budget:]
        warnings.append(f"The first {count_of(whole - budget, 'token')} of the text were left "
                        f"out to fit the model's context ({count_of(context_length, 'token')}).")
    new_tokens = min(max_new_tokens, context_length - len(ids))
    if new_tokens < max_new_tokens:
        warnings.append(f"Only {count_of(new_tokens, 'token')} were left for the reply (context "
                        f"{count_of(context_length, 'token')}).")
    return PreparedPrompt(ids, 0, new_tokens, warnings, whole)
