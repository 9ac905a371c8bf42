"""ControlNets (Generate's ControlNet group), with the family each fits."""

from __future__ import annotations

from pathlib import Path

from studio.core.config import Paths, Settings
from studio.library.classify import files_precision
from studio.library.controlnets import (
    ControlNetEntry,
    entry_for_folder,
    find_controlnets,
    is_controlnet_folder,
)
from studio.library.entry import LibraryEntry
from studio.library.kinds import ModelKind
from studio.library.models import _folder_size

_FAMILY_TITLES = {"sd1": "SD 1.x", "sd2": "SD 2.x", "sdxl": "SDXL"}


def _entry(c: ControlNetEntry) -> LibraryEntry:
    files = sorted(c.path.glob("*.safetensors"))
    fits = _FAMILY_TITLES.get(c.family, "")
    detail = (f"guides {fits} models with a control image" if fits else  # plural-ok
              "guides image generation with a control image (its base family is unknown)")
    return LibraryEntry(c.name, "controlnet", c.path, c.source, "diffusers",
                        _folder_size(c.path), files_precision(files), c.family, c.repo_id, detail,
                        ("Generate",) if fits else ())


def scan(settings: Settings, paths: Paths) -> list[LibraryEntry]:
    return [_entry(c) for c in find_controlnets(settings, paths)]


def describe(path: Path, source: str) -> LibraryEntry | None:
    return _entry(entry_for_folder(path, source)) if is_controlnet_folder(path) else None


KINDS = (ModelKind("controlnet", "ControlNet", 5,
                   cli_use="Guide an image with it: 'studio generate --controlnet "
                           "{spec}:IMAGE[:WEIGHT] --control-preprocess canny'.",
                   scan=scan, describe=describe, probe=10),)
