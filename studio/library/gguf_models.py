"""GGUF chat models (llama.cpp's single-file format): what a ``.gguf`` file is, read with the
``gguf`` package alone, and where the library finds them.

:func:`read_gguf_info` reads a file's metadata and tensor table — architecture, quantization
type, context length, parameter count, chat template — without loading a weight and without
``llama-cpp-python``, so the library lists GGUF models (with their quantization and size) even
where the optional extra is missing; such a model then carries :func:`llama_cpp_missing`'s
one-line install command instead of failing later. Running one is
:mod:`studio.pipelines.chat.gguf`'s job. No torch here.
"""

from __future__ import annotations

import importlib.util
import logging
import re
import threading
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from studio.core.files import first_per_path
from studio.core.jobs import UserFacingError
from studio.library.hf_cache import entries_below, hf_cache_repos, hf_main_snapshot

log = logging.getLogger(__name__)

#: The extra's pin (pyproject's ``[project.optional-dependencies] gguf``).
LLAMA_CPP_REQUIREMENT = "llama-cpp-python==0.3.36"
INSTALL_COMMAND = f"pip install {LLAMA_CPP_REQUIREMENT}"
#: Architectures that are not chat models: a vision projector (mmproj) or an encoder.
_NOT_CHAT = {"clip", "bert", "nomic-bert", "jina-bert-v2", "t5encoder"}
#: A split GGUF's later parts (llama.cpp loads the first, which names the others).
_LATER_SPLIT = re.compile(r"-(\d{5})-of-\d{5}\.gguf$", re.IGNORECASE)
_MAGIC = b"GGUF"


@dataclass(frozen=True)
class GGUFInfo:
    """What a GGUF file says about itself (from its header; no weights read)."""

    architecture: str
    quantization: str  # Q4_K_M, Q8_0, F16, …
    context_length: int
    parameters: int
    chat_template: str
    name: str = ""
    #: a vocabulary in the metadata (tokenizer.ggml.model): a language model. Diffusion model
    #: GGUFs (ComfyUI-GGUF's FLUX, SD3, Wan …) and vision projectors have none.
    vocab: bool = True


def llama_cpp_available() -> bool:
    """Whether ``llama_cpp`` can be imported here (found, not imported: that is slow)."""
    try:
        return importlib.util.find_spec("llama_cpp") is not None
    except (ImportError, ValueError):  # a broken or blocked install
        return False


def llama_cpp_missing(name: str) -> str:
    """The sentence said instead of an error where a GGUF model meets a Studio without the
    extra: what is missing and the one line that installs it."""
    return (f"{name} is a GGUF model, which runs through llama-cpp-python: install it with "
            f"'{INSTALL_COMMAND}' and restart Studio.")


def missing_extra_note(name: str) -> str:
    """:func:`llama_cpp_missing`'s sentence where llama-cpp-python is missing, else ''."""
    return "" if llama_cpp_available() else llama_cpp_missing(name)


def _field(reader, key: str):
    found = reader.fields.get(key)
    if found is None:
        return None
    try:
        return found.contents()
    except (IndexError, ValueError, UnicodeDecodeError):
        return None


def _quantization(reader) -> str:
    import gguf

    file_type = _field(reader, "general.file_type")
    if isinstance(file_type, int):
        try:
            name = gguf.LlamaFileType(file_type).name
        except ValueError:
            name = ""
        if name:
            return name.removeprefix("MOSTLY_").removeprefix("ALL_")
    # No (known) file type: the type holding most of the bytes names it.
    counts: Counter[str] = Counter()
    for tensor in reader.tensors:
        counts[tensor.tensor_type.name] += int(tensor.n_bytes)
    return counts.most_common(1)[0][0] if counts else "unknown"


_memo: dict[tuple[str, int, float], GGUFInfo] = {}
_memo_lock = threading.Lock()


def read_gguf_info(path: Path) -> GGUFInfo:
    """The metadata of the GGUF file at ``path`` (remembered per size and modification time).

    A file that is not GGUF, or whose header is cut or corrupt, raises UserFacingError."""
    path = Path(path)
    stat = path.stat()
    key = (str(path.resolve()), stat.st_size, stat.st_mtime)
    with _memo_lock:
        if key in _memo:
            return _memo[key]
    with open(path, "rb") as fh:
        magic = fh.read(4)
    if magic != _MAGIC:
        raise UserFacingError(f"{path.name} is not a GGUF file (it does not start with 'GGUF'); "
                              "download it again.")
    try:
        import gguf

        reader = gguf.GGUFReader(str(path), "r")
        architecture = str(_field(reader, "general.architecture") or "")
        context = _field(reader, f"{architecture}.context_length")
        template = _field(reader, "tokenizer.chat_template")
        name = _field(reader, "general.name")
        info = GGUFInfo(architecture or "unknown", _quantization(reader),
                        context if isinstance(context, int) else 0,
                        sum(int(t.n_elements) for t in reader.tensors),
                        template if isinstance(template, str) else "",
                        name if isinstance(name, str) else "",
                        "tokenizer.ggml.model" in reader.fields)
    except (ValueError, IndexError, KeyError, OSError, TypeError, OverflowError,
            MemoryError) as exc:
        why = str(exc)[:160] or "its header cannot be read"
        raise UserFacingError(f"{path.name} is a damaged GGUF file ({why}); download it "
                              "again.") from exc
    with _memo_lock:
        _memo[key] = info
    return info


DEFAULT_CONTEXT = 4096  # tokens, for a GGUF that does not say its own


def run_context(model_context: int, setting: int) -> int:
    """The context a GGUF model runs with: the ``gguf_context`` setting, or the model's own
    when smaller (or when the setting is 0)."""
    own = model_context if model_context > 0 else DEFAULT_CONTEXT
    return min(own, setting) if setting > 0 else own


def is_gguf_path(path: Path) -> bool:
    return Path(path).suffix.lower() == ".gguf"


def is_chat_gguf(path: Path) -> bool:
    """A ``.gguf`` file the library lists as a chat model: not a later part of a split model,
    not a vision projector, encoder or diffusion model (no vocabulary). Unreadable files count
    (they are listed with why)."""
    path = Path(path)
    if not is_gguf_path(path) or not path.is_file():
        return False
    split = _LATER_SPLIT.search(path.name)
    if split and int(split.group(1)) > 1:
        return False
    if path.name.lower().startswith("mmproj"):
        return False
    try:
        info = read_gguf_info(path)
    except (UserFacingError, OSError):
        return True
    return info.vocab and info.architecture not in _NOT_CHAT


def parameters_title(count: int) -> str:
    """"1.5B parameters", "135M parameters", "9.6K parameters"."""
    for unit, size in (("B", 1e9), ("M", 1e6), ("K", 1e3)):
        if count >= size:
            return f"{count / size:.1f}{unit} parameters"
    return f"{count} parameters"


def gguf_files(root: Path, depth: int) -> list[Path]:
    """The chat ``.gguf`` files in ``root`` and up to ``depth`` folders below it, none hidden."""
    found: list[Path] = []
    for level in range(depth + 1):  # each folder listed once per library scan (hf_cache)
        try:
            hits = sorted(p for p in entries_below(root, level)
                          if p.name.lower().endswith(".gguf"))
        except OSError as exc:
            log.info("cannot list %s: %s", root, exc)
            break
        found += [p for p in hits if not any(part.startswith(".") for part in
                                             p.relative_to(root).parts) and is_chat_gguf(p)]
    return found


def find_gguf_files(settings, paths) -> list[tuple[Path, str, str]]:
    """Every chat ``.gguf`` file where the library looks: ``(path, source, repo_id)`` — the
    Studio models folder, the extra folders, files added in place, and the Hugging Face cache
    (a repo's snapshot, two folders down)."""
    found: list[tuple[Path, str, str]] = []
    if paths.models_dir.is_dir():
        found += [(p, "studio", "") for p in gguf_files(paths.models_dir, 3)]
    for extra in settings.extra_model_dirs:
        root = Path(extra).expanduser()
        if root.is_dir():
            found += [(p, "extra", "") for p in gguf_files(root, 3)]
    for added in settings.added_models:
        path = Path(added).expanduser()
        if is_chat_gguf(path):
            found.append((path, "file", ""))
    for repo in hf_cache_repos():
        snap = hf_main_snapshot(repo)
        if snap is not None and snap.is_dir():
            found += [(p, "hf-cache", repo.repo_id) for p in gguf_files(snap, 2)]
    return first_per_path(found, lambda item: item[0])
