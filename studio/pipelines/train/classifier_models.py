"""The image classifiers the lessons train, described by plain data so they can be rebuilt
anywhere: ``cnn``'s :class:`~studio.pipelines.train.cnn.SmallCNN`, the small MLP that ``distill``'s
students and ``federated``'s clients use, and the exported ``classifier`` folder both go through.

A classifier's *spec* is a JSON-able dict: ``architecture`` ("small-cnn" or "mlp"), ``channels``,
``image_size``, its width (``width`` for the CNN, ``hidden`` for the MLP) and ``classes`` (the
class names, in output order). :func:`build` makes the module from a spec; the weights come from a
state dict (safetensors when exported). No Qt here; torch is imported with the module.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

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
