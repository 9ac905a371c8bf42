"""A LoRA's training pictures (issue #18): a folder of images with kohya-style ``.txt`` sidecar
captions (``cat.png`` + ``cat.txt``) and an optional trigger word put before every caption,
sorted into aspect-ratio buckets (multiples of 64 px with about ``resolution``² pixels); bad
files are counted and said, not fatal. Pixels are loaded as the trainer needs them.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from studio.core.jobs import UserFacingError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp")


@dataclass
class Example:
    path: Path
    caption: str
    bucket: tuple[int, int]  # (width, height)
    image: Any = None  # a PIL image held in memory (a set that ships with Studio), else None
    size: tuple[int, int] | None = None  # the picture's own (width, height); None: the bucket

    def time_ids(self) -> list[int]:
        """SDXL's micro-conditioning as ``load_pixels`` cuts the picture: original (h, w), the
        top-left corner of the centred crop, the target (h, w) — what diffusers' SDXL
        training script passes as ``add_time_ids``."""
        width, height = self.size or self.bucket
        bw, bh = self.bucket
        scale = max(bw / width, bh / height)
        top = int(round((height * scale - bh) / 2))
        left = int(round((width * scale - bw) / 2))
        return [height, width, top, left, bh, bw]


@dataclass
class Dataset:
    examples: list[Example]
    skipped: dict[str, int]  # reason -> count
    warnings: list[str]

    def tag_frequency(self) -> dict[str, int]:
        tags: Counter[str] = Counter()
        for ex in self.examples:
            tags.update(t.strip() for t in ex.caption.split(",") if t.strip())
        return dict(tags)


def buckets(resolution: int) -> list[tuple[int, int]]:
    """kohya's bucket idea: sides multiple of 64, area at most resolution², aspect ≤ 2:1."""
    area = resolution * resolution
    out = set()
    for width in range(max(64, (resolution // 2) // 64 * 64), resolution * 2 + 1, 64):
        height = min(resolution * 2, area // width // 64 * 64)
        if height >= 64 and max(width, height) <= 2 * min(width, height):
            out.add((width, height))
            out.add((height, width))
    return sorted(out)


def bucket_for(size: tuple[int, int], choices: list[tuple[int, int]]) -> tuple[int, int]:
    aspect = math.log(size[0] / size[1])
    return min(choices, key=lambda b: (abs(math.log(b[0] / b[1]) - aspect), -b[0] * b[1]))


def read_caption(image: Path) -> str | None:
    """The caption of ``image`` as kohya reads it: the ``.txt`` beside it, stripped."""
    sidecar = image.with_suffix(".txt")
    try:
        return sidecar.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError):
        return None


def write_caption(image: Path, text: str) -> Path:
    """Save ``text`` as the kohya sidecar of ``image`` (``cat.png`` → ``cat.txt``), atomically;
    a failed write says why in words."""
    from studio.core.files import atomic_write_text
    from studio.core.wording import write_failure

    sidecar = Path(image).with_suffix(".txt")
    try:
        atomic_write_text(sidecar, " ".join(str(text).split()) + "\n")
    except OSError as exc:
        raise UserFacingError(write_failure(exc, f"the caption {sidecar.name}", sidecar.parent)) from exc
    return sidecar


def caption_with_trigger(caption: str, trigger: str) -> str:
    """``trigger, caption`` (kohya's sidecars often start with the trigger already: kept once)."""
    word = trigger.strip()
    if word and caption.split(",")[0].strip() == word:
        word = ""
    return ", ".join(p for p in (word, caption) if p)


def scan_folder(folder: Path, trigger: str, resolution: int) -> Dataset:
    """The images of ``folder`` with their captions; bad files are counted, not fatal."""
    from PIL import Image, UnidentifiedImageError

    folder = Path(folder)
    if not folder.is_dir():
        raise UserFacingError(f"The training folder {folder} does not exist or is not a folder; "
                              "pick a folder of images.")
    choices = buckets(resolution)
    examples: list[Example] = []
    skipped: Counter[str] = Counter()
    uncaptioned = 0
    for path in sorted(folder.iterdir()):
        if path.suffix.lower() not in IMAGE_SUFFIXES or not path.is_file():
            continue
        try:
            with Image.open(path) as img:
                img.verify()
            with Image.open(path) as img:
                size = img.size
        except (OSError, UnidentifiedImageError, ValueError, SyntaxError):
            skipped["unreadable image"] += 1
            continue
        caption = read_caption(path)
        if not caption:
            uncaptioned += 1
            caption = ""
        examples.append(Example(path, caption_with_trigger(caption, trigger),
                                bucket_for(size, choices), size=size))
    warnings = []
    if skipped:
        warnings.append(f"Skipped {skipped['unreadable image']} file(s) that are not readable "
                        "images.")
    if not examples:
        raise UserFacingError(
            f"{folder} has no readable images ({', '.join(IMAGE_SUFFIXES)})"
            + (f"; {skipped['unreadable image']} file(s) could not be read as images" if skipped
               else "") + ". Put 10–50 pictures (with .txt captions) in it and try again.")
    if uncaptioned:
        warnings.append(
            f"{uncaptioned} of {len(examples)} image(s) have no .txt caption"
            + (f"; they are trained with the trigger word '{trigger.strip()}' alone."
               if trigger.strip() else
               " and there is no trigger word; they are trained with an empty prompt. Add "
               "captions or a trigger word so the LoRA can be called up."))
    return Dataset(examples, dict(skipped), warnings)


def load_pixels(example: Example):
    import numpy as np
    import torch
    from PIL import Image, ImageOps

    if example.image is not None:
        img = ImageOps.fit(example.image.convert("RGB"), example.bucket, Image.Resampling.LANCZOS)
    else:
        with Image.open(example.path) as img:
            img = ImageOps.exif_transpose(img).convert("RGB")
            img = ImageOps.fit(img, example.bucket, Image.Resampling.LANCZOS)
    array = np.asarray(img, dtype=np.float32) / 127.5 - 1.0
    return torch.from_numpy(array).permute(2, 0, 1)
