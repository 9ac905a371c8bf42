"""Finding text-to-image models on disk: the studio folder, the Hugging Face cache, extra folders.

Scanning never loads weights: diffusers folders are recognised by ``model_index.json`` and
``unet/config.json``, single files by their safetensors header (see :mod:`studio.library.detect`).
Models in the user's Hugging Face cache are used in place, never copied. Anything unreadable is
skipped with a log line, so one broken file never hides the rest of the library. No torch here.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

from studio.core.config import Paths, Settings
from studio.core.files import first_per_path
from studio.core.jobs import UserFacingError
from studio.library.classify import folder_size
from studio.library.detect import detect_diffusers_folder, detect_single_file
from studio.library.gan_models import is_gan_folder, read_gan_info
from studio.library.hf_cache import (
    cached_repo,
    has_file,
    hf_cache_repos,
    hf_loose_files,
    hf_main_snapshot,
    hf_snapshots,
    looks_like_repo_id,
    resolved,
)
from studio.library.kinds import chosen_path, scanned, wrong_kind_message

log = logging.getLogger(__name__)

SINGLE_FILE_SUFFIXES = (".safetensors", ".ckpt")
TXT2IMG_PIPELINES = ("StableDiffusionPipeline", "StableDiffusionXLPipeline")
#: Where A1111 and ComfyUI keep checkpoints, relative to their install folder.
KNOWN_CHECKPOINT_SUBDIRS = (Path("models") / "Stable-diffusion", Path("models") / "checkpoints")
#: where ComfyUI keeps diffusion-model files that need separate text encoders and a VAE
KNOWN_SPLIT_SUBDIRS = (Path("models") / "diffusion_models", Path("models") / "unet")


#: beside a DDPMPipeline folder the ddpm lesson saved: the names of its classes, as JSON
DDPM_CLASSES_FILE = "class_names.json"


@dataclass
class ModelEntry:
    """One text-to-image model the studio can load."""

    name: str
    path: Path
    source: str  # studio | hf-cache | extra | file
    format: str  # diffusers | single-file | split (ComfyUI's separate files) | gan (a GAN trained in Studio: seed → image)
    family: str  # sd1 | sd2 | sdxl | gan | ddpm (Train's image diffusion lesson) | unknown (a .ckpt is identified when it is loaded)
    repo_id: str = ""
    size_bytes: int = 0
    #: split files: role (clip_l, t5xxl, vae …) → the file used with the diffusion model
    parts: dict[str, Path] = field(default_factory=dict)
    #: split files: what is missing, as a sentence ("needs t5xxl in …/text_encoders"); "" if none
    needs: str = ""


def ddpm_class_names(folder: Path) -> list[str]:
    """The classes a class-conditional model of the ddpm lesson draws (empty: unconditional)."""
    path = Path(folder) / DDPM_CLASSES_FILE
    if not path.is_file():
        return []
    try:
        names = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise UserFacingError(f"{path} is unreadable ({exc}); save the model from Train "
                              "again.") from exc
    return [str(n) for n in names] if isinstance(names, list) else []


def ddpm_shape(folder: Path) -> tuple[int, int]:
    """(side in pixels, channels) a saved ddpm model draws; (0, 0) when its UNet config is
    unreadable."""
    try:
        config = json.loads((Path(folder) / "unet" / "config.json").read_text(encoding="utf-8"))
        size, channels = config.get("sample_size", 0), config.get("in_channels", 0)
    except (OSError, ValueError, AttributeError):
        return 0, 0
    return (size if isinstance(size, int) else 0), (channels if isinstance(channels, int) else 0)


def entry_for_path(path: Path, source: str, name: str = "", repo_id: str = "") -> ModelEntry | None:
    """A :class:`ModelEntry` for a diffusers folder or a single file, or None when it is not a
    text-to-image model (the reason is logged). Raises UserFacingError for a corrupt file."""
    path = Path(path)
    if path.is_dir():
        if is_gan_folder(path):  # a GAN trained in Studio: Generate draws from a seed alone
            read_gan_info(path)  # a broken one is a sentence, as a corrupt file is
            return ModelEntry(name or path.name, path, source, "gan", "gan", repo_id,
                              folder_size(path))
        if not (path / "model_index.json").is_file():
            return None
        det = detect_diffusers_folder(path)
        if det.family == "unknown":
            log.info("skipping %s: %s", path, det.reason)
            return None
        return ModelEntry(name or path.name, path, source, "diffusers", det.family, repo_id,
                          folder_size(path))
    suffix = path.suffix.lower()
    if suffix == ".safetensors":
        det = detect_single_file(path)
        if det.family == "unknown":
            split = split_entry(path, source, name, repo_id)
            if split is None:
                log.info("skipping %s: %s", path, det.reason)
            return split
        family = det.family
    elif suffix == ".gguf":  # a quantized diffusion model (ComfyUI-GGUF); chat GGUFs are not
        return split_entry(path, source, name, repo_id)
    elif suffix == ".ckpt":
        family = "unknown"  # a pickle has no header to read; it is identified when loaded
    else:
        return None
    return ModelEntry(name or path.stem, path, source, "single-file", family, repo_id,
                      path.stat().st_size)


def split_entry(path: Path, source: str, name: str = "", repo_id: str = "",
                chosen: dict[str, str] | None = None) -> ModelEntry | None:
    """A FLUX.1 / SD 3.5 / Qwen-Image / Z-Image / FLUX.2 diffusion-model file (ComfyUI's split
    files) with the text encoders and VAE ``chosen`` for it (role → file) or else found beside
    it; None when the file is not one."""
    from studio.library.split_files import comfy_models_root, file_family, find_parts

    family = file_family(path)
    if not family:
        return None
    parts = find_parts(path, family, chosen)
    return ModelEntry(name or path.stem, path, source, "split", family, repo_id,
                      path.stat().st_size + sum(p.stat().st_size for p in parts.chosen.values()),
                      parts=parts.chosen, needs=parts.sentence(comfy_models_root(path)))


def with_chosen_parts(entry: ModelEntry, settings: Settings) -> ModelEntry:
    """A split entry with the parts the user chose for it (settings' ``split_parts``)."""
    chosen = settings.parts_for(entry.path) if entry.format == "split" else {}
    if not chosen:
        return entry
    return split_entry(entry.path, entry.source, entry.name, entry.repo_id, chosen) or entry


def _scan_folder(root: Path, source: str, depth: int = 2) -> list[ModelEntry]:
    """Models in ``root`` and up to ``depth`` levels below it (a model folder is not entered)."""
    found: list[ModelEntry] = []
    try:
        children = sorted(root.iterdir())
    except OSError as exc:
        log.info("cannot list %s: %s", root, exc)
        return found
    for child in children:
        if child.name.startswith("."):
            continue
        try:
            if child.is_dir() and not (child / "model_index.json").is_file() \
                    and not is_gan_folder(child):
                if depth > 1:
                    found += _scan_folder(child, source, depth - 1)
                continue
            entry = entry_for_path(child, source)
        except (OSError, UserFacingError) as exc:
            log.warning("skipping %s: %s", child, exc)
            continue
        if entry is not None:
            found.append(entry)
    return found


def _scan_extra(root: Path) -> list[ModelEntry]:
    """An extra folder may be a model itself, a folder of models, or an A1111/ComfyUI install."""
    try:
        if root.is_file() or (root / "model_index.json").is_file():
            entry = entry_for_path(root, "extra")
            return [entry] if entry else []
    except (OSError, UserFacingError) as exc:
        log.warning("skipping %s: %s", root, exc)
        return []
    found = _scan_folder(root, "extra")
    for sub in KNOWN_CHECKPOINT_SUBDIRS + KNOWN_SPLIT_SUBDIRS:
        if (root / sub).is_dir():
            found += _scan_folder(root / sub, "extra")
    return found


def _snapshot_of(repo) -> Path | None:
    """The snapshot a repo's ``main`` ref points to, else its newest one, holding model_index."""
    return next((snap for snap in hf_snapshots(repo) if has_file(snap, "model_index.json")),
                None)


def _hf_entry(repo) -> ModelEntry | None:
    snap = _snapshot_of(repo)
    if snap is None:
        return None
    try:
        index = json.loads((snap / "model_index.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        log.info("skipping %s: %s", repo.repo_id, exc)
        return None
    if index.get("_class_name") not in TXT2IMG_PIPELINES:
        return None
    det = detect_diffusers_folder(snap)
    if det.family == "unknown":
        log.info("skipping %s: %s", repo.repo_id, det.reason)
        return None
    return ModelEntry(repo.repo_id, snap, "hf-cache", "diffusers", det.family, repo.repo_id,
                      int(repo.size_on_disk))


def _hf_single_files(repo) -> list[ModelEntry]:
    """Single-file text-to-image checkpoints in a hub repo without a diffusers layout."""
    snap = hf_main_snapshot(repo)
    if snap is None:
        return []
    return scanned(hf_loose_files(snap, (".safetensors",)),
                   lambda f: entry_for_path(f, "hf-cache", name=f"{repo.repo_id}/{f.name}",
                                            repo_id=repo.repo_id), log, level=logging.INFO)


def find_txt2img_models(settings: Settings, paths: Paths) -> list[ModelEntry]:
    """Every text-to-image model available offline, without loading any weights."""
    found: list[ModelEntry] = []
    if paths.models_dir.is_dir():
        found += _scan_folder(paths.models_dir, "studio")
    for repo in hf_cache_repos():
        try:
            entry = _hf_entry(repo)
        except OSError as exc:
            log.warning("skipping %s: %s", repo.repo_id, exc)
            continue
        if entry is not None:
            found.append(entry)
        elif _snapshot_of(repo) is None:
            found += _hf_single_files(repo)
    for extra in settings.extra_model_dirs:
        root = Path(extra).expanduser()
        if root.exists():
            found += _scan_extra(root)
        else:
            log.info("extra model folder %s does not exist", root)
    added = [Path(a).expanduser() for a in getattr(settings, "added_models", [])]
    found += scanned(added, lambda p: entry_for_path(p, "file") if p.exists() else None, log)
    return [with_chosen_parts(e, settings)
            for e in first_per_path(found, lambda e: e.path, resolve=resolved)]


def resolve_model(spec: str, settings: Settings, paths: Paths) -> ModelEntry:
    """The model a request names: a folder, a single file, or a repo id in the HF cache."""
    spec, path = chosen_path(spec, "No model chosen. Pick a model or add one with 'Add model…'.")
    if path.exists():
        try:
            entry = entry_for_path(path, "file")
        except OSError as exc:
            raise UserFacingError(f"{spec} cannot be read: {exc}") from exc
        if entry is not None:
            return with_chosen_parts(entry, settings)
        wrong = wrong_kind_message(path, "image", paths)
        if wrong:
            raise UserFacingError(wrong)
        if path.is_dir() and (path / "model_index.json").is_file():
            det = detect_diffusers_folder(path)
            raise UserFacingError(f"{spec} is not a text-to-image Stable Diffusion model: "
                                  f"{det.reason}.")
        if path.suffix.lower() == ".safetensors":
            det = detect_single_file(path)
            raise UserFacingError(f"{spec} is not a Stable Diffusion checkpoint: {det.reason}.")
        if path.suffix.lower() == ".gguf":
            from studio.library.split_files import read_gguf_header

            arch = read_gguf_header(path)["__metadata__"]["architecture"] or "not named"
            raise UserFacingError(f"{spec} is a GGUF file whose architecture ({arch}) is not a "
                                  "diffusion model Studio runs from GGUF: FLUX.1, SD 3.5, "
                                  "Qwen-Image, Z-Image or FLUX.2 transformers (ComfyUI-GGUF's "
                                  "files).")
        raise UserFacingError(f"{spec} is not a Stable Diffusion model: no model_index.json and "
                              "not a .safetensors checkpoint.")
    if looks_like_repo_id(spec):
        repo = cached_repo(spec, hf_cache_repos())
        entry = _hf_entry(repo)
        singles = _hf_single_files(repo) if _snapshot_of(repo) is None else []
        if entry is None and len(singles) == 1:
            return with_chosen_parts(singles[0], settings)
        if singles:
            raise UserFacingError(f"{spec} holds {len(singles)} checkpoints; name one by its "
                                  "file: " + ", ".join(str(e.path) for e in singles))
        if entry is None:
            raise UserFacingError(f"{spec} is in your Hugging Face cache but is not a complete "
                                  "text-to-image Stable Diffusion pipeline.")
        return entry
    raise UserFacingError(f"{spec} does not exist.")
