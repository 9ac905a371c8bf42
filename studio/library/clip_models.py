"""Finding CLIP / SigLIP models on disk for the Gallery's search by meaning.

Such a model is a transformers folder whose ``config.json`` has ``model_type`` ``clip``,
``siglip`` or ``siglip2`` (``CLIPModel``, ``SiglipModel``: an image tower and a text tower that
map both into one space) with its weights. They are looked for where chat models are: the
models folder, extra folders, models added by path, then the Hugging Face cache. Only JSON files
are read. A Stable Diffusion pipeline's ``text_encoder`` (``clip_text_model``) is not one. No torch.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from studio.core.config import Paths, Settings
from studio.core.files import first_per_path
from studio.core.jobs import UserFacingError
from studio.library.chat_models import read_config, weight_files

log = logging.getLogger(__name__)

CLIP_MODEL_TYPES = ("clip", "siglip", "siglip2")
#: The model the Gallery suggests when none is found (about 600 MB).
SUGGESTED_REPO = "openai/clip-vit-base-patch32"
DOWNLOAD_COMMAND = f"hf download {SUGGESTED_REPO}"
NO_MODEL = ("Searching images by meaning needs a CLIP or SigLIP model, and none was found. "
            f"Download one with '{DOWNLOAD_COMMAND}' (or put one in the models folder), "
            "then search again.")


@dataclass(frozen=True)
class ClipModelEntry:
    """A CLIP / SigLIP model folder; ``name`` is the repo id for one in the HF cache."""

    name: str
    path: Path
    model_type: str


def clip_entry_for_folder(folder: Path, name: str = "") -> ClipModelEntry | None:
    """The entry for ``folder``, or None when it is not a complete CLIP / SigLIP model."""
    folder = Path(folder)
    model_type = str(read_config(folder).get("model_type", ""))
    if model_type not in CLIP_MODEL_TYPES or not weight_files(folder):
        return None
    return ClipModelEntry(name or folder.name, folder, model_type)


def _scan(root: Path, depth: int) -> list[ClipModelEntry]:
    entry = clip_entry_for_folder(root)
    if entry is not None:
        return [entry]
    if depth <= 0 or (root / "model_index.json").is_file():  # a diffusers pipeline
        return []
    try:
        children = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    except OSError as exc:
        log.info("cannot list %s: %s", root, exc)
        return []
    found: list[ClipModelEntry] = []
    for child in children:
        found += _scan(child, depth - 1)
    return found


def find_clip_models(settings: Settings, paths: Paths) -> list[ClipModelEntry]:
    """Every CLIP / SigLIP model available offline, the studio's own folders first."""
    found: list[ClipModelEntry] = []
    roots = [paths.models_dir, *(Path(p).expanduser() for p in settings.extra_model_dirs)]
    for root in roots:
        if root.is_dir():
            found += _scan(root, depth=3)
    for added in settings.added_models:
        entry = clip_entry_for_folder(Path(added).expanduser())
        if entry is not None:
            found.append(entry)
    try:
        from studio.library.hf_cache import hf_cache_repos, hf_snapshots

        for repo in hf_cache_repos():
            for snap in hf_snapshots(repo):
                entry = clip_entry_for_folder(snap, repo.repo_id)
                if entry is not None:
                    found.append(entry)
                    break
    except Exception as exc:  # noqa: BLE001 - an unreadable cache only hides its models
        log.info("the HF cache could not be scanned for CLIP models: %s", exc)
    return first_per_path(found, lambda entry: entry.path)


def resolve_clip_model(spec: str, settings: Settings, paths: Paths) -> ClipModelEntry:
    """The model ``spec`` names (a folder, a name or repo id as found), or the first one found
    when ``spec`` is empty; a sentence saying what to do when there is none."""
    spec = str(spec).strip()
    if spec:
        path = Path(spec).expanduser()
        if path.is_dir():
            entry = clip_entry_for_folder(path)
            if entry is None:
                raise UserFacingError(f"{spec} is not a CLIP or SigLIP model folder (config.json "
                                      f"with model_type {' / '.join(CLIP_MODEL_TYPES)} and "
                                      "its weights).")
            return entry
    found = find_clip_models(settings, paths)
    if not spec:
        if not found:
            raise UserFacingError(NO_MODEL)
        return found[0]
    for entry in found:
        if spec in (entry.name, str(entry.path)):
            return entry
    have = ", ".join(e.name for e in found[:6]) or "none"
    raise UserFacingError(f"No CLIP or SigLIP model called {spec!r} (found: {have}). "
                          f"'{DOWNLOAD_COMMAND}' downloads one.")
