"""Automatic captions for a LoRA's images: BLIP (``transformers``) from the Hugging Face cache.

Offered only when a BLIP captioning model is already in the cache (nothing is downloaded); the
page shows :data:`DOWNLOAD_LINE` otherwise. Captions go where kohya reads them, a ``.txt``
beside each image (:func:`studio.pipelines.train.lora_sd.write_caption`), and only for images
that have none: a caption someone wrote is never replaced. Runs in the training process (the
lesson captions while it is built), never in the window. No Qt here.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

#: BLIP captioners Studio uses from the cache, best first
CAPTIONERS = ("Salesforce/blip-image-captioning-large", "Salesforce/blip-image-captioning-base")
DOWNLOAD_LINE = "hf download Salesforce/blip-image-captioning-base"
NEEDS = ("Automatic captions needs BLIP, a captioning model, in the Hugging Face cache; "
         f"download it with: {DOWNLOAD_LINE}")
MAX_TOKENS = 40


def find_captioner() -> Path | None:
    """The snapshot folder of a cached BLIP captioner (:data:`CAPTIONERS`), or None."""
    from studio.library.hf_cache import hf_cache_repos, hf_main_snapshot

    found = {repo.repo_id: repo for repo in hf_cache_repos()}
    for repo_id in CAPTIONERS:
        if repo_id in found:
            snap = hf_main_snapshot(found[repo_id])
            if snap is not None and (snap / "config.json").is_file():
                return snap
    return None


def caption_missing(images: Iterable[Path], model_dir: Path | None = None) -> list[Path]:
    """Write a BLIP caption beside each of ``images`` that has no ``.txt`` (or an empty one);
    returns the sidecars written. Refused with :data:`NEEDS` when no captioner is cached."""
    import torch
    from PIL import Image, ImageOps
    from transformers import BlipForConditionalGeneration, BlipProcessor

    from studio.core.jobs import UserFacingError
    from studio.pipelines.train.lora_sd import read_caption, write_caption

    todo = [Path(p) for p in images if not read_caption(Path(p))]
    if not todo:
        return []
    folder = model_dir or find_captioner()
    if folder is None:
        raise UserFacingError(NEEDS)
    try:
        processor = BlipProcessor.from_pretrained(str(folder), local_files_only=True)
        model = BlipForConditionalGeneration.from_pretrained(str(folder), local_files_only=True)
    except (OSError, ValueError) as exc:
        raise UserFacingError(f"The captioning model in {folder} cannot be loaded "
                              f"({str(exc).splitlines()[0][:200]}); download it again with: "
                              f"{DOWNLOAD_LINE}") from None
    model.eval()
    written = []
    for path in todo:
        with Image.open(path) as opened:
            image = ImageOps.exif_transpose(opened).convert("RGB")
        inputs = processor(images=image, return_tensors="pt")
        with torch.no_grad():
            ids = model.generate(**inputs, max_new_tokens=MAX_TOKENS, do_sample=False)
        text = processor.decode(ids[0], skip_special_tokens=True).strip()
        if text:
            written.append(write_caption(path, text))
    return written
