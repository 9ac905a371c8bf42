"""Which Stable Diffusion family a model file or folder is, without loading its weights.

A ``.safetensors`` file starts with an 8-byte little-endian header length and a JSON header that
names every tensor with its dtype, shape and byte range. Reading only that header tells us the
architecture (SD 1.x, SD 2.x, SDXL) in milliseconds, and checking the byte ranges against the file
size catches a half-downloaded file before anyone waits a minute for it to fail to load.
No torch here.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from studio.core.files import StatCache
from studio.core.jobs import UserFacingError
from studio.library.families import FAMILIES

#: A real header is a few hundred KB; anything near this is not a safetensors file.
MAX_HEADER_BYTES = 100_000_000  # the safetensors library's own limit

_UNET = "model.diffusion_model."
_SD1_CLIP = "cond_stage_model.transformer."
_SD2_CLIP = "cond_stage_model.model."
_SDXL_CLIP_G = "conditioner.embedders.1."
_ATTN2_K = "input_blocks.1.1.transformer_blocks.0.attn2.to_k.weight"


@dataclass(frozen=True)
class Detection:
    """The family of a model and why we think so. ``note`` is extra advice shown to the user."""

    family: str  # sd1 | sd2 | sdxl | unknown
    reason: str = ""
    note: str = ""


@dataclass
class _CachedHeader:
    """A file's parsed header, and what has been worked out from it (:func:`header_fact`)."""

    header: dict[str, Any]
    facts: dict[str, Any]


_header_cache: StatCache[_CachedHeader] = StatCache(1024)

T = TypeVar("T")


def _cached_header(path: Path) -> _CachedHeader:
    return _header_cache.get(Path(path),
                             lambda p, st: _CachedHeader(_read_header(p, st.st_size), {}))


def read_safetensors_header(path: Path) -> dict[str, Any]:
    """The JSON header of a ``.safetensors`` file, validated against the file's size.

    Raises :class:`UserFacingError` when the file is truncated or is not a safetensors file.
    Headers of unchanged files (same size, modification time and inode) come from a small
    in-memory cache: a library scan asks for the same header several times (kind, precision,
    generator check) and a rescan asks again; an SDXL header is ~2,500 entries of JSON.
    """
    return dict(_cached_header(path).header)


def header_fact(path: Path, name: str, compute: Callable[[dict[str, Any]], T]) -> T:
    """``compute(header)`` for the safetensors file at ``path``, worked out once while the file
    is unchanged and kept with its cached header (:func:`read_safetensors_header`): a rescan of
    the library asks each file the same questions (its precision, family, kind, tensor names),
    and an SDXL header is ~2,500 entries to go through for each. ``name`` tells the answers
    apart; ``compute`` must depend on the header alone (and on ``path``, which is part of the
    key) and return something its callers do not change. Raises as
    :func:`read_safetensors_header` does."""
    cached = _cached_header(path)
    try:
        return cached.facts[name]
    except KeyError:
        pass
    value = compute(dict(cached.header))
    cached.facts[name] = value
    return value


def _corrupt(path: Path, why: str) -> UserFacingError:
    return UserFacingError(f"{path.name} is truncated or corrupt ({why}).")


def _read_header(path: Path, size: int) -> dict[str, Any]:
    """The header, parsed with bounds: length capped, nesting refused, every field type checked.

    Any file in a scanned folder may be hostile, so nothing here may raise anything but
    :class:`UserFacingError` (a RecursionError from deeply nested JSON used to escape and end
    ``studio models list`` and ``studio serve`` with a traceback).
    """
    with path.open("rb") as fh:
        raw_len = fh.read(8)
        if len(raw_len) < 8:
            raise _corrupt(path, f"only {size} bytes")
        (n,) = struct.unpack("<Q", raw_len)
        if n < 2 or n > MAX_HEADER_BYTES or 8 + n > size:
            raise _corrupt(path, f"header length {n} does not fit a {size}-byte file"
                           if n <= MAX_HEADER_BYTES else
                           f"header length {n} is over the {MAX_HEADER_BYTES}-byte limit")
        raw = fh.read(n)
    if not raw.lstrip().startswith(b"{"):
        raise _corrupt(path, "header is not a JSON object")
    try:
        header = json.loads(raw.decode("utf-8"))
    except RecursionError:
        raise _corrupt(path, "header nests too deeply") from None
    except (UnicodeDecodeError, ValueError) as exc:
        raise _corrupt(path, f"unreadable header: {str(exc)[:200]}") from None
    if not isinstance(header, dict):
        raise _corrupt(path, "header is not a JSON object")
    data_size = size - 8 - n
    for name, info in header.items():
        if name == "__metadata__":
            if not isinstance(info, dict) or not all(isinstance(v, str) for v in info.values()):
                raise _corrupt(path, "__metadata__ is not a map of text to text")
            continue
        _check_tensor(path, name, info, data_size)
    return header


def _check_tensor(path: Path, name: str, info: Any, data_size: int) -> None:
    """One tensor entry has the types safetensors defines and fits in the file's data."""
    shown = repr(name[:80])
    if not isinstance(info, dict):
        raise _corrupt(path, f"tensor {shown} is not described by a JSON object")
    offsets = info.get("data_offsets")
    if (not isinstance(offsets, list) or len(offsets) != 2
            or not all(type(x) is int for x in offsets)):
        raise _corrupt(path, f"tensor {shown} has no valid data_offsets")
    if not isinstance(info.get("dtype"), str):
        raise _corrupt(path, f"tensor {shown} has no valid dtype")
    shape = info.get("shape")
    if not isinstance(shape, list) or not all(type(d) is int and 0 <= d < 2**63 for d in shape):
        raise _corrupt(path, f"tensor {shown} has no valid shape")
    start, end = offsets
    if not 0 <= start <= end <= data_size:
        raise _corrupt(path, f"tensor {shown} ends at byte {end} but the file holds {data_size} "
                       "bytes of data; the download may be incomplete")


def detect_from_header(header: dict[str, Any]) -> Detection:
    """The family from the tensor names and shapes of an original-layout (LDM) checkpoint."""
    keys = [k for k in header if k != "__metadata__"]
    key_set = set(keys)

    def shape(key: str) -> list[int]:
        return list(header.get(key, {}).get("shape", []))

    has_unet = any(k.startswith(_UNET) for k in keys)
    if any(k.startswith(_SDXL_CLIP_G) for k in keys) or (
        has_unet and any(k.startswith(_UNET + "label_emb.") for k in keys)
    ):
        if any(k.startswith("conditioner.embedders.0.model.") for k in keys) and not any(
            k.startswith(_SDXL_CLIP_G) for k in keys
        ):
            return Detection("unknown", "an SDXL refiner checkpoint (refiners need a base image)")
        return Detection("sdxl", "has SDXL's second text encoder / label_emb")
    attn2 = shape(_UNET + _ATTN2_K)
    context_dim = attn2[1] if len(attn2) == 2 else None
    if any(k.startswith(_SD2_CLIP) for k in keys) or context_dim == 1024:
        return Detection(
            "sd2",
            "OpenCLIP text encoder (context dim 1024)",
            note="SD 2.x 768-px models predict v, 512-px (base) models predict noise; a single file "
            "does not say which, so the 512-px base configuration is assumed.",
        )
    if any(k.startswith(_SD1_CLIP) for k in keys) or context_dim == 768:
        return Detection("sd1", "CLIP-L text encoder (context dim 768)")
    if not has_unet:
        if any(k.startswith(("down_blocks.", "mid_block.", "encoder.down")) for k in key_set):
            return Detection("unknown", "a component in diffusers layout (UNet/VAE), not a "
                                        "complete checkpoint")
        if any("lora" in k for k in keys[:200]):
            return Detection("unknown", "a LoRA, not a checkpoint")
        return Detection("unknown", "no Stable Diffusion UNet weights (model.diffusion_model.*)")
    return Detection("unknown", f"a UNet with context dim {context_dim}, which is not SD1/SD2/SDXL")


def detect_single_file(path: Path) -> Detection:
    """Read the header of a ``.safetensors`` file and detect its family (raises when corrupt);
    once while the file is unchanged (:func:`header_fact`)."""
    return header_fact(path, "detection", detect_from_header)


def detect_diffusers_folder(folder: Path) -> Detection:
    """The family of a diffusers pipeline folder from ``model_index.json`` and ``unet/config.json``."""
    folder = Path(folder)
    try:
        index = json.loads((folder / "model_index.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        return Detection("unknown", f"model_index.json is unreadable ({exc})")
    cls = str(index.get("_class_name", ""))
    if cls == "DDPMPipeline":  # pixel-space diffusion: the Train workspace's ddpm lesson saves it
        try:
            unet = json.loads((folder / "unet" / "config.json").read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            return Detection("unknown", f"unet/config.json is unreadable ({exc})")
        if unet.get("_class_name") != "UNet2DModel":
            return Detection("unknown", "a DDPMPipeline without a UNet2DModel")
        return Detection("ddpm", "pixel-space DDPM (UNet2DModel)")
    if "Img2Img" in cls or "Inpaint" in cls or "Upscale" in cls:
        return Detection("unknown", f"{cls} is not a text-to-image pipeline")
    for known in FAMILIES.values():  # the families told apart by their pipeline class
        if cls in known.diffusers_classes:
            if not (folder / known.denoiser / "config.json").is_file():
                return Detection("unknown", f"{cls} without its {known.denoiser}/config.json")
            return Detection(known.key, f"{cls} ({known.label})")
    if cls not in ("StableDiffusionPipeline", "StableDiffusionXLPipeline"):
        return Detection("unknown", f"{cls or 'a pipeline without _class_name'} is not a Stable "
                                    "Diffusion text-to-image pipeline")
    try:
        unet = json.loads((folder / "unet" / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        return Detection("unknown", f"unet/config.json is unreadable ({exc})")
    if unet.get("addition_embed_type") == "text_time" or cls == "StableDiffusionXLPipeline":
        return Detection("sdxl", "UNet with text_time additional embeddings")
    dim = unet.get("cross_attention_dim")
    if dim == 1024:
        return Detection("sd2", "UNet cross-attention dim 1024 (OpenCLIP)")
    if dim == 768:
        return Detection("sd1", "UNet cross-attention dim 768 (CLIP-L)")
    # A StableDiffusionPipeline with another width (tiny test models, distilled models) runs with
    # the SD1 code path; the text encoder decides which tokenizer flavour it has.
    te = folder / "text_encoder" / "config.json"
    try:
        hidden_act = json.loads(te.read_text(encoding="utf-8")).get("hidden_act", "")
    except (OSError, ValueError):
        hidden_act = ""
    family = "sd2" if hidden_act == "gelu" else "sd1"
    return Detection(family, f"StableDiffusionPipeline with cross-attention dim {dim}")
