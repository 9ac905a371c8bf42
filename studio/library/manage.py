"""Import, hash and remove library models. No Qt; the GUI runs these off the GUI thread.

Import either *registers* a file or folder where it is (its path joins ``settings.added_models``;
the caller saves the settings) or *copies* it into the models folder: to a hidden temporary name
first, renamed into place only when complete, so a failed or cancelled copy never looks like a
model; an unwritable folder or a full disk is refused with a message and the partial copy removed.
A ``.ckpt/.pt/.pth/.bin`` that would need arbitrary code to unpickle is refused before either
(:func:`studio.library.safe_load.check_pickle`; nothing in it runs).

Removing refuses a model that a model cache of this process holds (see
:func:`studio.pipelines.model_cache.loaded_model_paths`; another Studio process is not asked), a
Hugging Face cache model goes through huggingface_hub's own ``delete_revisions``, and a model
registered in place is only forgotten — its files stay where the user keeps them.
"""

from __future__ import annotations

import dataclasses
import errno
import logging
import os
import shutil
import sys
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from studio.core.config import Paths, Settings
from studio.core.files import work_file_tag
from studio.core.jobs import CancelToken, JobCancelled, UserFacingError
from studio.core.wording import write_failure
from studio.library import usage
from studio.library.catalog import LibraryEntry, describe_path
from studio.library.chat_models import weight_files
from studio.library.hashing import full_sha256, hashed_file
from studio.library.safe_load import PICKLE_SUFFIXES, check_pickle, loaded_pickles

log = logging.getLogger(__name__)

CHUNK = 8 << 20
#: Where a copied model goes, by kind, under the models folder (the scanners look there).
COPY_SUBDIRS = {"transform": "cyclegan", "upscaler": "upscalers", "lora": "loras",
                "embedding": "embeddings"}


def human_size(n: float) -> str:
    """1536 → '1.5 KB' (decimal units, as file managers and the Hub show sizes)."""
    for unit in ("bytes", "KB", "MB", "GB", "TB"):
        if abs(n) < 1000 or unit == "TB":
            return f"{int(n)} bytes" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} TB"


# -- import -------------------------------------------------------------------------------------
@dataclass
class ImportResult:
    """What an import did; ``settings`` is what to save (changed only by a registration)."""

    entry: LibraryEntry
    settings: Settings
    copied: bool
    message: str


def _inside(path: Path, folder: Path) -> bool:
    try:
        return path.resolve().is_relative_to(folder.resolve())
    except OSError:
        return False


def _already_listed(path: Path, settings: Settings, paths: Paths) -> bool:
    if _inside(path, paths.models_dir):
        return True
    if any(_inside(path, Path(d).expanduser()) for d in settings.extra_model_dirs):
        return True
    return any(Path(a).expanduser().resolve() == path.resolve() for a in settings.added_models)


def _size(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def _copy_tree(src: Path, dst: Path, progress: Callable[[int, int], None] | None,
               cancel: CancelToken | None, total: int) -> None:
    done = 0
    files = [src] if src.is_file() else sorted(p for p in src.rglob("*") if p.is_file())
    for f in files:
        target = dst if src.is_file() else dst / f.relative_to(src)
        target.parent.mkdir(parents=True, exist_ok=True)
        with f.open("rb") as fin, target.open("wb") as fout:
            while block := fin.read(CHUNK):
                if cancel is not None and cancel.cancelled:
                    raise JobCancelled()
                fout.write(block)
                done += len(block)
                if progress:
                    progress(done, total)
            fout.flush()
            os.fsync(fout.fileno())


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def check_importable(path: Path, paths: Paths) -> LibraryEntry:
    """What ``path`` is, as a library entry, if Studio can use it; raises UserFacingError when
    it does not exist, is not a model Studio knows, or is a pickle that would need code."""
    path = Path(path).expanduser()
    if not path.exists():
        raise UserFacingError(f"{path} does not exist.")
    entry = describe_path(path, "file", paths)
    # A pickle that needs code is refused here, not at its first use: the library never lists a
    # model Studio would refuse to load. The check is the loaders' own weights_only unpickler.
    for pickled in [f for f in entry.files if f.suffix.lower() in PICKLE_SUFFIXES] \
            or loaded_pickles(path):
        check_pickle(pickled)
    if entry.kind == "unknown":
        raise UserFacingError(f"{path.name} is not a model Studio can use: {entry.detail}.")
    return entry


def import_model(path: Path, settings: Settings, paths: Paths, *, copy: bool = False,
                 progress: Callable[[int, int], None] | None = None,
                 cancel: CancelToken | None = None) -> ImportResult:
    """Register ``path`` in place (default) or copy it into the models folder."""
    path = Path(path).expanduser()
    entry = check_importable(path, paths)
    if not copy:
        if _already_listed(path, settings, paths):
            return ImportResult(entry, settings, False, f"{entry.name} is already in the library.")
        added = [*settings.added_models, str(path.resolve())]
        new = dataclasses.replace(settings, added_models=added)
        return ImportResult(entry, new, False,
                            f"{entry.name} ({entry.kind_title}) was added where it is: {path}.")
    src = entry.path if entry.kind == "transform" and path.is_dir() else path
    folder = paths.models_dir / COPY_SUBDIRS.get(entry.kind, "")
    dest = folder / src.name
    if dest.exists():
        raise UserFacingError(f"{dest} already exists; remove it first or register the model "
                              "in place.")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / f".write-test-{uuid.uuid4().hex[:8]}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise UserFacingError(f"The models folder {folder} cannot be written ({exc.strerror or exc})"
                              ". Choose another models folder in Settings, or add the model "
                              "where it is instead of copying it.") from exc
    total = _size(src)
    free = shutil.disk_usage(folder).free
    if total > free:
        raise UserFacingError(f"Not enough disk space to copy {src.name}: it needs "
                              f"{human_size(total)} and {folder} has {human_size(free)} free. "
                              "Add it where it is instead, or free some space.")
    tmp = folder / f".{src.name}.importing-{work_file_tag()}{uuid.uuid4().hex[:8]}"
    try:
        _copy_tree(src, tmp, progress, cancel, total)
        os.replace(tmp, dest)
    except (JobCancelled, KeyboardInterrupt):  # Ctrl+C in a terminal leaves no partial copy
        _remove(tmp)
        raise
    except OSError as exc:
        _remove(tmp)
        if exc.errno == errno.ENOSPC:
            raise UserFacingError(write_failure(exc, f"the copy of {src.name}", folder)
                                  + " The partial copy was removed; you can also add the model "
                                  "where it is.") from exc
        raise UserFacingError(f"Copying {src.name} to {folder} failed ({exc.strerror or exc}); "
                              "the partial copy was removed.") from exc
    copied = describe_path(dest, "studio", paths)
    return ImportResult(copied, settings, True,
                        f"{copied.name} ({copied.kind_title}) was copied to {dest}.")


# -- hashes -------------------------------------------------------------------------------------
@dataclass
class HashResult:
    """A model's SHA-256; ``model_hash`` is A1111's "Model hash" (the first 10 hex digits)."""

    sha256: str
    file: Path  # the file hashed (a folder is represented by its main weights file)

    @property
    def model_hash(self) -> str:
        return self.sha256[:10]


def hash_target(entry: LibraryEntry) -> Path:
    """The file whose SHA-256 stands for the model."""
    if entry.files:
        return entry.files[0]
    if entry.path.is_file():
        return entry.path
    if (entry.path / "model_index.json").is_file():
        return hashed_file(entry.path)
    weights = weight_files(entry.path) or sorted(entry.path.glob("*.safetensors"))
    if not weights:
        raise UserFacingError(f"{entry.name} has no weights file to hash.")
    return weights[0]


def model_sha256(entry: LibraryEntry, paths: Paths | None = None) -> HashResult:
    """SHA-256 of a model (cached by path, size and mtime; slow the first time on big files)."""
    target = hash_target(entry)
    return HashResult(full_sha256(target, paths), target)


# -- remove -------------------------------------------------------------------------------------
def loaded_paths() -> set[Path]:
    """Models held in memory by this process: model caches and the TAESD previewer.

    Read through ``sys.modules`` so the library never imports the pipelines (or torch): a
    module that was never imported holds nothing."""
    held: set[Path] = set()
    cache_mod = sys.modules.get("studio.pipelines.model_cache")
    if cache_mod is not None:
        held |= cache_mod.loaded_model_paths()
    previews = sys.modules.get("studio.pipelines.diffusion.previews")
    if previews is not None:
        held |= {Path(key[0]).resolve() for key in list(getattr(previews, "_taesd_cache", {}))}
    return held


def is_loaded(entry: LibraryEntry) -> bool:
    targets = {entry.path.resolve(), *(f.resolve() for f in entry.files)}
    return any(p in targets or entry.path.resolve() in p.parents for p in loaded_paths())


@dataclass
class RemovalPlan:
    """What removing a model will do, for the confirmation: ``action`` is delete | forget |
    hf-cache; ``freed_bytes`` the space given back."""

    entry: LibraryEntry
    action: str
    freed_bytes: int
    targets: list[Path]

    @property
    def summary(self) -> str:
        if self.action == "forget":
            return (f"{self.entry.name} will be removed from the library; its files stay at "
                    f"{self.entry.path} (nothing is deleted).")
        where = ("from the Hugging Face cache" if self.action == "hf-cache"
                 else "from disk: " + ", ".join(str(t) for t in self.targets))
        return f"{self.entry.name} will be deleted {where}. This frees " \
               f"{human_size(self.freed_bytes)}."


def _hf_strategy(repo_id: str):
    from huggingface_hub import scan_cache_dir

    from studio.library.hf_cache import hf_cache_dir

    info = scan_cache_dir(hf_cache_dir())
    repo = next((r for r in info.repos if r.repo_id == repo_id and r.repo_type == "model"), None)
    if repo is None:
        raise UserFacingError(f"{repo_id} is no longer in the Hugging Face cache.")
    return info.delete_revisions(*[r.commit_hash for r in repo.revisions])


def plan_removal(entry: LibraryEntry, settings: Settings) -> RemovalPlan:
    """What :func:`remove_model` would do; raises when the model is loaded."""
    if is_loaded(entry):
        raise UserFacingError(f"{entry.name} is loaded right now; it cannot be removed while it "
                              "is in use. Wait for its jobs to finish and switch to another "
                              "model first.")
    if entry.source == "hf-cache" and entry.repo_id:
        strategy = _hf_strategy(entry.repo_id)
        return RemovalPlan(entry, "hf-cache", int(strategy.expected_freed_size),
                           sorted(Path(p) for p in strategy.repos))
    added = {Path(a).expanduser().resolve() for a in settings.added_models}
    if entry.source == "file" and entry.path.resolve() in added:
        return RemovalPlan(entry, "forget", 0, [entry.path])
    targets = entry.files or [entry.path]
    return RemovalPlan(entry, "delete", sum(_size(t) for t in targets if t.exists()), targets)


def remove_model(plan: RemovalPlan, settings: Settings, paths: Paths) -> Settings:
    """Carry out a removal; returns the settings to save (changed when a model was forgotten)."""
    entry = plan.entry
    if is_loaded(entry):  # it may have been loaded while the user read the confirmation
        raise UserFacingError(f"{entry.name} was loaded meanwhile; it was not removed.")
    if plan.action == "forget":
        keep = [a for a in settings.added_models
                if Path(a).expanduser().resolve() != entry.path.resolve()]
        return dataclasses.replace(settings, added_models=keep)
    try:
        if plan.action == "hf-cache":
            _hf_strategy(entry.repo_id).execute()
        else:
            for target in plan.targets:
                if target.is_dir() and not target.is_symlink():
                    shutil.rmtree(target)
                else:
                    target.unlink(missing_ok=True)
    except OSError as exc:
        raise UserFacingError(f"{entry.name} could not be removed completely "
                              f"({exc.strerror or exc}).") from exc
    usage.forget(entry.path, paths)
    return settings
