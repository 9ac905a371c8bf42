"""``studio params IMAGE``: what an image says about how it was made.

Reads the file with :func:`studio.media.metadata.read_image_metadata`, the reader the Gallery and
"reuse parameters" use, so the three always agree. Studio, AUTOMATIC1111 / Forge, ComfyUI,
InvokeAI, Fooocus, SwarmUI, NovelAI and Draw Things images are understood. No torch.

Exit status as every command (:data:`studio.cli.EXIT_RULE`): 0 (also for an image without
parameters: ``source: none``), 2 when the file is missing or is not a PNG, JPEG or WebP image."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

NAME = "params"
HELP = "print the generation parameters stored in an image (Studio, A1111, ComfyUI, Fooocus…)"

#: The fields always printed, in this order; everything else found follows.
FIELDS = ("source", "prompt", "negative_prompt", "steps", "cfg", "seed", "width", "height",
          "sampler", "scheduler", "model", "loras")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("image", metavar="IMAGE", help="a PNG, JPEG or WebP file")
    parser.add_argument("--json", action="store_true",
                        help="print one JSON object (missing values are null; 'other' holds the "
                             "rest, 'notes' what to know before reusing)")


def collect(path: Path) -> dict[str, Any]:
    """The fields of :data:`FIELDS`, then ``other`` (every other parameter) and ``notes``."""
    from studio.media.metadata import read_image_metadata

    meta = read_image_metadata(path)
    out: dict[str, Any] = {"source": meta.source, "prompt": meta.prompt,
                           "negative_prompt": meta.negative_prompt}
    for key in FIELDS[3:]:
        out[key] = meta.params.get(key)
    out["other"] = {k: v for k, v in meta.params.items() if k not in FIELDS}
    out["notes"] = list(meta.notes)
    return out


def _check(path: Path) -> None:
    from studio.cli import UsageError
    from studio.media.image_text import PNG_SIGNATURE

    if not path.is_file():
        raise UsageError(f"{path} does not exist or is not a file; give the path of an image.")
    try:
        with open(path, "rb") as fh:
            magic = fh.read(12)
    except OSError as exc:
        raise UsageError(f"Cannot read {path}: {exc.strerror or exc}.") from exc
    if not (magic.startswith(PNG_SIGNATURE) or magic[:3] == b"\xff\xd8\xff"
            or (magic[:4] == b"RIFF" and magic[8:12] == b"WEBP")):
        raise UsageError(f"{path} is not a PNG, JPEG or WebP image.")


def run(args: argparse.Namespace) -> int:
    from studio.media.metadata import describe_value

    path = Path(args.image).expanduser()
    _check(path)
    info = collect(path)
    if args.json:
        print(json.dumps(info, indent=2, ensure_ascii=False, default=str))
        return 0
    for key in FIELDS:
        value = info[key]
        if value is None or value == "" or value == []:
            continue
        text = describe_value(value)
        print(f"{key}: {text}" if "\n" not in text else f"{key}:\n  " + text.replace("\n", "\n  "))
    for key, value in info["other"].items():
        print(f"{key}: {describe_value(value)}")
    for note in info["notes"]:
        print(f"note: {note}")
    if info["source"] == "none":
        print("This image holds no generation parameters that Studio can read.")
    return 0
