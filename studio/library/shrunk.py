"""Image models made smaller in Studio ("Make smaller…"): the note each copy carries.

A shrunk image model is a diffusers folder whose denoiser (UNet or transformer) keeps its weights
in 8 bits, with ``studio_shrink.json`` at its root saying what it was made from and how, so the
copy can be re-created (``recreate``) and loaded the way it was saved: ``int8`` copies carry
diffusers' ``quantization_config`` (torchao) in the denoiser's ``config.json`` and load as they
are; ``fp8`` copies store the weights as float8 (e4m3) and are upcast layer by layer while they
run (diffusers' layer-wise casting), which the loader switches on from this note. No torch here.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

SHRINK_NOTE = "studio_shrink.json"
#: What the Models list says a shrunk image model's weights are.
PRECISION_LABELS = {"int8": "int8 (torchao, denoiser)", "fp8": "fp8 e4m3 (denoiser)"}


def shrink_info(folder: Path) -> dict[str, Any] | None:
    """The note of a shrunk image model folder, or None (not one, or unreadable)."""
    path = Path(folder) / SHRINK_NOTE
    if not (Path(folder) / "model_index.json").is_file() or not path.is_file():
        return None
    try:
        info = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return info if isinstance(info, dict) and info.get("method") in PRECISION_LABELS else None


def quantized_denoiser(folder: Path, denoiser: str) -> str:
    """How a diffusers folder's denoiser says it is quantized ('' when it does not)."""
    try:
        config = json.loads((Path(folder) / denoiser / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return ""
    quant = config.get("quantization_config") if isinstance(config, dict) else None
    if not isinstance(quant, dict):
        return ""
    return str(quant.get("quant_method") or quant.get("quant_type") or "quantized")
