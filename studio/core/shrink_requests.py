"""The "Make smaller…" jobs (issue 19): a chat model's linear layers quantized (``shrink``) and
an image model's denoiser stored in 8 bits (``image-shrink``), each a new library entry beside
the original, measured before and after. Light: no torch here.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

#: "Make smaller…" methods for chat models → what each keeps of a weight (the dialog's choices).
SHRINK_METHODS: dict[str, str] = {
    "int8": "int8 weight-only: 8-bit integers with a scale per row; about ¼ of fp32, ½ of bf16",
    "int4": "int4 weight-only: 4-bit integers with a scale per 32 weights; the most rounding",
    "fp8": "fp8 (e4m3) weight-only: 8-bit floats with a scale per row",
}
MAX_SHRINK_EVAL_TOKENS = 16_384


@dataclass
class ShrinkRequest:
    """The ``shrink`` job ("Make smaller…", ``studio models shrink``): save ``model`` with its
    linear layers' weights quantized by ``method`` as the new library entry ``out_name``
    (default ``<name>-<method>``), measuring perplexity on ``eval_tokens`` tokens of the shipped
    text and the speed of ``speed_tokens`` generated tokens before and after."""

    model: str
    method: str = "int8"
    out_name: str = ""
    eval_tokens: int = 1024
    speed_tokens: int = 32

    def validate(self) -> None:
        if not str(self.model).strip():
            raise ValueError("No chat model chosen to make smaller.")
        if self.method not in SHRINK_METHODS:
            raise ValueError(f"Unknown method {self.method!r}; choose one of "
                             f"{', '.join(SHRINK_METHODS)}.")
        if not 16 <= int(self.eval_tokens) <= MAX_SHRINK_EVAL_TOKENS:
            raise ValueError(f"The perplexity check takes 16 to {MAX_SHRINK_EVAL_TOKENS} tokens.")  # plural-ok
        if not 1 <= int(self.speed_tokens) <= 512:
            raise ValueError("The speed check generates 1 to 512 tokens.")

    def to_dict(self) -> dict[str, Any]:
        return {"kind": "shrink", **dataclasses.asdict(self)}


#: "Make smaller…" methods for image models (the denoiser: UNet or transformer).
IMAGE_SHRINK_METHODS: dict[str, str] = {
    "int8": "int8 weight-only (torchao): the denoiser's linear layers as 8-bit integers with a "
            "scale per row",
    "fp8": "fp8 (e4m3) storage: the denoiser's conv and linear weights in 8 bits, upcast one "
           "layer at a time while it runs",
}
IMAGE_SHRINK_PROMPT = "a lighthouse on a rocky coast at sunset, oil painting, detailed"


@dataclass
class ImageShrinkRequest:
    """The ``image-shrink`` job ("Make smaller…" on an image model, ``studio models shrink``):
    save ``model`` with its denoiser's weights in 8 bits (``method``) as the new library entry
    ``out_name`` (default ``<name>-<method>``), drawing one sample image before and after at
    ``seed`` with ``prompt``, ``steps`` steps, ``size`` pixels square (0: the family's size, at
    most 512)."""

    model: str
    method: str = "int8"
    out_name: str = ""
    prompt: str = IMAGE_SHRINK_PROMPT
    seed: int = 1234
    steps: int = 8
    size: int = 0

    def validate(self) -> None:
        if not str(self.model).strip():
            raise ValueError("No image model chosen to make smaller.")
        if self.method not in IMAGE_SHRINK_METHODS:
            others = [m for m in SHRINK_METHODS if m not in IMAGE_SHRINK_METHODS]
            why = (f" ({', '.join(others)} is for chat models)" if self.method in others else "")
            raise ValueError(f"Image models can be made smaller with "
                             f"{' or '.join(IMAGE_SHRINK_METHODS)}, not {self.method!r}{why}.")
        if not 1 <= int(self.steps) <= 100:
            raise ValueError("The sample image takes 1 to 100 steps.")  # plural-ok
        if int(self.size) and not (64 <= int(self.size) <= 2048 and int(self.size) % 8 == 0):
            raise ValueError("The sample image's size is 64 to 2048 pixels, a multiple of 8.")
        if not 0 <= int(self.seed) < 2**32:
            raise ValueError("The seed is 0 to 4294967295.")

    def to_dict(self) -> dict[str, Any]:
        return {"kind": "image-shrink", **dataclasses.asdict(self)}
