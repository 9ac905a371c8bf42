"""``studio transform``: CycleGAN translation of an image or a folder of images, without a window.

Same conventions as ``studio generate``: stdout carries one path per finished image (or with
``--json`` one JSON object per line); progress (a bar per image, only on a terminal), warnings and
errors go to stderr; bad input exits 2 with one line, a failed job 1, Ctrl+C 130 keeping every
finished image.
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
from pathlib import Path
from typing import Any

from studio.cli import UsageError, fail

NAME = "transform"
HELP = "translate images with a CycleGAN model (photo → Monet, horse → zebra, …)"
EXIT_CANCELLED = 130


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", required=True,
                   help="a generator .pth/.safetensors (latest_net_G.pth, *_net_G_A.pth) or a "
                        "folder holding a G_A/G_B pair")
    p.add_argument("--input", required=True, type=Path, help="an image, or a folder of images")
    p.add_argument("--out", type=Path, default=None,
                   help="output folder (default: the one in Settings)")
    p.add_argument("--direction", choices=("AtoB", "BtoA"), default="AtoB",
                   help="AtoB uses G_A (or the single generator), BtoA uses G_B")
    p.add_argument("--max-side", type=int, default=0,
                   help="downscale images whose longer side is larger first (default: keep)")
    p.add_argument("--tile", type=int, default=512,
                   help="tile size for large images, 0 for none (default 512)")
    p.add_argument("--device", choices=("auto", "cuda", "mps", "cpu"), default=None,
                   help="compute device (default: the one in Settings)")
    p.add_argument("--json", action="store_true",
                   help="print one JSON object per image instead of its path")


class Reporter:
    """JobListener for the terminal (worker thread): a bar per image, results on stdout."""

    def __init__(self, as_json: bool, describe: Any) -> None:
        self.as_json = as_json
        self.describe = describe  # result -> dict for --json
        self.tty = sys.stderr.isatty()
        self.bar: Any = None
        self.done = 0
        self.reported: set[int] = set()
        self.warned: set[str] = set()
        self._lock = threading.Lock()
        self._last = ""

    def job_changed(self, job: Any) -> None:
        text = job.message or ""
        if job.state.finished or text == self._last:
            return
        self._last = text
        if text.startswith("Skipped"):
            self._err(f"studio: warning: {text}")
        elif self.tty:
            self._err(text)

    def job_progress(self, job: Any, step: int, total: int, preview: Any) -> None:
        if not self.tty or total <= 0:
            return
        from tqdm import tqdm

        with self._lock:
            if self.bar is None or step < self.bar.n or self.bar.total != total:
                self._close_bar()
                self.bar = tqdm(total=total, file=sys.stderr, leave=False,
                                desc=f"image {self.done + 1}")
            self.bar.update(step - self.bar.n)

    def job_partial(self, job: Any, result: Any) -> None:
        self.report(result)

    def report(self, result: Any) -> None:
        with self._lock:
            if id(result) in self.reported or result.path is None:
                return
            self.reported.add(id(result))
            self._close_bar()
            self.done += 1
            for warning in result.warnings or []:
                if warning not in self.warned:
                    self.warned.add(warning)
                    self._err(f"studio: warning: {warning}")
            line = json.dumps(self.describe(result), ensure_ascii=False) if self.as_json \
                else str(result.path)
            print(line, flush=True)

    def _close_bar(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None

    def _err(self, text: str) -> None:
        if self.bar is not None:
            self.bar.write(text, file=sys.stderr)
        else:
            print(text, file=sys.stderr, flush=True)

    def close(self) -> None:
        with self._lock:
            self._close_bar()


def load_cli_settings(args: argparse.Namespace) -> tuple[Any, Any]:
    """Settings and paths with ``--out`` / ``--device`` applied; a bad device exits 2."""
    from studio.config import load_settings

    loaded = load_settings()
    if loaded.notice:
        print(f"studio: warning: {loaded.notice}", file=sys.stderr)
    settings = loaded.settings
    if args.device:
        settings.device = args.device
    if args.out is not None:
        settings.output_dir = str(args.out.expanduser().resolve())
    settings.preview_mode = "off"
    if settings.device != "auto":
        from studio.devices import resolve_device

        try:
            resolve_device(settings.device)
        except (RuntimeError, ValueError) as exc:
            raise UsageError(str(exc)) from exc
    return settings, settings.resolved_paths()


def run_job(kind: str, service_run: Any, request: Any, reporter: Reporter, expected: int) -> int:
    """Run one job on a CLI worker and turn its end into the exit status."""
    from studio.cli.generate import _quiet_libraries, _wait
    from studio.jobs import JobRunner, JobState

    _quiet_libraries()
    runner = JobRunner({kind: service_run}, listener=reporter, name="studio-cli-worker")
    job = None
    try:
        job = runner.submit(kind, request, title=kind)
        interrupted = _wait(runner, job)
        for result in job.result or []:
            reporter.report(result)
    finally:
        reporter.close()
        runner.shutdown(wait=job is None or job.state.finished, timeout=10)
    if job.state is JobState.FAILED:
        return fail(job.error or job.message or "the job failed", 1)
    if interrupted or job.state is JobState.CANCELLED:
        print(f"studio: cancelled after {reporter.done} of {expected} image(s)", file=sys.stderr)
        return EXIT_CANCELLED
    return 0


def run(args: argparse.Namespace) -> int:
    from studio.jobs import UserFacingError
    from studio.library.cyclegan_models import resolve_cyclegan
    from studio.pipelines.images_in import list_images
    from studio.pipelines.requests import TransformRequest

    source = args.input.expanduser()
    if not source.exists():
        raise UsageError(f"{source} does not exist")
    try:
        inputs = list_images(source) if source.is_dir() else [source]
        model = resolve_cyclegan(args.model)
        model.file_for(args.direction)
    except UserFacingError as exc:
        raise UsageError(str(exc)) from exc
    if not inputs:
        raise UsageError(f"{source} holds no PNG, JPEG, WebP, BMP or TIFF images")
    request = TransformRequest(model=str(Path(args.model).expanduser().resolve()),
                               inputs=[str(p.resolve()) for p in inputs],
                               direction=args.direction, max_side=args.max_side, tile=args.tile,
                               overlap=min(64, args.tile // 2))
    try:
        request.validate()
    except ValueError as exc:
        raise UsageError(str(exc)) from exc
    settings, paths = load_cli_settings(args)
    from studio.pipelines.transform import TransformService

    service = TransformService(lambda: settings, lambda: paths)

    def describe(result: Any) -> dict:
        return {"path": str(result.path), "source": str(result.source), "index": result.index,
                "model": model.name, "direction": request.direction,
                "width": result.image.width, "height": result.image.height,
                "warnings": list(result.warnings or [])}

    return run_job("transform", service.run, request, Reporter(args.json, describe),
                   len(inputs))
