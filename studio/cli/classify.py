"""``studio classify IMAGE… [--model NAME]``: the top classes of images by an image classifier
exported from Train (``cnn``, ``distill``'s student, ``federated``'s global model), as Gallery's
"Classify with an exported model…" gives them.

``--model`` is a classifier's name in the library (``studio models list --kind classifier``) or
its folder; without it, the only exported classifier. Weights are read with safetensors only.
One line per image (``--json``: one JSON object per image). Exit status as every command
(:data:`studio.cli.EXIT_RULE`): 2 for a missing or unreadable image, an unknown or broken
classifier, or none exported yet."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

NAME = "classify"
HELP = "the top classes of images by an image classifier you trained and exported in Train"
HOW_TO_EXPORT = ("train cnn, distill or federated and export it: 'studio train distill --steps "
                 "600 --export NAME' (or in the window: Train → Runs → Export model to Gallery…)")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("images", nargs="+", metavar="IMAGE", help="images to classify")
    parser.add_argument("--model", default="", metavar="NAME",
                        help="the classifier: its name in the library or its folder (default: "
                             "the only one exported)")
    parser.add_argument("--top", type=int, default=3, metavar="K",
                        help="how many classes to print per image (default: 3)")
    parser.add_argument("--json", action="store_true",
                        help="one JSON object per image: image, model, top ([class, p] pairs)")


def _classifier(spec: str) -> Path:
    """The folder of the classifier ``spec`` names (or of the only one), or a usage error."""
    from studio.cli import UsageError
    from studio.core.config import default_paths, load_settings
    from studio.library.classifier_models import find_classifiers, is_classifier_folder

    models_dir = load_settings().settings.resolved_paths(default_paths()).models_dir
    found = find_classifiers(models_dir)
    if spec:
        path = Path(spec).expanduser()
        if path.is_dir() and is_classifier_folder(path):
            return path
        named = [f for f in found if f.name == spec]
        if named:
            return named[0]
        known = f"the exported ones are: {', '.join(f.name for f in found)}" if found else \
            f"none is exported yet: {HOW_TO_EXPORT}"
        raise UsageError(f"No image classifier called {spec!r}; {known}.")
    if not found:
        raise UsageError(f"No image classifier yet: {HOW_TO_EXPORT}.")
    if len(found) > 1:
        raise UsageError(f"{len(found)} image classifiers are exported; choose one with --model "
                         f"({', '.join(f.name for f in found)}).")
    return found[0]


def run(args: argparse.Namespace) -> int:
    from studio.cli import UsageError
    from studio.core.jobs import UserFacingError
    from studio.pipelines.train.classify import classify_with_model

    if args.top < 1:
        raise UsageError("--top must be at least 1.")
    folder = _classifier(args.model)
    for image in args.images:
        path = Path(image).expanduser()
        if not path.is_file():
            raise UsageError(f"{path} does not exist or is not a file; give the path of an image.")
        try:
            answer = classify_with_model(path, folder, args.top)
        except UserFacingError as exc:
            raise UsageError(str(exc)) from None
        if args.json:
            row: dict[str, Any] = {"image": str(path), "model": answer.model,
                                   "top": [[name, round(p, 6)] for name, p in answer.top]}
            print(json.dumps(row, ensure_ascii=False), flush=True)
        else:
            print(f"{path.name}: {answer.sentence()}", flush=True)
    sys.stdout.flush()
    return 0
