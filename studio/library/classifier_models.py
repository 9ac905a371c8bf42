"""Image classifiers trained in Studio (the ``cnn``, ``distill`` and ``federated`` lessons'
export): a folder in the library.

``<models>/classifier/<name>/`` holds ``model.safetensors`` (the weights) and ``config.json``:
``"studio_model": "classifier"``, the architecture and its shape (``architecture`` "small-cnn" or
"mlp", ``width`` or ``hidden``, ``channels``, ``image_size``), the ``classes`` in output order,
and where it came from (lesson, steps, data set). A folder is recognised by its ``config.json``
alone and only JSON is read here; the weights are loaded with safetensors (no pickle) by
:mod:`studio.pipelines.train.classify`. Gallery's image menu classifies with it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from studio.core.files import atomic_write_text
from studio.core.jobs import UserFacingError
from studio.core.wording import count_of, square_image

SUBFOLDER = "classifier"  # under the models folder
INFO_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
MARK = "classifier"  # config.json's "studio_model" (a transformers folder has a config.json too)
ARCHITECTURES = {"small-cnn": "width", "mlp": "hidden"}  # architecture → its width key
ARCHITECTURE_NAMES = {"small-cnn": "small CNN", "mlp": "MLP"}
MAX_CLASSES = 10_000
MAX_IMAGE_SIZE = 1024


def is_classifier_folder(path: Path) -> bool:
    """A folder with a ``config.json`` that says it is a Studio classifier (cheap: one small
    JSON file; anything unreadable is not one)."""
    info = Path(path) / INFO_FILE
    try:
        if not info.is_file() or info.stat().st_size > 1_000_000:
            return False
        doc = json.loads(info.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(doc, dict) and doc.get("studio_model") == MARK


def read_classifier_info(folder: Path) -> dict[str, Any]:
    """``config.json`` of ``folder``, checked field by field: a broken or foreign one is a
    sentence that says what to do."""
    folder = Path(folder)
    again = "export the model from its Train run again"
    try:
        info = json.loads((folder / INFO_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise UserFacingError(f"{folder.name}/{INFO_FILE} cannot be read ({exc}): {again}.") from exc
    if not isinstance(info, dict) or info.get("studio_model") != MARK:
        raise UserFacingError(f"{folder.name} is not an image classifier trained in Studio.")
    arch = info.get("architecture")
    if arch not in ARCHITECTURES:
        raise UserFacingError(f"{folder.name}/{INFO_FILE} names no classifier Studio knows (it "
                              f"knows {', '.join(ARCHITECTURES)}): {again}.")
    shape = {"channels": (1, 3), "image_size": range(1, MAX_IMAGE_SIZE + 1),
             ARCHITECTURES[arch]: range(1, 100_000)}
    bad = [k for k, allowed in shape.items()
           if not isinstance(info.get(k), int) or info[k] not in allowed]
    classes = info.get("classes")
    if (not isinstance(classes, list) or not 2 <= len(classes) <= MAX_CLASSES
            or not all(isinstance(c, str) for c in classes)):
        bad.append("classes")
    if bad:
        raise UserFacingError(f"{folder.name}/{INFO_FILE} has no valid {', '.join(bad)}: "
                              f"{again}.")
    if not (folder / WEIGHTS_FILE).is_file():
        raise UserFacingError(f"{folder.name} has no {WEIGHTS_FILE}: {again}.")
    return info


def describe(info: dict[str, Any]) -> str:
    """"MLP, 16×16 grey, 10 classes, from the distill lesson" for the library's detail column."""
    lesson = info.get("lesson")
    source = f", from the {lesson} lesson" if isinstance(lesson, str) else ""
    return (f"{ARCHITECTURE_NAMES.get(info['architecture'], info['architecture'])}, "
            f"{square_image(info['image_size'], info.get('channels'))}, "
            f"{count_of(len(info['classes']), 'class', 'classes')}{source}")


def write_classifier_folder(folder: Path, state: dict[str, Any], info: dict[str, Any]
                            ) -> list[Path]:
    """Write ``state`` (tensors) and ``info`` (a classifier spec plus provenance) as a
    classifier folder; returns the two files."""
    from safetensors.torch import save_file

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in state.items()}, str(folder / WEIGHTS_FILE),
              metadata={"format": "pt"})
    atomic_write_text(folder / INFO_FILE,
                      json.dumps({"studio_model": MARK, **info}, indent=2) + "\n")
    return [folder / WEIGHTS_FILE, folder / INFO_FILE]


def find_classifiers(models_dir: Path) -> list[Path]:
    """The classifier folders under ``<models>/classifier/``, by name."""
    root = Path(models_dir) / SUBFOLDER
    try:
        children = sorted(root.iterdir(), key=lambda p: p.name.lower()) if root.is_dir() else []
    except OSError:
        return []
    return [c for c in children if not c.name.startswith(".") and is_classifier_folder(c)]
