"""Diffusers folders saved quantized by bitsandbytes (NF4 / FP4 / int8 components), as some
downloads and ``save_pretrained`` after an NF4 load write them: each quantized component's
``config.json`` carries a ``quantization_config`` with ``quant_method: bitsandbytes``. The
Models list marks them; the loader needs bitsandbytes for them (and CUDA for a quantized
transformer or UNet: :mod:`studio.pipelines.diffusion.quantize`). No torch here."""

from __future__ import annotations

import json
from pathlib import Path


def saved_quantization(folder: Path) -> dict[str, str]:
    """The components of a diffusers folder saved in bitsandbytes form: name → "nf4", "fp4" or
    "int8" (from each one's config.json ``quantization_config``)."""
    try:
        index = json.loads((Path(folder) / "model_index.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    found: dict[str, str] = {}
    for name in index if isinstance(index, dict) else ():
        try:
            config = json.loads((Path(folder) / name / "config.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        quant = config.get("quantization_config") if isinstance(config, dict) else None
        if not isinstance(quant, dict) or quant.get("quant_method") != "bitsandbytes":
            continue
        if quant.get("load_in_4bit"):
            found[name] = str(quant.get("bnb_4bit_quant_type") or "fp4").lower()
        elif quant.get("load_in_8bit"):
            found[name] = "int8"
    return found


def precision_label(saved: dict[str, str]) -> str:
    """"NF4 (bitsandbytes): transformer, text_encoder_2" for the Models list ('' when none)."""
    if not saved:
        return ""
    kinds = sorted(set(saved.values()))
    what = "/".join(k.upper() if k != "int8" else k for k in kinds)
    return f"{what} (bitsandbytes): {', '.join(sorted(saved))}"
