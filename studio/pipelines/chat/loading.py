"""Loading a local chat model safely: tokenizer, weights, precision, optional 8/4-bit.

Runs on the GPU worker; torch and transformers are imported inside the functions. Weights load
with ``local_files_only=True`` and never ``trust_remote_code``; safetensors are preferred and a
``.bin`` is read by transformers with ``torch.load(weights_only=True)``. Memory is estimated from
the config / safetensors headers before loading, so a model that clearly cannot fit is refused
with a message instead of swapping the machine to a halt.
"""

from __future__ import annotations

import logging
import os
import pickle
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from studio.core.jobs import UserFacingError
from studio.library.chat_models import (
    ChatModelEntry,
    read_config,
    safetensors_parameter_count,
    weight_files,
)
from studio.library.safe_load import refusal_in

if TYPE_CHECKING:
    import torch

log = logging.getLogger(__name__)

#: Used when a tokenizer has no chat template of its own (a base model): plain ChatML.
FALLBACK_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
FALLBACK_WARNING = ("{name} has no chat template, so a generic one is used; it was probably not "
                    "trained for chat and replies may be poor. Complete mode continues a text "
                    "with no template (Chat: Mode; studio chat --complete).")


@dataclass(frozen=True)
class LoadOptions:
    """How to load: the torch dtype and the quantization (auto | 8bit | 4bit)."""

    dtype: torch.dtype
    load_in: str = "auto"

    def __str__(self) -> str:  # part of the model cache key
        return f"{self.dtype}|{self.load_in}"


@dataclass
class LoadedChatModel:
    """A model ready to generate, with what the engine needs to know about it."""

    model: Any
    tokenizer: Any
    context_length: int
    device: str
    name: str
    warnings: list[str] = field(default_factory=list)
    #: A vision-language model's processor (its tokenizer and image processor), else None.
    processor: Any = None
    #: a GGUF file: ``model`` is a ``llama_cpp.Llama`` (:mod:`studio.pipelines.chat.gguf`)
    gguf: bool = False


def bitsandbytes_usable() -> bool:
    """True when 8/4-bit loading can work here: bitsandbytes installed and a CUDA GPU."""
    import importlib.util

    if importlib.util.find_spec("bitsandbytes") is None:
        return False
    import torch

    return bool(torch.cuda.is_available())


def parameter_count(entry: ChatModelEntry) -> int:
    """Parameters of a model, from safetensors headers or else an estimate from the config."""
    files = [p for p in weight_files(entry.path) if p.suffix == ".safetensors"]
    if files:
        return safetensors_parameter_count(files)
    # A .bin has no cheap header: assume fp16/fp32 storage from the config's dtype.
    config = read_config(entry.path)
    width = 2 if str(config.get("torch_dtype") or config.get("dtype")) in (
        "float16", "bfloat16") else 4
    return sum(p.stat().st_size for p in weight_files(entry.path)) // width


def bytes_per_parameter(options: LoadOptions) -> float:
    if options.load_in == "8bit":
        return 1.0
    if options.load_in == "4bit":
        return 0.55  # 4-bit blocks plus their scales
    import torch

    return float(torch.empty((), dtype=options.dtype).element_size())


def available_memory(device: str) -> int:
    """Bytes free for a model on ``device`` (0 when unknown)."""
    import torch

    if device.startswith("cuda") and torch.cuda.is_available():
        free, _total = torch.cuda.mem_get_info()
        return int(free)
    try:
        import psutil

        return int(psutil.virtual_memory().available)
    except ImportError:
        pass
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def quantized_bytes(entry: ChatModelEntry, options: LoadOptions) -> int:
    """Bytes a pre-quantized model (int8/fp8 codes stay one byte each) takes once loaded: the
    codes as they are, every float tensor (scales, embeddings, norms) at the load dtype."""
    import math

    from studio.library.detect import read_safetensors_header

    width = bytes_per_parameter(LoadOptions(options.dtype))
    total = 0
    for path in weight_files(entry.path):
        if path.suffix != ".safetensors":
            return path.stat().st_size * 2
        for key, info in read_safetensors_header(path).items():
            if key != "__metadata__":
                one = 1 if info["dtype"] in ("I8", "U8", "F8_E4M3", "F8_E5M2") else width
                total += int(math.prod(info["shape"]) * one)
    return total


def check_memory(entry: ChatModelEntry, device: str, options: LoadOptions) -> int:
    """Estimated bytes the weights need; raises UserFacingError when they clearly cannot fit."""
    needed = (quantized_bytes(entry, options) if entry.quantized
              else int(parameter_count(entry) * bytes_per_parameter(options)))
    free = available_memory(device)
    # 10% on top for activations and the KV cache of a normal reply; "clearly" means even then.
    if free and needed * 1.1 > free:
        where = "GPU memory" if device.startswith("cuda") else "free memory"
        hint = (" Try 8-bit or 4-bit loading in Settings." if device.startswith("cuda")
                and options.load_in == "auto" else " Choose a smaller model.")
        raise UserFacingError(
            f"{entry.name} needs about {needed / 2**30:.1f} GB but only "
            f"{free / 2**30:.1f} GB of {where} is available.{hint}")
    return needed


def _refuse_remote_code(exc: BaseException, entry: ChatModelEntry) -> None:
    """transformers asks for ``trust_remote_code=True`` when a folder's classes exist only as
    Python files in it; a user cannot pass that, and Studio never will — say so instead."""
    if "trust_remote_code" in str(exc):
        raise UserFacingError(
            f"{entry.name} cannot be loaded: it needs Python code shipped in its folder "
            "(auto_map), and Studio never runs a model's own code. Choose a model whose "
            "architecture transformers supports directly.") from exc


def _load_tokenizer(entry: ChatModelEntry) -> Any:
    from transformers import AutoTokenizer

    if not entry.has_tokenizer:
        raise UserFacingError(f"{entry.name} has no tokenizer (tokenizer.json, tokenizer.model or "
                              "vocab files are missing from its folder), so text cannot be turned "
                              "into tokens. Download the complete model.")
    return _from_folder(AutoTokenizer, entry, "tokenizer")


def _from_folder(auto: Any, entry: ChatModelEntry, what: str) -> Any:
    """``auto.from_pretrained`` on the model's folder, offline and without remote code."""
    try:
        return auto.from_pretrained(str(entry.path), local_files_only=True,
                                    trust_remote_code=False)
    except (OSError, ValueError, TypeError) as exc:
        _refuse_remote_code(exc, entry)
        raise UserFacingError(f"The {what} of {entry.name} cannot be loaded: "
                              f"{str(exc).splitlines()[0][:200]}") from exc


def _quantization(options: LoadOptions, device: str) -> Any:
    if options.load_in == "auto":
        return None
    if not device.startswith("cuda") or not bitsandbytes_usable():
        raise UserFacingError(f"{options.load_in} loading needs a CUDA GPU and the bitsandbytes "
                              "package; set 'Load chat models' to auto in Settings.")
    import torch
    from transformers import BitsAndBytesConfig

    if options.load_in == "8bit":
        return BitsAndBytesConfig(load_in_8bit=True)
    return BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4",
                              bnb_4bit_compute_dtype=options.dtype
                              if options.dtype != torch.float32 else torch.float16)


def _load_processor(entry: ChatModelEntry) -> Any:
    from transformers import AutoProcessor

    return _from_folder(AutoProcessor, entry, "processor (tokenizer and image preprocessing)")


def load_chat_model(entry: ChatModelEntry, device: str, options: LoadOptions) -> LoadedChatModel:
    """Tokenizer and model for ``entry`` on ``device`` (what the model cache calls); a
    vision-language model comes with its processor, through ``AutoModelForImageTextToText``."""
    from transformers import AutoModelForCausalLM, AutoModelForImageTextToText

    processor = _load_processor(entry) if entry.vision else None
    tokenizer = processor.tokenizer if processor is not None else _load_tokenizer(entry)
    if processor is not None and getattr(processor, "chat_template", None):
        tokenizer.chat_template = tokenizer.chat_template or processor.chat_template
    warnings: list[str] = []
    if not getattr(tokenizer, "chat_template", None):
        tokenizer.chat_template = FALLBACK_TEMPLATE
        warnings.append(FALLBACK_WARNING.format(name=entry.name))
    check_memory(entry, device, options)
    quant = _quantization(options, device)
    has_safetensors = any(p.suffix == ".safetensors" for p in weight_files(entry.path))
    kwargs: dict[str, Any] = dict(local_files_only=True, trust_remote_code=False,
                                  use_safetensors=has_safetensors, dtype=options.dtype)
    if quant is not None:
        kwargs.update(quantization_config=quant, device_map={"": 0})
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    try:
        auto = AutoModelForImageTextToText if entry.vision else AutoModelForCausalLM
        model = auto.from_pretrained(str(entry.path), **kwargs)
    except (OSError, ValueError, pickle.UnpicklingError) as exc:
        # transformers reads pytorch_model.bin with weights_only=True: a pickle that needs code
        # stops there, and torch's message tells how to load it unsafely — ours does not.
        refusal = refusal_in(exc, f"{entry.name} ({entry.path})")
        if refusal is not None:
            raise refusal from exc
        _refuse_remote_code(exc, entry)
        raise UserFacingError(f"{entry.name} cannot be loaded: "
                              f"{str(exc).splitlines()[0][:300]}") from exc
    if quant is None:
        model.to(device)  # type: ignore[arg-type]  # transformers types its wrapped .to() wrongly
    model.eval()
    text_config = getattr(model.config, "text_config", None) or model.config
    ctx = int(getattr(text_config, "max_position_embeddings", 0) or 0)
    if not ctx:
        tmax = int(getattr(tokenizer, "model_max_length", 0) or 0)
        ctx = tmax if 0 < tmax < 10_000_000 else 2048
    log.info("loaded chat model %s on %s (%s, context %d)", entry.name, device, options, ctx)
    return LoadedChatModel(model, tokenizer, ctx, device, entry.name, warnings, processor)
