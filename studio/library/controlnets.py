"""ControlNet models on disk (issue 14). No Qt, no torch.

A ControlNet is a diffusers ``ControlNetModel`` folder (``config.json`` whose ``_class_name`` is
``ControlNetModel``, and its weights), as ``lllyasviel/control_v11p_sd15_canny`` or
``diffusers/controlnet-canny-sdxl-1.0`` ship it. Studio finds them in ``<models>/controlnet/``,
in an extra model folder where A1111 and ComfyUI keep them (``models/ControlNet``,
``models/controlnet``), among the files added by hand, and in the Hugging Face cache. The family
it fits (SD 1.x, SD 2.x, SDXL) is read from the width of its cross-attention
(``cross_attention_dim``: 768, 1024, 2048), so Generate offers only those that fit the model.
A name is the folder's name (a cached repo: its id), which requests and metadata use.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from studio.core.config import Paths, Settings
from studio.core.jobs import UserFacingError
from studio.library.classify import folder_config
from studio.library.hf_cache import hf_cache_repos

FOLDER = "controlnet"
CLASS_NAME = "ControlNetModel"
#: Where A1111 and ComfyUI keep ControlNets, relative to an extra model folder.
KNOWN_SUBDIRS = (Path("models") / "ControlNet", Path("models") / "controlnet",
                 Path("ControlNet"), Path("controlnet"))
#: cross-attention width → family
FAMILY_BY_WIDTH = {768: "sd1", 1024: "sd2", 2048: "sdxl"}
_WEIGHTS = ("diffusion_pytorch_model.safetensors", "diffusion_pytorch_model.fp16.safetensors",
            "diffusion_pytorch_model.bin")


@dataclass(frozen=True)
class ControlNetEntry:
    """One ControlNet: its name, folder, where it was found and the family it fits."""

    name: str
    path: Path
    source: str  # studio | extra | file | hf-cache
    family: str  # sd1 | sd2 | sdxl | "" (unknown width)
    repo_id: str = ""


def is_controlnet_folder(folder: Path) -> bool:
    """A diffusers ControlNetModel folder with weights."""
    folder = Path(folder)
    return (folder_config(folder, "config.json").get("_class_name") == CLASS_NAME
            and any((folder / w).is_file() for w in _WEIGHTS))


def controlnet_family(folder: Path) -> str:
    width = folder_config(folder, "config.json").get("cross_attention_dim")
    return FAMILY_BY_WIDTH.get(width, "") if isinstance(width, int) else ""


def entry_for_folder(folder: Path, source: str, name: str = "", repo_id: str = "") -> ControlNetEntry:
    return ControlNetEntry(name or folder.name, folder, source, controlnet_family(folder),
                           repo_id)


def _folders(root: Path, depth: int = 2) -> list[Path]:
    if not root.is_dir():
        return []
    if is_controlnet_folder(root):
        return [root]
    found: list[Path] = []
    if depth > 0:
        try:
            children = sorted(root.iterdir())
        except OSError:
            return []
        for child in children:
            if child.is_dir() and not child.name.startswith("."):
                found += _folders(child, depth - 1)
    return found


def controlnet_folder(paths: Paths) -> Path:
    """Where ControlNets go: ``<models>/controlnet``."""
    return paths.models_dir / FOLDER


def find_controlnets(settings: Settings, paths: Paths) -> list[ControlNetEntry]:
    """Every ControlNet Studio can use, Studio's folder first; each folder once."""
    found = [entry_for_folder(f, "studio") for f in _folders(controlnet_folder(paths))]
    for extra in settings.extra_model_dirs:
        root = Path(extra).expanduser()
        for sub in KNOWN_SUBDIRS:
            found += [entry_for_folder(f, "extra") for f in _folders(root / sub)]
    for added in settings.added_models:
        item = Path(added).expanduser()
        if is_controlnet_folder(item):
            found.append(entry_for_folder(item, "file"))
    for repo in hf_cache_repos():
        for revision in sorted(repo.revisions, key=lambda r: "main" in r.refs, reverse=True):
            snap = Path(revision.snapshot_path)
            if is_controlnet_folder(snap):
                found.append(entry_for_folder(snap, "hf-cache", repo.repo_id, repo.repo_id))
                break
    unique: dict[Path, ControlNetEntry] = {}
    for entry in found:
        unique.setdefault(entry.path.resolve(), entry)
    return list(unique.values())


def resolve_controlnet(spec: str, settings: Settings, paths: Paths) -> ControlNetEntry:
    """The ControlNet a request names: its name in the library, a folder, or a cached repo id."""
    spec = str(spec).strip()
    if not spec:
        raise UserFacingError("No ControlNet model chosen.")
    path = Path(spec).expanduser()
    if path.exists():
        if is_controlnet_folder(path):
            return entry_for_folder(path, "file")
        raise UserFacingError(
            f"{spec} is not a ControlNet: a ControlNet is a diffusers folder whose config.json "
            f"names {CLASS_NAME}, with its weights (as lllyasviel/control_v11p_sd15_canny).")
    models = find_controlnets(settings, paths)
    for match in (lambda e: spec in (e.name, e.repo_id),
                  lambda e: spec.lower() in (e.name.lower(), e.repo_id.lower())):
        hits = [e for e in models if match(e)]
        if len(hits) == 1:
            return hits[0]
        if hits:
            where = "; ".join(str(e.path) for e in hits)
            raise UserFacingError(f"{spec!r} names {len(hits)} ControlNets ({where}); name one "
                                  "by its folder.")
    raise UserFacingError(
        f"No ControlNet called {spec!r}. Put its diffusers folder in "
        f"{controlnet_folder(paths)}, or download one, e.g. 'hf download "
        "lllyasviel/control_v11p_sd15_canny' (SD 1.x) or 'hf download "
        "diffusers/controlnet-canny-sdxl-1.0' (SDXL).")
