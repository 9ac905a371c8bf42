"""GGUF chat models: llama.cpp's single ``.gguf`` files, in the models folders and the HF cache.

Listed from their headers alone (the ``gguf`` package), with the quantization type as their
precision and the size of the file, whether or not llama-cpp-python is installed; where it is
not, the entry says the one line that installs it. A damaged file is listed as unknown with why.
"""

from __future__ import annotations

from pathlib import Path

from studio.core.config import Paths, Settings
from studio.core.jobs import UserFacingError
from studio.core.wording import count_of
from studio.library.chat_models import ChatModelEntry, gguf_chat_entry
from studio.library.entry import LibraryEntry
from studio.library.gguf_models import (
    find_gguf_files,
    is_chat_gguf,
    parameters_title,
    read_gguf_info,
)
from studio.library.kinds import ModelKind


def _entry(m: ChatModelEntry) -> LibraryEntry:
    parts = [m.architecture]
    if m.context_length:
        parts.append(f"{count_of(m.context_length, 'token')} context")
    parts.append(parameters_title(read_gguf_info(m.path).parameters))
    if not m.has_chat_template:
        parts.append("no chat template (a generic one is used)")
    detail = ", ".join(parts) + (f". {m.note}" if m.note else "")
    return LibraryEntry(m.name, "gguf", m.path, m.source, "gguf", m.size_bytes, m.quantized, "",
                        m.repo_id, detail, ("Chat",))


def _listed(path: Path, source: str, repo_id: str) -> LibraryEntry:
    try:
        return _entry(gguf_chat_entry(path, source, repo_id))
    except UserFacingError as exc:
        return LibraryEntry(path.stem, "unknown", path, source, "gguf", path.stat().st_size,
                            repo_id=repo_id, detail=str(exc))


def scan(settings: Settings, paths: Paths) -> list[LibraryEntry]:
    return [_listed(p, source, repo) for p, source, repo in find_gguf_files(settings, paths)]


def describe(path: Path, source: str) -> LibraryEntry | None:
    return _entry(gguf_chat_entry(path, source)) if is_chat_gguf(path) else None


KINDS = (ModelKind("gguf", "GGUF chat", 6,
                   wanted="Chat needs a language model: a folder (config.json, weights, "
                          "tokenizer) or a .gguf file",
                   cli_wanted="GGUF chat models (a .gguf file)",
                   cli_use="Chat with it: 'studio chat --model {spec}'.",
                   scan=scan, describe=describe, probe=15),)
