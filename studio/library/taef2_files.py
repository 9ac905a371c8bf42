"""Where Studio finds TAEF2, FLUX.2's tiny preview decoder (built by
:mod:`studio.pipelines.diffusion.taef2`): a ``taef2*`` file in Studio's models folder, in its
``taef2/`` or ``vae_approx/`` folder (where ComfyUI keeps ``taef2_decoder.pth``), then in the HF
cache's ``madebyollin/taef2``. An ``…encoder…`` file is never a decoder."""

from __future__ import annotations

from pathlib import Path

from studio.core.config import Paths

#: where ``hf download`` puts it
REPO = "madebyollin/taef2"
SUFFIXES = (".safetensors", ".pth")


def places(paths: Paths) -> list[Path]:
    """The folders of Studio's models folder a TAEF2 file is used from, in order."""
    models = paths.models_dir
    return [models, models / "taef2", models / "vae_approx"]


def _decoders(folder: Path, pattern: str) -> list[Path]:
    return [f for suffix in SUFFIXES for f in sorted(folder.glob(f"{pattern}{suffix}"))
            if "encoder" not in f.name.lower()]


def find(paths: Paths) -> Path | None:
    """The TAEF2 file previews use, or None when none is installed."""
    for place in places(paths):
        found = _decoders(place, "taef2*")
        if found:
            return found[0]
    from studio.library.hf_cache import hf_cache_dir

    snapshots = hf_cache_dir() / f"models--{REPO.replace('/', '--')}" / "snapshots"
    try:
        candidates = sorted(snapshots.iterdir(), key=lambda p: p.stat().st_mtime, reverse=True)
    except OSError:
        return None
    for snap in candidates:
        found = _decoders(snap, "*")
        if found:
            return found[0]
    return None


def is_taef2_name(path: Path) -> bool:
    """A ``taef2…`` decoder file by its name (how a ``.pth``, read only when used, is known)."""
    name = path.name.lower()
    return name.startswith("taef2") and path.suffix.lower() in SUFFIXES \
        and "encoder" not in name
