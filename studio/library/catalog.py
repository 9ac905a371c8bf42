"""The model library's one index: every model Studio can find, of every kind, in one list.

:func:`list_models` asks every kind of model (:mod:`studio.library.kinds`, one module each) for
its models, with the scanners the workspaces' pickers use, so the library and the pickers never
disagree, and adds what only the library shows: TAESD preview decoders, LoRAs (and for which base), and every other weight file or model
folder as *unknown* with the reason. Sources are the studio models folder, the Hugging Face hub
cache (used in place), extra folders (an A1111 or ComfyUI install is searched in its
``models/…`` subfolders) and single files added by hand. Only headers and JSON are read.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

from studio.core.config import Paths, Settings
from studio.core.jobs import UserFacingError
from studio.core.wording import count_of
from studio.library import usage
from studio.library.classify import (
    WEIGHT_SUFFIXES,
    files_precision,
    is_taesd_folder,
    taesd_family,
    unknown_folder_reason,
)
from studio.library.entry import SOURCE_TITLES, LibraryEntry
from studio.library.hf_cache import (
    hf_cache_repos,
    hf_loose_files,
    one_hf_cache_scan,
    resolved,
)
from studio.library.kinds import (
    all_kinds,
    describe_path,
    scanners,
    wrong_kind_message,
    wrong_kind_text,
)
from studio.library.kinds.files import entry_name, split_part_entry, walk_entry

# describe_path and the wrong-kind sentences are the registry's (studio.library.kinds), named
# here too for the library's users; entry_name and split_part_entry are the walk's (kinds/files)
__all__ = ["KINDS", "KIND_TITLES", "SOURCE_TITLES", "LibraryEntry", "describe_path",
           "entry_name", "find_entry", "kind_entries", "list_models", "split_part_entry",
           "wrong_kind_message", "wrong_kind_text"]

log = logging.getLogger(__name__)

#: every kind, in the library's order (studio.library.kinds: one module each)
KINDS = tuple(all_kinds())
KIND_TITLES = {key: kind.title for key, kind in all_kinds().items()}
#: Where A1111 and ComfyUI keep models, relative to their install folder.
KNOWN_SUBDIRS = tuple(Path("models") / d for d in (
    "Stable-diffusion", "Lora", "checkpoints", "loras", "vae_approx", "embeddings")) + (
    Path("embeddings"),)  # A1111 keeps embeddings beside models/, not in it
_SCAN_DEPTH = 3


def _roots(settings: Settings, paths: Paths) -> Iterator[tuple[Path, str]]:
    """Folders to walk for what the pickers' scanners do not list, with their source."""
    if paths.models_dir.is_dir():
        yield paths.models_dir, "studio"
    for extra in settings.extra_model_dirs:
        root = Path(extra).expanduser()
        if root.is_dir():
            yield root, "extra"
            for sub in KNOWN_SUBDIRS:
                if (root / sub).is_dir():
                    yield root / sub, "extra"


def _walk(root: Path, depth: int) -> Iterator[Path]:
    """Weight files and model folders under ``root`` (a model folder is not entered)."""
    try:
        children = sorted(root.iterdir())
    except OSError as exc:
        log.info("cannot list %s: %s", root, exc)
        return
    for child in children:
        if child.name.startswith("."):
            continue  # hidden: includes downloads in progress (models/.downloads)
        if child.is_dir():
            if (child / "model_index.json").is_file() or (child / "config.json").is_file():
                yield child
            elif depth > 1:
                yield from _walk(child, depth - 1)
        elif child.suffix.lower() in WEIGHT_SUFFIXES:
            yield child


def library_files(settings: Settings, paths: Paths) -> Iterator[Path]:
    """Every weight file where the library looks (the Studio models folder, the extra folders
    and the files added in place), without reading any of them."""
    for root, _ in _roots(settings, paths):
        yield from (f for f in _walk(root, _SCAN_DEPTH) if f.is_file())
    for added in settings.added_models:
        item = Path(added).expanduser()
        if item.is_file():
            yield item


def _claimed(path: Path, claimed: set[Path]) -> bool:
    real = resolved(path)
    return real in claimed or any(p in claimed for p in real.parents)


def _hf_other(repo, claimed: set[Path], paths: Paths) -> list[LibraryEntry]:
    """What an HF cache repo none of the scanners claimed holds: TAESD, LoRAs (a repo of loose
    weight files), or the repo as unknown with the reason."""
    revisions = sorted(repo.revisions, key=lambda r: ("main" in r.refs, r.last_modified),
                       reverse=True)
    if not revisions:
        return []
    snap = Path(revisions[0].snapshot_path)
    if any(_claimed(Path(r.snapshot_path), claimed) for r in revisions):
        return []
    if any(_claimed(f, claimed) for f in hf_loose_files(snap, (".gguf",))):
        return []  # a repo of GGUF files: the gguf kind lists them
    size = int(repo.size_on_disk)
    if is_taesd_folder(snap):
        family, used = taesd_family(repo.repo_id)
        return [LibraryEntry(repo.repo_id, "preview", snap, "hf-cache", "diffusers", size,
                            files_precision(sorted(snap.glob("*.safetensors"))), family,
                            repo.repo_id, "TAESD (AutoencoderTiny) preview decoder",
                            ("Generate",) if used else ())]
    loose = hf_loose_files(snap, WEIGHT_SUFFIXES)
    if any(_claimed(f, claimed) for f in loose):
        loose = [f for f in loose if not _claimed(f, claimed)]
        if not loose:
            return []  # its files are listed already (single-file checkpoints, generators)
    known = []
    for f in loose:
        entry = walk_entry(f, "hf-cache", paths)
        if entry.kind != "unknown":
            entry.repo_id = entry.repo_id or repo.repo_id
            known.append(entry)
    if known:
        return known
    return [LibraryEntry(repo.repo_id, "unknown", snap, "hf-cache", "hub repo", size,
                         repo_id=repo.repo_id, detail=unknown_folder_reason(snap))]


def list_models(settings: Settings, paths: Paths) -> list[LibraryEntry]:
    """Every model in the library, sorted by kind then name, with its last use filled in."""
    with one_hf_cache_scan():
        return _list_models(settings, paths)


def _list_models(settings: Settings, paths: Paths) -> list[LibraryEntry]:
    entries = [e for scan in scanners() for e in scan(settings, paths)]
    claimed: set[Path] = set()
    for e in entries:
        claimed.add(resolved(e.path))
        claimed.update(resolved(f) for f in e.files)
    for root, source in _roots(settings, paths):
        for item in _walk(root, _SCAN_DEPTH):
            if _claimed(item, claimed):
                continue
            try:
                entry = walk_entry(item, source, paths)
            except OSError as exc:
                log.warning("skipping %s: %s", item, exc)
                continue
            entries.append(entry)
            claimed.add(resolved(item))
    for added in settings.added_models:
        item = Path(added).expanduser()
        if item.exists() and not _claimed(item, claimed):
            try:
                entries.append(walk_entry(item, "file", paths))
            except OSError as exc:
                log.warning("skipping %s: %s", item, exc)
            claimed.add(resolved(item))
    for repo in hf_cache_repos():
        try:
            entries += _hf_other(repo, claimed, paths)
        except OSError as exc:
            log.warning("skipping %s: %s", repo.repo_id, exc)
    used = usage.last_used(paths)
    for e in entries:
        e.last_used = used.get(str(resolved(e.path)))
    order = {k: i for i, k in enumerate(KINDS)}
    return sorted(entries, key=lambda e: (order.get(e.kind, 99), e.name.lower()))


def matching_entries(name: str, entries: list[LibraryEntry]) -> list[LibraryEntry]:
    """The entries a user's ``name`` means: the one at that path, else those with that name,
    repo id or spec (exact first, then ignoring case). Several hits mean the name is ambiguous."""
    name = str(name).strip()
    path = Path(name).expanduser()
    if name and path.exists():
        hits = [e for e in entries if e.path.resolve() == path.resolve()
                or any(f.resolve() == path.resolve() for f in e.files)]
        if hits:
            return hits[:1]
    for match in (lambda e: name in (e.name, e.repo_id, e.spec),
                  lambda e: name.lower() in (e.name.lower(), e.repo_id.lower())):
        hits = [e for e in entries if match(e)]
        if hits:
            return hits
    return []


def ambiguous_message(name: str, hits: list[LibraryEntry]) -> str:
    where = "; ".join(f"{e.kind_title}: {e.path}" for e in hits)
    return f"{name!r} names {count_of(len(hits), 'model')} ({where}); name one by its path."


def find_entry(name: str, entries: list[LibraryEntry]) -> LibraryEntry:
    """The entry a user names: its name, repo id or path (exact first, then case-insensitive)."""
    name = str(name).strip()
    if not name:
        raise UserFacingError("No model named.")
    hits = matching_entries(name, entries)
    if len(hits) == 1:
        return hits[0]
    if hits:
        raise UserFacingError(ambiguous_message(name, hits))
    raise UserFacingError(f"No model called {name!r} in the library. 'studio models list' shows "
                          "what there is.")


def kind_entries(kinds: tuple[str, ...], settings: Settings, paths: Paths) -> list[LibraryEntry]:
    """The library's entries of ``kinds`` that list their own models (image — with the GAN and
    DDPM models its scanner finds —, chat, transform, upscaler, controlnet, classifier) — the
    names ``studio models list`` prints — from those scanners only (cheaper than
    :func:`list_models`, which also walks every folder for LoRAs and unknowns)."""
    with one_hf_cache_scan():
        return [e for key in kinds if (kind := all_kinds().get(key)) is not None
                and kind.scan is not None for e in kind.scan(settings, paths)]
