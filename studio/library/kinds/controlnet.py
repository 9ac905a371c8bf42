"""ControlNets (Generate's ControlNet group), with the family each fits: diffusers folders and
single files (A1111 / ComfyUI ``.safetensors`` / ``.pth``)."""

from __future__ import annotations

from pathlib import Path

from studio.core.config import Paths, Settings
from studio.library.classify import files_precision, folder_size
from studio.library.controlnets import ControlNetEntry, entry_for, find_controlnets
from studio.library.entry import LibraryEntry
from studio.library.kinds import ModelKind

_FAMILY_TITLES = {"sd1": "SD 1.x", "sd2": "SD 2.x", "sdxl": "SDXL"}


def _entry(c: ControlNetEntry) -> LibraryEntry:
    fits = _FAMILY_TITLES.get(c.family, "")
    what = f" ({c.control_type})" if c.control_type else ""
    if c.adapter:
        what = f" as a T2I-Adapter{what}"
    detail = (f"guides {fits} models with a control image{what}" if fits else  # plural-ok
              f"guides image generation with a control image{what} (its base family is "
              "unknown: it is tried with the model it is used with)" if c.single_file else
              "guides image generation with a control image (its base family is unknown)")
    if c.single_file:
        fmt = "safetensors" if c.path.suffix.lower() == ".safetensors" else "pth"
        return LibraryEntry(c.name, "controlnet", c.path, c.source, fmt, c.path.stat().st_size,
                            files_precision([c.path]) if fmt == "safetensors" else "", c.family,
                            c.repo_id, detail, ("Generate",), files=[c.path])
    files = sorted(c.path.glob("*.safetensors"))
    return LibraryEntry(c.name, "controlnet", c.path, c.source, "diffusers",
                        folder_size(c.path), files_precision(files), c.family, c.repo_id, detail,
                        ("Generate",) if fits else ())


def scan(settings: Settings, paths: Paths) -> list[LibraryEntry]:
    return [_entry(c) for c in find_controlnets(settings, paths)]


def describe(path: Path, source: str) -> LibraryEntry | None:
    found = entry_for(path, source)
    return _entry(found) if found is not None else None


KINDS = (ModelKind("controlnet", "ControlNet", 5,
                   cli_use="Guide an image with it: 'studio generate --controlnet "
                           "{spec}:IMAGE[:WEIGHT] --control-preprocess canny'.",
                   scan=scan, describe=describe, probe=10),)
