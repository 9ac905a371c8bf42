"""Upscaler models on disk: ESRGAN / Real-ESRGAN and Real-ESRGAN Compact files. No Qt, no torch.

Put them in ``<models>/upscalers/`` (a ``.pth`` or ``.safetensors`` file each, as OpenModelDB and
the Real-ESRGAN releases ship them; sub-folders are searched too). An extra model folder is
searched where A1111 and ComfyUI keep them (``models/ESRGAN``, ``models/RealESRGAN``,
``models/upscale_models``) and a file added by hand counts too. A file is recognised by its
tensor names alone (:func:`~studio.library.cyclegan_models.file_keys`: a safetensors header, or
the strings of a pickle listed without running it). A model's name is its file's stem, as A1111
shows it ("4x-UltraSharp"), and is what requests, metadata and ``studio upscale --model`` use.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from studio.core.config import Paths, Settings
from studio.core.jobs import UserFacingError
from studio.library.cyclegan_models import file_keys, matching_files
from studio.library.kinds import chosen_path

SUFFIXES = (".pth", ".safetensors")
FOLDER = "upscalers"
#: Where A1111 and ComfyUI keep upscalers, relative to an extra model folder.
KNOWN_SUBDIRS = (Path("models") / "ESRGAN", Path("models") / "RealESRGAN",
                 Path("models") / "upscale_models", Path("ESRGAN"), Path("upscale_models"))
_COMPACT_KEY = re.compile(r"^body\.\d+\.weight$")


@dataclass(frozen=True)
class UpscalerFile:
    """One upscaler model: its name (the file's stem), file and where it was found."""

    name: str
    path: Path
    source: str  # studio | extra | file


def looks_like_upscaler(path: Path) -> bool:
    """True when ``path`` holds an RRDBNet (either naming) or compact upscaler's tensors."""
    keys = file_keys(path)
    if {"conv_first.weight", "conv_last.weight", "body.0.rdb1.conv1.weight"} <= keys:
        return True
    if {"model.0.weight", "model.1.sub.0.RDB1.conv1.0.weight"} <= keys:
        return True
    return "body.0.weight" in keys and sum(1 for k in keys if _COMPACT_KEY.match(k)) >= 3 \
        and not any(k.startswith(("model.", "conv_first", "lora", "unet", "first_stage"))
                    for k in keys)


def upscaler_folder(paths: Paths) -> Path:
    """Where upscaler models go: ``<models>/upscalers``."""
    return paths.models_dir / FOLDER


def _is_upscaler_file(path: Path) -> bool:
    return path.suffix.lower() in SUFFIXES and looks_like_upscaler(path)


def _files(root: Path, depth: int) -> list[Path]:
    return matching_files(root, depth, _is_upscaler_file)


def find_upscalers(settings: Settings, paths: Paths) -> list[UpscalerFile]:
    """Every upscaler model available offline, by name (nothing is loaded)."""
    found = [UpscalerFile(f.stem, f, "studio") for f in _files(upscaler_folder(paths), 3)]
    for extra in settings.extra_model_dirs:
        root = Path(extra).expanduser()
        for sub in KNOWN_SUBDIRS:
            if (root / sub).is_dir():
                found += [UpscalerFile(f.stem, f, "extra") for f in _files(root / sub, 2)]
    for added in getattr(settings, "added_models", []):
        path = Path(added).expanduser()
        if path.is_file() and _is_upscaler_file(path):
            found.append(UpscalerFile(path.stem, path, "file"))
    seen: set[Path] = set()
    unique = []
    for u in found:
        if u.path.resolve() not in seen:
            seen.add(u.path.resolve())
            unique.append(u)
    return sorted(unique, key=lambda u: u.name.lower())


def resolve_upscaler(spec: str, settings: Settings, paths: Paths) -> UpscalerFile:
    """The upscaler a request names: a file path, or a name from :func:`find_upscalers`."""
    text, path = chosen_path(spec, "No upscaler model chosen.")
    if path.is_file():
        if path.suffix.lower() not in SUFFIXES:
            raise UserFacingError(f"{path.name} is not a .pth or .safetensors upscaler model.")
        return UpscalerFile(path.stem, path, "file")
    found = find_upscalers(settings, paths)
    for match in (lambda u: u.name == text, lambda u: u.name.lower() == text.lower()):
        hits = [u for u in found if match(u)]
        if hits:
            return hits[0]
    have = ", ".join(u.name for u in found[:8]) or "none yet"
    raise UserFacingError(f"No upscaler model called {text!r}. Put ESRGAN / Real-ESRGAN .pth or "
                          f".safetensors files in {upscaler_folder(paths)} (found: {have}).")
