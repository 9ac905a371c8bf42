"""Lesson 5: a denoising diffusion model (DDPM) on 2D data.

Forward process: x_t = √ᾱ_t·x₀ + √(1−ᾱ_t)·ε over ``timesteps`` steps of a linear or cosine β
schedule. An MLP with a sinusoidal timestep embedding learns to predict ε (``loss`` = ε-MSE); the
reverse chain then walks fresh noise back to data. Data are divided by their standard deviation
for the model and shown in data units.

Timestep indices in snapshots: level 0 is clean data, level k (1…T) is x after k noising steps,
so ``forward[k]`` and ``reverse[k]`` can share one scrubber. Sampling the reverse chain costs T
network passes, so it runs in ``snapshot()`` only every ``sample_every`` steps (``step()`` stays
cheap) and always from the same starting noise, so the pictures change only as the model learns.

The chain is sampled a few levels at a time (:data:`CHAIN_BUDGET_S` of CPU each) by a copy of the
model frozen when the chain began, in :meth:`DDPM2D.prepare_snapshot` (the session calls it while
the window draws a frame) or else in ``snapshot()``, and shown once complete: done in one go, its
100 passes (~60 ms) held up the window's frames six times a second. A paused session's frames
(a single step, a changed knob) finish the chain first, so they show the current model's. The finished chain equals
:meth:`DDPM2D.sample_chain` of that step's model; ``samples_step`` says which step that was.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from studio.pipelines.train import torch_lessons as tl
from studio.pipelines.train.base import LessonInfo, ParamSpec, Trainer, check_loss
from studio.pipelines.train.datasets2d import DATASET_NAMES_2D, DATASETS_2D, sample_2d
from studio.pipelines.train.frame_codec import frozen
from studio.pipelines.train.gan2d import DrawnPointsConfig
from studio.pipelines.train.registry import lesson_text

POOL = 8192
SHOWN = 600  # points in the data / forward / reverse pictures
BUCKETS = 5  # ε-MSE is reported per fifth of the timesteps: mse_t0 (least noise) … mse_t4
EMBED = 32  # timestep embedding width
CHAIN_BUDGET_S = 0.005  # CPU time a snapshot spends on the reverse chain (at least one level)


def make_betas(schedule: str, timesteps: int) -> torch.Tensor:
    """β_1…β_T. Linear: DDPM's 1e-4…0.02 rescaled so T steps reach the same noise as 1000;
    cosine: Nichol & Dhariwal's ᾱ(t) = cos²((t/T + s)/(1 + s)·π/2)."""
    if schedule == "linear":
        scale = 1000.0 / timesteps
        return torch.linspace(1e-4 * scale, min(0.02 * scale, 0.999), timesteps)
    s = 0.008
    steps = torch.arange(timesteps + 1, dtype=torch.float64) / timesteps
    abar = torch.cos((steps + s) / (1 + s) * math.pi / 2) ** 2
    return (1 - abar[1:] / abar[:-1]).clamp(max=0.999).float()


class EpsilonMLP(nn.Module):
    """ε-predictor: [x, embed(t)] → MLP → ε."""

    freqs: torch.Tensor  # a buffer (register_buffer), declared for the type checker

    def __init__(self, hidden: int, timesteps: int, generator: torch.Generator) -> None:
        super().__init__()
        self.timesteps = timesteps
        self.net = tl.mlp([2 + EMBED, hidden, hidden, hidden, 2], generator, nn.SiLU)
        freqs = torch.exp(-math.log(10_000.0) * torch.arange(EMBED // 2) / (EMBED // 2))
        self.register_buffer("freqs", freqs, persistent=False)

    def embed(self, t: torch.Tensor) -> torch.Tensor:
        """The sinusoidal embedding of timesteps ``t`` (n,) → (n, EMBED)."""
        # Scale t to a 0…1000 range so the embedding means the same for any T.
        angle = (t.float() * (1000.0 / self.timesteps))[:, None] * self.freqs[None, :]
        return torch.cat([torch.sin(angle), torch.cos(angle)], dim=1)

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return self.net(torch.cat([x, self.embed(t)], dim=1))


class FrozenEpsilon:
    """An :class:`EpsilonMLP`'s weights copied at one step, to sample a reverse chain over
    several snapshots while the model trains on. All points of a chain level share one
    timestep, so the embedding's part of the first layer is a bias computed once per level
    for the whole chain: a level costs 13% less CPU than calling the model (same ε to ~1e-6)."""

    def __init__(self, model: EpsilonMLP) -> None:
        first, *rest = model.net
        with torch.no_grad():
            embedded = model.embed(torch.arange(model.timesteps))
            assert isinstance(first, nn.Linear)  # tl.mlp starts with a Linear layer
            self._bias = F.linear(embedded, first.weight[:, 2:], first.bias)  # (T, hidden)
            self._weight = first.weight[:, :2].t().contiguous()
            self._rest = [(m.weight.t().contiguous(), m.bias.clone())
                          if isinstance(m, nn.Linear) else m for m in rest]

    @torch.no_grad()
    def __call__(self, x: torch.Tensor, k: int) -> torch.Tensor:
        """ε predicted for points ``x`` (n, 2) at timestep index ``k``."""
        h = torch.addmm(self._bias[k], x, self._weight)
        for layer in self._rest:
            h = torch.addmm(layer[1], h, layer[0]) if isinstance(layer, tuple) else layer(h)
        return h


class DDPM2D(DrawnPointsConfig, Trainer):
    """DDPM on 2D points: watch noise become data."""

    info = LessonInfo(
        **lesson_text("ddpm-2d"),
        explanation=(
            "**What you see.** The data; the scrubber moves through the noise levels: the "
            "forward process (data dissolving into a Gaussian blob) and the model's reverse "
            "chain (a blob condensing into data). Bars show the ε prediction error per range "
            "of noise levels.\n\n"
            "**What to try.** Scrub slowly through the reverse chain to see where the shape "
            "appears. Compare the linear and cosine schedules (reset), fewer timesteps, or a "
            "shape you drew in the GAN lesson.\n\n"
            "**Normal.** The loss falls quickly to a plateau (it stays noisy: each batch has "
            "fresh noise). The error is highest at low noise, where ε is hard to see. Samples "
            "find the rough shape in a few hundred steps and sharpen over 2–3 thousand "
            "(a minute or two)."),
        series=tl.bucket_series(BUCKETS),
        # mse_t0 is the fifth of the timesteps with the least noise, mse_t4 the most.
        series_labels={"loss": "Loss (all t)", **{
            f"mse_t{i}": f"MSE, t {100 * i // BUCKETS}–{100 * (i + 1) // BUCKETS}% of T"
            for i in range(BUCKETS)}},
    )
    params = (
        tl.lr_spec(3e-3),
        ParamSpec("batch_size", 256, "int", minimum=1, maximum=4096, label="Batch size"),
        ParamSpec("timesteps", 100, "int", minimum=10, maximum=1000, label="Timesteps (T)",
                  help="Noise levels between data and pure noise."),
        ParamSpec("schedule", "cosine", "choice", choices=("linear", "cosine"),
                  choice_labels={"linear": "Linear", "cosine": "Cosine"},
                  label="β schedule", help="How fast noise is added along the T steps."),
        ParamSpec("dataset", "8-gaussians", "choice", choices=DATASETS_2D, label="Data set",
                  choice_labels=DATASET_NAMES_2D),
        ParamSpec("hidden", 128, "int", minimum=16, maximum=1024, label="Hidden width"),
        ParamSpec("sample_every", 100, "int", minimum=1, maximum=100_000, live=True,
                  label="Sample every N steps",
                  help="Running the reverse chain costs T network passes, so it runs only now "
                       "and then."),
    )
    def __init__(self, config: dict[str, Any] | None = None, seed: int = 0,
                 step_count: int = 0) -> None:
        super().__init__(config=self.validate_config(config), seed=seed, step_count=step_count)
        c = self.config
        pool = torch.from_numpy(
            sample_2d(c["dataset"], POOL, np.random.default_rng(seed), c.get("points")))
        self._scale = float(pool.std())
        self._pool = pool / self._scale
        self._T = int(c["timesteps"])
        self._betas = make_betas(c["schedule"], self._T)
        self._abar = torch.cumprod(1 - self._betas, dim=0)
        self._alpha_bar = frozen(tl.to_numpy(torch.cat([torch.ones(1), self._abar])))
        self._gens = {"init": tl.seeded_generator(seed, 1), "train": tl.seeded_generator(seed, 2)}
        self.model = EpsilonMLP(int(c["hidden"]), self._T, self._gens["init"])
        self._opt = tl.make_optimizer("adam", self.model.parameters(), c["lr"])
        self._bucket_mse = [float("nan")] * BUCKETS  # smoothed, for the bars
        self._forward = self._forward_levels()
        self._reverse: np.ndarray | None = None
        self._sampled_at = -1
        self._chain: Iterator[torch.Tensor] | None = None  # the chain being sampled, if any
        self._chain_levels: list[torch.Tensor] = []
        self._chain_step = -1  # the step whose model samples it
        self._prepared = False  # prepare_snapshot() advanced the chain since the last snapshot

    def _forward_levels(self) -> np.ndarray:
        """The first SHOWN data points at every noise level 0…T (same ε throughout)."""
        x0 = self._pool[:SHOWN]
        eps = torch.randn(x0.shape, generator=tl.seeded_generator(self.seed, 3))
        a = torch.cat([torch.ones(1), self._abar])[:, None, None]
        return frozen(tl.to_numpy((a.sqrt() * x0 + (1 - a).sqrt() * eps) * self._scale))

    def step(self, part: str | None = None) -> dict[str, float]:
        g = self._gens["train"]
        n = int(self.config["batch_size"])
        x0 = self._pool[torch.randint(0, POOL, (n,), generator=g)]
        # Stratified timesteps: every bucket gets its share of each batch (less noisy bars).
        u = torch.rand(n, generator=g)
        t = ((torch.arange(n) + u) / n * self._T).long().clamp(max=self._T - 1)
        eps = torch.randn(x0.shape, generator=g)
        abar = self._abar[t][:, None]
        pred = self.model(abar.sqrt() * x0 + (1 - abar).sqrt() * eps, t)
        per_sample = (pred - eps).pow(2).mean(dim=1)
        loss = per_sample.mean()
        self.step_count += 1
        check_loss(float(loss.detach()), self.step_count)
        self._opt.zero_grad(set_to_none=True)
        loss.backward()
        self._opt.step()
        metrics: dict[str, float] = {"step": self.step_count, "loss": float(loss.detach())}
        bucket = (t * BUCKETS) // self._T
        for b in range(BUCKETS):
            mask = bucket == b
            if mask.any():
                tl.note_bucket(metrics, self._bucket_mse, b,
                               float(per_sample.detach()[mask].mean()))
        return metrics

    def on_param_changed(self, name: str) -> None:
        if name == "lr":
            tl.set_lr(self._opt, self.config["lr"])

    def state_dict(self) -> dict[str, Any]:
        return {
            "config": dict(self.config), "seed": self.seed, "step_count": self.step_count,
            "model": tl.tensor_state(self.model), "optimizer": tl.optimizer_state(self._opt),
            "generators": tl.generator_states(self._gens),
            "bucket_mse": list(self._bucket_mse),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.config = self.validate_config(state["config"])
        self.step_count = int(state["step_count"])
        self.model.load_state_dict(state["model"])
        self._opt.load_state_dict(state["optimizer"])
        self.on_param_changed("lr")
        tl.load_generator_states(self._gens, state["generators"])
        self._bucket_mse = [float(v) for v in state["bucket_mse"]]
        self._reverse, self._sampled_at = None, -1
        self._chain, self._chain_levels = None, []

    def _chain_steps(self, model: FrozenEpsilon, n: int) -> Iterator[torch.Tensor]:
        """x at levels T, T−1, …, 0 of the reverse chain from fixed noise (normalised units)."""
        g = tl.seeded_generator(self.seed, 4)  # fresh each time: same start, same noise
        x = torch.randn((n, 2), generator=g)
        yield x
        betas = self._betas.tolist()
        eps_scale = (self._betas / (1 - self._abar).sqrt()).tolist()
        inv_sqrt_alpha = (1 / (1 - self._betas).sqrt()).tolist()
        for k in range(self._T - 1, -1, -1):
            with torch.no_grad():
                x = (x - eps_scale[k] * model(x, k)) * inv_sqrt_alpha[k]
                if k > 0:
                    x = x + math.sqrt(betas[k]) * torch.randn((n, 2), generator=g)
            yield x

    def _as_chain(self, levels: list[torch.Tensor]) -> np.ndarray:
        # Read-only: each frame hands out the same chain, and the frame codec then skips it.
        return frozen(tl.to_numpy(torch.stack(levels[::-1]) * self._scale))

    def sample_chain(self, n: int = SHOWN) -> np.ndarray:
        """The reverse chain from fixed noise: (T + 1, n, 2) in data units, [k] = level k."""
        return self._as_chain(list(self._chain_steps(FrozenEpsilon(self.model), n)))

    def _advance_chain(self, budget_s: float | None = CHAIN_BUDGET_S) -> None:
        """Start a chain when one is due; sample its next levels for up to ``budget_s`` of CPU
        (None: to its end)."""
        if self._chain is None:
            if self.step_count - self._chain_step < int(self.config["sample_every"]):
                return
            self._chain = self._chain_steps(FrozenEpsilon(self.model), SHOWN)
            self._chain_levels = []
            self._chain_step = self.step_count
        start = time.thread_time()
        for x in self._chain:
            self._chain_levels.append(x)
            if budget_s is not None and time.thread_time() - start >= budget_s:
                break
        if len(self._chain_levels) == self._T + 1:
            self._reverse = self._as_chain(self._chain_levels)
            self._sampled_at = self._chain_step
            self._chain, self._chain_levels = None, []

    def prepare_snapshot(self, finish: bool = False) -> None:
        if self._reverse is None:
            return
        if finish:  # the chain begun earlier, then this step's if one is due
            self._advance_chain(None)
            self._advance_chain(None)
        else:
            self._advance_chain()
        self._prepared = True

    def snapshot(self) -> dict[str, Any]:
        if self._reverse is None:  # the first picture: the whole chain at once
            self._reverse = self.sample_chain()
            self._sampled_at = self._chain_step = self.step_count
            self._chain, self._chain_levels = None, []
        elif not self._prepared:
            self._advance_chain()
        self._prepared = False
        return {
            "step": self.step_count,
            "data": self._forward[0],
            "forward": self._forward,
            "reverse": self._reverse,
            "samples": self._reverse[0],
            "samples_step": self._sampled_at,
            "timesteps": self._T,
            "alpha_bar": self._alpha_bar,
            "bucket_mse": np.array(self._bucket_mse, dtype=np.float32),
            "bucket_labels": tl.bucket_labels(self._T, BUCKETS),
        }


def nearest_distance(points: np.ndarray, data: np.ndarray) -> float:
    """Mean distance from each point to its nearest data point (how far samples are from data)."""
    d = np.linalg.norm(points[:, None, :] - data[None, :, :], axis=2)
    return float(d.min(axis=1).mean())

