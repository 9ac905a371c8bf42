"""Finding chat (causal language) models on disk: the studio folder, extra folders, the HF cache.

A chat model is a folder whose ``config.json`` names an architecture ending in ``ForCausalLM``
or ``LMHeadModel`` (GPT-2 and the GPT the ``gpt`` lesson trains)
(Qwen2, SmolLM2/Llama, Mistral, Phi, ...), or a vision-language model that reads images too: a
``...ForConditionalGeneration`` architecture with a ``vision_config`` (SmolVLM, Idefics3, LLaVA,
Qwen2.5-VL, Gemma 3; loaded by transformers' ``AutoModelForImageTextToText``). Scanning reads only JSON files and safetensors headers,
never weights, and skips anything unreadable with a log line. No torch here.
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass
from pathlib import Path

from studio.core.config import Paths, Settings
from studio.core.files import first_per_path, read_json_dict
from studio.core.jobs import UserFacingError
from studio.library.detect import read_safetensors_header
from studio.library.gguf_models import (
    find_gguf_files,
    is_chat_gguf,
    is_gguf_path,
    missing_extra_note,
    read_gguf_info,
    run_context,
)
from studio.library.hf_cache import cached_repo, looks_like_repo_id
from studio.library.kinds import chosen_path, scanned, wrong_kind_message

log = logging.getLogger(__name__)

TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model", "vocab.json", "tokenizer_config.json")
WEIGHT_SUFFIXES = (".safetensors", ".bin")


@dataclass
class ChatModelEntry:
    """One chat model the studio can load. ``spec`` is what a :class:`ChatRequest` names."""

    name: str
    path: Path
    source: str  # studio | extra | hf-cache | file
    architecture: str
    repo_id: str = ""
    size_bytes: int = 0
    context_length: int = 0
    has_tokenizer: bool = True
    has_chat_template: bool = True
    vision: bool = False  # a vision-language model: it can be shown images
    quantized: str = ""  # what quantization_label says ('' for a full-precision model)
    gguf: bool = False  # a llama.cpp GGUF file (quantized is its type: Q4_K_M, F16, …)

    @property
    def spec(self) -> str:
        if self.gguf:  # a repo may hold several quantizations: the file names one
            return str(self.path)
        return self.repo_id if self.source == "hf-cache" and self.repo_id else str(self.path)

    @property
    def note(self) -> str:
        """What the window says beside the model before it is used ('' when nothing): a GGUF
        model where llama-cpp-python is not installed gets the line that installs it."""
        return missing_extra_note(self.name) if self.gguf else ""


def read_config(folder: Path) -> dict:
    """The folder's ``config.json`` as a dict ({} when absent or unreadable)."""
    return read_json_dict(Path(folder) / "config.json")


def causal_architecture(config: dict) -> str:
    """The ``...ForCausalLM`` (or GPT-2's ``...LMHeadModel``) architecture a config names, or
    ''."""
    for arch in config.get("architectures") or []:
        if isinstance(arch, str) and arch.endswith(("ForCausalLM", "LMHeadModel")):
            return arch
    return ""


def vision_architecture(config: dict) -> str:
    """The ``...ForConditionalGeneration`` architecture of a vision-language model (a config
    with a ``vision_config``), or ''."""
    if not isinstance(config.get("vision_config"), dict):
        return ""
    for arch in config.get("architectures") or []:
        if isinstance(arch, str) and arch.endswith("ForConditionalGeneration"):
            return arch
    return ""


#: Said where an image meets a model that reads text only.
VISION_HINT = ("Models that can see images are vision-language models such as SmolVLM, "
               "Qwen2.5-VL, Gemma 3 or LLaVA; 'hf download HuggingFaceTB/SmolVLM-256M-Instruct' "
               "gets a small one.")


def context_length(config: dict) -> int:
    """The model's context length in tokens (0 when the config does not say)."""
    nested = config.get("text_config")
    text: dict = nested if isinstance(nested, dict) else {}
    for key in ("max_position_embeddings", "n_positions", "max_sequence_length", "seq_length"):
        for source in (config, text):
            value = source.get(key)
            if isinstance(value, int) and value > 0:
                return value
    return 0


#: torchao config class names → how Models and the dialogs name the method.
_TORCHAO_LABELS = {"Int8WeightOnlyConfig": "int8", "IntxWeightOnlyConfig": "int4",
                   "Int4WeightOnlyConfig": "int4", "Float8WeightOnlyConfig": "fp8",
                   "Int8DynamicActivationInt8WeightConfig": "int8 dynamic"}


def quantization_label(config: dict) -> str:
    """How a model's ``config.json`` says it is quantized ("torchao int8", "4-bit (bnb)",
    "gptq", …), or '' when it is not."""
    quant = config.get("quantization_config")
    if not isinstance(quant, dict):
        return ""
    method = str(quant.get("quant_method") or "quantized")
    if method == "torchao":
        kind = quant.get("quant_type")
        default = kind.get("default") if isinstance(kind, dict) else None
        name = default.get("_type") if isinstance(default, dict) else kind
        return f"torchao {_TORCHAO_LABELS.get(str(name), str(name or 'quantized'))}"
    if method == "bitsandbytes":
        return "4-bit (bnb)" if quant.get("load_in_4bit") else "8-bit (bnb)"
    return method


def _has_chat_template(folder: Path) -> bool:
    if (folder / "chat_template.jinja").is_file() or (folder / "chat_template.json").is_file():
        return True
    try:
        cfg = json.loads((folder / "tokenizer_config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return bool(isinstance(cfg, dict) and cfg.get("chat_template"))


def weight_files(folder: Path) -> list[Path]:
    """The weight files of a model folder: safetensors when there are any, else ``.bin``."""
    files = sorted(p for p in folder.glob("*.safetensors") if p.is_file())
    return files or sorted(p for p in folder.glob("*.bin") if p.is_file()
                           and p.name != "training_args.bin")


def safetensors_parameter_count(files: list[Path]) -> int:
    """Parameters in safetensors files, from their headers alone (no weights read)."""
    total = 0
    for path in files:
        header = read_safetensors_header(path)  # bounded and type-checked; UserFacingError
        for key, info in header.items():
            if key == "__metadata__":
                continue
            total += math.prod(info["shape"])
    return total


def chat_entry_for_folder(folder: Path, source: str, name: str = "",
                          repo_id: str = "") -> ChatModelEntry | None:
    """A :class:`ChatModelEntry` for a model folder, or None when it is not a causal LM."""
    folder = Path(folder)
    config = read_config(folder)
    vision = vision_architecture(config)
    arch = causal_architecture(config) or vision
    if not arch or not weight_files(folder):
        return None
    size = sum(p.stat().st_size for p in weight_files(folder))
    has_tok = any((folder / f).is_file() for f in TOKENIZER_FILES)
    return ChatModelEntry(name or folder.name, folder, source, arch, repo_id, size,
                          context_length(config), has_tok, _has_chat_template(folder),
                          bool(vision), quantization_label(config))


def gguf_chat_entry(path: Path, source: str, repo_id: str = "",
                    settings: Settings | None = None) -> ChatModelEntry:
    """The entry of a GGUF chat model file (its header read; UserFacingError when damaged);
    with ``settings``, its context is the one it runs with (``gguf_context``), else its own."""
    path = Path(path)
    info = read_gguf_info(path)
    context = (run_context(info.context_length, settings.gguf_context) if settings is not None
               else info.context_length)
    return ChatModelEntry(path.stem, path, source, info.architecture, repo_id,
                          path.stat().st_size, context, True,
                          bool(info.chat_template), False, info.quantization, gguf=True)


def _scan(root: Path, source: str, depth: int = 2) -> list[ChatModelEntry]:
    found: list[ChatModelEntry] = []
    try:
        entry = chat_entry_for_folder(root, source)
    except OSError as exc:
        log.info("skipping %s: %s", root, exc)
        return found
    if entry is not None:
        return [entry]
    if depth <= 0 or (root / "model_index.json").is_file():  # a diffusers pipeline: not ours
        return found
    try:
        children = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    except OSError as exc:
        log.info("cannot list %s: %s", root, exc)
        return found
    for child in children:
        found += _scan(child, source, depth - 1)
    return found


def _hf_repos() -> list:
    from studio.library.hf_cache import hf_cache_repos

    return hf_cache_repos()


def _hf_snapshot(repo) -> Path | None:
    revisions = sorted(repo.revisions, key=lambda r: ("main" in r.refs, r.last_modified),
                       reverse=True)
    for rev in revisions:
        snap = Path(rev.snapshot_path)
        config = read_config(snap)
        if causal_architecture(config) or vision_architecture(config):
            return snap
    return None


def _hf_entry(repo) -> ChatModelEntry | None:
    snap = _hf_snapshot(repo)
    return chat_entry_for_folder(snap, "hf-cache", repo.repo_id, repo.repo_id) if snap else None


def find_chat_models(settings: Settings, paths: Paths) -> list[ChatModelEntry]:
    """Every chat model available offline, without loading any weights."""
    found: list[ChatModelEntry] = []
    if paths.models_dir.is_dir():
        found += _scan(paths.models_dir, "studio", depth=3)
    for extra in settings.extra_model_dirs:
        root = Path(extra).expanduser()
        if root.is_dir():
            found += _scan(root, "extra", depth=3)
    for added in settings.added_models:
        path = Path(added).expanduser()
        if path.is_dir():
            entry = chat_entry_for_folder(path, "file")
            if entry is not None:
                found.append(entry)
    found += scanned(_hf_repos(), _hf_entry, log, name=lambda repo: repo.repo_id,
                     level=logging.INFO, errors=(OSError,))
    # a GGUF file the chat list passes over, the library lists with the reason
    found += scanned(find_gguf_files(settings, paths),
                     lambda f: gguf_chat_entry(f[0], f[1], f[2], settings), log,
                     name=lambda f: f[0], level=logging.INFO)
    return first_per_path(found, lambda entry: entry.path)


def resolve_chat_model(spec: str, settings: Settings, paths: Paths) -> ChatModelEntry:
    """The chat model a request names: a folder or a repo id in the HF cache."""
    spec, path = chosen_path(spec, "No chat model chosen. Pick one in the model list.")
    if path.is_file() and is_gguf_path(path):
        if is_chat_gguf(path):
            return gguf_chat_entry(path, "file", settings=settings)
        raise UserFacingError(wrong_kind_message(path, "chat", paths) or (
            f"{path.name} is a GGUF file with no vocabulary in it (a diffusion model, a vision "
            "projector or an encoder), not a language model, so it cannot chat."))
    if path.exists():
        wrong = wrong_kind_message(path, "chat", paths)
        if wrong:
            raise UserFacingError(wrong)
        if not path.is_dir():
            raise UserFacingError(f"{spec} is a file; a chat model is a folder with config.json, "
                                  "the weights and the tokenizer, or a .gguf file.")
        config = read_config(path)
        if not config:
            raise UserFacingError(f"{spec} has no readable config.json, so it is not a "
                                  "transformers model folder.")
        if not causal_architecture(config) and not vision_architecture(config):
            archs = ", ".join(config.get("architectures") or []) or "none"
            raise UserFacingError(f"{spec} is not a chat (causal language) model: its "
                                  f"architecture is {archs}.")
        entry = chat_entry_for_folder(path, "file")
        if entry is None:
            raise UserFacingError(f"{spec} has no weights (.safetensors or .bin files).")
        return entry
    if looks_like_repo_id(spec):
        entry = _hf_entry(cached_repo(spec, _hf_repos()))
        if entry is None:
            raise UserFacingError(f"{spec} is in your Hugging Face cache but is not a complete "
                                  "chat model (config.json and weights).")
        return entry
    raise UserFacingError(f"{spec} does not exist.")
