"""Lesson 1, ``optimizers``: six optimizers race down the same 2D loss surface.

Each optimizer moves its own point (x, y) with ``torch.optim``; all start at the same place. The
metric of an optimizer is its *gap* f(x, y) - f*, how far above the surface's minimum it still is
(never negative, so it reads well on a log scale). ``loss`` is the **mean gap** over the six: it
falls only when every optimizer makes progress, which is what a race is about; each optimizer's
own gap is logged too, under its key (``sgd``, ``momentum``, …).

No Qt here; torch is imported when the module is (the registry imports lessons lazily).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from studio.pipelines.train.base import (
    InvalidParameter,
    LessonInfo,
    ParamSpec,
    Trainer,
    TrainingDiverged,
)
from studio.pipelines.train.registry import lesson_text

#: key -> display name, in legend order.
OPTIMIZERS: dict[str, str] = {
    "sgd": "SGD", "momentum": "Momentum", "nesterov": "Nesterov", "rmsprop": "RMSProp",
    "adam": "Adam", "adamw": "AdamW",
}

#: Tuned so that every optimizer makes visible progress on every surface without blowing up.
DEFAULT_LRS = {"sgd": 0.001, "momentum": 0.001, "nesterov": 0.001, "rmsprop": 0.01,
               "adam": 0.03, "adamw": 0.03}


def _rosenbrock(x, y, sin):
    return (1 - x) ** 2 + 100 * (y - x * x) ** 2


def _beale(x, y, sin):
    return ((1.5 - x + x * y) ** 2 + (2.25 - x + x * y * y) ** 2
            + (2.625 - x + x * y * y * y) ** 2)


def _saddle(x, y, sin):
    # A saddle at the origin with two valleys at y = ±1 (f* = -0.25): x^2 - y^2 alone has no bottom.
    return 0.5 * x * x + 0.25 * y ** 4 - 0.5 * y * y + 0.25


def _ill_conditioned(x, y, sin):
    # A long narrow bowl tilted 30°: curvature 1 along the valley, 60 across it.
    u = 0.8660254 * x + 0.5 * y
    v = -0.5 * x + 0.8660254 * y
    return 0.5 * (u * u + 60.0 * v * v)


def _noisy(x, y, sin):
    # A bowl covered in bumps (local minima), with noisy gradients on top.
    return 0.5 * (x * x + y * y) + 0.3 * (sin(2.5 * x) ** 2 + sin(2.5 * y) ** 2)


#: name -> (function, start point, x range, y range, minimum point, built-in gradient noise)
SURFACES: dict[str, tuple[Any, tuple[float, float], tuple[float, float], tuple[float, float],
                          tuple[float, float], float]] = {
    "rosenbrock": (_rosenbrock, (-1.5, 2.0), (-2.0, 2.0), (-1.0, 3.0), (1.0, 1.0), 0.0),
    "beale": (_beale, (1.0, -1.0), (-1.0, 4.5), (-2.0, 2.0), (3.0, 0.5), 0.0),
    "saddle": (_saddle, (2.0, 1e-3), (-2.5, 2.5), (-2.0, 2.0), (0.0, 1.0), 0.0),
    "ill-conditioned": (_ill_conditioned, (-2.0, 0.5), (-2.5, 2.5), (-2.0, 2.0), (0.0, 0.0),
                        0.0),
    "noisy": (_noisy, (2.3, 1.9), (-3.0, 3.0), (-3.0, 3.0), (0.0, 0.0), 1.0),
}
SURFACE_NAMES: dict[str, str] = {"rosenbrock": "Rosenbrock valley", "beale": "Beale's function",
                                 "saddle": "Saddle point", "ill-conditioned": "Ill-conditioned bowl",
                                 "noisy": "Noisy bumps"}

GRID = 120  # contour grid resolution per axis
HISTORY = 2000  # trajectory points kept per optimizer (older points are thinned): enough for a
# ~700-px plot, and cheap to send to the window and draw 50 times a second
DIVERGE_LIMIT = 1e8


class Trajectory:
    """One optimizer's path, in a numpy buffer: a step appends a row in place, a snapshot copies
    the filled rows. (Kept as a list of tuples, turning 6 × 2,000 of them into arrays for every
    frame took ~1.5 ms, a tenth of the trainer's time at 60 frames a second.) Past ``HISTORY``
    points it keeps the start and every other point, as a list sliced ``[:1] + [1::2]`` would."""

    def __init__(self, points) -> None:
        self._buf = np.empty((HISTORY + 1, 2), dtype=np.float64)
        self._n = 0
        for xy in points:
            self.append(xy)

    def append(self, xy) -> None:
        self._buf[self._n] = xy
        self._n += 1
        if self._n > HISTORY:
            kept = np.concatenate([self._buf[:1], self._buf[1:self._n:2]])
            self._n = len(kept)
            self._buf[:self._n] = kept

    def array(self) -> np.ndarray:
        return self._buf[:self._n].copy()

    def __len__(self) -> int:
        return self._n

EXPLANATION = """\
**What you are seeing.** Six optimizers start at the same point of a loss surface and take one
step each per training step. The contour lines are the surface (dark = low); each coloured line is
one optimizer's path. The loss plot shows how far above the minimum each one still is.

**What to try.**
- *Rosenbrock valley* (pick the **Surface** in Settings): a curved valley. SGD crawls along the
  floor; Momentum and Adam race ahead.
- *Saddle point*: the start sits on a ridge. Plain SGD barely moves sideways; adaptive methods
  (RMSProp, Adam) escape fast because they rescale tiny gradients.
- *Ill-conditioned bowl*: a narrow bowl. Raise SGD's learning rate until it zig-zags, then add
  momentum.
- *Noisy bumps*: bumps and noisy gradients, like minibatches. Raise **Gradient noise** and
  watch who copes.
- Move **Learning rate (all)** (every optimizer at once) or one optimizer's rate, live.

**What is normal.** Adam reaches the Rosenbrock minimum in about a thousand steps (a few
seconds); SGD is still crawling along the valley by then. Too high a learning rate makes a path shoot off the map: the run pauses and says so.
"""


def _lr_spec(key: str) -> ParamSpec:
    return ParamSpec(f"lr_{key}", DEFAULT_LRS[key], minimum=1e-6, maximum=10.0, live=True,
                     log_scale=True, label=f"{OPTIMIZERS[key]} lr",
                     help=f"Learning rate of {OPTIMIZERS[key]} alone.")


class OptimizerRace(Trainer):
    """SGD, Momentum, Nesterov, RMSProp, Adam and AdamW on one 2D surface, side by side."""

    info = LessonInfo(
        **lesson_text("optimizers"),
        explanation=EXPLANATION,
        main_loss="mean gap f - f* over the six optimizers",
        series=tuple(OPTIMIZERS),
        series_labels=OPTIMIZERS,
        log_every=1,
    )
    params = (
        ParamSpec("surface", "rosenbrock", kind="choice", choices=tuple(SURFACES),
                  choice_labels=SURFACE_NAMES,
                  label="Surface", help="The loss surface (changing it starts over)."),
        ParamSpec("lr", 0.001, minimum=1e-6, maximum=10.0, live=True, log_scale=True,
                  label="Learning rate (all)",
                  help="Sets every optimizer's learning rate at once."),
        *(_lr_spec(k) for k in OPTIMIZERS),
        ParamSpec("momentum", 0.9, minimum=0.0, maximum=0.999, live=True, label="Momentum β",
                  help="Momentum and Nesterov: how much of the last step carries over."),
        ParamSpec("beta1", 0.9, minimum=0.0, maximum=0.999, live=True, label="Adam β₁",
                  help="Adam/AdamW: decay of the gradient average."),
        ParamSpec("beta2", 0.999, minimum=0.0, maximum=0.99999, live=True, label="Adam β₂",
                  help="Adam/AdamW (and RMSProp's α): decay of the squared-gradient average."),
        ParamSpec("weight_decay", 0.01, minimum=0.0, maximum=1.0, live=True,
                  label="AdamW decay", help="AdamW's decoupled weight decay."),
        ParamSpec("noise", 0.0, minimum=0.0, maximum=50.0, live=True, label="Gradient noise",
                  help="Std of noise added to every gradient (like minibatches)."),
    )

    @classmethod
    def validate_config(cls, overrides: dict[str, Any] | None = None) -> dict[str, Any]:
        """As the base, plus: ``lr`` given without ``lr_<opt>`` sets every optimizer's lr."""
        config = super().validate_config(overrides)
        if overrides and "lr" in overrides:
            for key in OPTIMIZERS:
                if f"lr_{key}" not in overrides:
                    config[f"lr_{key}"] = config["lr"]
        return config

    def __init__(self, config: dict[str, Any] | None = None, seed: int = 0) -> None:
        super().__init__(config=self.validate_config(config), seed=seed)
        fn, start, self._xr, self._yr, self._xmin, self._builtin_noise = \
            SURFACES[self.config["surface"]]
        self._fn = fn
        self._fstar = float(fn(self._xmin[0], self._xmin[1], math.sin))
        self._gen = torch.Generator().manual_seed(int(seed))
        self._points = {k: torch.tensor(start, dtype=torch.float64, requires_grad=True)
                        for k in OPTIMIZERS}
        self._opts = self._make_optimizers()
        self._history = {k: Trajectory([start]) for k in OPTIMIZERS}
        self._gaps = {k: float(fn(*start, math.sin)) - self._fstar for k in OPTIMIZERS}
        self._grid: dict[str, np.ndarray] | None = None

    # -- optimizers -------------------------------------------------------------------------
    def _make_optimizers(self) -> dict[str, torch.optim.Optimizer]:
        c, p = self.config, self._points
        betas = (c["beta1"], c["beta2"])
        return {
            "sgd": torch.optim.SGD([p["sgd"]], lr=c["lr_sgd"]),
            "momentum": torch.optim.SGD([p["momentum"]], lr=c["lr_momentum"],
                                        momentum=c["momentum"]),
            "nesterov": torch.optim.SGD([p["nesterov"]], lr=c["lr_nesterov"],
                                        momentum=c["momentum"], nesterov=True),
            "rmsprop": torch.optim.RMSprop([p["rmsprop"]], lr=c["lr_rmsprop"], alpha=c["beta2"]),
            "adam": torch.optim.Adam([p["adam"]], lr=c["lr_adam"], betas=betas),
            "adamw": torch.optim.AdamW([p["adamw"]], lr=c["lr_adamw"], betas=betas,
                                       weight_decay=c["weight_decay"]),
        }

    def set_param(self, name: str, value: Any) -> None:
        spec = self.spec(name)
        if name == "lr" and spec.live:
            v = spec.coerce(value)
            self.config["lr"] = v
            for key in OPTIMIZERS:
                self.config[f"lr_{key}"] = v
            self.on_param_changed(name)
            return
        super().set_param(name, value)

    def on_param_changed(self, name: str) -> None:
        c = self.config
        for key, opt in self._opts.items():
            group = opt.param_groups[0]
            group["lr"] = c[f"lr_{key}"]
            if key in ("momentum", "nesterov"):
                group["momentum"] = c["momentum"]
            elif key == "rmsprop":
                group["alpha"] = c["beta2"]
            elif key in ("adam", "adamw"):
                group["betas"] = (c["beta1"], c["beta2"])
                if key == "adamw":
                    group["weight_decay"] = c["weight_decay"]

    # -- training ---------------------------------------------------------------------------
    def step(self, part: str | None = None) -> dict[str, float]:
        if part is not None:
            raise InvalidParameter("The optimizer race has no separate step parts.")
        noise = self.config["noise"] + self._builtin_noise
        step = self.step_count + 1
        gaps: dict[str, float] = {}
        for key, opt in self._opts.items():
            point = self._points[key]
            opt.zero_grad(set_to_none=False)
            value = self._fn(point[0], point[1], torch.sin)
            value.backward()
            if noise > 0 and point.grad is not None:  # backward() just set it
                point.grad.add_(torch.randn(2, generator=self._gen, dtype=torch.float64) * noise)
            opt.step()
            with torch.no_grad():
                gap = float(self._fn(point[0], point[1], torch.sin)) - self._fstar
            if not math.isfinite(gap) or abs(gap) > DIVERGE_LIMIT:
                raise TrainingDiverged(
                    f"{OPTIMIZERS[key]}'s loss became {gap:.3g} at step {step} — try a lower "
                    f"learning rate for {OPTIMIZERS[key]}, then reset.")
            gaps[key] = max(gap, 0.0)
            xy = point.detach()
            self._append(key, (float(xy[0]), float(xy[1])))
        self.step_count = step
        self._gaps = gaps
        metrics: dict[str, float] = {"step": step, "loss": float(np.mean(list(gaps.values())))}
        metrics.update(gaps)
        return metrics

    def _append(self, key: str, xy: tuple[float, float]) -> None:
        self._history[key].append(xy)

    # -- drawing ----------------------------------------------------------------------------
    def surface_grid(self) -> dict[str, np.ndarray]:
        """The surface on a GRID×GRID lattice (computed once per trainer)."""
        if self._grid is None:
            xs = np.linspace(*self._xr, GRID)
            ys = np.linspace(*self._yr, GRID)
            gx, gy = np.meshgrid(xs, ys)  # z[row=y, col=x]
            z = self._fn(gx, gy, np.sin) - self._fstar
            self._grid = {"x": xs, "y": ys, "z": np.maximum(z, 0.0)}
        return self._grid

    def snapshot(self) -> dict[str, Any]:
        """``grid`` (x, y, z = f - f*), ``paths`` (name -> (k, 2) array), ``gaps``, ``names``,
        ``minimum`` (x, y) and ``step``."""
        return {
            "step": self.step_count,
            "grid": self.surface_grid(),
            "paths": {k: v.array() for k, v in self._history.items()},
            "gaps": dict(self._gaps),
            "names": dict(OPTIMIZERS),
            "lrs": {k: self.config[f"lr_{k}"] for k in OPTIMIZERS},
            "minimum": self._xmin,
        }

    # -- state ------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {
            "step_count": self.step_count,
            "points": {k: p.detach().clone() for k, p in self._points.items()},
            "optimizers": {k: o.state_dict() for k, o in self._opts.items()},
            "history": {k: torch.from_numpy(v.array()) for k, v in self._history.items()},
            "gaps": dict(self._gaps),
            "generator": self._gen.get_state(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.step_count = int(state["step_count"])
        with torch.no_grad():
            for k, p in self._points.items():
                p.copy_(state["points"][k])
        for k, o in self._opts.items():
            o.load_state_dict(state["optimizers"][k])
        self.on_param_changed("lr")  # the config in force wins over the saved groups
        self._history = {k: Trajectory(state["history"][k].numpy()) for k in OPTIMIZERS}
        self._gaps = {k: float(v) for k, v in state["gaps"].items()}
        self._gen.set_state(state["generator"])
