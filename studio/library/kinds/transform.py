"""CycleGAN generators (Transform): junyanz ``.pth`` files, safetensors, G_A/G_B pairs."""

from __future__ import annotations

from pathlib import Path

from studio.core.config import Paths, Settings
from studio.library.classify import files_precision
from studio.library.cyclegan_models import (
    SUFFIXES,
    find_cyclegan_models,
    group_models,
    looks_like_generator,
)
from studio.library.entry import LibraryEntry
from studio.library.kinds import ModelKind


def _entry(m) -> LibraryEntry:
    files = list(m.directions.values())
    size = sum(f.stat().st_size for f in files if f.exists())
    fmt = "safetensors" if files[0].suffix == ".safetensors" else "pth"
    precision = files_precision(files) if fmt == "safetensors" else ""
    detail = "translates " + " and ".join(m.directions)
    return LibraryEntry(m.name, "transform", m.path, m.source, fmt, size, precision, "", "",
                        detail, ("Transform",), files=files)


def scan(settings: Settings, paths: Paths) -> list[LibraryEntry]:
    return [_entry(m) for m in find_cyclegan_models(settings, paths)]


def describe(path: Path, source: str) -> LibraryEntry | None:
    if path.is_dir():
        gens = [f for f in sorted(path.iterdir())
                if f.suffix.lower() in SUFFIXES and looks_like_generator(f)]
        if gens and not (path / "config.json").is_file():
            return _entry(group_models(gens, source)[0])
        return None
    if path.suffix.lower() in SUFFIXES and looks_like_generator(path):
        return _entry(group_models([path], source)[0])
    return None


KINDS = (ModelKind("transform", "Image transform (CycleGAN)", 3,
                   wanted="Transform needs a CycleGAN generator (.pth or .safetensors)",
                   cli_wanted="CycleGAN generators (a .pth or .safetensors file, or a folder "
                              "holding a G_A/G_B pair)",
                   cli_use="Translate images with it: 'studio transform --model {spec}'.",
                   scan=scan, describe=describe, probe=30),)
