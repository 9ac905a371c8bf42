"""From prompt text to what the pipeline is called with, as A1111 reads a prompt.

A prompt with none of A1111's syntax that fits CLIP's 77 tokens is passed to diffusers as text
(``prompt=``), untouched, so the result is bit-identical to plain diffusers. Otherwise we do what
A1111 does (:mod:`.prompt_syntax` reads the text):

* the tokens are split into 75-token chunks (``BREAK`` starts a new one; a chunk ending within
  20 tokens of a comma breaks after the comma), each encoded as its own
  77-token sequence (BOS + chunk + EOS + padding) and the embeddings concatenated along the
  sequence axis — the UNet's cross-attention accepts any length. Every prompt of the job (the
  negative one, each step's) is padded with empty chunks to the same number of chunks;
* emphasis, A1111's default "Original" method: each token's hidden state is multiplied by its
  weight, then the chunk is rescaled so its mean is what it was before weighting;
* SDXL encodes each chunk with both text encoders (penultimate layer, as diffusers does) and
  takes the pooled embedding from the first chunk of the second encoder;
* prompt editing and alternation give several conditionings; :class:`StepConditioning` swaps
  them in at the steps A1111 would, from diffusers' step-end callback.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from studio.library.families import family as family_of
from studio.pipelines.diffusion.prompt_syntax import (
    BREAK,
    is_plain,
    parse_attention,
    prompt_schedule,
    schedule_index,
)

if TYPE_CHECKING:
    import torch
    from transformers import PreTrainedTokenizerBase

CHUNK = 75  # tokens per chunk; + BOS + EOS = CLIP's 77
WORD_WRAP = 20  # A1111's "Prompt word wrap length limit" (comma_padding_backtrack) default


@dataclass
class Conditioning:
    """One prompt encoded: (1 × 77·n × dim) embeddings and, for SDXL, the pooled embedding."""

    embeds: Any
    pooled: Any = None


@dataclass
class StepConditioning:
    """The conditioning of a prompt that changes during sampling (``[a:b:when]``, ``[a|b]``).

    ``positive`` / ``negative`` are ``[(last_step, Conditioning), …]`` as
    :func:`.prompt_syntax.prompt_schedule` orders them; :meth:`update` is called at the end of
    each step and returns what diffusers should use from the next step on."""

    positive: list[tuple[int, Conditioning]]
    negative: list[tuple[int, Conditioning]]
    pooled: bool = False

    @property
    def tensor_inputs(self) -> list[str]:
        return ["prompt_embeds", "add_text_embeds"] if self.pooled else ["prompt_embeds"]

    def at(self, step_index: int) -> tuple[Conditioning, Conditioning]:
        return (self.positive[schedule_index(self.positive, step_index)][1],
                self.negative[schedule_index(self.negative, step_index)][1])

    def update(self, pipe: Any, step_index: int) -> dict[str, Any]:
        """The callback's tensors for step ``step_index + 1`` (diffusers' CFG layout:
        negative then positive along the batch axis); empty when nothing changes."""
        import torch

        now, coming = self.at(step_index), self.at(step_index + 1)
        if now[0] is coming[0] and now[1] is coming[1]:
            return {}
        pos, neg = coming
        cfg = bool(getattr(pipe, "do_classifier_free_guidance", True))
        out = {"prompt_embeds": torch.cat([neg.embeds, pos.embeds]) if cfg else pos.embeds}
        if self.pooled:
            out["add_text_embeds"] = torch.cat([neg.pooled, pos.pooled]) if cfg else pos.pooled
        return out


@dataclass
class PromptInputs:
    """Keyword arguments for the pipeline call, and what the user should be told."""

    kwargs: dict[str, Any]
    warnings: list[str] = field(default_factory=list)
    chunks: int = 1
    schedule: StepConditioning | None = None


def count_tokens(tokenizer: PreTrainedTokenizerBase, text: str) -> int:
    """Tokens in ``text`` without BOS/EOS."""
    return len(_ids(tokenizer, text))


def _ids(tokenizer: PreTrainedTokenizerBase, text: str) -> list[int]:
    return list(tokenizer(text or "", add_special_tokens=False, truncation=False,
                          verbose=False).input_ids)


Chunk = tuple[list[int], list[float]]  # token ids (≤ 75) and their weights


def weighted_chunks(pipe: Any, tokenizer: PreTrainedTokenizerBase, text: str) -> list[Chunk]:
    """``text`` as A1111 tokenizes a prompt line: 75-token chunks of (ids, weights), a new chunk
    at each ``BREAK``; textual-inversion names expand to their vectors' tokens, kept in one
    chunk (an embedding that does not fit starts the next). A full chunk
    whose last comma is at most :data:`WORD_WRAP` tokens from its end moves the words after
    that comma into the next chunk (A1111's "Prompt word wrap length limit", default 20)."""
    convert = getattr(pipe, "maybe_convert_prompt", None)
    comma = tokenizer.convert_tokens_to_ids(",</w>")
    added = {i: t for t, i in (getattr(tokenizer, "added_tokens_encoder", None) or {}).items()}
    chunks: list[Chunk] = []
    ids: list[int] = []
    weights: list[float] = []
    last_comma = -1

    def close() -> None:
        nonlocal ids, weights, last_comma
        chunks.append((ids, weights))
        ids, weights, last_comma = [], [], -1

    for piece, weight in parse_attention(text):
        if piece == BREAK and weight == -1:
            close()
            continue
        if callable(convert):
            piece = convert(piece, tokenizer)
        tokens = _ids(tokenizer, piece)
        for i, token in enumerate(tokens):
            if token == comma:
                last_comma = len(ids)
            elif len(ids) == CHUNK and last_comma != -1 and CHUNK - last_comma <= WORD_WRAP:
                cut = last_comma + 1
                moved = ids[cut:], weights[cut:]
                ids, weights = ids[:cut], weights[:cut]
                close()
                ids, weights = list(moved[0]), list(moved[1])
            if len(ids) == CHUNK:
                close()
            vectors = _vectors_at(tokens, i, added)
            if vectors > 1 and len(ids) + vectors > CHUNK:  # an embedding stays in one chunk
                close()
            ids.append(token)
            weights.append(weight)
    if ids or not chunks:
        close()
    return chunks


def _vectors_at(tokens: list[int], i: int, added: dict[int, str]) -> int:
    """How many vectors the textual-inversion embedding starting at ``tokens[i]`` has
    (diffusers loads an n-vector embedding NAME as tokens NAME, NAME_1 … NAME_n-1); 1 if
    none starts there."""
    name = added.get(tokens[i])
    if name is None:
        return 1
    n = 1
    while i + n < len(tokens) and added.get(tokens[i + n]) == f"{name}_{n}":
        n += 1
    return n


def _encode_chunk(tok: PreTrainedTokenizerBase, enc: Any, chunk: Chunk, penultimate: bool,
                  device: torch.device | str) -> tuple[Any, Any]:
    """(hidden states 1 × 77 × dim, pooled or None) of one chunk, with A1111's emphasis."""
    import torch

    ids, weights = chunk
    bos, eos = tok.bos_token_id, tok.eos_token_id
    pad = tok.pad_token_id if tok.pad_token_id is not None else eos
    row = [bos, *ids, eos] + [pad] * (CHUNK - len(ids))
    input_ids = torch.tensor([row], device=device)
    pooled = None
    with torch.no_grad():
        if penultimate:  # SDXL, as diffusers' encode_prompt
            out = enc(input_ids, output_hidden_states=True)
            pooled = out[0] if out[0].ndim == 2 else None
            z = out.hidden_states[-2]
        else:
            mask = None
            if getattr(enc.config, "use_attention_mask", False):
                mask = torch.tensor([[1] * (len(ids) + 2) + [0] * (CHUNK - len(ids))],
                                    device=device)
            z = enc(input_ids, attention_mask=mask)[0].to(dtype=enc.dtype, device=device)
        if any(w != 1.0 for w in weights):
            z = emphasize(z, [1.0, *weights] + [1.0] * (CHUNK + 1 - len(weights)))
    return z, pooled


def emphasize(z: torch.Tensor, multipliers: list[float]) -> torch.Tensor:
    """A1111's "Original" emphasis: scale each token's hidden state by its multiplier, then
    restore the original mean of the whole chunk."""
    import torch

    m = torch.tensor(multipliers, device=z.device, dtype=torch.float32)
    original_mean = z.float().mean()
    scaled = z.float() * m.reshape(1, -1, 1)
    return (scaled * (original_mean / scaled.mean())).to(z.dtype)


def _encoders(pipe: Any, family: str) -> list[tuple[Any, Any]]:
    pairs = [(pipe.tokenizer, pipe.text_encoder)]
    if family == "sdxl":
        pairs.append((pipe.tokenizer_2, pipe.text_encoder_2))
    return [(tok, enc) for tok, enc in pairs if tok is not None and enc is not None]


def encode_weighted(pipe: Any, family: str, per_encoder: list[list[Chunk]], n: int,
                    device: torch.device | str) -> Conditioning:
    """Encode one prompt's chunks (one list per text encoder), padded to ``n`` chunks."""
    import torch

    sdxl = family == "sdxl"
    per_chunk: list[list[Any]] = [[] for _ in range(n)]
    pooled = None
    for (tok, enc), chunks in zip(_encoders(pipe, family), per_encoder, strict=True):
        chunks = chunks + [([], [])] * (n - len(chunks))
        for i, chunk in enumerate(chunks):
            z, p = _encode_chunk(tok, enc, chunk, sdxl, device)
            per_chunk[i].append(z)
            if i == 0 and p is not None:
                pooled = p  # the last encoder with a pooled output: SDXL's second
    parts = [torch.cat(zs, dim=-1) for zs in per_chunk]
    embeds = torch.cat(parts, dim=1)
    if sdxl:
        embeds = embeds.to(dtype=_encoders(pipe, family)[-1][1].dtype, device=device)
    return Conditioning(embeds, pooled)


def encode_chunks(pipe: Any, ids_chunks: list[list[int]], device: torch.device | str) -> Any:
    """Encode each chunk as diffusers encodes a prompt, and concatenate (1 × 77·n × dim)."""
    chunks = [(ids, [1.0] * len(ids)) for ids in ids_chunks]
    return encode_weighted(pipe, "sd1", [chunks], len(chunks), device).embeds


def _plain(tokenizer: PreTrainedTokenizerBase, texts: list[str]) -> bool:
    return all(is_plain(t) and count_tokens(tokenizer, t) <= CHUNK for t in texts)


def _plain_text_inputs(family: Any, prompt: str, negative_prompt: str) -> PromptInputs:
    """The prompts as text, for a family whose pipeline encodes them itself (its own encoders and
    lengths: SD 3.5's T5 reads 256 tokens); A1111's syntax in them is said to be read as text,
    and a negative prompt the family does not take is said to be unused."""
    label = family.label
    if not family.negative_prompt:
        inputs = PromptInputs({"prompt": prompt})
        if (negative_prompt or "").strip():
            inputs.warnings.append(f"{label} takes no negative prompt: it was not used.")
        negative_prompt = ""
    else:
        inputs = PromptInputs({"prompt": prompt, "negative_prompt": negative_prompt})
    if not all(is_plain(t or "") for t in (prompt, negative_prompt)):
        inputs.warnings.append(f"{label} reads (emphasis:1.2), [from:to:when], [a|b] and BREAK "
                               "as plain text: the prompt was used as written.")
    return inputs


def prepare_prompt_inputs(pipe: Any, family: str, prompt: str, negative_prompt: str,
                          device: torch.device | str | None, steps: int = 1) -> PromptInputs:
    """What to pass to the pipeline for these prompts over ``steps`` steps (text, or
    A1111-style embeddings, with a per-step schedule when the prompt changes). ``device`` None:
    the pipeline's execution device, looked up only when the embeddings are computed here
    (diffusers finds it by walking every module of every component: tens of milliseconds an
    image for a prompt the pipeline encodes itself)."""
    found = family_of(family)
    if found is not None and not found.a1111_prompts:
        return _plain_text_inputs(found, prompt, negative_prompt)
    pos = prompt_schedule(prompt or "", steps)
    neg = prompt_schedule(negative_prompt or "", steps)
    if (len(pos) == 1 and len(neg) == 1 and pos[0][1] == (prompt or "")
            and neg[0][1] == (negative_prompt or "")
            and _plain(pipe.tokenizer, [pos[0][1], neg[0][1]])):
        return PromptInputs({"prompt": prompt, "negative_prompt": negative_prompt})
    if device is None:
        device = pipe._execution_device
    encoders = _encoders(pipe, family)
    texts = list(dict.fromkeys(t for _, t in pos + neg))
    tokenized = {t: [weighted_chunks(pipe, tok, t) for tok, _ in encoders] for t in texts}
    n = max(len(chunks) for per in tokenized.values() for chunks in per)
    cond = {t: encode_weighted(pipe, family, tokenized[t], n, device) for t in texts}
    first_pos, first_neg = cond[pos[0][1]], cond[neg[0][1]]
    kwargs: dict[str, Any] = {"prompt_embeds": first_pos.embeds,
                              "negative_prompt_embeds": first_neg.embeds}
    if family == "sdxl":
        kwargs.update(pooled_prompt_embeds=first_pos.pooled,
                      negative_pooled_prompt_embeds=first_neg.pooled)
    schedule = None
    if len(pos) > 1 or len(neg) > 1:
        schedule = StepConditioning([(s, cond[t]) for s, t in pos],
                                    [(s, cond[t]) for s, t in neg], pooled=family == "sdxl")
    return PromptInputs(kwargs, chunks=n, schedule=schedule)
