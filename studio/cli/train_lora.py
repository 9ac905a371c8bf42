"""``studio train-lora FOLDER --base MODEL --name NAME``: train a LoRA on your own images.

FOLDER holds the images with kohya-style ``.txt`` captions beside them; the LoRA is written in
kohya's format (FLUX.1, SD 3.5, Qwen-Image: diffusers' ``transformer.…lora_A`` layout, with
kohya's ``ss_`` metadata) into the library's ``loras`` folder (or ``--out``), where Generate finds it. Progress
goes to stderr (a line every few steps); with ``--json`` stdout carries one JSON object per step and
a last one with ``"lora"`` (the file) and ``"steps"``.

Ctrl+C stops after the current step and keeps the latest: the checkpoint (``--resume`` goes on from
it exactly) and the LoRA file as trained so far. A second Ctrl+C stops at once.

``--config FILE`` (JSON or TOML) holds the same settings by their long names (``folder``, ``base``,
``name``, ``rank``, ``mixed_precision``…); options typed on the line win. The loop runs through
``accelerate``, so several GPUs (or CPU processes) train one LoRA together, each drawing its own
batches and averaging gradients, the first one writing the files::

    accelerate launch --num_processes 2 -m studio train-lora --config lora.toml
    accelerate launch --num_processes 2 --cpu -m studio train-lora --config lora.toml
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

from studio.core.wording import count_of

if TYPE_CHECKING:
    from types import FrameType

NAME = "train-lora"
HELP = "train a LoRA (SD 1.x, SDXL, FLUX.1, SD 3.5, Qwen-Image) on a folder of your images"
EXIT_STATUS = ("Exit status: 0 done; 1 the training failed (the message says why); 2 bad input "
               "(no images, a model that is not in the library or of a family LoRA training does not "
               "support, an "
               "invalid "
               "value); "
               "130 Ctrl+C (the latest checkpoint and LoRA file are kept).")
LINES_PER_RUN = 20


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("folder", type=Path, nargs="?", default=None, metavar="FOLDER",
                        help="the images, with .txt captions beside them (cat.png + cat.txt)")
    parser.add_argument("--config", type=Path, default=None, metavar="FILE",
                        help="a JSON or TOML file of these settings by their long names "
                             "(folder, base, name, rank…); options on the line win")
    parser.add_argument("--base", default=None, metavar="MODEL",
                        help="the SD 1.x, SDXL, FLUX.1, SD 3.5 or Qwen-Image model from the "
                             "library (name or path) to train on")
    parser.add_argument("--name", default=None, help="the LoRA's name (its file name)")
    parser.add_argument("--trigger", default="", help="a word put before every caption")
    parser.add_argument("--rank", type=int, default=8, help="LoRA rank (network dim)")
    parser.add_argument("--alpha", type=float, default=None,
                        help="LoRA alpha (default: the rank)")
    parser.add_argument("--lr", type=float, default=1e-4, help="learning rate")
    parser.add_argument("--train-text-encoder", action="store_true",
                        help="LoRA layers in the text encoder(s) too (kohya's lora_te keys; "
                             "SD 1.x and SDXL only)")
    parser.add_argument("--text-encoder-lr", type=float, default=None, metavar="LR",
                        help="the text encoder's learning rate (default: --lr)")
    parser.add_argument("--steps", type=int, default=500, help="training steps")
    parser.add_argument("--resolution", type=int, default=512,
                        help="training size in pixels (buckets keep about this area)")
    parser.add_argument("--repeats", type=int, default=1, help="times each image counts")
    parser.add_argument("--batch-size", type=int, default=1,
                        help="images per step (from one aspect-ratio bucket)")
    parser.add_argument("--seed", type=int, default=0,
                        help="random seed (also the samples' seed)")
    parser.add_argument("--save-every", type=int, default=0, metavar="N",
                        help="write a checkpoint every N steps (0: only at the end)")
    parser.add_argument("--sample", dest="sample_prompts", action="append", default=[],
                        metavar="PROMPT", help="a sample prompt (repeatable)")
    parser.add_argument("--sample-every", type=int, default=0, metavar="N",
                        help="draw the sample prompts every N steps (and at the end)")
    parser.add_argument("--mixed-precision", choices=("no", "fp16", "bf16"), default="no",
                        help="train in half precision (GPUs)")
    parser.add_argument("--gradient-checkpointing", action="store_true",
                        help="less memory, slower steps")
    parser.add_argument("--no-cache-latents", dest="cache_latents", action="store_false",
                        help="encode the images at every step (the VAE stays on the GPU)")
    parser.add_argument("--no-cache-text", dest="cache_text", action="store_false",
                        help="encode the captions at every step")
    parser.add_argument("--optimizer", choices=("adamw", "adamw8bit"), default="adamw",
                        help="adamw8bit: bitsandbytes' 8-bit AdamW (on a CPU: bitsandbytes 0.50 or newer)")
    parser.add_argument("--no-sdpa", dest="sdpa", action="store_false",
                        help="the plain attention instead of PyTorch's SDPA")
    parser.add_argument("--device", default=None, help="cpu, cuda, … (default: Settings')")
    parser.add_argument("--out", type=Path, default=None, metavar="DIR",
                        help="folder for the LoRA file (default: the library's loras folder)")
    parser.add_argument("--resume", action="store_true",
                        help="go on from the latest checkpoint of NAME")
    parser.add_argument("--json", action="store_true", help="print JSON lines only")


class _StopFlag:
    """First Ctrl+C: stop after this step; a second: the usual KeyboardInterrupt."""

    def __init__(self) -> None:
        self.stop = False
        self.previous: Any = None

    def __enter__(self) -> _StopFlag:
        if threading.current_thread() is threading.main_thread():
            self.previous = signal.signal(signal.SIGINT, self._handle)
        return self

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.stop:
            raise KeyboardInterrupt
        self.stop = True
        print("studio: stopping after this step (Ctrl+C again stops at once)", file=sys.stderr,
              flush=True)

    def __exit__(self, *exc: object) -> None:
        if self.previous is not None:
            signal.signal(signal.SIGINT, self.previous)


def _with_config(args: argparse.Namespace) -> argparse.Namespace:
    """``args`` with the ``--config`` file's values where the line left an option at its
    default; a missing FOLDER, --base or --name (in neither) is bad input."""
    from studio.cli import UsageError

    values: dict[str, Any] = {}
    if args.config is not None:
        try:
            text = Path(args.config).read_text(encoding="utf-8")
            if Path(args.config).suffix.lower() == ".toml":
                import tomllib

                values = tomllib.loads(text)
            else:
                values = json.loads(text)
        except (OSError, UnicodeDecodeError, ValueError) as exc:
            raise UsageError(f"The config file {args.config} cannot be read ({exc}); it is a "
                             "JSON or TOML file of train-lora's settings.") from None
        if not isinstance(values, dict):
            raise UsageError(f"The config file {args.config} must hold a table of settings.")
    parser = argparse.ArgumentParser(add_help=False)
    add_arguments(parser)
    defaults = {a.dest: a.default for a in parser._actions}
    merged = vars(args).copy()
    for key, value in values.items():
        dest = key.replace("-", "_")
        if dest not in defaults or dest in ("config", "json"):
            raise UsageError(f"The config file {args.config} has '{key}', which is not a "
                             "train-lora setting; the settings are the long option names.")
        if merged[dest] == defaults[dest]:
            kind = type(defaults[dest])
            merged[dest] = (Path(value) if dest in ("folder", "out")
                            else kind(value) if kind in (int, float) else value)
    missing = [label for dest, label in (("folder", "FOLDER"), ("base", "--base"),
                                         ("name", "--name")) if merged[dest] in (None, "")]
    if missing:
        raise UsageError(f"train-lora needs {', '.join(missing)} (on the line or in --config).")
    return argparse.Namespace(**merged)


def run(args: argparse.Namespace) -> int:
    from studio.cli import EXIT_INTERRUPTED, UsageError
    from studio.core.config import default_paths, load_settings
    from studio.core.jobs import UserFacingError
    from studio.pipelines.train.lora_config import LoraTrainConfig, device_memory
    from studio.pipelines.train.lora_flow import trainer_for
    from studio.pipelines.train.lora_sd import StepReport

    args = _with_config(args)
    loaded = load_settings()
    settings = loaded.settings
    paths = settings.resolved_paths(default_paths())
    config = LoraTrainConfig(
        data_dir=args.folder, base=args.base, name=args.name, trigger=args.trigger,
        rank=args.rank, alpha=args.alpha if args.alpha is not None else float(args.rank),
        lr=args.lr, steps=args.steps, resolution=args.resolution, repeats=args.repeats,
        batch_size=args.batch_size, seed=args.seed, save_every=args.save_every,
        sample_every=args.sample_every, sample_prompts=args.sample_prompts,
        mixed_precision=args.mixed_precision,
        gradient_checkpointing=args.gradient_checkpointing, out_dir=args.out,
        train_text_encoder=args.train_text_encoder, text_encoder_lr=args.text_encoder_lr,
        cache_latents=args.cache_latents, cache_text=args.cache_text, optimizer=args.optimizer,
        sdpa=args.sdpa)
    from studio.core.devices import resolve_device

    device = resolve_device(args.device or settings.device)
    try:  # everything found wrong before training is bad input
        trainer = trainer_for(config, settings, paths, device=device)
        trainer.prepare()
    except UserFacingError as exc:
        raise UsageError(str(exc)) from None
    assert trainer.dataset is not None
    processes = trainer.accelerator.num_processes
    if not trainer.accelerator.is_main_process:  # `accelerate launch`: the first one speaks
        trainer.run(resume=args.resume)
        return 0
    for warning in trainer.dataset.warnings:
        print(f"studio: warning: {warning}", file=sys.stderr, flush=True)
    if processes > 1 and not args.json:
        print(f"{processes} processes train together (accelerate); each step averages their "
              "batches.", file=sys.stderr, flush=True)
    if not args.json:
        print(f"LoRA '{args.name}' on {trainer.base_name}: {len(trainer.dataset.examples)} "
              f"image(s), {count_of(args.steps, 'step')} → {trainer.lora_file}", file=sys.stderr,
              flush=True)
        print(trainer.estimate(device_memory(device)).sentence, file=sys.stderr, flush=True)
    show_every = max(1, args.steps // LINES_PER_RUN)
    smooth: list[float] = []

    def on_step(report: StepReport) -> None:
        smooth.append(report.loss)
        if args.json:
            print(json.dumps({"step": report.step, "loss": report.loss, "lr": report.lr}),
                  flush=True)
        elif report.step % show_every == 0 or report.step == report.total:
            recent = smooth[-show_every:]
            rate = report.step / report.elapsed if report.elapsed > 0 else 0.0
            eta = (report.total - report.step) / rate if rate > 0 else 0.0
            print(f"step {report.step}/{report.total}  loss {sum(recent) / len(recent):.4g}  "
                  f"{rate:.2f} steps/s  ETA {eta:.0f}s", file=sys.stderr, flush=True)  # plural-ok

    with _StopFlag() as flag:
        out = trainer.run(resume=args.resume, on_step=on_step, should_stop=lambda: flag.stop)
    if args.json:
        print(json.dumps({"lora": str(out), "steps": trainer.step,
                          **({"processes": processes} if processes > 1 else {})}), flush=True)
    else:
        print(f"{'stopped' if flag.stop else 'done'} at step {trainer.step}: {out}",
              file=sys.stderr, flush=True)
    return EXIT_INTERRUPTED if flag.stop else 0
