"""Kinds recognised from a file's header (:mod:`studio.library.classify`) as the library's folder
walk meets them: LoRAs, textual-inversion embeddings, TAESD preview decoders, the parts of split
diffusion models (the ``part`` kind is in ``image.py``), and what is none of them, with the
reason. :func:`walk_entry` is the registry's last answer to "which kind is this path?"."""

from __future__ import annotations

from pathlib import Path

from studio.core.config import Paths
from studio.core.jobs import UserFacingError
from studio.library import taef2_files
from studio.library.classify import (
    classify_file,
    files_precision,
    folder_size,
    is_taesd_folder,
    taesd_family,
    unknown_folder_reason,
)
from studio.library.entry import LibraryEntry
from studio.library.kinds.base import ModelKind


def entry_name(item: Path) -> str:
    """The name a file is known by: its stem; a diffusers ``learned_embeds`` file is named
    after its folder (sd-concepts-library/cat-toy → cat-toy), as its token is."""
    if item.stem == "learned_embeds" and item.parent.name:
        return item.parent.name
    return item.stem


def walk_entry(item: Path, source: str, paths: Paths) -> LibraryEntry:
    """A LoRA, TAESD decoder, split-model part or unknown thing found by the walk."""
    if item.is_dir():
        size = folder_size(item)
        if is_taesd_folder(item):
            family, used = taesd_family(item.name)  # where the previewer looks: <models>/<name>
            usable = used and item.parent == paths.models_dir
            return LibraryEntry(item.name, "preview", item, source, "diffusers", size,
                                files_precision(sorted(item.glob("*.safetensors"))), family, "",
                                "TAESD (AutoencoderTiny) preview decoder",
                                ("Generate",) if usable else ())
        return LibraryEntry(item.name, "unknown", item, source, "folder", size,
                            detail=unknown_folder_reason(item))
    size = item.stat().st_size
    fmt = item.suffix.lower().lstrip(".")
    try:
        kind = classify_file(item)
    except UserFacingError as exc:
        return LibraryEntry(item.stem, "unknown", item, source, fmt, size, detail=str(exc))
    workspaces: tuple[str, ...] = ()
    if kind.kind == "lora":
        fmt = f"LoRA ({kind.format})"
        workspaces = ("Generate", "Transform")  # applied in txt2img and img2img/inpaint
    if kind.kind == "unknown" and fmt == "safetensors":
        part = split_part_entry(item, source, size, kind.precision)
        if part is not None:
            return part
    if kind.kind == "embedding":
        fmt = "Embedding"
        workspaces = ("Generate", "Transform")  # applied where its name is in the prompt
    if kind.kind == "preview" and kind.family == "flux2" and item == taef2_files.find(paths):
        workspaces = ("Generate",)  # the TAEF2 file FLUX.2's previews decode through
    return LibraryEntry(entry_name(item), kind.kind, item, source, fmt, size, kind.precision,
                        kind.family, "", kind.reason, workspaces)


def split_part_entry(item: Path, source: str, size: int, precision: str) -> LibraryEntry | None:
    """A text encoder or VAE file of ComfyUI's split models (clip_l, t5xxl, ae …), or None."""
    from studio.library.detect import read_safetensors_header
    from studio.library.split_files import PART_TITLES, part_role

    try:
        role = part_role(read_safetensors_header(item), item.name)
    except (OSError, UserFacingError):
        return None
    if role not in PART_TITLES:
        return None
    return LibraryEntry(entry_name(item), "part", item, source, "safetensors", size, precision,
                        "", "", f"{PART_TITLES[role]}, a part of split diffusion models "
                        "(FLUX.1, SD 3.5, Chroma, Qwen-Image, Z-Image, FLUX.2)", ("Generate",))


KINDS = (
    ModelKind("preview", "Preview decoder (TAESD)", 7,
              cli_use="Studio uses it for live previews in the window (Settings → Live "
                      "preview)."),
    ModelKind("lora", "LoRA", 8,
              cli_use="Apply it to a Stable Diffusion model with '--lora {spec}' in 'studio "
                      "generate' or 'studio img2img'.",
              where=" — add it to a model in Generate's LoRA section or with a <lora:…> tag"),
    ModelKind("embedding", "Textual inversion", 9,
              cli_use="Write its name ({name}) in a prompt of 'studio generate' or 'studio "
                      "img2img'.",
              where=" — write its name ({name}) in a prompt"),
    ModelKind("unknown", "Unknown", 99),
)
