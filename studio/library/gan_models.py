"""GAN generators trained in Studio (the ``dcgan`` lesson's export): a folder in the library.

``<models>/gan/<name>/`` holds ``generator.safetensors`` (the generator's weights, BatchNorm's
running statistics included) and ``gan.json``: the architecture and its shape (``latent_dim``,
``width``, ``channels``, ``image_size``) and where it came from (lesson, steps trained, seed,
data set). A folder is recognised by ``gan.json`` alone and only JSON is read here; the weights
are loaded by :mod:`studio.pipelines.gan` with safetensors (no pickle). Generate lists such a
folder as a model of kind "gan": a seed makes an image, no prompt.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from studio.core.files import atomic_write_text
from studio.core.jobs import UserFacingError
from studio.core.wording import count_of, square_image

INFO_FILE = "gan.json"
WEIGHTS_FILE = "generator.safetensors"
ARCHITECTURES = ("dcgan",)
GAN_NO_IMG2IMG = ("{name} is a GAN trained in Studio: it draws from a seed alone and cannot change "
                  "an image. Use it in Generate (studio generate --model {name} --seed 1).")
_SHAPE_KEYS = ("latent_dim", "width", "channels", "image_size")


def is_gan_folder(path: Path) -> bool:
    path = Path(path)
    return path.is_dir() and (path / INFO_FILE).is_file()


def read_gan_info(folder: Path) -> dict[str, Any]:
    """``gan.json`` of ``folder``, checked: a broken or foreign one is a sentence."""
    folder = Path(folder)
    try:
        info = json.loads((folder / INFO_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise UserFacingError(f"{folder.name}/{INFO_FILE} cannot be read ({exc}): export the "
                              "model from its Train run again.") from exc
    if not isinstance(info, dict) or info.get("architecture") not in ARCHITECTURES:
        raise UserFacingError(f"{folder.name}/{INFO_FILE} names no GAN Studio knows (it knows "
                              f"{', '.join(ARCHITECTURES)}).")
    bad = [k for k in _SHAPE_KEYS if not isinstance(info.get(k), int) or info[k] <= 0]
    if bad:
        raise UserFacingError(f"{folder.name}/{INFO_FILE} lacks {', '.join(bad)}: export the "
                              "model from its Train run again.")
    if not (folder / WEIGHTS_FILE).is_file():
        raise UserFacingError(f"{folder.name} has no {WEIGHTS_FILE}: export the model from its "
                              "Train run again.")
    return info


def describe(info: dict[str, Any]) -> str:
    """"DCGAN, 16×16 grey, 1,200 steps on digits" for the library's detail column."""
    steps = info.get("trained_steps")
    trained = f", {count_of(steps, 'step')} on {info.get('dataset', '?')}" if isinstance(steps, int) else ""
    shape = square_image(info["image_size"], info.get("channels"))
    return f"{str(info['architecture']).upper()}, {shape}{trained}"


def write_gan_folder(folder: Path, state: dict[str, Any], info: dict[str, Any]) -> list[Path]:
    """Write ``state`` (tensors) and ``info`` as a GAN folder; returns the two files."""
    from safetensors.torch import save_file

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    save_file(state, str(folder / WEIGHTS_FILE), metadata={"format": "pt"})
    atomic_write_text(folder / INFO_FILE, json.dumps(info, indent=2) + "\n")
    return [folder / WEIGHTS_FILE, folder / INFO_FILE]
