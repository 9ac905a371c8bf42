"""``studio img2img``: repaint an image (or, with ``--mask``, part of it) from a prompt; with
``--edit "make it winter"`` an editing model (FLUX.1 Kontext, Qwen-Image-Edit) edits it from the
instruction.

Output conventions and options as ``studio generate`` (the same definitions): paths (or ``--json``
objects) on stdout, everything else on stderr, ``--out DIR`` writes into DIR itself; exit 2 on
bad input, 1 when the job fails, 130 on Ctrl+C (finished images stay). The size is the image's
own, rounded down to multiples of 8.
"""

from __future__ import annotations

import argparse
import secrets
from pathlib import Path
from typing import TYPE_CHECKING, Any

from studio.cli import UsageError
from studio.cli.common import (
    IMAGE_EXIT_STATUS,
    add_diffusion_arguments,
    add_model_argument,
    add_output_arguments,
    checked,
    load_cli_settings,
    resolve_cli_model,
    run_job,
    variation_fields,
)
from studio.cli.generate import (
    FilmReporter,
    add_timeline_argument,
    check_film_path,
    check_loras,
    parse_lora,
)
from studio.core.requests import OUTPAINT_FILLS, OUTPAINT_SIDES

if TYPE_CHECKING:
    from studio.library.models import ModelEntry

NAME = "img2img"
HELP = ("repaint an image from a prompt (inpaint a region with --mask, extend it with "
        "--outpaint, enlarge it with --sd-upscale, edit from an instruction with --edit)")
EXIT_STATUS = IMAGE_EXIT_STATUS


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_model_argument(p, "image")
    p.add_argument("--image", required=True, type=Path, metavar="FILE",
                   help="the image to start from")
    add_diffusion_arguments(p, prompt_help="what the result should show", prompt_required=False)
    p.add_argument("--edit", default=None, metavar="INSTRUCTION",
                   help="edit with instructions (an editing model: FLUX.1 Kontext, "
                        "Qwen-Image-Edit), e.g. --edit \"make it winter\"; the result is "
                        "about a megapixel at the image's shape; --cfg defaults to the model's "
                        "(2.5 for Kontext, 4 for Qwen-Image-Edit)")
    p.add_argument("--width", type=int, default=0, metavar="PX",
                   help="--edit: the result's width, a multiple of 16 (with --height; default "
                        "about a megapixel at the image's shape)")
    p.add_argument("--height", type=int, default=0, metavar="PX",
                   help="--edit: the result's height, a multiple of 16")
    p.set_defaults(cfg=None)  # 7, or an editing model's own
    p.add_argument("--mask", type=Path, default=None, metavar="FILE",
                   help="inpaint: a mask image, white where the image is repainted")
    p.add_argument("--mask-blur", type=int, default=4, metavar="PX",
                   help="inpaint: soften the mask's edge by this many pixels, 0 to 64 "
                        "(default 4, as AUTOMATIC1111)")
    p.add_argument("--strength", type=float, default=0.75,
                   help="how much to change, above 0 up to 1")
    p.add_argument("--outpaint", default="", metavar="left=N,right=N,top=N,bottom=N",
                   help="outpaint: extend the canvas by N px (multiples of 8) on the sides "
                        "named, and paint the new area (the seam is feathered by --mask-blur)")
    p.add_argument("--outpaint-fill", choices=OUTPAINT_FILLS, default="edge",
                   help="outpaint: what the new area starts from — the picture's edge colours "
                        "stretched out (default) or noise")
    p.add_argument("--sd-upscale", type=float, default=0.0, metavar="SCALE",
                   help="SD upscale: enlarge SCALE times, then refine in tiles with img2img at "
                        "--strength (try 0.2-0.4)")
    p.add_argument("--sd-upscaler", default="Lanczos", metavar="NAME",
                   help="SD upscale: Lanczos (default) or an upscaler model's name or file")
    p.add_argument("--tile", type=int, default=512, metavar="PX",
                   help="SD upscale: tile size, a multiple of 8 (default 512)")
    p.add_argument("--tile-overlap", type=int, default=64, metavar="PX",
                   help="SD upscale: pixels neighbouring tiles share and blend (default 64)")
    add_timeline_argument(p)
    add_output_arguments(p)


def run(args: argparse.Namespace) -> int:
    from studio.cli.generate import parse_scheduler
    from studio.core.jobs import UserFacingError
    from studio.core.requests import Img2ImgRequest
    from studio.media.images_in import open_image

    settings, paths = load_cli_settings(args, timeline=args.timeline is not None)
    if args.timeline is not None and args.sd_upscale:
        raise UsageError("--timeline films one denoising per image; --sd-upscale denoises tile "
                         "by tile, which has none to film (leave out --timeline)")
    if args.timeline:
        check_film_path(Path(args.timeline).expanduser())
    for label, path in (("image", args.image), ("mask", args.mask)):
        if path is not None and not path.expanduser().is_file():
            raise UsageError(f"the {label} {path} does not exist")
    try:
        open_image(args.image.expanduser())  # a damaged or foreign file is bad input: exit 2
    except UserFacingError as exc:
        raise UsageError(str(exc)) from exc
    if (args.prompt is None) == (args.edit is None):
        raise UsageError("give --prompt (what the result should show) or --edit (an "
                         "instruction for an editing model), one of them")
    if (args.width or args.height) and (args.edit is None or not (args.width and args.height)):
        raise UsageError("--width and --height go together, with --edit (image to image keeps "
                         "the image's size)")
    variation = variation_fields(args)  # bad input before the model is looked for
    outpaint: dict[str, Any] = parse_outpaint(args.outpaint)  # the outpaint_* fields
    model = resolve_cli_model(args.model, "image", settings, paths, "studio img2img")
    if model.entry.format == "gan":
        from studio.library.gan_models import GAN_NO_IMG2IMG

        raise UsageError(GAN_NO_IMG2IMG.format(name=model.name))
    cfg = args.cfg if args.cfg is not None else edit_cfg(model.entry) if args.edit else 7.0
    request = Img2ImgRequest(
        model=model.spec,
        image=str(args.image.expanduser().resolve()),
        mask=str(args.mask.expanduser().resolve()) if args.mask else "",
        mask_blur=args.mask_blur if args.mask or any(outpaint.values()) else 0,
        **outpaint, outpaint_fill=args.outpaint_fill,
        sd_upscale=args.sd_upscale, sd_upscaler=args.sd_upscaler, sd_upscale_tile=args.tile,
        sd_upscale_overlap=args.tile_overlap,
        prompt=args.edit if args.edit is not None else args.prompt, edit=args.edit is not None,
        negative_prompt=args.negative, strength=args.strength, steps=args.steps, cfg=cfg,
        width=args.width, height=args.height,
        seed=secrets.randbelow(2**32) if args.seed is None else args.seed, count=args.count,
        scheduler=parse_scheduler(args.scheduler), loras=[parse_lora(s) for s in args.lora],
        **variation)
    checked(request)
    check_loras(request, model.entry, settings, paths)
    def describe(result: Any) -> dict:
        return {"path": str(result.path), "seed": result.seed, "index": result.index,
                "width": result.image.width, "height": result.image.height,
                "model": request.model, "prompt": request.prompt,
                "source": str(result.source), "mask": request.mask or None,
                "mask_blur": request.mask_blur if request.mask or request.outpaint else None,
                "outpaint": dict(zip(OUTPAINT_SIDES, request.outpaint_amounts(), strict=True))
                if request.outpaint else None,
                "sd_upscale": request.sd_upscale or None, "edit": request.edit,
                "strength": None if request.edit else request.strength, "loras": list(result.loras),
                "warnings": list(result.warnings or [])}

    return run_job(request, settings, paths,
                   FilmReporter(request, args.json, args.timeline, describe), args.count,
                   quiet=not args.verbose)


def edit_cfg(entry: ModelEntry) -> float:
    """The CFG (or distilled guidance) an edit starts at: the editing family's own, else 7
    (the job then says the model does not edit)."""
    from studio.library.families import family

    found = family(getattr(entry, "family", ""))
    return found.default_cfg if found is not None and found.edit else 7.0


def parse_outpaint(text: str) -> dict[str, int]:
    """``left=64,right=64`` → the request's ``outpaint_left`` … fields (sides not named: 0)."""
    out = {f"outpaint_{side}": 0 for side in OUTPAINT_SIDES}
    for part in filter(None, (p.strip() for p in text.split(","))):
        side, sep, value = part.partition("=")
        side = side.strip().lower()
        if not sep or side not in OUTPAINT_SIDES:
            raise UsageError(f"--outpaint takes side=pixels pairs such as left=64,top=128 "
                             f"(sides: {', '.join(OUTPAINT_SIDES)}), not {part!r}")
        try:
            out[f"outpaint_{side}"] = int(value)
        except ValueError:
            raise UsageError(f"--outpaint {side} must be a whole number of pixels, "
                             f"not {value.strip()!r}") from None
    return out
