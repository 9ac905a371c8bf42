"""Automatic captions for a LoRA's images: Florence-2 or BLIP (``transformers``) from the Hugging
Face cache.

Offered only when a captioning model is already in the cache (nothing is downloaded); the page
shows the download lines otherwise. Florence-2 is used only where transformers has it natively
(``Florence2ForConditionalGeneration``, the ``florence-community`` checkpoints — never the remote
code of the original repos); BLIP otherwise. Captions go where kohya reads them, a ``.txt``
beside each image (:func:`studio.pipelines.train.lora_data.write_caption`), and only for images
that have none: a caption someone wrote is never replaced. Runs in the training process (the
lesson captions while it is built), never in the window. No Qt here.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

#: Florence-2 checkpoints in transformers' own format, best first (used when transformers has it)
FLORENCE = ("florence-community/Florence-2-large", "florence-community/Florence-2-base")
#: BLIP captioners Studio uses from the cache, best first
CAPTIONERS = ("Salesforce/blip-image-captioning-large", "Salesforce/blip-image-captioning-base")
DOWNLOAD_LINE = "hf download Salesforce/blip-image-captioning-base"
FLORENCE_LINE = "hf download florence-community/Florence-2-base"
MAX_TOKENS = 40
FLORENCE_TASK = "<CAPTION>"


def florence_native() -> bool:
    """Whether this transformers has Florence-2 itself (no remote code needed)."""
    import transformers

    return hasattr(transformers, "Florence2ForConditionalGeneration")


def download_lines() -> list[str]:
    return ([FLORENCE_LINE] if florence_native() else []) + [DOWNLOAD_LINE]


def needs_text() -> str:
    """Why automatic captions are not offered, with the download line(s)."""
    lines = download_lines()
    if len(lines) == 1:
        return ("Automatic captions needs BLIP, a captioning model, in the Hugging Face cache; "
                f"download it with: {lines[0]}")
    return ("Automatic captions needs Florence-2 or BLIP, captioning models, in the Hugging Face "
            f"cache; download one with: {lines[0]} (or {lines[1]})")


def find_captioner() -> Path | None:
    """The snapshot folder of a cached captioner (Florence-2 where transformers has it, else
    BLIP; best first), or None."""
    from studio.library.hf_cache import first_cached_model

    return first_cached_model((FLORENCE if florence_native() else ()) + CAPTIONERS)


def captioner_name(folder: Path) -> str:
    """"Florence-2" or "BLIP": the kind of captioner in ``folder`` (its config's model type)."""
    import json

    try:
        kind = json.loads((Path(folder) / "config.json").read_text(encoding="utf-8")).get(
            "model_type")
    except (OSError, ValueError):
        kind = ""
    return "Florence-2" if kind == "florence2" else "BLIP"


def _load(folder: Path):
    """(kind, processor, model) of the captioner in ``folder``, local files only."""
    from transformers import AutoProcessor, BlipForConditionalGeneration, BlipProcessor

    if captioner_name(folder) == "Florence-2":
        from transformers import Florence2ForConditionalGeneration

        return ("Florence-2", AutoProcessor.from_pretrained(str(folder), local_files_only=True),
                Florence2ForConditionalGeneration.from_pretrained(str(folder),
                                                                  local_files_only=True))
    return ("BLIP", BlipProcessor.from_pretrained(str(folder), local_files_only=True),
            BlipForConditionalGeneration.from_pretrained(str(folder), local_files_only=True))


def caption_missing(images: Iterable[Path], model_dir: Path | None = None) -> list[Path]:
    """Write a caption beside each of ``images`` that has no ``.txt`` (or an empty one);
    returns the sidecars written. Refused with :func:`needs_text` when no captioner is
    cached."""
    import torch
    from PIL import Image, ImageOps

    from studio.core.jobs import UserFacingError
    from studio.pipelines.train.lora_data import read_caption, write_caption

    todo = [Path(p) for p in images if not read_caption(Path(p))]
    if not todo:
        return []
    folder = model_dir or find_captioner()
    if folder is None:
        raise UserFacingError(needs_text())
    try:
        kind, processor, model = _load(folder)
    except (OSError, ValueError, ImportError) as exc:
        raise UserFacingError(f"The captioning model in {folder} cannot be loaded "
                              f"({str(exc).splitlines()[0][:200]}); download it again with: "
                              f"{' or '.join(download_lines())}") from None
    model.eval()
    written = []
    for path in todo:
        with Image.open(path) as opened:
            image = ImageOps.exif_transpose(opened).convert("RGB")
        if kind == "Florence-2":
            inputs = processor(text=FLORENCE_TASK, images=image, return_tensors="pt")
        else:
            inputs = processor(images=image, return_tensors="pt")
        with torch.no_grad():
            ids = model.generate(**inputs, max_new_tokens=MAX_TOKENS, do_sample=False,
                                 num_beams=1)
        text = processor.batch_decode(ids, skip_special_tokens=True)[0].strip()
        if text:
            written.append(write_caption(path, text))
    return written
