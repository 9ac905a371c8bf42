"""Use a trained classifier outside the Train workspace: the top classes of any image (Gallery's
"Classify").

:func:`classify_with_model` uses a classifier exported into the library (``cnn``, ``distill``'s
student or ``federated``'s global model: safetensors and a config.json,
:mod:`studio.library.classifier_models`). :func:`classify_image` uses the newest ``cnn`` run with a
checkpoint in the runs folder. Its checkpoint (Studio's
safetensors + JSON, never a pickle) holds the weights, the class names and the image size and
channels it was trained on, so classifying never reads the training data again. The image is read
as Studio reads any image (:func:`studio.media.images_in.open_image`), centre-cropped and resized
as the lesson prepared its training images. No Qt here; torch is imported when classifying.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from studio.core.jobs import UserFacingError
from studio.core.wording import count_of
from studio.pipelines.train.runs import Run, RunInfo, list_runs

LESSON = "cnn"


@dataclass(frozen=True)
class Classification:
    """The answer: ``top`` (class name, probability), best first, and which run said so."""

    top: list[tuple[str, float]]
    run_id: str
    step: int
    dataset: str
    model: str = ""  # the exported classifier's name (empty: the CNN of run ``run_id``)
    lesson: str = "cnn"

    def sentence(self) -> str:
        guesses = ", ".join(f"{name} {p:.0%}" for name, p in self.top)
        if self.model:
            return (f"{guesses} — the classifier {self.model} (the {self.lesson} lesson, "
                    f"{count_of(self.step, 'step')} on {self.dataset}).")
        return (f"{guesses} — the CNN of run {self.run_id} (step {self.step}, trained on "
                f"{self.dataset}).")


def latest_classifier(runs_dir: Path) -> RunInfo | None:
    """The newest CNN run that saved a checkpoint, or None."""
    return next((r for r in list_runs(runs_dir, LESSON) if r.has_checkpoint), None)


def classify_image(image_path: Path, runs_dir: Path, k: int = 3) -> Classification:
    """The top ``k`` classes of the image at ``image_path`` by the newest trained CNN."""
    import torch

    from studio.pipelines.train.cnn import SmallCNN
    from studio.pipelines.train.image_data import SOURCE_NAMES

    run = latest_classifier(runs_dir)
    if run is None:
        raise UserFacingError(
            "No trained CNN yet: open Train → CNN: classify images, train it a while (Play, "
            "then Pause saves the run), then classify again.")
    state, doc = Run(run.path).load_checkpoint()
    classes = [str(c) for c in state.get("classes", [])]
    if not classes:
        raise UserFacingError(f"The CNN run {run.run_id} is from an older Studio and does not "
                              "name its classes; train the CNN lesson again.")
    config = doc["config"]
    size, channels = int(config["image_size"]), int(state["channels"])
    model = SmallCNN(channels, int(config["width"]), len(classes), torch.Generator())
    model.load_state_dict(state["model"])
    probs = _probabilities(model, image_path, size, channels)
    top = torch.topk(probs, min(k, len(classes)))
    return Classification(
        top=[(classes[int(i)], float(p)) for p, i in zip(top.values, top.indices, strict=True)],
        run_id=run.run_id, step=int(state["step_count"]),
        dataset=SOURCE_NAMES.get(config["dataset"], config["dataset"]).lower())


def _probabilities(model: Any, image_path: Path, size: int, channels: int) -> Any:
    """The class probabilities of the image at ``image_path``, prepared as the lessons prepared
    their training images (centre-cropped, resized; grey for a grey model)."""
    import numpy as np
    import torch

    from studio.media.images_in import open_image
    from studio.pipelines.train.image_data import fit_square

    rgb = open_image(image_path).image
    x = fit_square(rgb if channels == 3 else rgb.convert("L").convert("RGB"), size)
    x = x[:1] if channels == 1 else x
    with torch.no_grad():
        return torch.softmax(model.eval()(torch.from_numpy(np.ascontiguousarray(x))[None]), 1)[0]


def classify_with_model(image_path: Path, folder: Path, k: int = 3) -> Classification:
    """The top ``k`` classes of the image at ``image_path`` by the exported classifier in
    ``folder``."""
    import torch

    from studio.pipelines.train.classifier_models import load_classifier
    from studio.pipelines.train.image_data import SOURCE_NAMES

    model, info = load_classifier(Path(folder))
    classes = info["classes"]
    probs = _probabilities(model, image_path, int(info["image_size"]), int(info["channels"]))
    top = torch.topk(probs, min(k, len(classes)))
    dataset = str(info.get("dataset", "?"))
    return Classification(
        top=[(classes[int(i)], float(p)) for p, i in zip(top.values, top.indices, strict=True)],
        run_id="", step=int(info.get("trained_steps", 0)),
        dataset=SOURCE_NAMES.get(dataset, dataset).lower(), model=Path(folder).name,
        lesson=str(info.get("lesson", "?")))
