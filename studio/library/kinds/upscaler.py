"""Upscaler models (ESRGAN / Real-ESRGAN): the hires fix, Transform's Upscale tab."""

from __future__ import annotations

from pathlib import Path

from studio.core.config import Paths, Settings
from studio.library.classify import files_precision
from studio.library.entry import LibraryEntry
from studio.library.kinds import ModelKind
from studio.library.upscalers import SUFFIXES, UpscalerFile, find_upscalers, looks_like_upscaler


def _entry(u: UpscalerFile) -> LibraryEntry:
    fmt = "safetensors" if u.path.suffix.lower() == ".safetensors" else "pth"
    precision = files_precision([u.path]) if fmt == "safetensors" else ""
    return LibraryEntry(u.name, "upscaler", u.path, u.source, fmt, u.path.stat().st_size,
                        precision, detail="enlarges images (hires fix, studio upscale)",
                        workspaces=("Generate",), files=[u.path])


def scan(settings: Settings, paths: Paths) -> list[LibraryEntry]:
    return [_entry(u) for u in find_upscalers(settings, paths)]


def describe(path: Path, source: str) -> LibraryEntry | None:
    if path.is_file() and path.suffix.lower() in SUFFIXES and looks_like_upscaler(path):
        return _entry(UpscalerFile(path.stem, path, source))
    return None


KINDS = (ModelKind("upscaler", "Upscaler (ESRGAN / Real-ESRGAN)", 4,
                   wanted="Upscaling needs an ESRGAN / Real-ESRGAN model (.pth or .safetensors)",
                   cli_wanted="upscaler models (an ESRGAN / Real-ESRGAN .pth or .safetensors "
                              "file, or its name)",
                   cli_use="Enlarge images with it: 'studio upscale IMAGE --model {spec}', or "
                           "'studio generate --hires-scale 2 --upscaler {spec}'.",
                   scan=scan, describe=describe, probe=40),)
