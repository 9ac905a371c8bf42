"""Prompts longer than CLIP's 77 tokens.

Prompts that fit are passed to diffusers as text (``prompt=``), untouched, so the result is
bit-identical to plain diffusers. For longer SD 1.x/2.x prompts we do what A1111 does: split the
tokens into 75-token chunks, encode each as its own 77-token sequence (BOS + chunk + EOS + padding)
and concatenate the embeddings along the sequence axis; the UNet's cross-attention accepts any
sequence length. The negative prompt is padded to the same number of chunks (with empty chunks).
For SDXL, diffusers truncates to 77 tokens; we say which words were dropped, never silently.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

CHUNK = 75  # tokens per chunk; + BOS + EOS = CLIP's 77


@dataclass
class PromptInputs:
    """Keyword arguments for the pipeline call, and what the user should be told."""

    kwargs: dict[str, Any]
    warnings: list[str] = field(default_factory=list)
    chunks: int = 1


def count_tokens(tokenizer: Any, text: str) -> int:
    """Tokens in ``text`` without BOS/EOS."""
    return len(_ids(tokenizer, text))


def _ids(tokenizer: Any, text: str) -> list[int]:
    return list(tokenizer(text or "", add_special_tokens=False, truncation=False,
                          verbose=False).input_ids)


def _chunks(ids: list[int], n: int | None = None) -> list[list[int]]:
    chunks = [ids[i:i + CHUNK] for i in range(0, len(ids), CHUNK)] or [[]]
    while n is not None and len(chunks) < n:
        chunks.append([])
    return chunks


def encode_chunks(pipe: Any, ids_chunks: list[list[int]], device: Any) -> Any:
    """Encode each chunk as diffusers encodes a prompt, and concatenate (1 × 77·n × dim)."""
    import torch

    tok, enc = pipe.tokenizer, pipe.text_encoder
    bos, eos = tok.bos_token_id, tok.eos_token_id
    pad = tok.pad_token_id if tok.pad_token_id is not None else eos
    parts = []
    with torch.no_grad():
        for chunk in ids_chunks:
            row = [bos, *chunk, eos] + [pad] * (CHUNK - len(chunk))
            input_ids = torch.tensor([row], device=device)
            mask = None
            if getattr(enc.config, "use_attention_mask", False):
                mask = torch.tensor([[1] * (len(chunk) + 2) + [0] * (CHUNK - len(chunk))],
                                    device=device)
            parts.append(enc(input_ids, attention_mask=mask)[0].to(dtype=enc.dtype,
                                                                    device=device))
    return torch.cat(parts, dim=1)


def _dropped(tokenizer: Any, ids: list[int]) -> str:
    return tokenizer.decode(ids[CHUNK:]).strip()


def prepare_prompt_inputs(pipe: Any, family: str, prompt: str, negative_prompt: str,
                          device: Any) -> PromptInputs:
    """What to pass to the pipeline for these prompts (text, or chunked embeddings)."""
    tok = pipe.tokenizer
    ids, neg_ids = _ids(tok, prompt), _ids(tok, negative_prompt)
    text_kwargs = {"prompt": prompt, "negative_prompt": negative_prompt}
    if len(ids) <= CHUNK and len(neg_ids) <= CHUNK:
        return PromptInputs(text_kwargs)
    if family == "sdxl":
        warnings = []
        for label, text_ids in (("Prompt", ids), ("Negative prompt", neg_ids)):
            if len(text_ids) > CHUNK:
                warnings.append(f"{label} was truncated to 77 tokens: "
                                f"“{_dropped(tok, text_ids)}” was dropped.")
        return PromptInputs(text_kwargs, warnings)
    n = max(len(_chunks(ids)), len(_chunks(neg_ids)))
    embeds = encode_chunks(pipe, _chunks(ids, n), device)
    neg_embeds = encode_chunks(pipe, _chunks(neg_ids, n), device)
    return PromptInputs({"prompt_embeds": embeds, "negative_prompt_embeds": neg_embeds},
                        chunks=n)
