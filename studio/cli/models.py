"""``studio models``: list, inspect, import, remove and download models (the model library).

``list`` and ``info`` read headers only; ``info --hash`` computes the sha256 (A1111's "Model hash"
is its first 10 hex digits). ``remove`` shows what it deletes and the space freed and asks first
(``--yes`` to skip). ``download`` shows the size first, fetches only what Studio needs and resumes
an interrupted download when run again; Ctrl+C cancels and keeps the partial files. Progress
(copying, downloading) is drawn only when stderr is a terminal; into a pipe or a log file a
download writes one plain line per finished file.

Exit status: 0 done; 1 the work failed (a copy, a removal, a download that broke off, offline);
2 bad input (a name no model has, a path that is not a model, a repo that is not on the Hub, a
missing --yes when not on a terminal); 1 also when you answer "no" to remove's question; 130
Ctrl+C.
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

from studio.core.wording import count_of

if TYPE_CHECKING:
    from studio.core.config import Paths, Settings
    from studio.library.entry import LibraryEntry

NAME = "models"
HELP = "list, inspect, import, remove and download models"
DESCRIPTION = ("The model library: every model Studio finds in its models folder, your Hugging "
               "Face cache, extra folders and files added by hand. A model is named by its name "
               "as 'studio models list' prints it, its repo id or its path; generate, img2img, "
               "transform, chat and serve take the same names with --model.\n\n"
               "  studio models list [--kind KIND] [--json]\n"
               "  studio models info NAME [--hash] [--json]\n"
               "  studio models import PATH [--copy]\n"
               "  studio models remove NAME [--yes]\n"
               "  studio models download REPO_ID [--include PATTERN] [--fp16 | --full] "
               "[--token TOKEN]\n"
               "  studio models shrink NAME [--method int8|int4|fp8] [--out NAME] [--json]\n"
               "  studio models parts NAME [--set ROLE=FILE] [--guess ROLE] [--json]")
EXIT_STATUS = ("Exit status: 0 done; 1 the work failed (a copy, a removal or a download that "
               "broke off, offline) or you answered no to remove's question; 2 bad input (a "
               "name no model has, a path that is not a model, a repository that is not on the "
               "Hub, remove without --yes when not on a terminal); 130 Ctrl+C.")
KINDS = ("image", "gan", "ddpm", "transform", "upscaler", "chat", "preview", "lora", "embedding",
         "classifier", "part", "unknown")


def _sub(sub: argparse._SubParsersAction[argparse.ArgumentParser], name: str, help_text: str,
         description: str = "") -> argparse.ArgumentParser:
    return sub.add_parser(name, help=help_text, description=description or help_text,
                          epilog=EXIT_STATUS)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", metavar="ACTION", required=True,
                                parser_class=type(parser))
    p = _sub(sub, "list", "every model in the library, grouped by kind",
             "Every model in the library, grouped by kind: its name (what --model and the other "
             "'studio models' commands take), where it was found, its format, size, precision "
             "and when it was last used. Only file headers are read.")
    p.add_argument("--kind", choices=KINDS, help="list only models of this kind")
    p.add_argument("--json", action="store_true",
                   help="print a JSON list (name, kind, path, source, format, size_bytes, …)")
    p = _sub(sub, "info", "details of one model (--hash for its SHA-256)")
    p.add_argument("name", metavar="NAME",
                   help="a name as 'studio models list' prints it, a repo id or a path")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--hash", action="store_true",
                   help="compute the SHA-256 and A1111's model hash (slow for big files)")
    p = _sub(sub, "import", "add a model file or folder to the library",
             "Add a model file or folder to the library: by default it is used where it is "
             "(remembered in the settings); --copy copies it into the models folder. A file "
             "that is not a model Studio can use, or a pickle that would run code, is refused.")
    p.add_argument("path", metavar="PATH",
                   help="a diffusers or transformers folder, a .safetensors/.ckpt checkpoint, a "
                        "LoRA, a CycleGAN generator (.pth/.safetensors) or a folder holding one")
    p.add_argument("--copy", action="store_true",
                   help="copy it into the models folder (default: use it where it is)")
    p = _sub(sub, "remove", "delete a model (or forget one added in place)",
             "Delete a model from the disk, or forget one that was added where it is (its files "
             "stay). Says what it deletes and the space freed, and asks first.")
    p.add_argument("name", metavar="NAME",
                   help="a name as 'studio models list' prints it, a repo id or a path")
    p.add_argument("--yes", action="store_true",
                   help="do not ask for confirmation (needed when not on a terminal)")
    p = _sub(sub, "download", "download a model from the Hugging Face Hub",
             "Download a model from the Hugging Face Hub into the models folder: shows the size "
             "first, fetches only the files Studio needs, and resumes an interrupted download "
             "when run again (Ctrl+C keeps the partial files).")
    p.add_argument("repo_id", metavar="REPO_ID", help="a repository id, e.g. stabilityai/sd-turbo")
    p.add_argument("--include", action="append", default=[], metavar="PATTERN",
                   help="fetch only the weight files matching PATTERN (a glob; repeatable)")
    precision = p.add_mutually_exclusive_group()
    precision.add_argument("--fp16", dest="fp16", action="store_true", default=None,
                           help="fetch the fp16 variant where there is one (default: fp16 on "
                                "a CUDA GPU, full precision elsewhere, or as Settings' "
                                "precision says)")
    precision.add_argument("--full", dest="fp16", action="store_false",
                           help="fetch full-precision weights")
    p.add_argument("--token", default="", metavar="TOKEN",
                   help="a Hugging Face access token for gated or private models (saved for "
                        "later); visible in 'ps': prefer --token-file")
    p.add_argument("--token-file", type=Path, default=None, metavar="FILE",
                   help="read the access token from the first line of FILE instead")
    from studio.cli.models_shrink import add_parser

    add_parser(sub)
    from studio.cli.models_parts import add_parser as add_parts_parser

    add_parts_parser(sub)


def _context() -> tuple[Settings, Paths, Paths]:
    from studio.core.config import default_paths, load_settings

    base = default_paths()
    loaded = load_settings(base.settings_file)
    if loaded.notice:
        print(f"studio: warning: {loaded.notice}", file=sys.stderr)
    settings = loaded.settings
    paths = settings.resolved_paths(base)
    from studio.core.files import clean_stale_work_files

    clean_stale_work_files([paths.outputs_dir, paths.models_dir])  # what a crash left
    return settings, paths, base


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
    print(f"  {'NAME':<40} {'FOUND IN':<18} {'FORMAT':<18} {'SIZE':>9} {'PRECISION':<12} "
          "LAST USED")
    for e in entries:
        if e.kind != kind:
            kind = e.kind
            print(f"\n{e.kind_title}")
        # The name is never cut short: --model and the other commands take it as printed.
        print(f"  {e.name:<40} {e.source_title:<18} {e.format:<18.18} "
              f"{human_size(e.size_bytes):>9} {e.precision or '?':<12.12} {_when(e.last_used)}")
    return 0


def _info(args: argparse.Namespace) -> int:
    from studio.library.catalog import list_models
    from studio.library.hashing import cached_sha256
    from studio.library.manage import hash_target, human_size, model_sha256

    settings, paths, _ = _context()
    entry = _lookup(args.name, list_models(settings, paths))
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


def _lookup(name: str, entries: list[LibraryEntry]) -> LibraryEntry:
    """The library entry ``name`` names; a name no model has is bad input (exit 2)."""
    from studio.cli import UsageError
    from studio.core.jobs import UserFacingError
    from studio.library.catalog import find_entry

    try:
        return find_entry(name, entries)
    except UserFacingError as exc:
        raise UsageError(str(exc)) from exc


def _import(args: argparse.Namespace) -> int:
    from pathlib import Path

    from studio.cli import UsageError
    from studio.core.config import save_settings
    from studio.core.jobs import UserFacingError
    from studio.library.manage import check_importable, human_size, import_model

    settings, paths, base = _context()
    try:  # what the path is: a missing file or one that is not a model is bad input
        check_importable(Path(args.path), paths)
    except UserFacingError as exc:
        raise UsageError(str(exc)) from exc
    tty = sys.stderr.isatty()
    drawn = False

    def progress(done: int, total: int) -> None:
        nonlocal drawn
        if tty:  # a bar redrawn with \r only where a terminal shows it, never into a pipe
            drawn = True
            print(f"\r  copying {human_size(done)} of {human_size(total)}", end="",
                  file=sys.stderr, flush=True)

    try:
        result = import_model(Path(args.path), settings, paths, copy=args.copy,
                              progress=progress)
    finally:
        if drawn:
            print(file=sys.stderr)
    if result.settings is not settings:
        save_settings(result.settings, base.settings_file)
    print(result.message)
    return 0


def _remove(args: argparse.Namespace) -> int:
    from studio.core.config import save_settings
    from studio.library.catalog import list_models
    from studio.library.manage import plan_removal, remove_model

    settings, paths, base = _context()
    entry = _lookup(args.name, list_models(settings, paths))
    plan = plan_removal(entry, settings)
    print(plan.summary)
    if not args.yes:
        if not sys.stdin.isatty():
            from studio.cli import UsageError

            raise UsageError("not removed: confirm with --yes when not running in a terminal")
        if input("Remove it? [y/N] ").strip().lower() not in ("y", "yes"):
            print("Not removed.")
            return 1
    new = remove_model(plan, settings, paths)
    if new is not settings:
        save_settings(new, base.settings_file)
    print("Removed.")
    return 0


def _wants_fp16(settings: Settings) -> bool:
    if settings.precision in ("fp32", "bf16"):
        return False
    if settings.precision == "fp16":
        return True
    if settings.device in ("cpu", "mps"):
        return False
    import torch  # device "auto"/"cuda" with precision "auto": fp16 exactly when CUDA is there

    return bool(torch.cuda.is_available())


def _download(args: argparse.Namespace) -> int:
    from studio.cli import UsageError
    from studio.core.jobs import CancelToken, JobCancelled
    from studio.library import hub_download as hd
    from studio.library.manage import human_size

    settings, paths, _ = _context()
    repo_id = args.repo_id.strip()
    if hd._REPO_ID.match(repo_id) and hd.destination(repo_id, paths).exists():
        raise UsageError(f"{repo_id} is already in the library at "
                         f"{hd.destination(repo_id, paths)}. Remove it first ('studio models "
                         f"remove {repo_id}') to download it again.")
    from studio.cli.common import read_secret

    given = read_secret(args.token, args.token_file, (), "--token")
    if given:
        print(f"Access token saved in {hd.save_access_token(given, paths)}.")
    token = hd.access_token(paths)
    fp16 = _wants_fp16(settings) if args.fp16 is None else args.fp16
    try:
        plan = hd.plan_download(repo_id, fp16=fp16, token=token)
    except hd.NotOnHub as exc:
        raise UsageError(str(exc)) from exc
    if args.include:
        plan.files = [f for f in plan.files if not f.name.endswith(hd._WEIGHTS)
                      or any(fnmatch.fnmatch(f.name, pat) for pat in args.include)]
    print(f"{plan.repo_id}: {count_of(len(plan.files), 'file')}, {human_size(plan.total_bytes)}"
          f"{' (fp16)' if plan.fp16 else ''}; skipping {count_of(len(plan.skipped), 'file')} "
          "not needed.", flush=True)
    cancel = CancelToken()
    tty = sys.stderr.isatty()
    ends, total = [], 0
    for f in plan.files:  # bytes done overall when each file is complete
        total += f.size
        ends.append(total)
    reported: set[int] = set()

    def progress(s: hd.TransferStatus) -> None:
        speed = f"{human_size(s.speed)}/s"
        if tty:  # one line redrawn in place
            eta = time.strftime("%H:%M:%S", time.gmtime(s.eta_s)) if s.eta_s is not None \
                else "--"
            print(f"\r  {human_size(s.done)} / {human_size(s.total)}  {speed}  ETA {eta}  "
                  f"[{s.file_index + 1}/{s.file_count}] {s.file[-40:]:<40}", end="",
                  file=sys.stderr, flush=True)
        elif s.file_index not in reported and s.done >= ends[s.file_index]:
            # Into a pipe or a log: one plain line per finished file, no \r.
            reported.add(s.file_index)
            print(f"  [{s.file_index + 1}/{s.file_count}] {s.file}  {human_size(s.done)} / "
                  f"{human_size(s.total)}  {speed}", file=sys.stderr, flush=True)

    try:
        folder = hd.download(plan, paths, token=token, progress=progress, cancel=cancel)
    except BaseException as exc:
        if tty:  # end the bar's line before the message
            print(file=sys.stderr)
        if isinstance(exc, (KeyboardInterrupt, JobCancelled)):
            print("Cancelled; run the same command again to resume.", file=sys.stderr)
            return 130
        raise
    if tty:
        print(file=sys.stderr)
    print(f"Downloaded to {folder}")
    return 0


def _shrink(args: argparse.Namespace) -> int:
    from studio.cli.models_shrink import run_shrink

    return run_shrink(args, _context, _lookup)


def _parts(args: argparse.Namespace) -> int:
    from studio.cli.models_parts import run_parts

    return run_parts(args, _context)


def run(args: argparse.Namespace) -> int:
    # Bad input raises UsageError (exit 2); any other UserFacingError is work that failed and
    # exits 1 in studio.cli.main.
    action = {"list": _list, "info": _info, "import": _import, "remove": _remove,
              "download": _download, "shrink": _shrink, "parts": _parts}[args.action]
    return action(args)
