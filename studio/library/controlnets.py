"""ControlNet models on disk (issue 14). No Qt, no torch.

A ControlNet is a diffusers ``ControlNetModel`` folder (``config.json`` whose ``_class_name`` is
``ControlNetModel``, and its weights), as ``lllyasviel/control_v11p_sd15_canny`` or
``diffusers/controlnet-canny-sdxl-1.0`` ship it. Studio finds them in ``<models>/controlnet/``,
in an extra model folder where A1111 and ComfyUI keep them (``models/ControlNet``,
``models/controlnet``), among the files added by hand, and in the Hugging Face cache. The family
it fits (SD 1.x, SD 2.x, SDXL) is read from the width of its cross-attention
(``cross_attention_dim``: 768, 1024, 2048), so Generate offers only those that fit the model.
A name is the folder's name (a cached repo: its id), which requests and metadata use.

Single files as people download them are ControlNets too: A1111 / ComfyUI's
``control_v11p_sd15_canny.pth`` or ``.safetensors`` (the original layout: ``input_hint_block.…``
keys, with or without a ``control_model.`` prefix) and the diffusers layout in one file
(``controlnet_cond_embedding.…``; SDXL's ``diffusers_xl_canny_full.safetensors``). Their keys are
read without loading anything (:func:`~studio.library.cyclegan_models.file_keys`); the family
comes from the cross-attention width in a safetensors header, else from the name (``sd15``,
``sd21``, ``xl``), else it is taken to fit the model it is used with. The name also says what
kind of control map it wants (:func:`control_type`), so the window preselects a preprocessor.
A single file is loaded offline with the diffusers config shipped in
``assets/configs/controlnet/<family>/`` (:data:`SINGLE_FILE_CONFIGS`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from studio import ASSETS_DIR
from studio.core.config import Paths, Settings
from studio.core.files import first_per_path
from studio.core.jobs import UserFacingError
from studio.library.classify import folder_config
from studio.library.cyclegan_models import file_keys, matching_files
from studio.library.detect import read_safetensors_header
from studio.library.hf_cache import hf_cache_repos
from studio.library.kinds import chosen_path

FOLDER = "controlnet"
CLASS_NAME = "ControlNetModel"
#: T2I-Adapters (TencentARC's ``t2iadapter_canny_sd15v2``, ``t2i-adapter-canny-sdxl-1.0``): small
#: networks that guide the UNet from a control image like a ControlNet; the same kind, labelled
ADAPTER_CLASS = "T2IAdapter"
#: Where A1111 and ComfyUI keep ControlNets, relative to an extra model folder.
KNOWN_SUBDIRS = (Path("models") / "ControlNet", Path("models") / "controlnet",
                 Path("ControlNet"), Path("controlnet"))
#: cross-attention width → family
FAMILY_BY_WIDTH = {768: "sd1", 1024: "sd2", 2048: "sdxl"}
#: the single-file suffixes (pickles are read with ``torch.load(weights_only=True)`` only)
SUFFIXES = (".safetensors", ".pth", ".pt", ".ckpt")
#: family → the diffusers config folder a single file of that family is loaded with (tests and
#: users with unusual files may point a family elsewhere)
SINGLE_FILE_CONFIGS: dict[str, Path] = {
    family: ASSETS_DIR / "configs" / "controlnet" / family for family in ("sd1", "sd2", "sdxl")}
#: a key only ControlNets have, in each layout: original (A1111), original inside a whole
#: checkpoint, diffusers
_MARKERS = ("input_hint_block.0.weight", "control_model.input_hint_block.0.weight",
            "controlnet_cond_embedding.conv_in.weight")
#: words in a file's name → the control it was trained for (first match wins)
CONTROL_TYPES = (("inpaint", "inpaint"), ("canny", "canny"), ("depth", "depth"),
                 ("openpose", "openpose"), ("pose", "openpose"), ("lineart", "lineart"),
                 ("scribble", "scribble"), ("sketch", "scribble"), ("softedge", "softedge"),
                 ("hed", "softedge"), ("pidi", "softedge"), ("tile", "tile"),
                 ("normal", "normal"), ("mlsd", "mlsd"), ("seg", "seg"), ("shuffle", "shuffle"),
                 ("ip2p", "ip2p"), ("qrcode", "qrcode"), ("brightness", "brightness"))
#: control type → the preprocessor that makes its map from a photo or a drawing (the others
#: take a map made elsewhere: ``none``)
PREPROCESSOR_FOR = {"canny": "canny", "lineart": "lineart", "softedge": "softedge",
                    "scribble": "invert", "depth": "depth", "openpose": "openpose"}
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
    adapter: bool = False  # a T2I-Adapter, not a ControlNet

    @property
    def label(self) -> str:
        """What it is, in words: ControlNet or T2I-Adapter."""
        return "T2I-Adapter" if self.adapter else "ControlNet"

    @property
    def single_file(self) -> bool:
        return self.path.is_file()

    @property
    def control_type(self) -> str:
        return control_type(self.name)

    @property
    def preprocessor(self) -> str:
        """The preprocessor this ControlNet's control type wants (``none``: a ready map)."""
        return PREPROCESSOR_FOR.get(self.control_type, "none")


def control_type(name: str) -> str:
    """What a ControlNet's name says it was trained on (``canny``, ``depth`` …; '' unknown)."""
    words = re.split(r"[^a-z0-9]+", Path(name).name.lower())
    text = " ".join(words)
    for word, kind in CONTROL_TYPES:
        if word in words or (len(word) > 4 and word in text):
            return kind
    return ""


def is_controlnet_file(path: Path) -> bool:
    """A single-file ControlNet (original or diffusers layout), judged by its keys alone."""
    path = Path(path)
    if not path.is_file() or path.suffix.lower() not in SUFFIXES:
        return False
    keys = file_keys(path)
    return any(marker in keys for marker in _MARKERS)


def file_family(path: Path) -> str:
    """The family a single-file ControlNet fits: the width of its cross-attention (safetensors),
    else its keys (SDXL's added embedding) and name, else '' (unknown)."""
    path = Path(path)
    if path.suffix.lower() == ".safetensors":
        try:
            header = read_safetensors_header(path)
        except (OSError, UserFacingError):
            header = {}
        for key, info in header.items():
            if key.endswith("attn2.to_k.weight") and isinstance(info, dict):
                shape = info.get("shape")
                if isinstance(shape, list) and len(shape) == 2 and shape[1] in FAMILY_BY_WIDTH:
                    return FAMILY_BY_WIDTH[shape[1]]
    keys = file_keys(path)
    if any(k.endswith(("label_emb.0.0.weight", "add_embedding.linear_1.weight")) for k in keys):
        return "sdxl"
    words = re.split(r"[^a-z0-9]+", path.stem.lower())
    if any(w in ("xl", "sdxl") or w.startswith("sdxl") for w in words):
        return "sdxl"
    if any(w in ("sd21", "sd2", "sd20", "v21") for w in words):
        return "sd2"
    if any(w in ("sd15", "sd14", "sd1", "v11p", "v11e", "v11f1p", "v11f1e") for w in words):
        return "sd1"
    return ""


def is_controlnet_folder(folder: Path) -> bool:
    """A diffusers ControlNetModel (or T2IAdapter) folder with weights."""
    folder = Path(folder)
    return (folder_config(folder, "config.json").get("_class_name") in (CLASS_NAME,
                                                                        ADAPTER_CLASS)
            and any((folder / w).is_file() for w in _WEIGHTS))


def controlnet_family(folder: Path) -> str:
    config = folder_config(folder, "config.json")
    if config.get("_class_name") == ADAPTER_CLASS:  # SDXL's adapters say so; the others: SD 1.x
        return "sdxl" if "xl" in str(config.get("adapter_type", "")) else "sd1"
    width = config.get("cross_attention_dim")
    return FAMILY_BY_WIDTH.get(width, "") if isinstance(width, int) else ""


def entry_for_folder(folder: Path, source: str, name: str = "", repo_id: str = "") -> ControlNetEntry:
    adapter = folder_config(folder, "config.json").get("_class_name") == ADAPTER_CLASS
    return ControlNetEntry(name or folder.name, folder, source, controlnet_family(folder),
                           repo_id, adapter)


def entry_for_file(path: Path, source: str) -> ControlNetEntry:
    """A single-file ControlNet: named by its file's stem, as A1111 names it in metadata."""
    return ControlNetEntry(path.stem, path, source, file_family(path))


def entry_for(path: Path, source: str) -> ControlNetEntry | None:
    """The entry of a ControlNet folder or file; None when ``path`` is neither."""
    if is_controlnet_folder(path):
        return entry_for_folder(path, source)
    if is_controlnet_file(path):
        return entry_for_file(path, source)
    return None


def _files(root: Path, depth: int = 2) -> list[Path]:
    return matching_files(root, depth, is_controlnet_file) if root.is_dir() else []


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
    own = controlnet_folder(paths)
    found = [entry_for_folder(f, "studio") for f in _folders(own)]
    found += [entry_for_file(f, "studio") for f in _files(own)]
    for extra in settings.extra_model_dirs:
        root = Path(extra).expanduser()
        for sub in KNOWN_SUBDIRS:
            found += [entry_for_folder(f, "extra") for f in _folders(root / sub)]
            found += [entry_for_file(f, "extra") for f in _files(root / sub)]
    for added in settings.added_models:
        entry = entry_for(Path(added).expanduser(), "file")
        if entry is not None:
            found.append(entry)
    for repo in hf_cache_repos():
        snaps = [Path(r.snapshot_path) for r in sorted(
            repo.revisions, key=lambda r: "main" in r.refs, reverse=True)]
        folder = next((snap for snap in snaps if is_controlnet_folder(snap)), None)
        if folder is not None:
            found.append(entry_for_folder(folder, "hf-cache", repo.repo_id, repo.repo_id))
        elif snaps:  # loose files: `hf download lllyasviel/ControlNet-v1-1 control_….pth`
            found += [entry_for_file(f, "hf-cache") for f in _files(snaps[0], 1)]
    return first_per_path(found, lambda entry: entry.path)


def resolve_controlnet(spec: str, settings: Settings, paths: Paths) -> ControlNetEntry:
    """The ControlNet a request names: its name in the library, a folder, or a cached repo id."""
    spec, path = chosen_path(spec, "No ControlNet model chosen.")
    if path.exists():
        entry = entry_for(path, "file")
        if entry is not None:
            return entry
        raise UserFacingError(
            f"{spec} is not a ControlNet: a ControlNet is a diffusers folder whose config.json "
            f"names {CLASS_NAME}, with its weights (as lllyasviel/control_v11p_sd15_canny), or "
            "a single .safetensors / .pth file of one (as control_v11p_sd15_canny.pth).")
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
        f"No ControlNet called {spec!r}. Put its diffusers folder or its single file in "
        f"{controlnet_folder(paths)}, or download one, e.g. 'hf download "
        "lllyasviel/control_v11p_sd15_canny' (SD 1.x) or 'hf download "
        "diffusers/controlnet-canny-sdxl-1.0' (SDXL).")
