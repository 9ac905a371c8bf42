"""``studio img2img``: repaint an image (or, with ``--mask``, part of it) from a prompt.

Output conventions and options as ``studio generate`` (the same definitions): paths (or ``--json``
objects) on stdout, everything else on stderr, ``--out DIR`` writes into DIR itself; exit 2 on
bad input, 1 when the job fails, 130 on Ctrl+C (finished images stay). The size is the image's
own, rounded down to multiples of 8.
"""

from __future__ import annotations

import argparse
import secrets
from pathlib import Path
from typing import Any

from studio.cli import UsageError
from studio.cli.common import (
    IMAGE_EXIT_STATUS,
    Reporter,
    add_diffusion_arguments,
    add_model_argument,
    add_output_arguments,
    load_cli_settings,
    resolve_cli_model,
    run_job,
    variation_fields,
)
from studio.cli.generate import check_loras, parse_lora

NAME = "img2img"
HELP = "repaint an image from a prompt (inpaint a region with --mask)"
EXIT_STATUS = IMAGE_EXIT_STATUS


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_model_argument(p, "image")
    p.add_argument("--image", required=True, type=Path, metavar="FILE",
                   help="the image to start from")
    add_diffusion_arguments(p, prompt_help="what the result should show")
    p.add_argument("--mask", type=Path, default=None, metavar="FILE",
                   help="inpaint: a mask image, white where the image is repainted")
    p.add_argument("--mask-blur", type=int, default=4, metavar="PX",
                   help="inpaint: soften the mask's edge by this many pixels, 0 to 64 "
                        "(default 4, as AUTOMATIC1111)")
    p.add_argument("--strength", type=float, default=0.75,
                   help="how much to change, above 0 up to 1")
    add_output_arguments(p)


def run(args: argparse.Namespace) -> int:
    from studio.cli.generate import parse_scheduler
    from studio.core.jobs import UserFacingError
    from studio.core.requests import Img2ImgRequest
    from studio.media.images_in import open_image

    settings, paths = load_cli_settings(args)
    for label, path in (("image", args.image), ("mask", args.mask)):
        if path is not None and not path.expanduser().is_file():
            raise UsageError(f"the {label} {path} does not exist")
    try:
        open_image(args.image.expanduser())  # a damaged or foreign file is bad input: exit 2
    except UserFacingError as exc:
        raise UsageError(str(exc)) from exc
    variation = variation_fields(args)  # bad input before the model is looked for
    model = resolve_cli_model(args.model, "image", settings, paths, "studio img2img")
    if model.entry.format == "gan":
        from studio.library.gan_models import GAN_NO_IMG2IMG

        raise UsageError(GAN_NO_IMG2IMG.format(name=model.name))
    request = Img2ImgRequest(
        model=model.spec,
        image=str(args.image.expanduser().resolve()),
        mask=str(args.mask.expanduser().resolve()) if args.mask else "",
        mask_blur=args.mask_blur if args.mask else 0,
        prompt=args.prompt, negative_prompt=args.negative, strength=args.strength,
        steps=args.steps, cfg=args.cfg,
        seed=secrets.randbelow(2**32) if args.seed is None else args.seed, count=args.count,
        scheduler=parse_scheduler(args.scheduler), loras=[parse_lora(s) for s in args.lora],
        **variation)
    try:
        request.validate()
    except ValueError as exc:
        raise UsageError(str(exc)) from exc
    check_loras(request, model.entry, settings, paths)
    def describe(result: Any) -> dict:
        return {"path": str(result.path), "seed": result.seed, "index": result.index,
                "width": result.image.width, "height": result.image.height,
                "model": request.model, "prompt": request.prompt,
                "source": str(result.source), "mask": request.mask or None,
                "mask_blur": request.mask_blur if request.mask else None,
                "strength": request.strength, "loras": list(result.loras),
                "warnings": list(result.warnings or [])}

    return run_job(request, settings, paths, Reporter(args.json, describe), args.count,
                   quiet=not args.verbose)
