"""``studio models shrink NAME --method int8|int4|fp8 [--out NAME]``: "Make smaller…" headless.

The checks the dialog makes come first (a model already quantized, a layer the method cannot
take, a taken name, too little disk: bad input, exit 2); then the shrink job runs on the same
engine as the window's and prints the before/after table (or one JSON object with ``--json``).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from studio.core.config import Paths, Settings
    from studio.core.jobs import JobSnapshot
    from studio.core.shrink_requests import ImageShrinkRequest, ShrinkRequest
    from studio.library.entry import LibraryEntry
    from studio.pipelines.chat.shrink import ShrinkReport
    from studio.pipelines.diffusion.shrink import ImageShrinkReport

HELP = ("make a chat or image model smaller: int8, int4 or fp8 weights, saved as a new "
        "model")
DESCRIPTION = (
    "Save a copy of a chat model with its linear layers' weights quantized (torchao, "
    "weight-only) as a new model in the models folder, named NAME-METHOD unless --out says. "
    "Before and after it measures the size on disk, the perplexity on the shipped Shakespeare "
    "text and the tokens per second of greedy generation. The copy loads in Chat, 'studio "
    "chat' and 'studio serve' like any model. int8 and fp8 keep one byte per weight; int4 "
    "rounds to 16 levels but is stored one value per byte too (packed int4 needs a CUDA GPU "
    "with torchao's mslk kernels). An image generation model's denoiser (UNet or "
    "transformer) is stored in int8 (torchao, linear layers) or fp8 (conv and linear weights, "
    "upcast layer by layer while it runs); before and after it measures the size on disk, the "
    "denoiser's bytes in memory, the seconds per step and one sample image at a fixed seed "
    "(saved next to the copy) with their mean pixel difference. The copy loads in Generate, "
    "'studio generate' and 'studio serve'.")


EXIT_STATUS = ("Exit status: 0 done; 1 the work failed (loading, quantizing or saving; nothing "
               "is left behind); 2 bad input (a name no model has, not a chat or image model, "
               "a method the model's kind does not take, a model already quantized, a layer "
               "the method cannot take, a name already taken, too little free disk); 130 "
               "Ctrl+C (nothing is saved).")


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    from studio.core.shrink_requests import SHRINK_METHODS

    p = sub.add_parser("shrink", help=HELP, description=DESCRIPTION, epilog=EXIT_STATUS)
    p.add_argument("name", metavar="NAME",
                   help="a chat or image generation model: a name as 'studio models list' "
                        "prints it, a repo id or a path")
    p.add_argument("--method", choices=tuple(SHRINK_METHODS), default="int8",
                   help="int8 (default), int4 or fp8 weight-only (image models: int8 or fp8)")
    p.add_argument("--out", default="", metavar="NAME",
                   help="the new model's name (default: NAME-METHOD)")
    p.add_argument("--eval-tokens", type=int, default=1024, metavar="N",
                   help="tokens of Shakespeare the perplexity is measured on (default 1024)")
    p.add_argument("--steps", type=int, default=8, metavar="N",
                   help="image models: steps of the sample image (default 8)")
    p.add_argument("--size", type=int, default=0, metavar="PX",
                   help="image models: the sample image's side in pixels (default: the "
                        "family's size, at most 512)")
    p.add_argument("--json", action="store_true", help="print one JSON object")


def _refused(exc: Exception) -> Exception:
    from studio.cli import UsageError

    return UsageError(str(exc))


def run_job(request: ShrinkRequest | ImageShrinkRequest, title: str, args: argparse.Namespace,
            settings: Settings,
            paths: Paths) -> tuple[int, Any]:
    """Run a shrink job on the command line's engine: (exit status, the report or None)."""
    from studio.cli import fail
    from studio.cli.common import cli_engine, wait_for
    from studio.core.jobs import JobState

    class Listener:
        def job_changed(self, job: JobSnapshot) -> None:
            if job.message and not job.state.finished and not args.json:
                print(f"  {job.message}", file=sys.stderr, flush=True)

        def job_progress(self, *_a: object) -> None:
            pass

        def job_partial(self, *_a: object) -> None:
            pass

    engine = cli_engine(settings, paths)
    job = None
    try:
        job = engine.submit(request, title=title, listener=Listener())
        interrupted = wait_for(engine, job)
    finally:
        engine.shutdown(wait=job is None or job.state.finished, timeout=10)
    if job.state is JobState.FAILED:
        return fail(job.error or job.message or "making the model smaller failed", 1), None
    if interrupted or job.state is JobState.CANCELLED:
        print("studio: cancelled; nothing was saved", file=sys.stderr)
        return 130, None
    for warning in job.result.warnings:
        print(f"studio: warning: {warning}", file=sys.stderr)
    return 0, job.result


def plan_and_run(planner: Callable[..., Any], request: ShrinkRequest | ImageShrinkRequest,
                 entry: LibraryEntry, entries: list[LibraryEntry],
                 args: argparse.Namespace, settings: Settings, paths: Paths) -> tuple[int, Any]:
    """Make the plan (its refusals are bad input), say it, run the job, print its JSON or its
    before/after table: (exit status, the report when the caller still has its closing lines to
    print, else None). ``planner`` is the kind's ``plan_shrink`` / ``plan_image_shrink``."""
    from studio.cli.common import quiet_libraries
    from studio.core.jobs import UserFacingError

    quiet_libraries()
    names = {e.name for e in entries}
    try:
        plan = planner(request, settings, paths, names.__contains__)
    except UserFacingError as exc:
        raise _refused(exc) from exc
    if not args.json:
        print(plan.describe(), flush=True)
    code, report = run_job(request, f"Make {entry.name} smaller", args, settings, paths)
    if report is None:
        return code, None
    if args.json:
        print(json.dumps(report.to_json(), indent=1))
        return 0, None
    rows = [("", "before", "after", "change"), *report.rows()]
    width = max(len(r[0]) for r in rows)
    for what, before, after, change in rows:
        print(f"  {what:<{width}}  {before:>10}  {after:>10}  {change:>8}")
    return 0, report


def print_saved(report: ShrinkReport | ImageShrinkReport, use: str) -> int:
    """The closing line: where the copy is, and how to use it."""
    from studio.library.manage import human_size

    print(f"Saved {report.name} ({human_size(report.after.size_bytes)}) to {report.path}. {use}")
    return 0


def run_shrink(args: argparse.Namespace, context: Callable[[], tuple[Settings, Paths, Paths]],
               lookup: Callable[[str, list[LibraryEntry]], LibraryEntry]) -> int:
    from studio.core.shrink_requests import ShrinkRequest
    from studio.library.catalog import list_models
    from studio.pipelines.chat.shrink import plan_shrink

    settings, paths, _ = context()
    entries = list_models(settings, paths)
    entry = lookup(args.name, entries)
    if entry.kind == "image":
        from studio.cli.models_shrink_image import run_image_shrink

        return run_image_shrink(args, entry, entries, settings, paths)
    if entry.kind != "chat":
        raise _refused(ValueError(f"{entry.name} is a {entry.kind_title} model; only chat "
                                  "and image generation models can be made smaller."))
    request = ShrinkRequest(model=str(entry.path) if entry.source != "hf-cache" or not
                            entry.repo_id else entry.repo_id, method=args.method,
                            out_name=args.out, eval_tokens=args.eval_tokens)
    code, report = plan_and_run(plan_shrink, request, entry, entries, args, settings, paths)
    if report is None:
        return code
    return print_saved(report, f"Chat with it: studio chat --model {report.name}")
