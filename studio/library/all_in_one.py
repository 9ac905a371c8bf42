"""All-in-one FLUX.1 / SD 3.5 checkpoints: one file that carries its text encoders and VAE.

The single files people download for FLUX.1 (Comfy-Org's ``flux1-dev-fp8.safetensors``,
``flux1-schnell-fp8.safetensors``) and SD 3.5 (Stability's ``sd3.5_large.safetensors``,
``sd3.5_medium.safetensors``) hold the transformer under ``model.diffusion_model.`` and, beside
it, the text encoders under ``text_encoders.clip_l.transformer.``,
``text_encoders.clip_g.transformer.`` and ``text_encoders.t5xxl.transformer.`` (as ComfyUI saves
them) and the VAE under ``vae.`` (FLUX) or ``first_stage_model.`` (SD 3.5). This module tells,
from the safetensors header alone, which parts such a file carries, so the library lists it as
one ready model and the parts picker only asks for what is not inside (an SD 3.5 file without
T5 is a real variant: T5 is optional there; a FLUX file without it needs one picked).

Reading headers only: no weights are loaded, no torch here.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from studio.core.jobs import UserFacingError

if TYPE_CHECKING:
    from studio.library.models import ModelEntry

#: where the transformer's weights are in an all-in-one file
DENOISER_PREFIX = "model.diffusion_model."
#: role → the key prefix its weights have inside an all-in-one file
ENCODER_PREFIXES = {"clip_l": "text_encoders.clip_l.transformer.",
                    "clip_g": "text_encoders.clip_g.transformer.",
                    "t5xxl": "text_encoders.t5xxl.transformer."}
#: the VAE: Comfy-Org's FLUX files say ``vae.``, Stability's SD 3.5 files ``first_stage_model.``
VAE_PREFIXES = ("vae.", "first_stage_model.")
#: a key each text encoder has whatever its size, to tell it is there
_ENCODER_MARKS = {"clip_l": "text_model.final_layer_norm.weight",
                  "clip_g": "text_model.final_layer_norm.weight",
                  "t5xxl": "encoder.final_layer_norm.weight"}


def embedded_parts(header: dict[str, Any]) -> dict[str, str]:
    """role (clip_l, clip_g, t5xxl, vae) → key prefix, for each part a diffusion-model file
    carries itself; empty for a transformer-only file. The VAE counts only when it is a
    16-channel one (FLUX.1 / SD 3.5)."""
    found: dict[str, str] = {}
    for role, prefix in ENCODER_PREFIXES.items():
        if prefix + _ENCODER_MARKS[role] in header:
            found[role] = prefix
    for prefix in VAE_PREFIXES:
        conv = header.get(f"{prefix}decoder.conv_in.weight")
        if isinstance(conv, dict) and len(conv.get("shape", [])) == 4 and conv["shape"][1] == 16:
            found["vae"] = prefix
            break
    return found


def sub_header(header: dict[str, Any], prefix: str) -> dict[str, Any]:
    """The entries of ``header`` under ``prefix``, with the prefix taken off."""
    return {k[len(prefix):]: v for k, v in header.items()
            if k != "__metadata__" and k.startswith(prefix)}


def denoiser_header(header: dict[str, Any]) -> dict[str, Any]:
    """The transformer's entries of an all-in-one file (every entry of a transformer-only
    file: its keys may or may not carry ComfyUI's ``model.diffusion_model.``)."""
    if not embedded_parts(header):
        return {k: v for k, v in header.items() if k != "__metadata__"}
    return sub_header(header, DENOISER_PREFIX)


def denoiser_precision(path: Path) -> str:
    """The precision of a diffusion-model file's transformer ("fp8 (e4m3fn)", "bf16" …): what
    the library marks an all-in-one file with, whose 16-bit VAE and CLIP do not count."""
    from studio.library.classify import header_precision
    from studio.library.detect import read_safetensors_header

    try:
        header = read_safetensors_header(path)
    except (OSError, UserFacingError):
        return ""
    own = denoiser_header(header)
    return header_precision(own) if own else ""


def is_all_in_one(entry: ModelEntry) -> bool:
    """Whether a library entry (``ModelEntry``) is a file carrying some of its own parts."""
    return getattr(entry, "format", "") == "split" and any(
        Path(p) == Path(entry.path) for p in getattr(entry, "parts", {}).values())
