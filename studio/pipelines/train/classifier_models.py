"""The image classifiers the lessons train, described by plain data so they can be rebuilt
anywhere: ``cnn``'s :class:`~studio.pipelines.train.cnn.SmallCNN` and the small MLP of
``distill``'s students and ``federated``'s clients; written into and read back from the library's
``classifier`` folders (:mod:`studio.library.classifier_models`, safetensors only).

A classifier's *spec* is a JSON-able dict: ``architecture`` ("small-cnn" or "mlp"), ``channels``,
``image_size``, its width (``width`` for the CNN, ``hidden`` for the MLP) and ``classes`` (the
class names, in output order). :func:`build` makes the module from a spec; the weights come from a
state dict (safetensors when exported). No Qt here; torch is imported with the module.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from studio.core.jobs import UserFacingError
from studio.pipelines.train import torch_lessons as tl

ARCHITECTURES = ("small-cnn", "mlp")


class MLPClassifier(nn.Module):
    """Pixels (centred on 0) → ``hidden`` ReLU units → class scores: the small model of the
    distillation students and the federated clients."""

    def __init__(self, n_in: int, hidden: int, n_classes: int,
                 generator: torch.Generator) -> None:
        super().__init__()
        self.net = tl.mlp([n_in, hidden, n_classes], generator)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x.flatten(1) - 0.5)


def spec(architecture: str, channels: int, image_size: int, classes: list[str],
         width: int) -> dict[str, Any]:
    """A classifier's spec (``width``: the CNN's first-layer filters, or the MLP's hidden
    units)."""
    if architecture not in ARCHITECTURES:
        raise ValueError(f"unknown classifier architecture {architecture!r}")
    size_key = "width" if architecture == "small-cnn" else "hidden"
    return {"architecture": architecture, "channels": int(channels),
            "image_size": int(image_size), size_key: int(width),
            "classes": [str(c) for c in classes]}


def build(config: dict[str, Any], generator: torch.Generator | None = None) -> nn.Module:
    """The module a spec describes (random weights from ``generator``, or a fixed seed)."""
    g = generator if generator is not None else torch.Generator().manual_seed(0)
    arch = config.get("architecture")
    channels, size = int(config["channels"]), int(config["image_size"])
    n_classes = len(config["classes"])
    if arch == "small-cnn":
        from studio.pipelines.train.cnn import SmallCNN

        return SmallCNN(channels, int(config["width"]), n_classes, g)
    if arch == "mlp":
        return MLPClassifier(channels * size * size, int(config["hidden"]), n_classes, g)
    raise ValueError(f"unknown classifier architecture {arch!r}")


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


#: lesson → (the checkpoint's tensors to export, the config key of the model's width, the
#: architecture): what ``export_run`` needs to rebuild a classifier from a saved run alone
FROM_CHECKPOINT = {"cnn": ("model", "width", "small-cnn"),
                   "distill": ("student", "student_hidden", "mlp"),
                   "federated": ("model", "hidden", "mlp")}


def checkpoint_classifier(lesson: str, state: dict[str, Any], config: dict[str, Any]
                          ) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """(spec, weights) of the classifier a saved run of ``lesson`` holds."""
    key, width_key, arch = FROM_CHECKPOINT[lesson]
    classes = [str(c) for c in state.get("classes", [])]
    if not classes or "channels" not in state:
        raise UserFacingError(f"This {lesson} run is from an older Studio and does not name its "
                              "classes; train the lesson again and export that run.")
    return (spec(arch, int(state["channels"]), int(config["image_size"]), classes,
                 int(config[width_key])), state[key])


def write_classifier(folder: Path, config: dict[str, Any], weights: dict[str, torch.Tensor],
                     lesson: str, steps: int, dataset: str) -> list[Path]:
    """The library's classifier folder: ``model.safetensors`` and ``config.json`` (the spec,
    and the lesson, steps and data set it came from)."""
    from studio.library.classifier_models import write_classifier_folder

    build(config).load_state_dict(weights)  # the spec and the weights agree, or nothing is written
    return write_classifier_folder(folder, weights, {**config, "lesson": lesson,
                                                     "trained_steps": int(steps),
                                                     "dataset": dataset})


def load_classifier(folder: Path) -> tuple[nn.Module, dict[str, Any]]:
    """The classifier in a library folder, in eval mode, and its config. Weights are read with
    safetensors only; weights that do not fit the config are a sentence."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    from studio.library.classifier_models import WEIGHTS_FILE, read_classifier_info

    folder = Path(folder)
    info = read_classifier_info(folder)
    model = build(info)
    try:
        model.load_state_dict(load_file(str(folder / WEIGHTS_FILE)))
    except (SafetensorError, RuntimeError, OSError) as exc:
        raise UserFacingError(f"The weights of {folder.name} do not fit its config.json "
                              f"({str(exc).splitlines()[0][:200]}): export the model from its "
                              "Train run again.") from exc
    return model.eval(), info
