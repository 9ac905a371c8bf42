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
    (the library index asks for it from the image, chat and "other" scanners)."""
    outer = getattr(_scan_memo, "repos", None)
    _scan_memo.repos = outer if outer is not None else {}
    try:
        yield
    finally:
        _scan_memo.repos = outer


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
    revisions = sorted(repo.revisions, key=lambda r: ("main" in r.refs, r.last_modified),
                       reverse=True)
    return [Path(rev.snapshot_path) for rev in revisions]


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
    if (snap / "model_index.json").is_file() or (snap / "config.json").is_file():
        return []
    found = []
    for pattern in ("*", "*/*"):
        found += [f for f in snap.glob(pattern)
                  if f.suffix.lower() in suffixes and not f.name.startswith(".")]
    return sorted(found)
