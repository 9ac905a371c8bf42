"""``studio transform``: CycleGAN translation of an image or a folder of images, without a window.

Same conventions as ``studio generate``: stdout carries one path per finished image (or with
``--json`` one JSON object per line); progress (a bar per image, only on a terminal), warnings and
errors go to stderr; ``--out DIR`` writes into DIR itself; bad input exits 2 with one line, a
failed job 1, Ctrl+C 130 keeping every finished image. ``--model`` takes CycleGAN generators
only: a Stable Diffusion model is refused with a pointer to ``studio img2img``.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from studio.cli import UsageError
from studio.cli.common import (
    IMAGE_EXIT_STATUS,
    Reporter,
    add_model_argument,
    add_output_arguments,
    check_device,
    checked,
    load_cli_settings,
    resolve_cli_model,
    run_job,
    transformed_row,
)

NAME = "transform"
HELP = "translate images with a CycleGAN model (photo → Monet, horse → zebra, …)"
DESCRIPTION = (HELP + ". It takes CycleGAN generators; to repaint an image with a Stable "
               "Diffusion model (diffusion image-to-image) use 'studio img2img'.")
EXIT_STATUS = IMAGE_EXIT_STATUS


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_model_argument(p, "transform")
    p.add_argument("--input", required=True, type=Path, metavar="PATH",
                   help="an image, or a folder of images")
    p.add_argument("--direction", choices=("AtoB", "BtoA"), default="AtoB",
                   help="AtoB uses G_A (or the single generator), BtoA uses G_B")
    p.add_argument("--max-side", type=int, default=0, metavar="PX",
                   help="downscale images whose longer side is larger first; 0 keeps the size")
    p.add_argument("--tile", type=int, default=512, metavar="PX",
                   help="tile size for large images, 0 for none")
    add_output_arguments(p)


def run(args: argparse.Namespace) -> int:
    from studio.core.jobs import UserFacingError
    from studio.core.requests import TransformRequest
    from studio.media.images_in import list_images

    source = args.input.expanduser()
    if not source.exists():
        raise UsageError(f"{source} does not exist")
    settings, paths = load_cli_settings(args, device_check=False)
    try:
        inputs = list_images(source) if source.is_dir() else [source]
    except UserFacingError as exc:
        raise UsageError(str(exc)) from exc
    resolved = resolve_cli_model(args.model, "transform", settings, paths, "studio transform")
    model = resolved.entry
    try:
        model.file_for(args.direction)
    except UserFacingError as exc:
        raise UsageError(str(exc)) from exc
    if not inputs:
        raise UsageError(f"{source} holds no PNG, JPEG, WebP, BMP or TIFF images")
    request = TransformRequest(model=resolved.spec, inputs=[str(p.resolve()) for p in inputs],
                               direction=args.direction, max_side=args.max_side, tile=args.tile,
                               overlap=min(64, args.tile // 2))
    checked(request)
    check_device(settings)

    def describe(result: Any) -> dict:
        return transformed_row(result, model=model.name, direction=request.direction)

    return run_job(request, settings, paths, Reporter(args.json, describe), len(inputs),
                   quiet=not args.verbose)
