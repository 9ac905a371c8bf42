"""``studio models shrink NAME`` for an image generation model: its denoiser in int8 or fp8.

The dialog's checks come first (a method image models do not take, a model already made
smaller, a taken name, too little disk: bad input, exit 2); then the ``image-shrink`` job runs on
the same engine as the window's and prints the before/after table and where the two sample
images are (or one JSON object with ``--json``).
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from studio.core.config import Paths, Settings
    from studio.library.entry import LibraryEntry


def run_image_shrink(args: argparse.Namespace, entry: LibraryEntry, entries: list[LibraryEntry],
                     settings: Settings, paths: Paths) -> int:
    from studio.cli.models_shrink import plan_and_run, print_saved
    from studio.core.shrink_requests import ImageShrinkRequest
    from studio.pipelines.diffusion.shrink import plan_image_shrink

    spec = entry.repo_id if entry.source == "hf-cache" and entry.repo_id else str(entry.path)
    request = ImageShrinkRequest(model=spec, method=args.method, out_name=args.out,
                                 steps=args.steps, size=args.size)
    code, report = plan_and_run(plan_image_shrink, request, entry, entries, args, settings,
                                paths)
    if report is None:
        return code
    if report.samples:
        print(f"Sample images (seed {request.seed}): {report.samples[0]} and "
              f"{report.samples[1]}")
    return print_saved(report, f"Draw with it: studio generate --model {report.name} "
                               "--prompt TEXT")
