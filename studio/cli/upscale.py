"""``studio upscale IMAGE… --model NAME``: enlarge images with an upscaler model, without a window.

Same conventions as ``studio transform``: stdout carries one path per finished image (or with
``--json`` one JSON object per line); progress (a bar of tiles per image, only on a terminal),
warnings and errors go to stderr; ``--out DIR`` writes into DIR itself; bad input exits 2 with one
line, a failed job 1, Ctrl+C 130 keeping every finished image. A folder stands for the images in
it. The model is an ESRGAN / Real-ESRGAN file (:mod:`studio.library.upscalers` says where they go).
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
    run_job,
    transformed_row,
)

NAME = "upscale"
HELP = "enlarge images with an upscaler model (ESRGAN, Real-ESRGAN…), in blended tiles"
EXIT_STATUS = IMAGE_EXIT_STATUS


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("images", nargs="+", type=Path, metavar="IMAGE",
                   help="image files, or folders of images")
    add_model_argument(p, "upscaler")
    p.add_argument("--scale", type=float, default=0.0, metavar="N",
                   help="times larger; 0 keeps the model's own factor, another value resizes its "
                        "output with Lanczos (1 to 8)")
    p.add_argument("--tile", type=int, default=512, metavar="PX",
                   help="tile size in input pixels for large images, 0 for none")
    p.add_argument("--overlap", type=int, default=32, metavar="PX",
                   help="pixels neighbouring tiles share and blend (at most half the tile)")
    add_output_arguments(p)


def input_files(sources: list[Path]) -> list[Path]:
    """The image files ``sources`` name (a folder stands for its images); bad input exits 2."""
    from studio.core.jobs import UserFacingError
    from studio.media.images_in import list_images

    files: list[Path] = []
    for source in sources:
        source = source.expanduser()
        if not source.exists():
            raise UsageError(f"{source} does not exist")
        try:
            found = list_images(source) if source.is_dir() else [source]
        except UserFacingError as exc:
            raise UsageError(str(exc)) from exc
        if not found:
            raise UsageError(f"{source} holds no PNG, JPEG, WebP, BMP or TIFF images")
        files += [f.resolve() for f in found]
    return files


def run(args: argparse.Namespace) -> int:
    from studio.core.jobs import UserFacingError
    from studio.core.requests import UpscaleRequest
    from studio.library.upscalers import resolve_upscaler

    inputs = input_files(args.images)
    settings, paths = load_cli_settings(args, device_check=False)
    try:
        model = resolve_upscaler(args.model, settings, paths)
    except UserFacingError as exc:
        raise UsageError(str(exc)) from exc
    spec = str(model.path) if Path(args.model).expanduser().is_file() else model.name
    request = checked(UpscaleRequest(model=spec, inputs=[str(p) for p in inputs],
                                     scale=args.scale, tile=args.tile, overlap=args.overlap))
    check_device(settings)

    def describe(result: Any) -> dict:
        return transformed_row(result, model=model.name)

    return run_job(request, settings, paths, Reporter(args.json, describe), len(inputs),
                   quiet=not args.verbose)
