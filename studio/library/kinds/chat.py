"""Chat (causal language) models: transformers folders and HF cache repos."""

from __future__ import annotations

from pathlib import Path

from studio.core.config import Paths, Settings
from studio.core.wording import count_of
from studio.library.chat_models import chat_entry_for_folder, find_chat_models, weight_files
from studio.library.classify import files_precision
from studio.library.entry import LibraryEntry
from studio.library.kinds import ModelKind


def _entry(m) -> LibraryEntry:
    files = [f for f in weight_files(m.path) if f.suffix == ".safetensors"]
    detail = m.architecture + (f", {count_of(m.context_length, 'token')} context"
                             if m.context_length else "")
    # A quantized model's files mix int8 codes with float scales: name the method instead.
    precision = m.quantized or files_precision(files)
    return LibraryEntry(m.name, "chat", m.path, m.source, "transformers", m.size_bytes,
                        precision, "", m.repo_id, detail, ("Chat",))


def scan(settings: Settings, paths: Paths) -> list[LibraryEntry]:
    # GGUF files are their own kind (kinds/gguf.py)
    return [_entry(m) for m in find_chat_models(settings, paths) if not m.gguf]


def describe(path: Path, source: str) -> LibraryEntry | None:
    found = chat_entry_for_folder(path, source) if path.is_dir() else None
    return _entry(found) if found is not None else None


KINDS = (ModelKind("chat", "Chat", 6,
                   wanted="Chat needs a language model folder (config.json, weights, tokenizer)",
                   cli_wanted="language models (a folder with config.json, weights and a "
                              "tokenizer, or a repo id in the Hugging Face cache)",
                   cli_use="Chat with it: 'studio chat --model {spec}'.",
                   scan=scan, describe=describe, probe=20),)
