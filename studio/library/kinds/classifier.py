"""Image classifiers Train exports (cnn, distill, federated): Gallery's Classify uses them."""

from __future__ import annotations

from pathlib import Path

from studio.core.config import Paths, Settings
from studio.core.jobs import UserFacingError
from studio.library.classifier_models import (
    INFO_FILE,
    WEIGHTS_FILE,
    find_classifiers,
    is_classifier_folder,
    read_classifier_info,
)
from studio.library.classifier_models import (
    describe as describe_info,
)
from studio.library.classify import files_precision
from studio.library.entry import LibraryEntry
from studio.library.kinds import ModelKind


def _entry(folder: Path, source: str) -> LibraryEntry:
    """The classifier at ``folder``; one whose config cannot be used is listed as unknown with
    the reason (so it can be seen and removed)."""
    weights = folder / WEIGHTS_FILE
    files = [weights, folder / INFO_FILE]
    try:
        detail = describe_info(read_classifier_info(folder))
    except UserFacingError as exc:
        return LibraryEntry(folder.name, "unknown", folder, source, "classifier",
                            detail=str(exc), files=files)
    size = weights.stat().st_size if weights.is_file() else 0
    return LibraryEntry(folder.name, "classifier", folder, source, "safetensors", size,
                        files_precision([weights]), detail=detail, workspaces=("Gallery",),
                        files=files)


def scan(settings: Settings, paths: Paths) -> list[LibraryEntry]:
    return [_entry(folder, "studio") for folder in find_classifiers(paths.models_dir)]


def describe(path: Path, source: str) -> LibraryEntry | None:
    return _entry(path, source) if path.is_dir() and is_classifier_folder(path) else None


KINDS = (ModelKind("classifier", "Image classifier (trained in Studio)", 10,
                   cli_use="Classify images with it: 'studio classify IMAGE --model {spec}'.",
                   scan=scan, describe=describe, probe=15),)
