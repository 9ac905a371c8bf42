"""``studio train LESSON``: run a lesson's trainer without a window and keep the run folder.

stdout carries the metrics as training goes: a readable line every few steps, or with ``--json``
one JSON object per logged step (``step``, ``loss`` and the lesson's other series) and, last, one
object with ``"run"`` (the run folder), ``"steps"`` and ``"loss"``. Nothing else is printed on
stdout with ``--json``. The run folder (``config.json``, ``metrics.jsonl``, a checkpoint) goes to
``--out`` or ``runs_dir/<run-id>``.

Exit status: 0 done; 1 the training diverged (the message says what to try; the run folder holds
everything up to that step); 2 bad input (unknown lesson or setting, invalid value); 130 Ctrl+C
(the run so far is saved). ``--list`` and a misspelt lesson name answer without importing torch.

Image lessons (``cnn``, ``dcgan``, ``ddpm``) train on ``--data DIR`` (your own folder of images, a
sub-folder per class) and run through ``accelerate``, so the same command runs across processes or GPUs::

    accelerate launch --multi_gpu --num_processes 2 -m studio train cnn --data DIR --steps N --out RUN

(on CPUs too: ``--multi_gpu`` is accelerate's name for "several processes"; they talk over gloo).
Every process trains its share of each batch; only the first writes the run folder and prints, and
all of them write accelerate's checkpoint (``RUN/accelerate/``) at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from studio.core.wording import count_of

if TYPE_CHECKING:
    from studio.core.config import Settings
    from studio.pipelines.train.base import Trainer

NAME = "train"
HELP = "train a lesson (optimizers, classifier-2d, gan-2d, cnn, …) without a window"
EXIT_STATUS = ("Exit status: 0 done; 1 the training diverged (the message says what to try; the "
               "run folder keeps everything up to that step); 2 bad input (an unknown lesson or "
               "setting, an invalid value); 130 Ctrl+C (the run so far is saved); 143 SIGTERM (as "
               "Ctrl+C).")

MULTI_PROCESS = ("Image lessons run across processes or GPUs through accelerate: accelerate launch "
                 "--multi_gpu --num_processes 2 -m studio train cnn --data DIR --steps N --out RUN "
                 "(also on CPUs, over gloo).")
ACCELERATE_DIR = "accelerate"  # accelerate's save_state of an image lesson, in the run folder

EXIT_DIVERGED = 1
EXIT_CANCELLED = 130
LINES_PER_RUN = 20  # readable output: about this many progress lines per run


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("lesson", nargs="?", metavar="LESSON",
                        help="the lesson to train: " + ", ".join(_lesson_keys()))
    parser.add_argument("--list", action="store_true",
                        help="list the lessons with their summaries and exit")
    parser.add_argument("--steps", type=int, default=500, metavar="N", help="training steps")
    parser.add_argument("--seed", type=int, default=0, metavar="N", help="random seed")
    parser.add_argument("--out", type=Path, default=None, metavar="DIR",
                        help="the run folder itself, created if needed (default: a new "
                             "folder named by the run id in Studio's runs folder)")
    parser.add_argument("--set", dest="settings", action="append", default=[],
                        metavar="KEY=VALUE",
                        help="a hyperparameter, e.g. --set lr=0.001 (repeatable)")
    parser.add_argument("--data", type=Path, default=None, metavar="DIR",
                        help="image lessons (cnn, dcgan, ddpm): train on your own folder of images, one "
                             "sub-folder per class (same as --set dataset=folder "
                             "--set data_folder=DIR); cyclegan: domain A's folder")
    parser.add_argument("--data-b", type=Path, default=None, metavar="DIR",
                        help="cyclegan: domain B's folder (with --data, domain A's)")
    parser.add_argument("--export", default=None, metavar="NAME",
                        help="cyclegan, dcgan, ddpm, gpt, lora-chat, cnn, distill, federated: at "
                             "the end, write the trained model into the library as NAME "
                             "(cyclegan: a Transform model; dcgan: a GAN for Generate; ddpm: a "
                             "diffusion model Generate draws with by class; gpt: a chat model; "
                             "lora-chat: the merged chat model, its peft adapter in adapter/; "
                             "cnn, distill's student, federated's global model: an image "
                             "classifier Gallery classifies with)")
    parser.add_argument("--json", action="store_true", help="print JSON lines only")
    parser.epilog = ((parser.epilog + " ") if parser.epilog else "") + MULTI_PROCESS


def _lesson_keys() -> list[str]:
    from studio.pipelines.train.registry import lesson_keys

    return lesson_keys()


def _parse_settings(items: list[str]) -> dict[str, str]:
    from studio.cli import UsageError

    out: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise UsageError(f"--set needs KEY=VALUE, not {item!r}")
        out[key.strip()] = value.strip()
    return out


def _list_lessons(as_json: bool) -> int:
    # From the registry alone: listing the lessons imports no lesson module and no torch.
    from studio.pipelines.train.registry import LESSONS

    rows: list[dict[str, Any]] = [{"lesson": key, "title": lesson.title,
                                   "summary": lesson.summary}
                                  for key, lesson in LESSONS.items()]
    for row in rows:
        if as_json:
            print(json.dumps(row), flush=True)
        else:
            print(f"{row['lesson']:<24}{row['summary']}", flush=True)
    return 0


def _export(trainer: Trainer, name: str, settings: Settings) -> int:
    """Write the trained model into the library (exit 1 with the reason when that fails)."""
    from studio.cli import fail
    from studio.core.config import default_paths
    from studio.core.jobs import UserFacingError
    from studio.pipelines.train.export import export_trainer

    models_dir = settings.resolved_paths(default_paths()).models_dir
    try:
        done = export_trainer(trainer, models_dir, name)
    except UserFacingError as exc:
        return fail(str(exc), 1)
    print(f"{done.message} ({done.path})", file=sys.stderr, flush=True)
    return 0


def _format(metrics: dict[str, float], total: int) -> str:
    parts = [f"step {int(metrics['step'])}/{total}"]
    parts += [f"{k} {v:.4g}" for k, v in metrics.items()
              if k != "step" and isinstance(v, (int, float))]
    return "  ".join(parts)


def run(args: argparse.Namespace) -> int:
    from studio.cli import UsageError, fail

    if args.list:
        return _list_lessons(args.json)
    if not args.lesson:
        raise UsageError("name a lesson (studio train --list shows them)")
    if args.steps < 1:
        raise UsageError(f"--steps must be at least 1, not {args.steps}")
    settings = _parse_settings(args.settings)
    if args.data is not None:
        settings.update(dataset="folder", data_folder=str(args.data))
    from studio.pipelines.train.base import (
        InvalidParameter,
        TrainingDiverged,
        TrainingFinished,
        step_loss,
    )
    from studio.pipelines.train.registry import lesson, lesson_class

    try:  # a misspelt name is answered before torch is imported
        lesson(args.lesson)
    except InvalidParameter as exc:
        raise UsageError(str(exc)) from None

    import torch

    from studio.core.config import default_paths, load_settings
    from studio.pipelines.train.runs import Run

    # The lessons' models are tiny: torch's thread pool only adds waiting (see session.py).
    torch.set_num_threads(1)
    cls = lesson_class(args.lesson)
    specs = {p.name for p in cls.params}
    if "steps" in specs and "steps" not in settings:  # a lesson with a goal (lora-sd) meets it
        settings["steps"] = args.steps
    if "domains" in specs and (args.data is not None or args.data_b is not None):
        # CycleGAN's two folders: --data is domain A, --data-b domain B
        settings.pop("dataset", None)
        settings.update(domains="folders", data_folder=str(args.data or ""),
                        data_folder_b=str(args.data_b or ""))
    elif args.data_b is not None:
        raise UsageError("--data-b is domain B's folder of the cyclegan lesson")
    if args.data is not None and "data_folder" not in specs:
        raise UsageError(f"{args.lesson} does not train on images; --data is for the image "
                         "lessons (cnn, dcgan, ddpm)")
    launched = int(os.environ.get("WORLD_SIZE", "1")) > 1
    if launched and args.out is None:
        raise UsageError("give --out DIR when running across processes, so that they all write "
                         "the same run folder")
    try:
        config = cls.validate_config(settings)
        trainer = cls(config, seed=args.seed)
    except InvalidParameter as exc:
        raise UsageError(str(exc)) from None
    main = trainer.is_main_process
    if launched and not hasattr(trainer, "save_accelerate_state"):
        raise UsageError(f"{args.lesson} runs in one process; {MULTI_PROCESS}")  # plural-ok: a verb
    if not main:  # the other processes of a launch train their share and stay quiet
        return _train_quietly(trainer, args)
    loaded = load_settings()
    if loaded.notice:
        print(f"studio: warning: {loaded.notice}", file=sys.stderr)
    studio_paths = loaded.settings.resolved_paths(default_paths())
    root = studio_paths.runs_dir
    if args.export is not None:  # a bad or taken name is bad input before any training
        from studio.core.jobs import UserFacingError
        from studio.pipelines.train.export import EXPORTS, can_export, target

        if not can_export(args.lesson):
            raise UsageError(f"{args.lesson} makes no model to use elsewhere; --export is for "
                             f"{', '.join(EXPORTS)}")
        try:
            target(args.lesson, studio_paths.models_dir, args.export)
        except UserFacingError as exc:
            raise UsageError(str(exc)) from None
    run_ = Run.create(root, args.lesson, args.seed, trainer.config, path=args.out)
    if not args.json:
        print(f"{cls.info.title}: {count_of(args.steps, 'step')}, seed {args.seed} → {run_.path}",
              file=sys.stderr, flush=True)

    every = max(1, cls.info.log_every)
    show_every = max(1, args.steps // LINES_PER_RUN)
    buffer: list[dict[str, float]] = []
    last: dict[str, float] = {}
    code = 0
    try:
        for _ in range(args.steps):
            last = trainer.step()
            step = int(last["step"])
            if step % every == 0:
                buffer.append(last)
                if args.json:
                    print(json.dumps(last), flush=True)
            if not args.json and (step % show_every == 0 or step == args.steps):
                print(_format(last, args.steps), flush=True)
            if len(buffer) >= 200:
                run_.append_metrics(buffer)
                buffer = []
    except TrainingDiverged as exc:
        code = fail(str(exc), EXIT_DIVERGED)
    except TrainingFinished as exc:  # the lesson's own goal (lora-sd's steps) came first
        if not args.json:
            print(f"studio: {exc}", file=sys.stderr, flush=True)
    except KeyboardInterrupt:
        print(f"studio: stopped at step {trainer.step_count}; the run is saved in {run_.path}",
              file=sys.stderr, flush=True)
        code = EXIT_CANCELLED
    run_.append_metrics(buffer)
    run_.save_checkpoint(trainer)
    _save_accelerate(trainer, run_.path)
    if args.export is not None and code == 0:
        code = _export(trainer, args.export, loaded.settings)
    loss = step_loss(last)  # a lesson in its warm-up (dpo) reports that phase's loss
    if args.json:
        print(json.dumps({"run": str(run_.path), "steps": trainer.step_count,
                          "loss": loss}), flush=True)
    elif code == 0:
        report = getattr(trainer, "report", None)  # a lesson's results as text (quantize, prune)
        if report is not None and report():
            print(report(), flush=True)
        print(f"done: {count_of(trainer.step_count, 'step')}, "
              f"loss {float('nan') if loss is None else loss:.4g}; "
              f"run saved in {run_.path}", file=sys.stderr, flush=True)
    return code


def _save_accelerate(trainer: Trainer, run_path: Path) -> None:
    """An image lesson's ``Accelerator.save_state`` in the run folder (every process calls it)."""
    save = getattr(trainer, "save_accelerate_state", None)
    if save is not None:
        save(run_path / ACCELERATE_DIR)


def _train_quietly(trainer: Trainer, args: argparse.Namespace) -> int:
    """A launch's non-first process: the same steps (its share of each batch), no output."""
    from studio.pipelines.train.base import TrainingDiverged

    try:
        for _ in range(args.steps):
            trainer.step()
    except TrainingDiverged:
        return EXIT_DIVERGED  # the first process says why
    _save_accelerate(trainer, args.out)
    return 0
