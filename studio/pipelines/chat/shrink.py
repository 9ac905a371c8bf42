"""Making a chat model smaller ("Make smaller…" in Models, ``studio models shrink``).

The model's linear layers get weight-only int8, int4 or fp8 weights through torchao, the way
transformers does it (``TorchAoConfig``), and ``save_pretrained`` writes them as safetensors:
torchao's tensors are stored as plain tensors plus a JSON description of their class in the
file's metadata, and loading rebuilds them from an allow-list of torchao classes, never a pickle.
The result is a new folder in the models folder next to the original; ``config.json``'s
``quantization_config`` marks it quantized, and Chat, ``studio chat`` and ``studio serve`` load it
with the same ``from_pretrained`` as any model (``loading.load_chat_model``).

What runs where (torchao 0.18, measured on this CPU): int8 (``Int8WeightOnlyConfig``) and fp8
(``Float8WeightOnlyConfig``) everywhere; int4 as ``IntxWeightOnlyConfig`` (int4 values with a scale
per 32 weights), which keeps one int4 value per byte — int4's rounding at int8's size.
torchao's packed int4 (``Int4WeightOnlyConfig``) needs a CUDA GPU and the mslk kernels, which are
not installed. Before and after, the job measures the size on disk, the perplexity on the shipped
text (tiny Shakespeare) and tokens/s of greedy generation, the "after" on the saved copy loaded
back through Chat's own loader. Runs on the GPU lane; no Qt here.
"""

from __future__ import annotations

import gzip
import json
import logging
import math
import re
import shutil
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from studio import ASSETS_DIR
from studio.core.config import Paths, Settings
from studio.core.files import work_file_tag
from studio.core.jobs import CancelToken, JobCancelled, UserFacingError, checked
from studio.core.shrink_requests import SHRINK_METHODS, ShrinkRequest
from studio.core.wording import count_of
from studio.library.chat_models import (
    ChatModelEntry,
    resolve_chat_model,
    weight_files,
)
from studio.library.detect import read_safetensors_header

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

    from studio.core.jobs import ProgressSink
    from studio.pipelines.chat.loading import LoadedChatModel

log = logging.getLogger(__name__)

EVAL_TEXT = ASSETS_DIR / "texts" / "shakespeare.txt.gz"
EVAL_PROMPT = "ROMEO:\nBut soft, what light through yonder window breaks?\n"
INT4_GROUP = 32  # weights sharing one int4 scale
_NAME = re.compile(r"^[A-Za-z0-9][\w.+-]{0,99}$")
#: Room kept free on the disk besides the copy (the config, the tokenizer, the file system).
DISK_MARGIN = 64 * 2**20
#: Bytes a safetensors header dtype takes per value.
_DTYPE_BYTES = {"F64": 8, "I64": 8, "U64": 8, "F32": 4, "I32": 4, "U32": 4, "F16": 2, "BF16": 2,
                "I16": 2, "U16": 2, "I8": 1, "U8": 1, "BOOL": 1, "F8_E4M3": 1, "F8_E5M2": 1}
#: What a method stores per quantized weight, and per scale group (a float32 scale).
_BYTES_PER_WEIGHT = {"int8": 1.0, "int4": 1.0, "fp8": 1.0}  # int4: one value per byte (CPU)


def torchao_config(method: str) -> Any:
    """The torchao config a method names (imports torch and torchao)."""
    import torch
    import torchao.quantization as tq

    if method == "int8":
        return tq.Int8WeightOnlyConfig()
    if method == "int4":
        return tq.IntxWeightOnlyConfig(weight_dtype=torch.int4,  # type: ignore[attr-defined]
                                       granularity=tq.PerGroup(INT4_GROUP))
    if method == "fp8":
        return tq.Float8WeightOnlyConfig()
    raise UserFacingError(f"Unknown method {method!r}; choose one of {', '.join(SHRINK_METHODS)}.")


@dataclass
class ShrinkPlan:
    """What shrinking ``entry`` with ``method`` would do, checked before any weight is read."""

    entry: ChatModelEntry
    method: str
    out_name: str
    out_path: Path
    size_before: int
    size_estimate: int
    layers: int  # linear layers quantized
    skipped: list[str] = field(default_factory=list)  # kept as they are (the output head)

    def describe(self) -> str:
        from studio.library.manage import human_size

        return (f"{self.entry.name} → {self.out_name} ({self.method}): "
                f"{count_of(self.layers, 'linear layer')} quantized; "
                f"about {human_size(self.size_estimate)} instead of "
                f"{human_size(self.size_before)}.")


@dataclass
class Measure:
    """One side of the before/after table."""

    size_bytes: int
    perplexity: float
    tokens_per_s: float
    eval_tokens: int


@dataclass
class ShrinkReport:
    """The job's result: the new model and the numbers both ways."""

    request: ShrinkRequest
    source: str
    name: str
    path: Path
    method: str
    before: Measure
    after: Measure
    warnings: list[str] = field(default_factory=list)

    def rows(self) -> list[tuple[str, str, str, str]]:
        """(what, before, after, change) for the table the dialog and the CLI show."""

        b, a = self.before, self.after
        return [
            bytes_row("Size on disk", b.size_bytes, a.size_bytes),
            (f"Perplexity ({count_of(b.eval_tokens, 'token')} of Shakespeare)", f"{b.perplexity:.2f}",
             f"{a.perplexity:.2f}", f"{a.perplexity - b.perplexity:+.2f} "
             f"({100 * (a.perplexity / b.perplexity - 1) if b.perplexity else 0:+.1f}%)"),
            ("Tokens/s (greedy)", f"{b.tokens_per_s:.1f}", f"{a.tokens_per_s:.1f}",
             f"× {a.tokens_per_s / max(b.tokens_per_s, 1e-9):.2f}"),
        ]

    def to_json(self) -> dict[str, Any]:
        return {"source": self.source, "name": self.name, "path": str(self.path),
                "method": self.method, "before": vars(self.before), "after": vars(self.after),
                "warnings": self.warnings}


def bytes_row(what: str, before: int, after: int) -> tuple[str, str, str, str]:
    """A before/after table row of two byte counts and their ratio."""
    from studio.library.manage import human_size

    return (what, human_size(before), human_size(after), f"× {after / max(before, 1):.2f}")


# -- checks -----------------------------------------------------------------------------------
def default_out_name(entry: ChatModelEntry, method: str) -> str:
    base = entry.name.split("/")[-1] if entry.source == "hf-cache" else entry.path.name
    return f"{base}-{method}"


def check_out_name(name: str, paths: Paths, taken: Callable[[str], bool] | None = None) -> Path:
    """The folder the copy goes to; a bad or taken name is refused with a sentence."""
    if not _NAME.match(name) or name in (".", ".."):
        raise UserFacingError(f"{name!r} cannot be a model name: use letters, digits and . _ + -"
                              " (up to 100), starting with a letter or digit.")
    out = paths.models_dir / name
    if out.exists() or (taken is not None and taken(name)):
        where = out if out.exists() else "in the library"
        raise UserFacingError(f"A model called {name} already exists ({where}). Choose another "
                              "name, or remove that model first.")
    return out


def _meta_model(entry: ChatModelEntry) -> Any:
    """The model's modules with no memory behind them (the meta device): names and shapes."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    try:
        config = AutoConfig.from_pretrained(str(entry.path), local_files_only=True,
                                            trust_remote_code=False)
        with torch.device("meta"):
            return AutoModelForCausalLM.from_config(config, trust_remote_code=False)
    except (OSError, ValueError, KeyError) as exc:
        raise UserFacingError(f"{entry.name}'s architecture cannot be read: "
                              f"{str(exc).splitlines()[0][:200]}") from exc


def _quantizable(model: Any, method: str) -> tuple[list[str], list[str], list[str]]:
    """(linear layers the method quantizes, layers kept as they are, layers that block it)."""
    import torch

    head = model.get_output_embeddings()
    linear, kept, blocking = [], [], []
    for name, module in model.named_modules():
        kind = type(module).__name__
        if module is head:
            kept.append(name)
        elif isinstance(module, torch.nn.Linear):
            if method == "int4" and module.in_features % INT4_GROUP:
                blocking.append(f"{name} ({module.in_features} inputs, not a multiple of "
                                f"{INT4_GROUP})")
            else:
                linear.append(name)
        elif kind == "Conv1D":  # GPT-2's transposed linear layers: torchao skips them
            blocking.append(f"{name} (transformers Conv1D)")
    return linear, kept, blocking


def _estimate(entry: ChatModelEntry, linear: list[str], method: str) -> int:
    """Bytes of the quantized copy, from the safetensors headers and the layers quantized."""
    weights = {f"{name}.weight" for name in linear}
    total = 0
    for path in weight_files(entry.path):
        if path.suffix != ".safetensors":
            return int(entry.size_bytes * 0.5)  # a .bin: no header to read; a rough half
        for key, info in read_safetensors_header(path).items():
            if key == "__metadata__":
                continue
            count = math.prod(info["shape"])
            if key in weights:
                rows = info["shape"][0] if info["shape"] else 1
                scales = count // INT4_GROUP if method == "int4" else rows
                total += int(count * _BYTES_PER_WEIGHT[method]) + 4 * scales
            else:
                total += count * _DTYPE_BYTES.get(info["dtype"], 4)
    return total


def plan_shrink(request: ShrinkRequest, settings: Settings, paths: Paths,
                taken: Callable[[str], bool] | None = None) -> ShrinkPlan:
    """Check everything that can be checked before loading the weights: the model, the method
    against its layers, the name and the free disk space. Raises UserFacingError."""
    checked(request)
    entry = resolve_chat_model(request.model, settings, paths)
    if entry.quantized:
        raise UserFacingError(f"{entry.name} is already quantized ({entry.quantized}); "
                              "quantizing again only adds rounding. Make the original model "
                              "smaller instead.")
    out_name = request.out_name.strip() or default_out_name(entry, request.method)
    out = check_out_name(out_name, paths, taken)
    linear, kept, blocking = _quantizable(_meta_model(entry), request.method)
    if blocking:
        shown = ", ".join(blocking[:4]) + (f" and {len(blocking) - 4} more"
                                          if len(blocking) > 4 else "")
        raise UserFacingError(f"{request.method} does not fit {entry.name}'s architecture "
                              f"({entry.architecture}): {shown}. "
                              + ("Try int8 or fp8." if request.method == "int4" and not any(
                                  "Conv1D" in b for b in blocking) else
                                 "torchao quantizes torch Linear layers only."))
    if not linear:
        raise UserFacingError(f"{entry.name} has no linear layers besides its output head, so "
                              "there is nothing to quantize.")
    estimate = _estimate(entry, linear, request.method)
    paths.models_dir.mkdir(parents=True, exist_ok=True)
    free = shutil.disk_usage(paths.models_dir).free
    if estimate + DISK_MARGIN > free:
        from studio.library.manage import human_size

        raise UserFacingError(f"Not enough disk space: the {request.method} copy of {entry.name} "
                              f"needs about {human_size(estimate + DISK_MARGIN)} and "
                              f"{paths.models_dir} has {human_size(free)} free. Free some "
                              "space first.")
    return ShrinkPlan(entry, request.method, out_name, out, entry.size_bytes, estimate,
                      len(linear), kept)


# -- measuring --------------------------------------------------------------------------------
def eval_text(chars: int = 200_000) -> str:
    """The start of the shipped text the perplexity is measured on."""
    with gzip.open(EVAL_TEXT, "rt", encoding="utf-8") as fh:
        return fh.read(chars)


def perplexity(model: Any, tokenizer: PreTrainedTokenizerBase, tokens: int, context: int,
               cancel: CancelToken | None = None) -> tuple[float, int]:
    """exp(mean next-token loss) over the first ``tokens`` tokens of the shipped text, in
    windows of the model's context (at most 512); (perplexity, tokens scored)."""
    import torch

    ids = tokenizer(eval_text(tokens * 12), add_special_tokens=False)["input_ids"][:tokens + 1]
    window = max(1, min(512, context or 512) - 1)  # predictions per window
    total_loss, scored = 0.0, 0
    with torch.inference_mode():
        for start in range(0, len(ids) - 1, window):
            if cancel is not None and cancel.cancelled:
                raise JobCancelled()
            chunk = torch.tensor([ids[start:start + window + 1]], device=model.device)
            if chunk.shape[1] < 2:
                break
            loss = model(chunk, labels=chunk).loss
            n = chunk.shape[1] - 1
            total_loss += float(loss) * n
            scored += n
    return (math.exp(total_loss / scored) if scored else float("nan")), scored


def tokens_per_second(model: Any, tokenizer: PreTrainedTokenizerBase, new_tokens: int) -> float:
    """Greedy generation speed: ``new_tokens`` tokens after a fixed prompt (after a warm-up)."""
    import torch

    ids = tokenizer(EVAL_PROMPT, return_tensors="pt")["input_ids"].to(model.device)
    kwargs = dict(do_sample=False, pad_token_id=tokenizer.pad_token_id or 0)
    with torch.inference_mode():
        model.generate(ids, max_new_tokens=2, min_new_tokens=2, **kwargs)
        start = time.perf_counter()
        out = model.generate(ids, max_new_tokens=new_tokens, min_new_tokens=new_tokens,
                             **kwargs)
        elapsed = time.perf_counter() - start
    return (out.shape[1] - ids.shape[1]) / max(elapsed, 1e-9)


def folder_weight_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in weight_files(folder))


def measure(loaded: LoadedChatModel, folder: Path, request: ShrinkRequest, cancel: CancelToken) -> Measure:
    ppl, scored = perplexity(loaded.model, loaded.tokenizer, request.eval_tokens,
                             loaded.context_length, cancel)
    if cancel.cancelled:
        raise JobCancelled()
    speed = tokens_per_second(loaded.model, loaded.tokenizer, request.speed_tokens)
    return Measure(folder_weight_bytes(folder), ppl, speed, scored)


# -- the job ----------------------------------------------------------------------------------
def job_device(settings: Settings) -> str:
    """The device Settings name, or a sentence saying why it cannot be used."""
    from studio.core.devices import resolve_device

    try:
        return resolve_device(settings.device)
    except (RuntimeError, ValueError) as exc:
        raise UserFacingError(str(exc)) from exc


def work_folder(paths: Paths, out_name: str) -> Path:
    """A hidden folder in the models folder the copy is written into before it is published."""
    return paths.models_dir / f".{out_name}.importing-{work_file_tag()}{uuid.uuid4().hex[:8]}"


def publish(work: Path, out: Path) -> None:
    """Give the finished copy its name (refused if a model took the name while the job ran)."""
    if out.exists():
        raise UserFacingError(f"A model called {out.name} appeared while this ran; choose "
                              "another name.")
    work.rename(out)


def _copy_side_files(src: Path, dest: Path) -> None:
    """Everything but the weights and config: tokenizer, chat template, README, licence."""
    for item in src.iterdir():
        if item.is_file() and item.suffix not in (".safetensors", ".bin", ".pt", ".pth") \
                and item.name not in ("config.json", "generation_config.json") \
                and not item.name.endswith(".index.json"):
            shutil.copy2(item, dest / item.name)


def quantize_and_save(plan: ShrinkPlan, work: Path) -> None:
    """Load the original with its linear weights quantized (transformers + torchao) and save it
    as safetensors into ``work``."""
    from transformers import AutoModelForCausalLM, TorchAoConfig

    try:
        model = AutoModelForCausalLM.from_pretrained(
            str(plan.entry.path), local_files_only=True, trust_remote_code=False, dtype="auto",
            quantization_config=TorchAoConfig(torchao_config(plan.method)))
    except (OSError, ValueError, RuntimeError, TypeError, NotImplementedError) as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]
        raise UserFacingError(f"torchao could not quantize {plan.entry.name} to "
                              f"{plan.method}: {first}. Try another method.") from exc
    try:
        model.save_pretrained(str(work), safe_serialization=True)
    except OSError as exc:
        from studio.core.wording import write_failure

        raise UserFacingError(write_failure(exc, f"the {plan.method} copy of "
                                                 f"{plan.entry.name}", work.parent)) from exc
    del model


class ShrinkService:
    """The ``shrink`` job: plan, measure the original, quantize and save, measure the copy."""

    def __init__(self, settings: Callable[[], Settings] | Settings,
                 paths: Callable[[], Paths] | Paths) -> None:
        self._settings = settings if callable(settings) else (lambda: settings)
        self._paths = paths if callable(paths) else (lambda: paths)

    def _taken(self, settings: Settings, paths: Paths) -> Callable[[str], bool]:
        def taken(name: str) -> bool:
            from studio.library.catalog import list_models

            return any(e.name == name for e in list_models(settings, paths))
        return taken

    def run(self, request: ShrinkRequest, progress: ProgressSink, cancel: CancelToken) -> ShrinkReport:
        from studio.core.devices import resolve_dtype
        from studio.pipelines.chat.loading import LoadOptions, load_chat_model

        settings, paths = self._settings(), self._paths()
        plan = plan_shrink(request, settings, paths, self._taken(settings, paths))
        device = job_device(settings)
        options = LoadOptions(resolve_dtype(settings.precision, device), "auto")
        total = 4
        progress(0, total, None)
        progress.message(f"Measuring {plan.entry.name}…")
        original = load_chat_model(plan.entry, device, options)
        before = measure(original, plan.entry.path, request, cancel)
        del original
        progress(1, total, None)
        progress.message(f"Quantizing {plan.entry.name} to {plan.method}…")
        work = work_folder(paths, plan.out_name)
        try:
            quantize_and_save(plan, work)
            if cancel.cancelled:
                raise JobCancelled()
            _copy_side_files(plan.entry.path, work)
            (work / "studio_shrink.json").write_text(json.dumps(
                {"source": plan.entry.name, "source_path": str(plan.entry.path),
                 "method": plan.method, "before": vars(before)}, indent=1), encoding="utf-8")
            publish(work, plan.out_path)
        finally:
            if work.exists():
                shutil.rmtree(work, ignore_errors=True)
        progress(2, total, None)
        progress.message(f"Measuring {plan.out_name}…")
        from studio.library.chat_models import chat_entry_for_folder

        entry = chat_entry_for_folder(plan.out_path, "studio")
        if entry is None:
            raise UserFacingError(f"{plan.out_path} was written but is not a chat model folder.")
        try:
            loaded = load_chat_model(entry, device, options)  # Chat's own loader
            progress(3, total, None)
            after = measure(loaded, plan.out_path, request, cancel)
            del loaded
        except JobCancelled:
            shutil.rmtree(plan.out_path, ignore_errors=True)  # Cancel: nothing is kept
            raise
        progress(total, total, None)
        warnings = []
        if plan.method == "int4":
            warnings.append("torchao keeps one int4 value per byte here, so the int4 copy is "
                            "about as large as int8 (its rounding is int4's); packed int4 needs "
                            "a CUDA GPU with torchao's mslk kernels.")
        log.info("shrunk %s to %s: %s", plan.entry.name, plan.out_path, after)
        return ShrinkReport(request, plan.entry.name, plan.out_name, plan.out_path, plan.method,
                            before, after, warnings)
