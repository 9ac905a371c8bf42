"""``studio models``: list, inspect, import, remove and download models (the model library).

``list`` and ``info`` read headers only; ``info --hash`` computes the sha256 (A1111's "Model hash"
is its first 10 hex digits). ``remove`` shows what it deletes and the space freed and asks first
(``--yes`` to skip). ``download`` shows the size first, fetches only what Studio needs and resumes
an interrupted download when run again; Ctrl+C cancels and keeps the partial files.
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import sys
import time
from typing import Any

NAME = "models"
HELP = "list, inspect, import, remove and download models"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", metavar="ACTION", required=True,
                                parser_class=type(parser))
    p = sub.add_parser("list", help="every model in the library, grouped by kind")
    p.add_argument("--json", action="store_true", help="print a JSON list")
    p.add_argument("--kind", choices=("image", "transform", "chat", "preview", "lora", "unknown"))
    p = sub.add_parser("info", help="details of one model")
    p.add_argument("name", help="a name, repo id or path from 'studio models list'")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--hash", action="store_true", help="compute the sha256 (slow for big files)")
    p = sub.add_parser("import", help="add a model file or folder to the library")
    p.add_argument("path")
    p.add_argument("--copy", action="store_true",
                   help="copy it into the models folder (default: use it where it is)")
    p = sub.add_parser("remove", help="delete a model (or forget one added in place)")
    p.add_argument("name")
    p.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    p = sub.add_parser("download", help="download a model from the Hugging Face Hub")
    p.add_argument("repo_id", help="e.g. stabilityai/sd-turbo")
    p.add_argument("--include", action="append", default=[], metavar="PATTERN",
                   help="fetch only the chosen weight files matching PATTERN (repeatable)")
    precision = p.add_mutually_exclusive_group()
    precision.add_argument("--fp16", dest="fp16", action="store_true", default=None,
                           help="fetch the fp16 variant where there is one")
    precision.add_argument("--full", dest="fp16", action="store_false",
                           help="fetch full-precision weights")
    p.add_argument("--token", default="", help="Hugging Face access token (saved for later)")


def _context() -> tuple[Any, Any, Any]:
    from studio.config import default_paths, load_settings

    base = default_paths()
    settings = load_settings(base.settings_file).settings
    return settings, settings.resolved_paths(base), base


def _when(ts: float | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(ts)) if ts else "never"


def _list(args: argparse.Namespace) -> int:
    from studio.library.catalog import list_models
    from studio.library.manage import human_size

    settings, paths, _ = _context()
    entries = [e for e in list_models(settings, paths) if not args.kind or e.kind == args.kind]
    if args.json:
        print(json.dumps([e.to_json() for e in entries], indent=1))
        return 0
    if not entries:
        print(f"No models yet. Models folder: {paths.models_dir}. Try 'studio models download "
              "stabilityai/sd-turbo' or 'studio models import PATH'.")
        return 0
    kind = None
    for e in entries:
        if e.kind != kind:
            kind = e.kind
            print(f"\n{e.kind_title}")
        print(f"  {e.name:<40.40} {e.source_title:<18} {e.format:<18.18} "
              f"{human_size(e.size_bytes):>9} {e.precision or '?':<12.12} {_when(e.last_used)}")
    return 0


def _info(args: argparse.Namespace) -> int:
    from studio.library.catalog import find_entry, list_models
    from studio.library.hashing import cached_sha256
    from studio.library.manage import hash_target, human_size, model_sha256

    settings, paths, _ = _context()
    entry = find_entry(args.name, list_models(settings, paths))
    data = entry.to_json()
    try:
        target = hash_target(entry)
        data["sha256"] = (model_sha256(entry, paths).sha256 if args.hash
                          else cached_sha256(target, paths))
        data["hashed_file"] = str(target)
    except Exception as exc:  # noqa: BLE001 - a model without weights still has info
        data["sha256"], data["hashed_file"] = None, f"({exc})"
    data["model_hash"] = data["sha256"][:10] if data["sha256"] else None
    if args.json:
        print(json.dumps(data, indent=1))
        return 0
    rows = [("Name", entry.name), ("Kind", entry.kind_title), ("Path", entry.path),
            ("Source", entry.source_title), ("Format", entry.format),
            ("Size", human_size(entry.size_bytes)), ("Precision", entry.precision or "unknown"),
            ("Base", entry.family or "—"), ("Details", entry.detail or "—"),
            ("Used by", ", ".join(entry.workspaces) or "—"), ("Last used", _when(entry.last_used)),
            ("SHA-256", data["sha256"] or "not computed (use --hash)"),
            ("Model hash", data["model_hash"] or "—")]
    for label, value in rows:
        print(f"{label + ':':<12} {value}")
    return 0


def _import(args: argparse.Namespace) -> int:
    from pathlib import Path

    from studio.config import save_settings
    from studio.library.manage import human_size, import_model

    settings, paths, base = _context()

    def progress(done: int, total: int) -> None:
        print(f"\r  copying {human_size(done)} of {human_size(total)}", end="", file=sys.stderr,
              flush=True)

    result = import_model(Path(args.path), settings, paths, copy=args.copy, progress=progress)
    if args.copy:
        print(file=sys.stderr)
    if result.settings is not settings:
        save_settings(result.settings, base.settings_file)
    print(result.message)
    return 0


def _remove(args: argparse.Namespace) -> int:
    from studio.config import save_settings
    from studio.library.catalog import find_entry, list_models
    from studio.library.manage import plan_removal, remove_model

    settings, paths, base = _context()
    entry = find_entry(args.name, list_models(settings, paths))
    plan = plan_removal(entry, settings)
    print(plan.summary)
    if not args.yes:
        if not sys.stdin.isatty():
            from studio.cli import fail

            return fail("not removed: confirm with --yes when not running in a terminal")
        if input("Remove it? [y/N] ").strip().lower() not in ("y", "yes"):
            print("Not removed.")
            return 1
    new = remove_model(plan, settings, paths)
    if new is not settings:
        save_settings(new, base.settings_file)
    print("Removed.")
    return 0


def _wants_fp16(settings: Any) -> bool:
    if settings.precision in ("fp32", "bf16"):
        return False
    if settings.precision == "fp16":
        return True
    if settings.device in ("cpu", "mps"):
        return False
    import torch  # device "auto"/"cuda" with precision "auto": fp16 exactly when CUDA is there

    return bool(torch.cuda.is_available())


def _download(args: argparse.Namespace) -> int:
    from studio.jobs import CancelToken, JobCancelled
    from studio.library import hub_download as hd
    from studio.library.manage import human_size

    settings, paths, _ = _context()
    if args.token:
        print(f"Access token saved in {hd.save_access_token(args.token, paths)}.")
    token = hd.access_token(paths)
    fp16 = _wants_fp16(settings) if args.fp16 is None else args.fp16
    plan = hd.plan_download(args.repo_id, fp16=fp16, token=token)
    if args.include:
        plan.files = [f for f in plan.files if not f.name.endswith(hd._WEIGHTS)
                      or any(fnmatch.fnmatch(f.name, pat) for pat in args.include)]
    print(f"{plan.repo_id}: {len(plan.files)} files, {human_size(plan.total_bytes)}"
          f"{' (fp16)' if plan.fp16 else ''}; skipping {len(plan.skipped)} files not needed.")
    cancel = CancelToken()

    def progress(s: hd.TransferStatus) -> None:
        eta = time.strftime("%H:%M:%S", time.gmtime(s.eta_s)) if s.eta_s is not None else "--"
        print(f"\r  {human_size(s.done)} / {human_size(s.total)}  {human_size(s.speed)}/s  "
              f"ETA {eta}  [{s.file_index + 1}/{s.file_count}] {s.file[-40:]:<40}", end="",
              file=sys.stderr, flush=True)

    try:
        folder = hd.download(plan, paths, token=token, progress=progress, cancel=cancel)
    except (KeyboardInterrupt, JobCancelled):
        print("\nCancelled; run the same command again to resume.", file=sys.stderr)
        return 130
    print(file=sys.stderr)
    print(f"Downloaded to {folder}")
    return 0


def run(args: argparse.Namespace) -> int:
    from studio.cli import fail
    from studio.jobs import UserFacingError

    action = {"list": _list, "info": _info, "import": _import, "remove": _remove,
              "download": _download}[args.action]
    try:
        return action(args)
    except UserFacingError as exc:
        return fail(str(exc))
