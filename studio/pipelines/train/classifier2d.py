"""Lesson 2, ``classifier-2d``: a small neural net learns to separate two classes of 2D points.

The user picks the data (moons, circles, spirals, XOR, gaussians), the depth, width and activation
of a multilayer perceptron (changing them starts over) and the optimizer and learning rate (live).
Each step trains on one minibatch; the metrics are the loss and accuracy on the whole training set
and on the held-out test set, so over-fitting shows as the two curves parting. ``loss`` is the
training-set cross-entropy after the step.

No Qt here; torch is imported when the module is (the registry imports lessons lazily).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from torch import nn

from studio.pipelines.train.base import (
    InvalidParameter,
    LessonInfo,
    ParamSpec,
    Trainer,
    TrainingDiverged,
)
from studio.pipelines.train.datasets2d import (
    CLASSIFICATION_DATASETS,
    CLASSIFICATION_NAMES,
    EXTENT,
    classification_2d,
    train_test_split,
)
from studio.pipelines.train.registry import lesson_text

ACTIVATIONS = {"relu": nn.ReLU, "tanh": nn.Tanh, "sigmoid": nn.Sigmoid, "gelu": nn.GELU,
               "leaky-relu": nn.LeakyReLU}
ACTIVATION_NAMES = {"relu": "ReLU", "tanh": "tanh", "sigmoid": "Sigmoid", "gelu": "GELU",
                    "leaky-relu": "Leaky ReLU"}
OPTIMIZER_CHOICES = ("adam", "sgd", "momentum", "rmsprop")
OPTIMIZER_NAMES = {"adam": "Adam", "sgd": "SGD", "momentum": "SGD with momentum",
                   "rmsprop": "RMSProp"}
GRID = 72  # decision-boundary heatmap resolution per axis
#: Cross-entropy of two classes starts near ln 2; a loss this large means the weights blew up.
EXPLODED_LOSS = 50.0

EXPLANATION = """\
**What you are seeing.** Coloured dots are the data: two classes, ● training points and ○ held-out
test points. The background is the network's answer everywhere on the plane: the deeper the
colour, the surer it is; the boundary between the colours is where it is 50/50.

**What to try.**
- *Two moons* and *Two Gaussian blobs* are easy: one hidden layer learns them in a few hundred
  steps.
- *Two spirals* needs more: try 3 layers of 32 with tanh or ReLU and watch the boundary curl.
- Set the width to 2 and see what a too-small network can't do.
- Raise the learning rate until the loss jumps about; switch to SGD and compare.
- Few points and many layers: the test loss stops falling while the training loss keeps going.

**What is normal.** Moons reach > 95% test accuracy within ~300 steps with the defaults.
Spirals take a few thousand steps. The training and test curves should stay close.
"""


def _build_mlp(layers: int, width: int, activation: str) -> nn.Sequential:
    act = ACTIVATIONS[activation]
    mods: list[nn.Module] = []
    fan_in = 2
    for _ in range(layers):
        mods += [nn.Linear(fan_in, width), act()]
        fan_in = width
    mods.append(nn.Linear(fan_in, 1))  # one logit: P(class 1) = sigmoid(logit)
    return nn.Sequential(*mods)


class Classifier2D(Trainer):
    """A multilayer perceptron learning a two-class 2D data set, boundary drawn live."""

    info = LessonInfo(
        **lesson_text("classifier-2d"),
        explanation=EXPLANATION,
        main_loss="training-set cross-entropy",
        series=("loss", "test_loss"),
        series_labels={"loss": "Train loss", "test_loss": "Test loss"},
        log_every=1,
    )
    params = (
        ParamSpec("dataset", "moons", kind="choice", choices=CLASSIFICATION_DATASETS,
                  choice_labels=CLASSIFICATION_NAMES,
                  label="Data", help="The two-class data set (changing it starts over)."),
        ParamSpec("points", 400, kind="int", minimum=20, maximum=5000, label="Points",
                  help="How many points, training and test together."),
        ParamSpec("noise", 0.15, minimum=0.0, maximum=1.0, label="Data noise",
                  help="How much the points scatter around their shape."),
        ParamSpec("test_fraction", 0.25, minimum=0.05, maximum=0.9, label="Test share",
                  help="The share of points held out to measure generalisation."),
        ParamSpec("layers", 2, kind="int", minimum=1, maximum=8, label="Hidden layers"),
        ParamSpec("width", 16, kind="int", minimum=1, maximum=256, label="Width",
                  help="Neurons per hidden layer."),
        ParamSpec("activation", "relu", kind="choice", choices=tuple(ACTIVATIONS),
                  choice_labels=ACTIVATION_NAMES,
                  label="Activation"),
        ParamSpec("optimizer", "adam", kind="choice", choices=OPTIMIZER_CHOICES, live=True,
                  choice_labels=OPTIMIZER_NAMES,
                  label="Optimizer", help="Switching keeps the weights, resets its memory."),
        ParamSpec("lr", 0.01, minimum=1e-6, maximum=1e4, live=True, log_scale=True,
                  label="Learning rate"),
        ParamSpec("batch_size", 32, kind="int", minimum=1, maximum=5000, live=True,
                  label="Batch size"),
        ParamSpec("weight_decay", 0.0, minimum=0.0, maximum=1.0, live=True,
                  label="Weight decay"),
    )

    def __init__(self, config: dict[str, Any] | None = None, seed: int = 0) -> None:
        super().__init__(config=self.validate_config(config), seed=seed)
        c = self.config
        data_rng = np.random.default_rng(int(seed))
        x, y = classification_2d(c["dataset"], c["points"], data_rng, noise=c["noise"])
        xtr, ytr, xte, yte = train_test_split(x, y, c["test_fraction"], data_rng)
        self._x_train, self._y_train = torch.from_numpy(xtr), torch.from_numpy(ytr).float()
        self._x_test, self._y_test = torch.from_numpy(xte), torch.from_numpy(yte).float()
        self._gen = torch.Generator().manual_seed(int(seed))
        # Weight init draws from the global RNG inside nn.Linear; fork it so nothing leaks out.
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(int(seed))
            self.model = _build_mlp(c["layers"], c["width"], c["activation"])
        self._opt = self._make_optimizer()
        self._order = torch.empty(0, dtype=torch.long)
        self._cursor = 0
        self._last: dict[str, float] = self._evaluate()
        gx = np.linspace(-EXTENT, EXTENT, GRID, dtype=np.float32)
        mesh = np.stack(np.meshgrid(gx, gx), axis=-1).reshape(-1, 2)
        self._grid_axis = gx
        self._grid_points = torch.from_numpy(mesh)

    def _make_optimizer(self) -> torch.optim.Optimizer:
        c, params = self.config, self.model.parameters()
        name, lr, wd = c["optimizer"], c["lr"], c["weight_decay"]
        if name == "adam":
            return torch.optim.Adam(params, lr=lr, weight_decay=wd)
        if name == "sgd":
            return torch.optim.SGD(params, lr=lr, weight_decay=wd)
        if name == "momentum":
            return torch.optim.SGD(params, lr=lr, momentum=0.9, weight_decay=wd)
        return torch.optim.RMSprop(params, lr=lr, weight_decay=wd)

    def on_param_changed(self, name: str) -> None:
        if name == "optimizer":
            self._opt = self._make_optimizer()
            return
        for group in self._opt.param_groups:
            group["lr"] = self.config["lr"]
            group["weight_decay"] = self.config["weight_decay"]

    # -- training ---------------------------------------------------------------------------
    def _next_batch(self) -> torch.Tensor:
        """Indices of the next minibatch: epochs of seeded shuffles, so every point is seen."""
        n = len(self._x_train)
        size = min(self.config["batch_size"], n)
        if self._cursor + size > len(self._order):
            self._order = torch.randperm(n, generator=self._gen)
            self._cursor = 0
        idx = self._order[self._cursor:self._cursor + size]
        self._cursor += size
        return idx

    @torch.no_grad()
    def _evaluate(self) -> dict[str, float]:
        out: dict[str, float] = {}
        for split, x, y in (("", self._x_train, self._y_train),
                            ("test_", self._x_test, self._y_test)):
            logits = self.model(x).squeeze(1)
            out[f"{split}loss"] = float(nn.functional.binary_cross_entropy_with_logits(logits, y))
            out[f"{split}accuracy"] = float(((logits > 0).float() == y).float().mean())
        out["train_accuracy"] = out.pop("accuracy")
        return out

    def step(self, part: str | None = None) -> dict[str, float]:
        if part is not None:
            raise InvalidParameter("The classifier has no separate step parts.")
        step = self.step_count + 1
        idx = self._next_batch()
        self.model.train()
        self._opt.zero_grad(set_to_none=True)
        logits = self.model(self._x_train[idx]).squeeze(1)
        batch_loss = nn.functional.binary_cross_entropy_with_logits(logits, self._y_train[idx])
        batch_loss.backward()
        self._opt.step()
        self.step_count = step
        metrics = self._evaluate()
        loss = metrics["loss"]
        if not math.isfinite(loss):
            raise TrainingDiverged(f"loss became {loss} at step {step} — try a lower learning "
                                   "rate.")
        if loss > EXPLODED_LOSS:
            raise TrainingDiverged(f"loss exploded to {loss:.3g} at step {step} — try a lower "
                                   "learning rate.")
        self._last = metrics
        return {"step": step, **metrics}

    # -- drawing ----------------------------------------------------------------------------
    @torch.no_grad()
    def snapshot(self) -> dict[str, Any]:
        """``grid`` (axis, probs GRID×GRID of class 1, row = y), ``train``/``test`` (x, y) arrays
        and the latest ``metrics``."""
        probs = torch.sigmoid(self.model(self._grid_points)).reshape(GRID, GRID).numpy()
        return {
            "step": self.step_count,
            "grid": {"axis": self._grid_axis, "probs": probs, "extent": EXTENT},
            "train": (self._x_train.numpy(), self._y_train.numpy()),
            "test": (self._x_test.numpy(), self._y_test.numpy()),
            "metrics": dict(self._last),
        }

    # -- state ------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {
            "step_count": self.step_count,
            "model": {k: v.clone() for k, v in self.model.state_dict().items()},
            "optimizer": self._opt.state_dict(),
            "generator": self._gen.get_state(),
            "order": self._order.clone(),
            "cursor": self._cursor,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.step_count = int(state["step_count"])
        self.model.load_state_dict(state["model"])
        self._opt = self._make_optimizer()
        self._opt.load_state_dict(state["optimizer"])
        self.on_param_changed("lr")
        self._gen.set_state(state["generator"])
        self._order = state["order"].clone()
        self._cursor = int(state["cursor"])
        self._last = self._evaluate()
