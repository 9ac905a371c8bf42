"""``studio generate``: text to image without a window, on the same job runner as the GUI.

stdout carries only results: one path per image as it is written, or with ``--json`` one JSON
object per line. Progress (a tqdm bar, only when stderr is a terminal), warnings and errors go to
stderr. Ctrl+C cancels cleanly: images already written stay, the exit status is 130.
"""

from __future__ import annotations

import argparse
import json
import secrets
import sys
import threading
from pathlib import Path
from typing import Any

from studio.cli import UsageError, fail

NAME = "generate"
HELP = "make images from a text prompt"

EXIT_CANCELLED = 130


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", required=True,
                   help="a diffusers folder, a .safetensors checkpoint, or a repo id in the "
                        "Hugging Face cache")
    p.add_argument("--prompt", required=True, help="what to draw")
    p.add_argument("--negative", default="", help="what to avoid")
    p.add_argument("--steps", type=int, default=20, help="denoising steps (default 20)")
    p.add_argument("--cfg", type=float, default=7.0, help="guidance scale (default 7)")
    p.add_argument("--seed", type=int, default=None,
                   help="seed of the first image; image i uses seed+i (default: random)")
    p.add_argument("--width", type=int, default=512, help="multiple of 8 (default 512)")
    p.add_argument("--height", type=int, default=512, help="multiple of 8 (default 512)")
    p.add_argument("--scheduler", default="default",
                   help="a key (dpmpp_2m_karras) or a name ('DPM++ 2M Karras'); default: the "
                        "model's own")
    p.add_argument("--count", type=int, default=1, help="how many images (default 1)")
    p.add_argument("--out", type=Path, default=None,
                   help="output folder (default: the one in Settings)")
    p.add_argument("--device", choices=("auto", "cuda", "mps", "cpu"), default=None,
                   help="compute device (default: the one in Settings)")
    p.add_argument("--json", action="store_true",
                   help="print one JSON object per image instead of its path")
    p.add_argument("--verbose", action="store_true",
                   help="let torch/diffusers/transformers print their own logs and bars")


def parse_scheduler(name: str) -> str:
    """A scheduler key from a key or display name (case-insensitive) or another tool's name."""
    from studio.pipelines.metadata import scheduler_key
    from studio.pipelines.requests import SCHEDULERS

    wanted = name.strip().lower()
    for key, label in SCHEDULERS.items():
        if wanted in (key, label.lower()):
            return key
    key = scheduler_key(name)
    if key != "default":
        return key
    choices = ", ".join(f"{k} ({v})" for k, v in SCHEDULERS.items())
    raise UsageError(f"unknown scheduler {name!r}; choose one of: {choices}")


def build_request(args: argparse.Namespace, settings: Any, paths: Any) -> Any:
    """The validated request for ``args``; raises :class:`UsageError` on bad input."""
    from studio.jobs import UserFacingError
    from studio.pipelines.requests import Txt2ImgRequest

    seed = secrets.randbelow(2**32) if args.seed is None else args.seed
    model = args.model.strip()
    request = Txt2ImgRequest(model=model, prompt=args.prompt, negative_prompt=args.negative,
                             steps=args.steps, cfg=args.cfg, width=args.width,
                             height=args.height, seed=seed, count=args.count,
                             scheduler=parse_scheduler(args.scheduler))
    try:
        request.validate()
    except ValueError as exc:
        raise UsageError(str(exc)) from exc
    from studio.library.models import resolve_model

    try:
        resolve_model(model, settings, paths)
    except UserFacingError as exc:
        raise UsageError(str(exc)) from exc
    local = Path(model).expanduser()
    if local.exists():  # an absolute path in the metadata lets "reuse parameters" find it again
        request.model = str(local.resolve())
    return request


class _Reporter:
    """JobListener for the terminal. Called on the worker thread; stdout gets results only."""

    def __init__(self, request: Any, as_json: bool) -> None:
        self.request = request
        self.as_json = as_json
        self.tty = sys.stderr.isatty()
        self.bar: Any = None
        self.bar_index = -1
        self.images = 0
        self.reported: set[int] = set()
        self.warned: set[str] = set()
        self._lock = threading.Lock()
        self._last_message = ""

    # JobListener
    def job_changed(self, job: Any) -> None:
        if self.tty and job.message and job.message != self._last_message \
                and not job.state.finished:
            self._last_message = job.message
            self._write_err(job.message)

    def job_progress(self, job: Any, step: int, total: int, preview: Any) -> None:
        if not self.tty or total <= 0:
            return
        from tqdm import tqdm

        count = max(1, self.request.count)
        # The service may report steps of the whole batch (total = count × steps) or of one
        # image; either way the bar shows the steps of the image being made.
        if count > 1 and total % count == 0 and total >= count:
            per = total // count
            index = min(max(step - 1, 0) // per, count - 1)
            step -= index * per
        else:
            per, index = total, self.images
        with self._lock:
            if self.bar is None or self.bar_index != index or step < self.bar.n:
                self._close_bar()
                self.bar_index = index
                self.bar = tqdm(total=per, file=sys.stderr, unit="step", leave=False,
                                desc=f"image {index + 1}/{count}")
            self.bar.update(step - self.bar.n)

    def job_partial(self, job: Any, result: Any) -> None:
        self.report(result)

    # output
    def report(self, result: Any) -> None:
        with self._lock:
            if id(result) in self.reported or getattr(result, "path", None) is None:
                return
            self.reported.add(id(result))
            self._close_bar()
            self.images += 1
            for warning in getattr(result, "warnings", None) or []:
                if warning not in self.warned:
                    self.warned.add(warning)
                    self._write_err(f"studio: warning: {warning}")
            if self.as_json:
                image = getattr(result, "image", None)
                width, height = (image.size if image is not None
                                 else (self.request.width, self.request.height))
                line = json.dumps({
                    "path": str(result.path), "seed": result.seed, "index": result.index,
                    "width": width, "height": height, "model": self.request.model,
                    "prompt": self.request.prompt, "warnings": list(result.warnings or []),
                }, ensure_ascii=False)
            else:
                line = str(result.path)
            print(line, flush=True)

    def _close_bar(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None

    def _write_err(self, text: str) -> None:
        if self.bar is not None:
            self.bar.write(text, file=sys.stderr)
        else:
            print(text, file=sys.stderr, flush=True)

    def close(self) -> None:
        with self._lock:
            self._close_bar()


def _quiet_libraries() -> None:
    """Keep the libraries' own log lines and loading bars off the user's terminal.

    Environment variables are read when the libraries are first imported, which happens after
    this on the worker thread; the warnings filter covers their deprecation notices.
    """
    import os
    import warnings

    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("DIFFUSERS_VERBOSITY", "error")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    try:
        from diffusers.utils import logging as diffusers_logging

        diffusers_logging.disable_progress_bar()
    except Exception:  # noqa: BLE001 - only cosmetics
        pass


def _wait(runner: Any, job: Any) -> bool:
    """Wait for the job; True if the user pressed Ctrl+C (the job is then cancelled)."""
    try:
        while not runner.wait(job, timeout=0.2):
            pass
        return False
    except KeyboardInterrupt:
        print("studio: cancelling… (Ctrl+C again to quit at once)", file=sys.stderr, flush=True)
        runner.cancel(job)
    try:
        while not runner.wait(job, timeout=0.2):
            pass
    except KeyboardInterrupt:
        pass  # second Ctrl+C: leave now; the worker is a daemon thread
    return True


def run(args: argparse.Namespace) -> int:
    from studio.config import load_settings

    loaded = load_settings()
    if loaded.notice:
        print(f"studio: warning: {loaded.notice}", file=sys.stderr)
    settings = loaded.settings
    if args.device:
        settings.device = args.device
    if args.out is not None:
        settings.output_dir = str(args.out.expanduser().resolve())
    settings.preview_mode = "off"  # nobody sees previews here; they cost time
    paths = settings.resolved_paths()
    request = build_request(args, settings, paths)
    if settings.device != "auto":
        from studio.devices import resolve_device

        try:
            resolve_device(settings.device)
        except (RuntimeError, ValueError) as exc:
            raise UsageError(str(exc)) from exc

    if not args.verbose:
        _quiet_libraries()
    from studio.jobs import JobRunner, JobState
    from studio.pipelines.txt2img import Txt2ImgService

    service = Txt2ImgService(lambda: settings, lambda: paths)
    reporter = _Reporter(request, args.json)
    runner = JobRunner({"txt2img": service.run}, listener=reporter, name="studio-cli-worker")
    try:
        job = runner.submit("txt2img", request, title=request.prompt[:40])
        interrupted = _wait(runner, job)
        for result in job.result or []:  # anything the service did not report as it went
            reporter.report(result)
    finally:
        reporter.close()
        runner.shutdown(wait=job.state.finished, timeout=10)
    if job.state is JobState.FAILED:
        return fail(job.error or job.message or "the job failed", 1)
    if interrupted or job.state is JobState.CANCELLED:
        print(f"studio: cancelled after {reporter.images} of {request.count} image(s)",
              file=sys.stderr)
        return EXIT_CANCELLED
    return 0
