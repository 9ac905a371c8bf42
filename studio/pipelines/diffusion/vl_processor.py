"""Qwen-Image-Edit without torchvision.

Qwen-Image-Edit's text encoder (Qwen2.5-VL) reads the picture through a ``Qwen2VLProcessor``.
transformers builds that processor with a video processor, and its video processors need
torchvision, which a CPU install (and Studio's bundle) does not have: PyPI's torchvision is a CUDA
build that does not even import beside the CPU torch. The pictures themselves only need the image
processor, and transformers ships a PIL one (``Qwen2VLImageProcessorPil``). So where torchvision
is not installed, the folder's processor is built from its image processor and tokenizer alone and
handed to diffusers, which calls it exactly as it calls the full one (text plus images, no video).
Where torchvision is installed, diffusers loads the folder's processor itself, unchanged."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from typing import Any

#: processor classes whose picture path is the PIL image processor plus the tokenizer
_IMAGE_ONLY = {"Qwen2VLProcessor", "Qwen2_5_VLProcessor"}


def _processor_class(folder: Path) -> str:
    try:
        index = json.loads((folder / "model_index.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return ""
    spec = index.get("processor")
    return spec[1] if isinstance(spec, list) and len(spec) == 2 and spec[0] == "transformers" \
        else ""


def processor_kwargs(folder: Path) -> dict[str, Any]:
    """``{"processor": …}`` for a folder whose Qwen2-VL processor cannot be built the usual way
    (torchvision not installed); ``{}`` otherwise, and diffusers loads it as it always does."""
    name = _processor_class(folder)
    if name not in _IMAGE_ONLY or importlib.util.find_spec("torchvision") is not None:
        return {}
    if not (folder / "processor").is_dir():
        return {}  # diffusers' own sentence names the missing folder
    return {"processor": image_only_processor(folder / "processor", name)}


def image_only_processor(folder: Path, name: str = "Qwen2VLProcessor") -> Any:
    """The folder's processor made of its PIL image processor and its tokenizer."""
    import transformers
    from transformers import AutoTokenizer, Qwen2VLImageProcessorPil

    base = getattr(transformers, name)

    class ImageOnly(base):  # type: ignore[misc, valid-type]
        """The processor without its video half (pictures only, which is all diffusers asks)."""

        @classmethod
        def get_attributes(cls) -> list[str]:
            return ["image_processor", "tokenizer"]

    ImageOnly.__name__ = ImageOnly.__qualname__ = f"{name}ImageOnly"
    return ImageOnly(image_processor=Qwen2VLImageProcessorPil.from_pretrained(str(folder)),
                     tokenizer=AutoTokenizer.from_pretrained(str(folder)))
