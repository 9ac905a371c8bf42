"""Pieces every job-running sub-command shares: options, settings, the terminal reporter, the run.

``studio generate``, ``transform``, ``img2img``, ``chat`` and ``serve`` load Settings the same way
(a notice becomes a warning line, ``--device`` / ``--out`` override; ``--out DIR`` writes into
DIR itself, without the date sub-folder), name models the same way (:func:`resolve_cli_model`),
share their option definitions, and the image commands print results and run their job the same
way: paths (or ``--json`` objects) on stdout, a bar and warnings on stderr, exit 2 on bad input,
1 when the job fails and 130 on Ctrl+C. Nothing heavy is imported here.
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from studio.cli import Terminated, UsageError, fail
from studio.core.jobs import Checkable, UserFacingError
from studio.core.jobs import checked as checked_request

if TYPE_CHECKING:
    from studio.core.config import Paths, Settings
    from studio.core.engine import Engine
    from studio.core.jobs import JobHandle, JobListener, JobSnapshot
    from studio.library.resolve import ResolvedModel

EXIT_CANCELLED = 130
#: The exit statuses of the image commands (the end of their ``--help``).
IMAGE_EXIT_STATUS = ("Exit status: 0 every image was written; 1 the job failed (a model that "
                     "does not load, out of memory; the message says why); 2 bad input (an "
                     "invalid value, a model or image that does not exist or is of the wrong "
                     "kind, a device this machine lacks); 130 Ctrl+C (the images finished so "
                     "far stay); 143 SIGTERM (as Ctrl+C).")


# -- options ---------------------------------------------------------------------------------
#: ``--model`` help per kind: every form the one resolver (studio.library.resolve) takes.
MODEL_HELP = {
    "image": "a Stable Diffusion model: its name as 'studio models list' prints it, a diffusers "
             "folder, a .safetensors checkpoint, or a repo id in the Hugging Face cache",
    "chat": "a language model: its name as 'studio models list' prints it, a model folder, a "
            "repo id in the Hugging Face cache, or openai:BASE_URL#MODEL for an "
            "OpenAI-compatible server",
    "transform": "a CycleGAN generator: its name as 'studio models list' prints it, a "
                 ".pth/.safetensors file (latest_net_G.pth, *_net_G_A.pth) or a folder holding "
                 "a G_A/G_B pair",
    "upscaler": "an upscaler model (ESRGAN, Real-ESRGAN, Real-ESRGAN Compact): its name (the "
                "file's stem, e.g. 4x-UltraSharp) in the models folder's 'upscalers' folder, or "
                "a .pth/.safetensors file",
}
OUT_HELP = ("write the images into DIR itself, created if needed, with no date sub-folder "
            "(default: the output folder in Settings, in a YYYY-MM-DD sub-folder)")


def add_model_argument(p: argparse.ArgumentParser, kind: str) -> None:
    """``--model`` (required) for a command that takes models of ``kind``."""
    p.add_argument("--model", required=True, metavar="MODEL", help=MODEL_HELP[kind])


def add_device_argument(p: argparse.ArgumentParser) -> None:
    """``--device``; ``None`` (the default) keeps the one in Settings."""
    p.add_argument("--device", choices=("auto", "cuda", "mps", "cpu"), default=None,
                   help="compute device (default: the one in Settings)")


def add_verbose_argument(p: argparse.ArgumentParser) -> None:
    p.add_argument("--verbose", action="store_true",
                   help="let torch/diffusers/transformers print their own logs and bars")


def add_output_arguments(p: argparse.ArgumentParser) -> None:
    """``--out``, ``--device``, ``--json`` and ``--verbose``: the options of every
    image-making command (generate, img2img, transform, upscale)."""
    p.add_argument("--out", type=Path, default=None, metavar="DIR", help=OUT_HELP)
    add_device_argument(p)
    p.add_argument("--json", action="store_true",
                   help="print one JSON object per image instead of its path")
    add_verbose_argument(p)


def add_lora_argument(p: argparse.ArgumentParser) -> None:
    p.add_argument("--lora", action="append", default=[], metavar="NAME[:WEIGHT]",
                   help="apply a LoRA: its library name (file name without extension) or the "
                        "path of its file, and a weight (1 when left out); repeat for several. "
                        "<lora:NAME:WEIGHT> tags in the prompt work too")


def add_diffusion_arguments(p: argparse.ArgumentParser, *, prompt_help: str,
                            prompt_required: bool = True) -> None:
    """The options of the Stable Diffusion commands (generate, img2img), defined once. Without
    ``prompt_required`` the command checks ``--prompt`` itself (a GAN needs none, a model from
    Train's image diffusion lesson takes a class or nothing)."""
    p.add_argument("--prompt", required=prompt_required, default=None, help=prompt_help)
    p.add_argument("--negative", default="", metavar="TEXT", help="what to avoid")
    p.add_argument("--steps", type=int, default=20, metavar="N", help="denoising steps")
    p.add_argument("--cfg", type=float, default=7.0, metavar="SCALE",
                   help="guidance scale (0 or 1 turns guidance off: Turbo models)")
    p.add_argument("--seed", type=int, default=None, metavar="N",
                   help="seed of the first image; image i uses seed+i (default: random)")
    p.add_argument("--count", type=int, default=1, metavar="N", help="how many images")
    p.add_argument("--variation-seed", type=int, default=None, metavar="N",
                   help="a second seed whose noise is blended into the seed's (AUTOMATIC1111's "
                        "variation seed); with it every image keeps --seed and image i uses "
                        "variation seed+i (default: random)")
    p.add_argument("--variation-strength", type=float, default=0.0, metavar="X",
                   help="how much of the variation seed's noise, 0 (off, the default) to 1 "
                        "(its noise alone)")
    p.add_argument("--scheduler", default="default", metavar="NAME",
                   help="a key (dpmpp_2m_karras) or a name ('DPM++ 2M Karras') (default: the "
                        "model's own)")
    add_lora_argument(p)


_Request = TypeVar("_Request", bound=Checkable)


def checked(request: _Request) -> _Request:
    """``request`` once ``request.validate()`` passes; its reason is bad input (exit 2)."""
    try:
        return checked_request(request)
    except UserFacingError as exc:
        raise UsageError(str(exc)) from exc


def transformed_row(result: Any, **fields: Any) -> dict[str, Any]:
    """The ``--json`` row of a transformed image (transform, upscale): where it went, what it
    came from, its size and warnings, with ``fields`` (the model…) in between."""
    return {"path": str(result.path), "source": str(result.source), "index": result.index,
            **fields, "width": result.image.width, "height": result.image.height,
            "warnings": list(result.warnings or [])}


def variation_fields(args: argparse.Namespace) -> dict[str, Any]:
    """The request's ``variation_seed`` / ``variation_strength`` from ``--variation-*`` (see
    :func:`studio.core.requests.variation_fields`); out of range is bad input (exit 2), checked
    before any model is looked for."""
    from studio.core.requests import variation_fields as fields

    try:
        return fields(args.variation_seed, args.variation_strength)
    except ValueError as exc:
        raise UsageError(str(exc)) from exc


def read_secret(value: str | None, file: Path | None, env: tuple[str, ...], flag: str) -> str:
    """A key or token from ``--X-file FILE`` (its first line), ``--X VALUE`` or the first set
    variable of ``env``, in that order; "" when none. A file or a variable keeps the secret out
    of ``ps`` and shell history, where a command-line value is visible to every user."""
    import os

    if file is not None:
        try:
            text = file.expanduser().read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise UsageError(f"{flag}-file {file}: cannot read it "
                             f"({getattr(exc, 'strerror', None) or exc})") from None
        secret = text.strip().splitlines()[0].strip() if text.strip() else ""
        if not secret:
            raise UsageError(f"{flag}-file {file} is empty: put the secret on its first line")
        return secret
    if value:
        return value.strip()
    return next((os.environ[name].strip() for name in env if os.environ.get(name, "").strip()),
                "")


def resolve_cli_model(spec: str, kinds: str | tuple[str, ...], settings: Settings, paths: Paths,
                      command: str) -> ResolvedModel:
    """The model ``--model`` names (a library name, a path or a cached repo id), through the one
    resolver every command uses; a model that is missing or of another kind is bad input."""
    from studio.library.resolve import resolve_named

    try:
        return resolve_named(spec, kinds, settings, paths, command=command)
    except UserFacingError as exc:
        raise UsageError(str(exc)) from exc


# -- settings --------------------------------------------------------------------------------
def check_device(settings: Settings) -> None:
    """Raise :class:`UsageError` (exit 2) when the chosen device is not on this machine."""
    if settings.device != "auto":
        from studio.core.devices import resolve_device

        try:
            resolve_device(settings.device)
        except (RuntimeError, ValueError) as exc:
            raise UsageError(str(exc)) from exc


def load_cli_settings(args: argparse.Namespace, *, previews: bool = False,
                      device_check: bool = True, timeline: bool = False
                      ) -> tuple[Settings, Paths]:
    """Settings and paths with ``--device`` and (where the command has it) ``--out`` applied.

    A settings notice (a corrupt file backed up, …) is printed as a warning. Previews are turned
    off unless ``previews``: nobody sees them in a terminal and they cost time; so is the
    denoising timeline unless ``timeline`` (``studio generate --timeline``). With
    ``device_check`` a device this machine lacks exits 2 here; a command that wants its other
    input errors first calls :func:`check_device` itself later.
    """
    from studio.core.config import load_settings

    loaded = load_settings()
    if loaded.notice:
        print(f"studio: warning: {loaded.notice}", file=sys.stderr)
    settings = loaded.settings
    if args.device:
        settings.device = args.device
    out = getattr(args, "out", None)
    if out is not None:
        settings.output_dir = str(out.expanduser().resolve())
    if not previews:
        settings.preview_mode = "off"
    if not timeline:
        settings.timeline_frames = 0
    elif settings.timeline_frames <= 0:  # turned off in the settings, asked for here
        from studio.media.timeline import DEFAULT_FRAMES

        settings.timeline_frames = DEFAULT_FRAMES
    paths = settings.resolved_paths()
    if out is not None:  # --out DIR: the images go into DIR itself, not a dated sub-folder
        import dataclasses

        paths = dataclasses.replace(paths, dated_outputs=False)
    if device_check:
        check_device(settings)
    from studio.core.files import clean_stale_work_files

    clean_stale_work_files([paths.outputs_dir, paths.models_dir])  # what a crash left
    return settings, paths


# -- the terminal ----------------------------------------------------------------------------
class Reporter:
    """JobListener for the terminal (worker thread): a bar per image, results on stdout.

    ``describe(result) -> dict`` is the ``--json`` object of a result. A status line starting
    with "Skipped" is a warning (always shown); other status lines show on a terminal only.
    """

    def __init__(self, as_json: bool, describe: Callable[[Any], dict]) -> None:
        self.as_json = as_json
        self.describe = describe
        self.tty = sys.stderr.isatty()
        self.bar: Any = None
        self.done = 0
        self.reported: set[int] = set()
        self.warned: set[str] = set()
        self._lock = threading.Lock()
        self._last = ""

    # JobListener
    def job_changed(self, job: JobSnapshot) -> None:
        text = job.message or ""
        if job.state.finished or not text or text == self._last:
            return
        self._last = text
        if text.startswith("Skipped"):
            self._err(f"studio: warning: {text}")
        elif self.tty:
            self._err(text)

    def job_progress(self, job: JobSnapshot, step: int, total: int, preview: Any) -> None:
        if not self.tty or total <= 0:
            return
        with self._lock:
            if self.bar is None or step < self.bar.n or self.bar.total != total:
                self._new_bar(total, f"image {self.done + 1}")
            self.bar.update(step - self.bar.n)

    def job_partial(self, job: JobSnapshot, result: Any) -> None:
        self.report(result)

    # output
    def report(self, result: Any) -> None:
        """Print ``result`` once (its path or JSON object), after its new warnings."""
        with self._lock:
            if id(result) in self.reported or getattr(result, "path", None) is None:
                return
            self.reported.add(id(result))
            self._close_bar()
            self.done += 1
            for warning in getattr(result, "warnings", None) or []:
                if warning not in self.warned:
                    self.warned.add(warning)
                    self._err(f"studio: warning: {warning}")
            line = json.dumps(self.describe(result), ensure_ascii=False) if self.as_json \
                else str(result.path)
            print(line, flush=True)

    def close(self) -> None:
        with self._lock:
            self._close_bar()

    def _new_bar(self, total: int, desc: str, **options: Any) -> None:
        from tqdm import tqdm

        self._close_bar()
        self.bar = tqdm(total=total, file=sys.stderr, leave=False, desc=desc, **options)

    def _close_bar(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None

    def _err(self, text: str) -> None:
        # Through the bar when one is open, so the line does not tear it.
        if self.bar is not None:
            self.bar.write(text, file=sys.stderr)
        else:
            print(text, file=sys.stderr, flush=True)


def set_environ(changes: dict[str, str]) -> dict[str, str | None]:
    """Set ``changes`` in ``os.environ``; returns what :func:`restore_environ` puts back."""
    import os

    old = {key: os.environ.get(key) for key in changes}
    os.environ.update(changes)
    return old


def restore_environ(old: dict[str, str | None]) -> None:
    """Put back the variables :func:`set_environ` changed (unset those that were not set)."""
    import os

    for key, value in old.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


def hide_hub_bars() -> None:
    """No huggingface_hub / transformers progress bars ("Loading weights") on the terminal."""
    import os

    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    try:
        # The variable is read when huggingface_hub is imported, which the model lookup may
        # have done already; transformers' "Loading weights" bar follows this switch too.
        from huggingface_hub.utils import disable_progress_bars

        disable_progress_bars()
    except Exception:  # noqa: BLE001 - only cosmetics
        pass


def quiet_libraries() -> None:
    """Keep the libraries' own log lines and loading bars off the user's terminal.

    Environment variables are read when the libraries are first imported, which happens after
    this on the worker thread; the warnings filter covers their deprecation notices.
    """
    import os
    import warnings

    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("DIFFUSERS_VERBOSITY", "error")
    hide_hub_bars()
    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    try:
        from diffusers.utils import logging as diffusers_logging

        diffusers_logging.disable_progress_bar()
    except Exception:  # noqa: BLE001 - only cosmetics
        pass


# -- running a job ---------------------------------------------------------------------------
def wait_for(engine: Engine, job: JobHandle) -> bool:
    """Wait for the job; True if the user pressed Ctrl+C (the job is then cancelled)."""
    try:
        while not engine.wait(job, timeout=0.2):
            pass
        return False
    except KeyboardInterrupt as exc:
        print("studio: SIGTERM: cancelling the job…" if isinstance(exc, Terminated) else
              "studio: cancelling… (Ctrl+C again to quit at once)", file=sys.stderr, flush=True)
        engine.cancel(job)
    try:
        while not engine.wait(job, timeout=0.2):
            pass
    except KeyboardInterrupt:
        pass  # second Ctrl+C: leave now; the worker is a daemon thread
    return True


def cli_engine(settings: Settings, paths: Paths, listener: JobListener | None = None) -> Engine:
    """The engine a command runs its jobs on: the same services as the window, its settings."""
    from studio.pipelines.services import build_engine

    return build_engine(lambda: settings, lambda: paths, listener=listener, name="studio-cli")


def run_job(request: object, settings: Settings, paths: Paths, reporter: Reporter, expected: int, *,
            title: str | None = None, quiet: bool = True,
            summary: Callable[[Any], str] | None = None) -> int:
    """Run one job on the engine and turn its end into the exit status.

    Results the service did not report as it went are printed at the end (``summary`` turns a
    result that is not a list into the line printed); a failed job exits 1, a cancelled one 130
    after saying how many of ``expected`` images were made.
    """
    from studio.core.jobs import JobState

    if quiet:
        quiet_libraries()
    engine = cli_engine(settings, paths)
    job = None
    try:
        job = engine.submit(request, title="" if title is None else title, listener=reporter)
        interrupted = wait_for(engine, job)
        if summary is not None:
            if job.state is JobState.DONE:
                print(summary(job.result), flush=True)
        else:
            for result in job.result or []:
                reporter.report(result)
    finally:
        reporter.close()
        engine.shutdown(wait=job is None or job.state.finished, timeout=10)
    if job.state is JobState.FAILED:
        return fail(job.error or job.message or "the job failed", 1)
    if interrupted or job.state is JobState.CANCELLED:
        print(f"studio: cancelled after {reporter.done} of {expected} image(s)", file=sys.stderr)
        return EXIT_CANCELLED
    return 0
