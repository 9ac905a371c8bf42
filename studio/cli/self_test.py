"""``studio self-test``: check that this install works, on this machine, with no network.

It imports the stack, runs a two-step image with a tiny model built on the spot, one chat token,
one training step of every lesson, and opens the main window offscreen (every workspace) and grabs
it — one line per check with ✓/✗ and its time. Exit status 0 when all pass, else 1 with a last
line naming what failed. Everything it writes goes to a scratch folder that is removed afterwards
(``--keep`` keeps it), and ``STUDIO_HOME``/``HF_HOME`` point there while it runs, so the user's
settings, outputs and caches are not touched. This is also how an installer build is verified:
the frozen app runs exactly this (``packaging/linux/build.sh`` does).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

NAME = "self-test"
HELP = ("check this install: imports, a tiny image, img2img and inpainting, a CycleGAN, a chat "
        "token, the API server, downloads, a training step of every lesson, the window")

#: Every check, in the order they run. Together they go through every way the app runs work
#: (tests/test_packaging_self_test.py keeps this true): a module that diffusers or transformers
#: import by name at run time and an installer forgot fails here, not on a user's machine.
CHECKS = ("imports", "assets", "generate", "img2img", "transform", "chat", "serve", "download",
          "train", "window")
#: Which check goes through each job kind the window submits and each command (by name).
COVERS = {
    # job kinds
    "txt2img": "generate", "img2img": "img2img", "transform": "transform", "chat": "chat",
    "upscale": "transform",  # the job kind and `studio upscale`: the check runs an upscale job
    "embed": "serve",  # /v1/embeddings
    "attention": "chat",  # where the Complete-mode token looked
    "unload": "generate",  # every check that runs jobs unloads its models afterwards
    "download": "download", "file-download": "download",
    "shrink": "chat",  # the tiny chat model is made smaller (int8) and answers again
    "image-shrink": "generate",  # the tiny image model is made smaller (int8) and draws again
    "gan-walk": "train",  # a dcgan trained a step is exported, drawn and walked
    # commands
    "gui": "window", "generate": "generate", "train": "train", "serve": "serve",
    "models": "serve",  # the server's catalog is the library scan `studio models list` prints
    "info": "imports", "self-test": "imports",
    "params": "generate",  # the saved PNG is read back through `studio params`' reader
    "train-lora": "generate",  # a LoRA is trained a step on the generated image
    "classify": "train",  # an exported classifier classifies the test picture (`studio classify`)
    # the generated image is found by a CLIP search (the jobs behind `studio gallery`)
    "gallery": "generate", "gallery-index": "generate", "gallery-search": "generate",
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--only", action="append", choices=CHECKS, default=[],
                        metavar="CHECK", help=f"run only this check (repeatable): {', '.join(CHECKS)}")
    parser.add_argument("--device", choices=("auto", "cuda", "mps", "cpu"), default="auto",
                        help="device for the image and chat checks (default auto)")
    parser.add_argument("--screenshot", type=Path, default=None, metavar="PNG",
                        help="save the window grab as this PNG")
    parser.add_argument("--keep", action="store_true",
                        help="keep the scratch folder (its path is printed)")
    parser.add_argument("--json", action="store_true",
                        help="print one JSON object per check instead of the ✓/✗ lines")


@dataclass
class Outcome:
    """One check's result: ``detail`` is what it saw, or the reason it failed."""

    name: str
    ok: bool
    seconds: float
    detail: str


def check_window(root: Path, screenshot: Path | None = None) -> str:
    """Open the main window offscreen, build every workspace and grab the window."""
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from PySide6.QtWidgets import QApplication

    from studio.app import build_main_window
    from studio.cli.self_checks import CheckFailed, scratch_settings

    app = QApplication.instance() or QApplication([sys.argv[0], "-platform", "offscreen"])
    settings, paths = scratch_settings(root / "window")
    window = build_main_window(settings, paths)
    try:
        window.show()
        app.processEvents()
        broken = [ws.title for ws in window.workspaces if window.show_workspace(ws.key) is None]
        app.processEvents()
        if broken:
            raise CheckFailed(f"workspaces that did not open: {', '.join(broken)}")
        window.show_workspace(window.workspaces[0].key)
        app.processEvents()
        image = window.grab().toImage()
        if image.isNull() or image.width() < 100 or image.height() < 100:
            raise CheckFailed(f"the window grab is empty ({image.width()}×{image.height()})")
        if screenshot is not None:
            screenshot.parent.mkdir(parents=True, exist_ok=True)
            if not image.save(str(screenshot)):
                raise CheckFailed(f"could not save the grab as {screenshot}")
        return f"{len(window.workspaces)} workspaces, {image.width()}×{image.height()} grab " \
               f"({QApplication.platformName()})"
    finally:
        window.close()  # closeEvent shuts the job worker down
        window.shutdown()
        window.deleteLater()
        app.processEvents()


def _mark(ok: bool) -> str:
    """✓/✗, or OK/FAIL on a console whose encoding lacks them (Windows code pages)."""
    mark = "✓" if ok else "✗"
    try:
        mark.encode(sys.stdout.encoding or "ascii")
    except (UnicodeEncodeError, LookupError):
        mark = "OK" if ok else "FAIL"
    return mark


def _run_one(name: str, fn: Callable[[], str]) -> Outcome:
    from studio.core.jobs import describe_error

    start = time.perf_counter()
    try:
        detail = fn()
        ok = True
    except Exception as exc:  # noqa: BLE001 - every failure is reported, the next check still runs
        detail, ok = describe_error(exc) or type(exc).__name__, False
    return Outcome(name, ok, time.perf_counter() - start, " ".join(str(detail).split()))


def _offline_environment(root: Path) -> dict[str, str | None]:
    """Point Studio and the Hugging Face libraries at ``root``, offline; returns what to restore."""
    changes = {"STUDIO_HOME": str(root / "home"), "HF_HOME": str(root / "hf"),
               "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
               "HF_HUB_DISABLE_TELEMETRY": "1", "TRANSFORMERS_VERBOSITY": "error",
               "DIFFUSERS_VERBOSITY": "error", "HF_HUB_DISABLE_PROGRESS_BARS": "1"}
    from studio.cli.common import set_environ

    return set_environ(changes)


def run_checks(names: list[str], root: Path, device: str = "auto",
               screenshot: Path | None = None,
               report: Callable[[Outcome], None] | None = None) -> list[Outcome]:
    """Run the named checks in order (imports first), calling ``report`` after each."""
    from studio.cli import self_checks as self_check
    from studio.cli import self_checks_train as train_checks

    table: dict[str, Callable[[], str]] = {
        "imports": self_check.check_imports,
        "assets": self_check.check_assets,
        "generate": lambda: self_check.check_generate(root / "generate", device),
        "img2img": lambda: self_check.check_img2img(root / "img2img", device),
        "transform": lambda: self_check.check_transform(root / "transform", device),
        "chat": lambda: self_check.check_chat(root / "chat", device),
        "serve": lambda: self_check.check_serve(root / "serve", device),
        "download": lambda: self_check.check_download(root / "download", device),
        "train": lambda: train_checks.check_train(root=root / "train"),
        "window": lambda: check_window(root, screenshot),
    }
    outcomes = []
    for name in names:
        outcome = _run_one(name, table[name])
        outcomes.append(outcome)
        if report is not None:
            report(outcome)
    return outcomes


def run(args: argparse.Namespace) -> int:
    from studio.cli.common import quiet_libraries, restore_environ

    names = [c for c in CHECKS if c in args.only] if args.only else list(CHECKS)
    for stream in (sys.stdout, sys.stderr):  # "×", "→" on a code-page console: replace, not crash
        if hasattr(stream, "reconfigure"):
            stream.reconfigure(errors="replace")
    root = Path(tempfile.mkdtemp(prefix="studio-self-test-"))
    old_env = _offline_environment(root)
    quiet_libraries()

    def report(o: Outcome) -> None:
        if args.json:
            print(json.dumps({"check": o.name, "ok": o.ok, "seconds": round(o.seconds, 2),
                              "detail": o.detail}, ensure_ascii=False), flush=True)
        else:
            print(f"{_mark(o.ok)} {o.name:<9} {o.seconds:6.1f} s  {o.detail}", flush=True)

    try:
        outcomes = run_checks(names, root, args.device, args.screenshot, report)
    finally:
        restore_environ(old_env)
        if args.keep:
            print(f"scratch folder kept: {root}", file=sys.stderr)
        else:
            shutil.rmtree(root, ignore_errors=True)
    failed = [o.name for o in outcomes if not o.ok]
    if failed:
        from studio.cli import fail

        return fail(f"self-test failed: {', '.join(failed)}", 1)
    if not args.json:
        print(f"{len(outcomes)}/{len(outcomes)} checks passed.", flush=True)
    return 0
