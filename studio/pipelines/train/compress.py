"""What the lessons that make a model smaller share (``quantize``, ``prune``): the CNN lesson's
digits classifier, trained inside the lesson, then made smaller.

The first ``train_steps`` steps are the ``cnn`` lesson's own steps (its model, data, loop and
checkpoint state: :class:`studio.pipelines.train.cnn.CNNTrainer`); the steps after them are the
lesson's own work on the trained network. Raising ``train_steps`` mid-run trains on, and the
lesson starts its work over on the further-trained model.

Helpers here measure a model as the student sees it: its bytes (the tensors a quantized weight is
made of, counted as they are stored), its test accuracy, and its time per test batch (wall clock,
display only: never part of a step's metrics, which stay deterministic for a seed). No Qt here.
"""

from __future__ import annotations

import copy
import time
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from studio.pipelines.train.base import ParamSpec, Trainer
from studio.pipelines.train.cnn import CNNTrainer

TIMING_RUNS = 3  # forward passes per timing; the fastest counts (the others met a busy core)
PRUNABLE = ("conv1", "conv2", "fc")  # the CNN's layers with weights, input to output


def base_specs(train_steps: int) -> tuple[ParamSpec, ...]:
    """The knobs of the CNN trained first: how long, its learning rate and width."""
    return (
        ParamSpec("train_steps", train_steps, "int", minimum=10, maximum=20_000, live=True,
                  label="Training steps",
                  help="Steps the digits CNN trains before it is made smaller; raise it mid-run "
                       "to train on (the lesson then starts over on the new model)."),
        ParamSpec("lr", 3e-3, "float", minimum=1e-5, maximum=1.0, live=True,
                  label="Learning rate", log_scale=True,
                  help="Of the CNN's training (and, in pruning, of the fine-tuning)."),
        ParamSpec("width", 16, "int", minimum=4, maximum=64, label="Filters",
                  help="Filters in the CNN's first conv layer (the second has twice as many)."),
    )


def tensor_bytes(t: torch.Tensor) -> int:
    """Bytes a tensor holds as stored: a quantized tensor (a torchao tensor subclass) counts the
    plain tensors it is made of (integer values, scales, zero points)."""
    flatten = getattr(t, "__tensor_flatten__", None)
    if flatten is not None and type(t) is not torch.Tensor and type(t) is not nn.Parameter:
        names, _ = flatten()
        return sum(tensor_bytes(getattr(t, n)) for n in names)
    return t.numel() * t.element_size()


def model_bytes(model: nn.Module) -> int:
    """Bytes of a model's weights and buffers."""
    return (sum(tensor_bytes(p.data if isinstance(p, nn.Parameter) else p)
                for p in model.parameters())
            + sum(tensor_bytes(b) for b in model.buffers()))


@torch.no_grad()
def evaluate(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> tuple[float, float]:
    """(test loss, test accuracy) of ``model`` on ``x`` (cast to the model's dtype)."""
    model.eval()
    logits = model(x.to(first_dtype(model))).float()
    return float(F.cross_entropy(logits, y)), float((logits.argmax(1) == y).float().mean())


@torch.no_grad()
def time_forward(model: nn.Module, x: torch.Tensor) -> float:
    """Milliseconds of one forward pass over ``x`` (the fastest of a few)."""
    model.eval()
    x = x.to(first_dtype(model))
    best = float("inf")
    for _ in range(TIMING_RUNS):
        start = time.perf_counter()
        model(x)
        best = min(best, time.perf_counter() - start)
    return best * 1000.0


def first_dtype(model: nn.Module) -> torch.dtype:
    """The dtype inputs must have: the first floating weight's (a quantized weight reports the
    dtype it stands for)."""
    for p in model.parameters():
        if p.dtype.is_floating_point:
            return p.dtype
    return torch.float32


class CompressLesson(Trainer):
    """A lesson that trains the CNN lesson's digits classifier first, then makes it smaller.

    Subclasses implement :meth:`work_step` (one step of their own work on the trained network,
    returning its metrics), :meth:`restart` (start the work over: the model changed or a knob
    that needs it did) and add their state through :meth:`work_state` / :meth:`load_work_state`.
    """

    def __init__(self, config: dict[str, Any] | None = None, seed: int = 0,
                 step_count: int = 0) -> None:
        super().__init__(config=self.validate_config(config), seed=seed, step_count=step_count)
        cfg = self.config
        self.cnn = CNNTrainer({"dataset": "digits", "image_size": "16", "batch_size": 64,
                               "width": int(cfg["width"]), "lr": float(cfg["lr"])}, seed=seed)
        self.x_test, self.y_test = self.cnn._x_test, self.cnn._y_test
        self.last_loss = float("nan")
        self._worked_on = -1  # the CNN step the lesson's work is of (-1: not started)
        self._float_acc = (-1, 0.0)  # (CNN step, its test accuracy)
        self._cpu_net: tuple[int, Any] | None = None  # (CNN step, a CPU copy of a GPU's CNN)

    @property
    def net(self) -> Any:
        """The trained float32 CNN (a :class:`~studio.pipelines.train.cnn.SmallCNN`) on the CPU:
        where the CNN trained on a GPU, a CPU copy of it (the settings are measured on the CPU,
        and the test set lives there)."""
        model = self.cnn.net
        if next(model.parameters()).device.type == "cpu":
            return model
        if self._cpu_net is None or self._cpu_net[0] != self.cnn.step_count:
            self._cpu_net = (self.cnn.step_count, copy.deepcopy(model).float().cpu())
        return self._cpu_net[1]

    @property
    def training(self) -> bool:
        return self.cnn.step_count < int(self.config["train_steps"])

    def step(self, part: str | None = None) -> dict[str, float]:
        if self.training:
            metrics = self.cnn.step()
            self.step_count += 1
            self.last_loss = float(metrics["loss"])
            return {**metrics, "step": self.step_count}
        if self._worked_on != self.cnn.step_count:
            self._worked_on = self.cnn.step_count
            self.restart()
        self.step_count += 1
        return {"step": self.step_count, **self.work_step()}

    def on_param_changed(self, name: str) -> None:
        if name == "lr":
            self.cnn.set_param("lr", self.config["lr"])

    # -- the subclass's work ---------------------------------------------------------------------
    def restart(self) -> None:
        raise NotImplementedError

    def work_step(self) -> dict[str, float]:
        raise NotImplementedError

    def work_state(self) -> dict[str, Any]:
        return {}

    def load_work_state(self, state: dict[str, Any]) -> None:
        """Take back :meth:`work_state` (called after the CNN's state is back)."""

    # -- state -------------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {"config": dict(self.config), "seed": self.seed, "step_count": self.step_count,
                "cnn": self.cnn.state_dict(), "last_loss": self.last_loss,
                "worked_on": self._worked_on, "work": self.work_state()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.config = self.validate_config(state["config"])
        self.step_count = int(state["step_count"])
        self.cnn.load_state_dict(state["cnn"])
        self.last_loss = float(state["last_loss"])
        self._worked_on = int(state["worked_on"])
        if self._worked_on >= 0:
            self.load_work_state(state["work"])

    def base_snapshot(self) -> dict[str, Any]:
        """What both views show: the step, whether the CNN still trains, its test accuracy."""
        if self._float_acc[0] != self.cnn.step_count:
            self._float_acc = (self.cnn.step_count,
                               evaluate(self.net, self.x_test, self.y_test)[1])
        return {"step": self.step_count, "training": self.training,
                "cnn_step": self.cnn.step_count, "train_steps": int(self.config["train_steps"]),
                "float_acc": self._float_acc[1]}
