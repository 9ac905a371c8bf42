"""``studio models shrink NAME`` for an image generation model: its denoiser in int8 or fp8.

The dialog's checks come first (a method image models do not take, a model already made
smaller, a taken name, too little disk: bad input, exit 2); then the ``image-shrink`` job runs on
the same engine as the window's and prints the before/after table and where the two sample
images are (or one JSON object with ``--json``).
"""

from __future__ import annotations

import argparse
from typing import Any


def run_image_shrink(args: argparse.Namespace, entry: Any, entries: list[Any], settings: Any,
                     paths: Any) -> int:
    from studio.cli import UsageError
    from studio.cli.common import quiet_libraries
    from studio.cli.models_shrink import run_and_print
    from studio.core.jobs import UserFacingError
    from studio.core.shrink_requests import ImageShrinkRequest
    from studio.library.manage import human_size
    from studio.pipelines.diffusion.shrink import plan_image_shrink

    spec = entry.repo_id if entry.source == "hf-cache" and entry.repo_id else str(entry.path)
    request = ImageShrinkRequest(model=spec, method=args.method, out_name=args.out,
                                 steps=args.steps, size=args.size)
    quiet_libraries()
    names = {e.name for e in entries}
    try:
        plan = plan_image_shrink(request, settings, paths, names.__contains__)
    except UserFacingError as exc:
        raise UsageError(str(exc)) from exc
    code, report = run_and_print(plan, request, f"Make {entry.name} smaller", args, settings,
                                 paths)
    if report is None:
        return code
    if report.samples:
        print(f"Sample images (seed {request.seed}): {report.samples[0]} and "
              f"{report.samples[1]}")
    print(f"Saved {report.name} ({human_size(report.after.size_bytes)}) to {report.path}. "
          f"Draw with it: studio generate --model {report.name} --prompt TEXT")
    return 0
