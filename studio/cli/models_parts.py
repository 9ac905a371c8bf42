"""``studio models parts NAME [--set ROLE=FILE …] [--guess ROLE …]``: the text encoders and VAE a
ComfyUI split diffusion model (FLUX.1, SD 3.5, Qwen-Image, Z-Image, FLUX.2) is assembled
with.

Without options it prints each part the model needs, the file used and every file found for it
in ComfyUI's folders; ``--set clip_l=/path/clip_l.safetensors`` chooses a file (kept in the
settings, used by Generate, the command line and ``studio serve`` alike), ``--guess ROLE`` goes
back to the file Studio would pick. A file that is not that part (an SDXL VAE for FLUX's) is bad
input with the reason.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from studio.core.config import Paths, Settings

HELP = "show or choose the text encoders and VAE of a split diffusion model (ComfyUI files)"
DESCRIPTION = (
    "A FLUX.1, SD 3.5, Qwen-Image, Z-Image or FLUX.2 diffusion-model file from ComfyUI's "
    "models/diffusion_models (or unet) "
    "needs text encoders (models/text_encoders or clip) and a VAE (models/vae). Without options "
    "this prints each part, the file used and the others found; --set ROLE=FILE chooses one "
    "(remembered in the settings), --guess ROLE forgets the choice.")
EXIT_STATUS = ("Exit status: 0 done; 2 bad input (a name no model has, not a split diffusion "
               "model, a role it has no part for, a file that is not that part).")


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("parts", help=HELP, description=DESCRIPTION, epilog=EXIT_STATUS)
    p.add_argument("name", metavar="NAME",
                   help="a split diffusion model: a name as 'studio models list' prints it or "
                        "a path")
    p.add_argument("--set", action="append", default=[], metavar="ROLE=FILE",
                   help="use FILE as the part ROLE (clip_l, clip_g, t5xxl, text_encoder, vae); "
                        "repeatable")
    p.add_argument("--guess", action="append", default=[], metavar="ROLE",
                   help="forget the choice for ROLE: Studio picks the file again; repeatable")
    p.add_argument("--json", action="store_true", help="print one JSON object")


def run_parts(args: argparse.Namespace, context: Callable[[], tuple[Settings, Paths, Paths]]
              ) -> int:
    from studio.cli import UsageError
    from studio.core.config import save_settings
    from studio.core.jobs import UserFacingError
    from studio.library.models import resolve_model
    from studio.library.split_files import check_part, find_parts

    settings, paths, base = context()
    try:
        entry = resolve_model(args.name, settings, paths)
    except UserFacingError as exc:
        raise UsageError(str(exc)) from exc
    if entry.format != "split":
        raise UsageError(f"{args.name} is not a split diffusion model (a FLUX.1, SD 3.5, "
                         "Chroma, Qwen-Image, Z-Image or FLUX.2 file from ComfyUI's "
                         "models/diffusion_models, or an all-in-one FLUX.1 / SD 3.5 file); "
                         "it has no parts to choose.")
    wanted = find_parts(entry.path, entry.family).parts
    roles = {p.role for p in wanted}
    changes: list[tuple[str, Path | None]] = [(r, None) for r in args.guess]
    for item in args.set:
        role, _, file = item.partition("=")
        changes.append((role.strip(), Path(file.strip()).expanduser()))
    for role, file in changes:
        if role not in roles:
            raise UsageError(f"{entry.name} has no part {role!r}; its parts are "
                             f"{', '.join(sorted(roles))}.")
        if file is not None:
            if not file.is_file():
                raise UsageError(f"{file} does not exist.")
            try:
                check_part(role, file, entry.family, entry.path)
            except UserFacingError as exc:
                raise UsageError(str(exc)) from exc
        settings = settings.with_part(entry.path, role, file)
    if changes:
        save_settings(settings, base.settings_file)
    found = find_parts(entry.path, entry.family, settings.parts_for(entry.path))
    chosen = settings.parts_for(entry.path)
    rows: list[dict[str, Any]] = [{"role": p.role, "required": p.required,
             "file": str(found.chosen[p.role]) if p.role in found.chosen else "",
             "chosen_by": "you" if p.role in chosen else "Studio",
             "inside": p.role in found.inside,  # read from the model file itself (all-in-one)
             "candidates": [str(c) for c in found.candidates.get(p.role, [])]}
            for p in found.parts]
    if args.json:
        print(json.dumps({"model": str(entry.path), "family": entry.family, "parts": rows},
                         indent=2))
        return 0
    print(f"{entry.name} ({entry.family}, {entry.path})")
    for row in rows:
        used = row["file"] or ("missing" if row["required"] else "none (optional)")
        used = "inside the file" if row["inside"] else used
        print(f"  {row['role']:7} {used}" + (f"  [chosen by {row['chosen_by']}]"
                                             if row["file"] else ""))
        for other in row["candidates"]:
            if other != row["file"]:
                print(f"          also: {other}")
    return 0
