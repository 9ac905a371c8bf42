"""Textual-inversion embeddings, applied as A1111 applies them: by file name in the prompt.

An embedding in the library (kind ``embedding``: A1111 ``.safetensors`` / ``.pt`` with plain
tensors, SDXL ``clip_l`` + ``clip_g`` files, diffusers ``learned_embeds.safetensors``) whose file
name appears as a word in the prompt or the negative prompt is loaded into the pipeline's
tokenizer and text encoder(s) with diffusers' ``load_textual_inversion``, with that name as its
token; diffusers then expands the name to the embedding's vectors wherever it is encoded. Files
are read only with safetensors or ``torch.load(weights_only=True)``
(:func:`studio.library.safe_load.load_state_dict`). Embeddings left from an earlier job that this
prompt does not name are unloaded first, so a prompt without one is encoded as before.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from studio.core.config import Paths, Settings
from studio.core.jobs import UserFacingError

log = logging.getLogger(__name__)

EMBEDDING_SUFFIXES = (".safetensors", ".pt", ".bin")
_LOADED = "_studio_embeddings"  # on the pipeline: {name: (path, mtime, size)}


@dataclass
class EmbeddingPlan:
    """The embeddings a prompt names (name → file), and what the user should be told."""

    files: dict[str, Path] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    applied: list[str] = field(default_factory=list)  # the names loaded into the pipeline

    def hashes_text(self, paths: Paths) -> str:
        """A1111's ``TI hashes`` value: ``name: first 12 hex digits of the file's SHA-256, …``
        for the embeddings applied ("" without any)."""
        from studio.library.hashing import full_sha256

        parts = []
        for name in self.applied:
            try:
                digest = full_sha256(self.files[name], paths)[:12]
            except OSError as exc:
                log.warning("cannot hash %s: %s", self.files[name], exc)
                continue
            parts.append(f"{name.replace(':', '').replace(',', '')}: {digest}")
        return ", ".join(parts)


def _named(name: str, text: str) -> bool:
    return re.search(rf"(?<![\w-]){re.escape(name)}(?![\w-])", text, re.IGNORECASE) is not None


def find_embeddings(prompt: str, negative_prompt: str, settings: Settings,
                    paths: Paths) -> EmbeddingPlan:
    """Library embeddings whose name is a word of either prompt. Only files whose name is in
    the prompt are classified, so a job without embeddings reads no file."""
    from studio.library.catalog import entry_name, library_files
    from studio.library.classify import classify_file

    text = f"{prompt or ''}\n{negative_prompt or ''}"
    plan = EmbeddingPlan()
    for path in library_files(settings, paths):
        name = entry_name(path)
        if path.suffix.lower() not in EMBEDDING_SUFFIXES or name in plan.files \
                or not _named(name, text):
            continue
        try:
            kind = classify_file(path)
        except UserFacingError as exc:
            plan.warnings.append(f"{path.name} was not applied: {exc}")
            continue
        if kind.kind == "embedding":
            plan.files[name] = path
    return plan


def token_of(name: str) -> str:
    """The token an embedding is loaded as: its name in lower case. CLIP reads words without
    case (A1111 finds ``easynegative`` for EasyNegative.pt), and diffusers expands a
    multi-vector token only when the tokenizer's lower-cased text holds it as written."""
    return name.lower()


def spell_as_named(text: str, plan: EmbeddingPlan) -> str:
    """``text`` with each embedding's name written as its token (:func:`token_of`)."""
    for name in plan.files:
        token = token_of(name).replace("\\", "\\\\")
        text = re.sub(rf"(?<![\w-]){re.escape(name)}(?![\w-])", token, text,
                      flags=re.IGNORECASE)
    return text


def embedding_vectors(path: Path) -> dict[str, Any]:
    """The vectors of an embedding file per text encoder: ``{"clip_l": t}`` (SD 1.x/2.x and the
    first SDXL encoder) and ``{"clip_g": t}`` (the second SDXL encoder); each ``t`` is
    (vectors × width)."""
    from studio.library.safe_load import load_state_dict

    state = load_state_dict(path)
    if "clip_l" in state or "clip_g" in state:
        found = {k: state[k] for k in ("clip_l", "clip_g") if k in state}
    elif "string_to_param" in state and isinstance(state["string_to_param"], dict):
        found = {"clip_l": next(iter(state["string_to_param"].values()))}
    elif "emb_params" in state:
        found = {"clip_l": state["emb_params"]}
    else:
        tensors = [v for v in state.values() if hasattr(v, "shape")]
        if len(tensors) != 1:
            raise UserFacingError(f"{path.name} is not a textual-inversion embedding (expected "
                                  "one tensor, emb_params, string_to_param or clip_l/clip_g).")
        found = {"clip_l": tensors[0]}
    return {k: (v.unsqueeze(0) if v.ndim == 1 else v).float() for k, v in found.items()}


def _key(path: Path) -> tuple[str, int, int]:
    stat = path.stat()
    return str(path.resolve()), stat.st_mtime_ns, stat.st_size


def _pairs(pipe: Any, family: str) -> list[tuple[str, Any, Any]]:
    pairs = [("clip_l", pipe.tokenizer, pipe.text_encoder)]
    if family == "sdxl":
        pairs.append(("clip_g", pipe.tokenizer_2, pipe.text_encoder_2))
    return [(k, tok, enc) for k, tok, enc in pairs if tok is not None and enc is not None]


def _width(encoder: Any) -> int:
    return int(encoder.get_input_embeddings().weight.shape[-1])


def unload_embeddings(pipe: Any, family: str) -> None:
    """Remove the embeddings an earlier job loaded (their tokens and vectors)."""
    loaded = getattr(pipe, _LOADED, None) or {}
    if not loaded:
        return
    for _, tok, enc in _pairs(pipe, family):
        names = [token_of(n) for n in loaded]
        tokens = [t for t in tok.get_vocab() if any(t == n or re.fullmatch(
            rf"{re.escape(n)}_\d+", t) for n in names)]
        if tokens:
            pipe.unload_textual_inversion(tokens=tokens, tokenizer=tok, text_encoder=enc)
    setattr(pipe, _LOADED, {})


def apply_embeddings(pipe: Any, plan: EmbeddingPlan, family: str) -> None:
    """Load the plan's embeddings into ``pipe`` (unloading others first); an embedding that
    does not fit the model is skipped with a warning in ``plan.warnings``."""
    wanted = {name: _key(path) for name, path in plan.files.items()}
    if (getattr(pipe, _LOADED, None) or {}) == wanted:
        plan.applied = list(wanted)
        return
    unload_embeddings(pipe, family)
    loaded: dict[str, Any] = {}
    for name, path in plan.files.items():
        try:
            vectors = embedding_vectors(path)
        except UserFacingError as exc:
            plan.warnings.append(f"The embedding {name} was not applied: {exc}")
            continue
        pairs = [(k, tok, enc) for k, tok, enc in _pairs(pipe, family) if k in vectors]
        bad = [f"{vectors[k].shape[-1]} wide, the model's text encoder {_width(enc)}"
               for k, _, enc in pairs if vectors[k].shape[-1] != _width(enc)]
        if not pairs or bad or (family == "sdxl" and len(pairs) < 2):
            why = bad[0] if bad else "it has no vectors for this model's text encoders"
            plan.warnings.append(f"The embedding {name} was not applied: it was made for another "
                                 f"kind of model ({why}).")
            continue
        loaded[name] = None  # until it loads: unloaded (and tried again) by the next job
        try:
            for k, tok, enc in pairs:
                pipe.load_textual_inversion({name: vectors[k].to(enc.dtype)},
                                            token=token_of(name), tokenizer=tok,
                                            text_encoder=enc)
        except ValueError as exc:
            plan.warnings.append(f"The embedding {name} was not applied: {exc}")
            continue
        loaded[name] = wanted[name]
        plan.applied.append(name)
    setattr(pipe, _LOADED, loaded)
