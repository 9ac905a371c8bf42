"""Training runs on disk: ``runs_dir/<run-id>/`` holds everything needed to look at or continue one.

- ``config.json``: lesson, seed, the config the run started with, the live changes made since
  (``changes``: ``{"step", "name", "value"}``) and when it was created. Rewritten atomically.
- ``metrics.jsonl``: one JSON object per logged step, with ``step``, ``loss`` (the lesson's main
  loss) and the lesson's other series. Appended in whole lines (one ``write`` per batch, then
  flush); a line cut short by a crash is skipped on reading.
- ``checkpoint/`` holding ``checkpoint.safetensors`` + ``checkpoint.json``: the trainer's state
  (see :mod:`studio.pipelines.train.checkpoint`; no pickle anywhere), replaced as a whole folder so
  a crash while saving leaves the previous checkpoint or the new one, never half of each. Runs
  made before kept the two files in the run folder itself; those still load.

No Qt here; torch is imported only when a checkpoint is saved or loaded.
"""

from __future__ import annotations

import csv
import io
import json
import math
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from studio.core.files import atomic_write_text
from studio.pipelines.train.base import Trainer
from studio.pipelines.train.checkpoint import (
    JSON_NAME,
    TENSORS_NAME,
    has_folder,
    load_folder,
    load_state,
    save_folder,
)

CONFIG = "config.json"
METRICS = "metrics.jsonl"
CHECKPOINT_DIR = "checkpoint"
CHECKPOINT = f"{CHECKPOINT_DIR}/{TENSORS_NAME}"
CHECKPOINT_JSON = f"{CHECKPOINT_DIR}/{JSON_NAME}"


def new_run_id(lesson: str, seed: int, root: Path) -> str:
    """``YYYYmmdd-HHMMSS-<lesson>-s<seed>``, with a suffix if that folder exists already."""
    base = f"{time.strftime('%Y%m%d-%H%M%S')}-{re.sub(r'[^a-z0-9-]', '', lesson)}-s{seed}"
    run_id, n = base, 2
    while (root / run_id).exists():
        run_id, n = f"{base}-{n}", n + 1
    return run_id


def _json_value(value: Any) -> Any:
    """Metrics are floats; NaN/inf are written as null so every line stays valid JSON."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


@dataclass
class RunInfo:
    """One run as the runs list shows it."""

    path: Path
    run_id: str
    lesson: str
    seed: int
    created: float
    last_step: int
    has_checkpoint: bool
    config: dict[str, Any]


class Run:
    """An open run folder: append metrics, record changes, save and load checkpoints."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._meta: dict[str, Any] | None = None

    # -- creating and reading -----------------------------------------------------------------
    @classmethod
    def create(cls, root: Path, lesson: str, seed: int, config: dict[str, Any],
               path: Path | None = None) -> Run:
        """A new run folder (``path``, or a fresh id under ``root``) with its ``config.json``."""
        root = Path(root)
        path = Path(path) if path is not None else root / new_run_id(lesson, seed, root)
        path.mkdir(parents=True, exist_ok=True)
        run = cls(path)
        run._meta = {"lesson": lesson, "seed": int(seed), "config": dict(config),
                     "changes": [], "created": time.time()}
        run._write_meta()
        (path / METRICS).write_text("", encoding="utf-8")  # a fresh run starts with no metrics
        return run

    @property
    def run_id(self) -> str:
        return self.path.name

    @property
    def meta(self) -> dict[str, Any]:
        if self._meta is None:
            self._meta = json.loads((self.path / CONFIG).read_text(encoding="utf-8"))
        return self._meta

    @property
    def lesson(self) -> str:
        return str(self.meta["lesson"])

    @property
    def seed(self) -> int:
        return int(self.meta["seed"])

    def _write_meta(self) -> None:
        atomic_write_text(self.path / CONFIG, json.dumps(self.meta, indent=2) + "\n")

    def record_change(self, step: int, name: str, value: Any) -> None:
        """Note a live knob change, so the run's config tells the whole story."""
        self.meta["changes"].append({"step": int(step), "name": name, "value": value})
        self._write_meta()

    # -- metrics ------------------------------------------------------------------------------
    def append_metrics(self, rows: list[dict[str, Any]]) -> None:
        if not rows:
            return
        text = "".join(json.dumps({k: _json_value(v) for k, v in row.items()}) + "\n"
                       for row in rows)
        with open(self.path / METRICS, "a", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()

    def metrics(self) -> list[dict[str, Any]]:
        return load_metrics(self.path)

    def truncate_metrics(self, last_step: int) -> None:
        """Drop metrics logged after ``last_step`` (they were not covered by the checkpoint)."""
        rows = [r for r in self.metrics() if int(r.get("step", 0)) <= last_step]
        atomic_write_text(self.path / METRICS, "".join(json.dumps(r) + "\n" for r in rows))

    # -- checkpoints --------------------------------------------------------------------------
    @property
    def has_checkpoint(self) -> bool:
        return has_folder(self.path / CHECKPOINT_DIR) or (self.path / JSON_NAME).is_file()

    def save_checkpoint(self, trainer: Trainer) -> None:
        save_folder(trainer.state_dict(), self.path / CHECKPOINT_DIR,
                    extra={"step": trainer.step_count, "config": dict(trainer.config),
                           "seed": trainer.seed, "lesson": trainer.info.key})
        for legacy in (JSON_NAME, TENSORS_NAME):  # the layout before checkpoint/ is superseded
            (self.path / legacy).unlink(missing_ok=True)

    def load_checkpoint(self) -> tuple[dict[str, Any], dict[str, Any]]:
        """The last checkpoint's ``(state, doc)``, in either layout (``checkpoint/`` or the
        two files of older runs)."""
        if has_folder(self.path / CHECKPOINT_DIR):
            return load_folder(self.path / CHECKPOINT_DIR)
        return load_state(self.path / JSON_NAME)  # a run saved before checkpoint/ existed

    def load_trainer(self) -> Trainer:
        """The trainer as the last checkpoint left it (or fresh, when there is none)."""
        from studio.pipelines.train.registry import lesson_class

        cls = lesson_class(self.lesson)
        if not self.has_checkpoint:
            return cls(dict(self.meta["config"]), seed=self.seed)
        state, doc = self.load_checkpoint()
        # The saved config includes live knobs changed mid-run, so the trainer is built as it was.
        trainer = cls(dict(doc["config"]), seed=int(doc["seed"]))
        trainer.load_state_dict(state)
        return trainer

    def resume(self) -> Trainer:
        """Load the trainer and forget metrics newer than its checkpoint, ready to go on."""
        trainer = self.load_trainer()
        self.truncate_metrics(trainer.step_count)
        return trainer

    def info(self) -> RunInfo:
        rows = self.metrics()
        return RunInfo(path=self.path, run_id=self.run_id, lesson=self.lesson, seed=self.seed,
                       created=float(self.meta.get("created", 0.0)),
                       last_step=int(rows[-1]["step"]) if rows else 0,
                       has_checkpoint=self.has_checkpoint, config=dict(self.meta["config"]))


def load_metrics(path: Path) -> list[dict[str, Any]]:
    """Every complete line of a run's ``metrics.jsonl`` (a half-written last line is skipped)."""
    rows: list[dict[str, Any]] = []
    try:
        text = (Path(path) / METRICS).read_text(encoding="utf-8")
    except FileNotFoundError:
        return rows
    for line in text.splitlines():
        try:
            row = json.loads(line)
        except ValueError:
            continue
        if isinstance(row, dict) and "step" in row:
            rows.append(row)
    return rows


def list_runs(root: Path, lesson: str | None = None) -> list[RunInfo]:
    """Runs under ``root`` (newest first), optionally only one lesson's; broken folders skipped."""
    out: list[RunInfo] = []
    root = Path(root)
    if not root.is_dir():
        return out
    for child in root.iterdir():
        if not (child / CONFIG).is_file():
            continue
        try:
            info = Run(child).info()
        except (ValueError, KeyError, OSError):
            continue
        if lesson is None or info.lesson == lesson:
            out.append(info)
    out.sort(key=lambda r: (r.created, r.run_id), reverse=True)
    return out


def metrics_csv(rows: list[dict[str, Any]]) -> str:
    """Metrics as CSV text: ``step``, ``loss`` first, then every other key in first-seen order."""
    columns = ["step", "loss"]
    for row in rows:
        columns += [k for k in row if k not in columns]
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: row.get(k, "") for k in columns})
    return buf.getvalue()


def export_csv(run_path: Path, out_path: Path) -> Path:
    """Write a run's metrics as CSV (atomically); returns ``out_path``."""
    return atomic_write_text(Path(out_path), metrics_csv(load_metrics(run_path)))
