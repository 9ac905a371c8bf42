"""``studio transform``: CycleGAN translation of an image or a folder of images, without a window.

Same conventions as ``studio generate``: stdout carries one path per finished image (or with
``--json`` one JSON object per line); progress (a bar per image, only on a terminal), warnings and
errors go to stderr; bad input exits 2 with one line, a failed job 1, Ctrl+C 130 keeping every
finished image.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from studio.cli import UsageError
from studio.cli.common import Reporter, add_output_arguments, load_cli_settings, run_job

NAME = "transform"
HELP = "translate images with a CycleGAN model (photo → Monet, horse → zebra, …)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", required=True,
                   help="a generator .pth/.safetensors (latest_net_G.pth, *_net_G_A.pth) or a "
                        "folder holding a G_A/G_B pair")
    p.add_argument("--input", required=True, type=Path, help="an image, or a folder of images")
    p.add_argument("--direction", choices=("AtoB", "BtoA"), default="AtoB",
                   help="AtoB uses G_A (or the single generator), BtoA uses G_B")
    p.add_argument("--max-side", type=int, default=0,
                   help="downscale images whose longer side is larger first (default: keep)")
    p.add_argument("--tile", type=int, default=512,
                   help="tile size for large images, 0 for none (default 512)")
    add_output_arguments(p)


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
