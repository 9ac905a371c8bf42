"""``studio gallery search TEXT`` / ``studio gallery index``: the Gallery's search by meaning,
without a window.

``search`` prints the images of the outputs folder that best match TEXT, best first, one path a
line (``--json``: one object a line with the cosine similarity and the prompt); ``index`` only
brings the index up to date and says how many images it holds. Both embed, first, every image
that is new or changed since the last time, with the same CLIP / SigLIP model and the same
SQLite index the Gallery uses (:mod:`studio.pipelines.gallery_clip`). Without such a model,
exit 2 with the ``hf download`` command that provides one.
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

from studio.cli import UsageError
from studio.cli.common import (
    Reporter,
    add_device_argument,
    add_verbose_argument,
    checked,
    load_cli_settings,
    run_job,
)

if TYPE_CHECKING:
    from studio.pipelines.gallery_clip import SearchHit

NAME = "gallery"
HELP = "search the images in the outputs folder by what they show (a CLIP / SigLIP model)"
EXIT_STATUS = ("Exit status: 0 done (also when nothing matches); 1 the job failed (a model that "
               "does not load; the message says why); 2 bad input (no CLIP / SigLIP model, an "
               "empty text, a device this machine lacks); 130 Ctrl+C.")
MODEL_HELP = ("a CLIP or SigLIP model: a folder, or a folder name or repo id found in the models "
              "folder or the Hugging Face cache (default: the first one found)")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", metavar="ACTION", required=True,
                                parser_class=type(parser))
    p = sub.add_parser("search", help="images ranked by how well they match a text",
                       description="The images of the outputs folder ranked by how well they "
                                   "match TEXT (cosine similarity), best first.",
                       epilog=EXIT_STATUS)
    p.add_argument("text", metavar="TEXT", help="what the images should show")
    p.add_argument("--limit", type=int, default=20, metavar="N",
                   help="print at most N images (default 20)")
    p.add_argument("--json", action="store_true",
                   help="print one JSON object per image: path, score, prompt")
    p.add_argument("--model", default="", metavar="MODEL", help=MODEL_HELP)
    add_device_argument(p)
    add_verbose_argument(p)
    p = sub.add_parser("index", help="embed new and changed images now (search does it too)",
                       description="Embed every image of the outputs folder that is new or "
                                   "changed since it was embedded.", epilog=EXIT_STATUS)
    p.add_argument("--model", default="", metavar="MODEL", help=MODEL_HELP)
    add_device_argument(p)
    add_verbose_argument(p)


def _hit_row(hit: SearchHit) -> dict[str, Any]:
    prompt = hit.item.prompt if hit.item is not None else ""
    return {"path": str(hit.path), "score": round(hit.score, 6), "prompt": prompt}


def run(args: argparse.Namespace) -> int:
    from studio.core.gallery_requests import GalleryIndexRequest, GallerySearchRequest
    from studio.core.jobs import UserFacingError
    from studio.library.clip_models import resolve_clip_model

    settings, paths = load_cli_settings(args)
    try:
        model = str(resolve_clip_model(args.model, settings, paths).path)
    except UserFacingError as exc:
        raise UsageError(str(exc)) from exc
    if args.action == "index":
        return run_job(checked(GalleryIndexRequest(model=model)), settings, paths,
                       Reporter(False, _hit_row), 0, quiet=not args.verbose,
                       summary=lambda report: report.sentence())
    request = checked(GallerySearchRequest(text=args.text, model=model, limit=args.limit))
    return run_job(request, settings, paths, Reporter(args.json, _hit_row), 0,
                   quiet=not args.verbose)
