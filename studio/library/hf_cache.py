"""The Hugging Face cache, in one place: where it is, the model repositories it holds (scanned
once per library scan, however many kinds of model ask), and the files of a repository's
snapshot. Every model kind (text-to-image, chat, CycleGAN, the catalog's "other") reads the cache
through here. No torch here; huggingface_hub is imported when the cache is first scanned.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import threading
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from studio.core.jobs import UserFacingError

log = logging.getLogger(__name__)

_REPO_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


def looks_like_repo_id(spec: str) -> bool:
    """Whether ``spec`` reads as a Hub repo id (``owner/name``) rather than a relative path."""
    return bool(_REPO_ID.match(spec)) and not spec.startswith((".", "~"))


def not_cached_message(repo_id: str) -> str:
    """What to do about a repo id that is not in the Hugging Face cache: the exact commands."""
    return (f"{repo_id} is not in your Hugging Face cache; download it first with "
            f"'studio models download {repo_id}' or 'hf download {repo_id}' (studio works "
            "offline).")


def cached_repo(repo_id: str, repos: list) -> Any:
    """The repo of ``repos`` (the cache's, as :func:`hf_cache_repos` lists them) whose id is
    ``repo_id``; :func:`not_cached_message` as the error when there is none."""
    for repo in repos:
        if repo.repo_id == repo_id:
            return repo
    raise UserFacingError(not_cached_message(repo_id))


def hf_cache_dir() -> Path:
    """The Hugging Face hub cache in force now (env vars are read at call time, not import)."""
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"]).expanduser()
    if os.environ.get("HF_HOME"):
        return Path(os.environ["HF_HOME"]).expanduser() / "hub"
    from huggingface_hub import constants

    return Path(constants.HF_HUB_CACHE)


_scan_memo = threading.local()


@contextlib.contextmanager
def one_hf_cache_scan() -> Iterator[None]:
    """Within the block, :func:`hf_cache_repos` scans the Hugging Face cache once on this thread
    (the library index asks for it from the image, chat and "other" scanners), and each folder
    that :func:`entries_below` lists is listed once: every kind looks through each snapshot for
    its own files. The next block lists again, so a file added or removed since shows."""
    outer = getattr(_scan_memo, "repos", None)
    outer_listings = getattr(_scan_memo, "listings", None)
    _scan_memo.repos = outer if outer is not None else {}
    _scan_memo.listings = outer_listings if outer_listings is not None else {}
    try:
        yield
    finally:
        _scan_memo.repos = outer
        _scan_memo.listings = outer_listings


def _memo(name: str) -> dict | None:
    """This thread's memo ``name`` of the :func:`one_hf_cache_scan` block in force, else None."""
    memos = getattr(_scan_memo, "listings", None)
    return memos.setdefault(name, {}) if memos is not None else None


def _listing(folder: Path) -> tuple[tuple[str, bool, bool], ...]:
    """(name, is a folder, is a file) of each entry of ``folder`` (links followed), in the
    system's order; once per :func:`one_hf_cache_scan` block. A folder that may not be read
    lists nothing, as ``Path.glob`` has it."""
    memo = _memo("listing")
    if memo is not None and folder in memo:
        return memo[folder]
    try:
        with os.scandir(folder) as it:
            listed = tuple((e.name, *_kind(e)) for e in it)
    except PermissionError:
        listed = ()
    if memo is not None:
        memo[folder] = listed
    return listed


def _kind(entry: os.DirEntry) -> tuple[bool, bool]:
    try:
        return entry.is_dir(), entry.is_file()
    except OSError:
        return False, False


def entries_below(root: Path, level: int) -> list[Path]:
    """What ``root.glob("*/" * level + "*")`` finds, hidden names included, in no set order: the
    files and folders ``level`` folders below ``root`` (0: its own). Each folder is listed once
    per :func:`one_hf_cache_scan` block, however many kinds ask."""
    memo = _memo("below")
    if memo is not None and (root, level) in memo:
        return list(memo[root, level])
    if not root.is_dir():
        found: list[Path] = []
    else:
        folders = [root]
        for _ in range(level):
            folders = [folder / name for folder in folders
                       for name, is_dir, _ in _listing(folder) if is_dir]
        found = [folder / name for folder in folders for name, _, _ in _listing(folder)]
    if memo is not None:
        memo[root, level] = tuple(found)
    return found


def has_file(folder: Path, name: str) -> bool:
    """``(folder / name).is_file()``, answered from the folder's one listing per
    :func:`one_hf_cache_scan` block (each kind asks each snapshot for its model_index.json and
    config.json)."""
    if _memo("listing") is None:
        return (folder / name).is_file()
    try:
        listed = _listing(folder)
    except OSError:  # not a folder, or gone
        return False
    if not listed:  # empty, or not to be listed (a file in it may still be read)
        return (folder / name).is_file()
    return any(entry == name and is_file for entry, _, is_file in listed)


def resolved(path: Path) -> Path:
    """``path.resolve()``, once per path per :func:`one_hf_cache_scan` block (the kinds and the
    catalog resolve every entry's path to tell models apart)."""
    memo = _memo("resolved")
    if memo is None:
        return path.resolve()
    found = memo.get(path)
    if found is None:
        found = memo[path] = path.resolve()
    return found


def hf_cache_repos() -> list:
    """The model repositories of the Hugging Face cache (huggingface_hub's ``CachedRepoInfo``);
    scanned once per :func:`one_hf_cache_scan` block."""
    memo = getattr(_scan_memo, "repos", None)
    key = str(hf_cache_dir())
    if memo is not None and key in memo:
        return memo[key]
    repos = _scan_hf_cache()
    if memo is not None:
        memo[key] = repos
    return repos


def _scan_hf_cache() -> list:
    from huggingface_hub import scan_cache_dir
    from huggingface_hub.errors import CacheNotFound

    cache = hf_cache_dir()
    if not cache.is_dir():
        return []
    try:
        info = scan_cache_dir(cache)
    except (CacheNotFound, OSError, ValueError) as exc:
        log.info("cannot scan the Hugging Face cache %s: %s", cache, exc)
        return []
    for warning in info.warnings:
        log.info("Hugging Face cache: %s", warning)
    return [r for r in info.repos if r.repo_type == "model"]


def hf_snapshots(repo) -> list[Path]:
    """A cached repo's snapshot folders: the one its ``main`` ref points to first, then the
    others, newest first."""
    memo = _memo("snapshots")
    if memo is not None and id(repo) in memo:
        return list(memo[id(repo)][1])
    revisions = sorted(repo.revisions, key=lambda r: ("main" in r.refs, r.last_modified),
                       reverse=True)
    snapshots = [Path(rev.snapshot_path) for rev in revisions]
    if memo is not None:  # the repo is kept with its answer, so its id is not reused
        memo[id(repo)] = (repo, tuple(snapshots))
    return snapshots


def hf_main_snapshot(repo) -> Path | None:
    """The snapshot a repo's ``main`` ref points to, else its newest one."""
    return next(iter(hf_snapshots(repo)), None)


def first_cached_model(repo_ids: Iterable[str]) -> Path | None:
    """The main snapshot of the first of ``repo_ids`` the cache holds as a transformers model
    folder (a ``config.json`` at its top), or None."""
    found = {repo.repo_id: repo for repo in hf_cache_repos()}
    for repo_id in repo_ids:
        if repo_id in found:
            snap = hf_main_snapshot(found[repo_id])
            if snap is not None and (snap / "config.json").is_file():
                return snap
    return None


def hf_loose_files(snap: Path, suffixes: tuple[str, ...]) -> list[Path]:
    """Weight files of a hub repo that is not a model folder (no model_index.json or
    config.json at its top): a repo of single-file checkpoints, LoRAs or generators. Its top
    level and one folder down."""
    if has_file(snap, "model_index.json") or has_file(snap, "config.json"):
        return []
    found = []
    for level in (0, 1):
        found += [f for f in entries_below(snap, level)
                  if f.suffix.lower() in suffixes and not f.name.startswith(".")]
    return sorted(found)
