"""Use a trained CNN outside the Train workspace: the top classes of any image (Gallery's
"Classify").

The model is the newest ``cnn`` run with a checkpoint in the runs folder. Its checkpoint (Studio's
safetensors + JSON, never a pickle) holds the weights, the class names and the image size and
channels it was trained on, so classifying never reads the training data again. The image is read
as Studio reads any image (:func:`studio.media.images_in.open_image`), centre-cropped and resized
as the lesson prepared its training images. No Qt here; torch is imported when classifying.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from studio.core.jobs import UserFacingError
from studio.pipelines.train.runs import Run, RunInfo, list_runs

LESSON = "cnn"


@dataclass(frozen=True)
class Classification:
    """The answer: ``top`` (class name, probability), best first, and which run said so."""

    top: list[tuple[str, float]]
    run_id: str
    step: int
    dataset: str

    def sentence(self) -> str:
        guesses = ", ".join(f"{name} {p:.0%}" for name, p in self.top)
        return (f"{guesses} — the CNN of run {self.run_id} (step {self.step}, trained on "
                f"{self.dataset}).")


def latest_classifier(runs_dir: Path) -> RunInfo | None:
    """The newest CNN run that saved a checkpoint, or None."""
    return next((r for r in list_runs(runs_dir, LESSON) if r.has_checkpoint), None)


def classify_image(image_path: Path, runs_dir: Path, k: int = 3) -> Classification:
    """The top ``k`` classes of the image at ``image_path`` by the newest trained CNN."""
    import numpy as np
    import torch

    from studio.media.images_in import open_image
    from studio.pipelines.train.cnn import SmallCNN
    from studio.pipelines.train.image_data import SOURCE_NAMES, fit_square

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
    rgb = open_image(image_path).image
    x = fit_square(rgb if channels == 3 else rgb.convert("L").convert("RGB"), size)
    x = x[:1] if channels == 1 else x
    with torch.no_grad():
        probs = torch.softmax(model.eval()(torch.from_numpy(np.ascontiguousarray(x))[None]), 1)[0]
    top = torch.topk(probs, min(k, len(classes)))
    return Classification(
        top=[(classes[int(i)], float(p)) for p, i in zip(top.values, top.indices, strict=True)],
        run_id=run.run_id, step=int(state["step_count"]),
        dataset=SOURCE_NAMES.get(config["dataset"], config["dataset"]).lower())
