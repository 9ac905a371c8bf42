"""Lesson 4: a GAN and a WGAN-GP learning a 2D distribution, one update at a time.

Data come from :mod:`studio.pipelines.train.datasets2d` (a pool of points drawn once per run, so
a step costs two tiny MLP passes). ``step()`` runs ``k_d`` discriminator/critic updates, then
``k_g`` generator updates; ``step("D")`` / ``step("G")`` runs exactly one update of that player.
Each player has its own Adam and learning rate (``lr_d``, ``lr_g``); ``lr`` sets both at once.

Main loss (``loss`` in metrics.jsonl): for the GAN, ``loss_d + loss_g`` (both players' losses; it
sits near 2.08 = 3·ln 2 when D is fooled half the time); for the WGAN-GP, the Wasserstein
estimate E[D(x)] − E[D(G(z))], which falls towards 0 as the distributions meet.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from studio.core.wording import count_of
from studio.pipelines.train import torch_lessons as tl
from studio.pipelines.train.base import InvalidParameter, LessonInfo, ParamSpec, Trainer, check_loss
from studio.pipelines.train.datasets2d import (
    DATASET_NAMES_2D,
    DATASETS_2D,
    EXTENT,
    MIN_DRAWN_POINTS,
    sample_2d,
)
from studio.pipelines.train.registry import lesson_text

POOL = 8192  # data points drawn once per run; batches are sampled from them
SHOWN = 1000  # real and generated points in a snapshot
ARROWS = 160  # generated points that carry a gradient arrow
HEAT = 64  # the discriminator heatmap is HEAT × HEAT over [-EXTENT, EXTENT]²
# The heatmap's grid goes through D in blocks of rows: one batch of 4,096 took 2.8 ms of CPU per
# snapshot, blocks of 512 about 1 ms, with the same values (a big batch's activations miss the
# cache and cost more to allocate). Each row's result does not depend on its block.
HEAT_BLOCK = 512
MODE_CENTRES = np.array([(np.cos(a), np.sin(a)) for a in np.arange(8) * (np.pi / 4)]) * 1.6
MODE_RADIUS = 0.3  # ~4σ of a mode of 8-gaussians


def mode_coverage(points: np.ndarray, min_fraction: float = 0.01) -> tuple[int, float]:
    """(modes covered, fraction of points on a mode) for 8-gaussians: a mode is covered when at
    least ``min_fraction`` of ``points`` lie within :data:`MODE_RADIUS` of its centre."""
    d = np.linalg.norm(points[:, None, :] - MODE_CENTRES[None, :, :], axis=2)
    near = d < MODE_RADIUS
    covered = int((near.sum(axis=0) >= max(1, min_fraction * len(points))).sum())
    return covered, float(near.any(axis=1).mean())


def player_lr_spec(name: str, default: float, label: str, player: str) -> ParamSpec:
    return ParamSpec(name, default, "float", minimum=1e-6, maximum=10.0, live=True,
                     log_scale=True, label=label,
                     help=f"Learning rate of the {player} alone (Adam). Two time-scale "
                          "training (D faster than G) often steadies a GAN.")


def _gan_params(lr: float, k_d: int, critic: str) -> tuple[ParamSpec, ...]:
    return (
        ParamSpec("lr", lr, "float", minimum=1e-6, maximum=10.0, live=True, log_scale=True,
                  label="Learning rate (both)",
                  help="Sets the learning rate of both players at once (Adam)."),
        player_lr_spec("lr_d", lr, "D learning rate", critic),
        player_lr_spec("lr_g", lr, "G learning rate", "generator"),
        ParamSpec("k_d", k_d, "int", minimum=1, maximum=20, live=True, label="D steps (k_D)",
                  help="Discriminator updates per step."),
        ParamSpec("k_g", 1, "int", minimum=1, maximum=20, live=True, label="G steps (k_G)",
                  help="Generator updates per step."),
        ParamSpec("noise", 0.0, "float", minimum=0.0, maximum=1.0, live=True,
                  label="Instance noise", help="Gaussian noise added to everything D sees; "
                  "it blurs D's view and can stop mode collapse."),
        ParamSpec("dataset", "8-gaussians", "choice", choices=DATASETS_2D, label="Data set",
                  choice_labels=DATASET_NAMES_2D,
                  help="The distribution to learn; 'Your drawing' uses the points you drew."),
        ParamSpec("batch_size", 256, "int", minimum=1, maximum=4096, label="Batch size"),
        ParamSpec("latent_dim", 4, "int", minimum=1, maximum=64, label="Latent dimensions",
                  help="Size of the noise vector z the generator starts from."),
        ParamSpec("hidden", 128, "int", minimum=8, maximum=1024, label="Hidden width"),
    )


class DrawnPointsConfig:
    """Config checking for the lessons on 2D data: adds ``points``, the shape the user drew (a
    list of [x, y]; not a knob, so it is not in ``params``), needed by the 'drawn' data set."""

    @classmethod
    def validate_config(cls, overrides: dict[str, Any] | None = None) -> dict[str, Any]:
        """As :meth:`Trainer.validate_config`, plus ``points`` (refused when too few)."""
        overrides = dict(overrides or {})
        points = overrides.pop("points", None)
        config = super().validate_config(overrides)  # type: ignore[misc]
        if points is not None:
            try:
                arr = np.asarray(points, dtype=np.float64).reshape(-1, 2)
            except (TypeError, ValueError):
                raise InvalidParameter("points must be a list of [x, y] pairs.") from None
            if not np.isfinite(arr).all():
                raise InvalidParameter("points must be finite numbers.")
            config["points"] = arr.tolist()
        if config["dataset"] == "drawn":
            n = len(config.get("points") or [])
            if n < MIN_DRAWN_POINTS:
                raise InvalidParameter(
                    f"The drawn shape has {count_of(n, 'point')}; draw at least {MIN_DRAWN_POINTS}.")
        return config


class PlayerRates(Trainer):
    """A learning rate per player (``lr_d``, ``lr_g``) and ``lr``, which sets both: given alone
    (``--set lr=…``) or changed live."""

    @classmethod
    def validate_config(cls, overrides: dict[str, Any] | None = None) -> dict[str, Any]:
        """As the base, plus: ``lr`` given without ``lr_d`` / ``lr_g`` sets that player's rate
        too (``--set lr=…`` sets the learning rate of both)."""
        config = super().validate_config(overrides)
        if overrides and "lr" in overrides:
            for key in ("lr_d", "lr_g"):
                if key not in overrides:
                    config[key] = config["lr"]
        return config

    def set_param(self, name: str, value: Any) -> None:
        """As the base; ``lr`` (both) also moves ``lr_d`` and ``lr_g``."""
        if name == "lr":
            v = self.spec("lr").coerce(value)
            self.config.update(lr=v, lr_d=v, lr_g=v)
            self.on_param_changed(name)
            return
        super().set_param(name, value)


class GAN2D(PlayerRates, DrawnPointsConfig, Trainer):
    """A non-saturating GAN: D minimises BCE on real vs fake, G maximises log D(G(z))."""

    info = LessonInfo(
        **lesson_text("gan-2d"),
        explanation=(
            "**What you see.** Real points and generated points (the same z every frame). "
            "Underneath, the discriminator's belief that a spot is real (blue = real). The "
            "arrows show where the generator is pushed: up the discriminator's slope.\n\n"
            "**What to try.** Step D or G alone and watch the other react. Set k_D to 5, or "
            "raise the learning rate, and look for *mode collapse*: generated points crowd "
            "onto a few gaussians and the mode count drops. Instance noise often cures it. "
            "Give D and G different learning rates (D a few times faster is a classic fix). "
            "Draw your own shape.\n\n"
            "**Normal.** D(x) and D(G(z)) drift towards 0.5; points spread over most of the 8 "
            "modes in about 1–2 thousand steps (under a minute). GANs oscillate: a mode may "
            "come and go."),
        series=("loss_d", "loss_g"),
        series_labels={"loss_d": "D loss", "loss_g": "G loss"},
    )
    params = _gan_params(1e-3, 1, "discriminator")
    step_parts = ("D", "G")
    wasserstein = False
    betas = (0.5, 0.999)

    def __init__(self, config: dict[str, Any] | None = None, seed: int = 0,
                 step_count: int = 0) -> None:
        super().__init__(config=self.validate_config(config), seed=seed, step_count=step_count)
        c = self.config
        pool = sample_2d(c["dataset"], POOL, np.random.default_rng(seed), c.get("points"))
        self._pool = torch.from_numpy(pool)
        self._gens = {"init": tl.seeded_generator(seed, 1), "train": tl.seeded_generator(seed, 2)}
        h, d = int(c["hidden"]), int(c["latent_dim"])
        self.generator = tl.mlp([d, h, h, 2], self._gens["init"], nn.LeakyReLU)
        self.discriminator = tl.mlp([2, h, h, 1], self._gens["init"], nn.LeakyReLU)
        self._z_fixed = torch.randn((SHOWN, d), generator=tl.seeded_generator(seed, 3))
        self._opt_g = self._new_opt(self.generator, c["lr_g"])
        self._opt_d = self._new_opt(self.discriminator, c["lr_d"])
        self._last: dict[str, float] = {}
        self._snap_step = -1
        self._snap: dict[str, Any] = {}
        self._grid: torch.Tensor | None = None

    def _new_opt(self, module: nn.Module, lr: float) -> torch.optim.Optimizer:
        return tl.make_optimizer("adam", module.parameters(), lr, self.betas)

    # -- one update of each player --------------------------------------------------------------
    def _batch(self) -> tuple[torch.Tensor, torch.Tensor]:
        g = self._gens["train"]
        n = int(self.config["batch_size"])
        real = self._pool[torch.randint(0, POOL, (n,), generator=g)]
        z = torch.randn((n, int(self.config["latent_dim"])), generator=g)
        return real, z

    def _noisy(self, x: torch.Tensor) -> torch.Tensor:
        sigma = float(self.config["noise"])
        if sigma <= 0:
            return x
        return x + sigma * torch.randn(x.shape, generator=self._gens["train"])

    def _d_loss(self, real: torch.Tensor, fake: torch.Tensor) -> tuple[torch.Tensor, dict]:
        d_real = self.discriminator(self._noisy(real))
        d_fake = self.discriminator(self._noisy(fake))
        loss = (F.binary_cross_entropy_with_logits(d_real, torch.ones_like(d_real))
                + F.binary_cross_entropy_with_logits(d_fake, torch.zeros_like(d_fake)))
        return loss, {"d_real": float(torch.sigmoid(d_real.detach()).mean()),
                      "d_fake": float(torch.sigmoid(d_fake.detach()).mean())}

    def _g_loss(self, fake: torch.Tensor) -> torch.Tensor:
        d_fake = self.discriminator(self._noisy(fake))
        return F.binary_cross_entropy_with_logits(d_fake, torch.ones_like(d_fake))

    def _update_d(self) -> None:
        real, z = self._batch()
        with torch.no_grad():
            fake = self.generator(z)
        loss, extra = self._d_loss(real, fake)
        self._opt_d.zero_grad(set_to_none=True)
        loss.backward()
        self._opt_d.step()
        self._last.update(loss_d=float(loss.detach()), **extra)

    def _update_g(self) -> None:
        _, z = self._batch()
        loss = self._g_loss(self.generator(z))
        self._opt_g.zero_grad(set_to_none=True)
        loss.backward()
        self._opt_g.step()
        self._last["loss_g"] = float(loss.detach())

    def _fill_missing(self) -> None:
        """Before a player's first update its loss is measured (no update), so every step's
        metrics have the same keys."""
        if "loss_d" not in self._last:
            real, z = self._batch()
            with torch.no_grad():
                loss, extra = self._d_loss(real, self.generator(z))
            self._last.update(loss_d=float(loss), **extra)
        if "loss_g" not in self._last:
            _, z = self._batch()
            with torch.no_grad():
                self._last["loss_g"] = float(self._g_loss(self.generator(z)))

    def _main_loss(self) -> float:
        return self._last["loss_d"] + self._last["loss_g"]

    # -- the Trainer interface --------------------------------------------------------------------
    def step(self, part: str | None = None) -> dict[str, float]:
        if part not in (None, *self.step_parts):
            raise InvalidParameter(f"Unknown step part {part!r}; use one of {self.step_parts}.")
        if part in (None, "D"):
            for _ in range(1 if part else int(self.config["k_d"])):
                self._update_d()
        if part in (None, "G"):
            for _ in range(1 if part else int(self.config["k_g"])):
                self._update_g()
        self._fill_missing()
        self.step_count += 1
        loss = self._main_loss()
        check_loss(loss, self.step_count)
        return {"step": self.step_count, "loss": loss, **self._last}

    def on_param_changed(self, name: str) -> None:
        if name in ("lr", "lr_d", "lr_g"):
            tl.set_lr(self._opt_d, self.config["lr_d"])
            tl.set_lr(self._opt_g, self.config["lr_g"])

    def state_dict(self) -> dict[str, Any]:
        return {
            "config": dict(self.config), "seed": self.seed, "step_count": self.step_count,
            "generator": tl.tensor_state(self.generator),
            "discriminator": tl.tensor_state(self.discriminator),
            "opt_g": tl.optimizer_state(self._opt_g), "opt_d": tl.optimizer_state(self._opt_d),
            "generators": tl.generator_states(self._gens), "last": dict(self._last),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.config = self.validate_config(state["config"])
        self.step_count = int(state["step_count"])
        self.generator.load_state_dict(state["generator"])
        self.discriminator.load_state_dict(state["discriminator"])
        self._opt_g.load_state_dict(state["opt_g"])
        self._opt_d.load_state_dict(state["opt_d"])
        self.on_param_changed("lr")
        tl.load_generator_states(self._gens, state["generators"])
        self._last = dict(state["last"])
        self._snap_step = -1

    # -- pictures ----------------------------------------------------------------------------------
    def _heat_values(self, logits: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(logits)

    def _heat_grid(self) -> torch.Tensor:
        """The heatmap's pixel centres (HEAT², 2), row-major with y and x ascending."""
        if self._grid is None:
            axis = torch.linspace(-EXTENT, EXTENT, HEAT)
            gy, gx = torch.meshgrid(axis, axis, indexing="ij")
            self._grid = torch.stack([gx.reshape(-1), gy.reshape(-1)], dim=1)
        return self._grid

    def snapshot(self) -> dict[str, Any]:
        if self._snap_step == self.step_count and self._snap:
            return self._snap
        with torch.no_grad():
            fake = self.generator(self._z_fixed)
            logits = torch.cat([self.discriminator(block)
                                for block in self._heat_grid().split(HEAT_BLOCK)])
            heat = self._heat_values(logits).reshape(HEAT, HEAT)
        # The generator's gradient: where D(G(z)) rises fastest at each generated point.
        at = fake[:ARROWS].clone().requires_grad_(True)
        (grad,) = torch.autograd.grad(self.discriminator(at).sum(), at)
        fake_np = tl.to_numpy(fake)
        snap: dict[str, Any] = {
            "step": self.step_count,
            "real": self._pool[:SHOWN].numpy().copy(),
            "fake": fake_np,
            "heatmap": tl.to_numpy(heat),  # [row = y, column = x], y and x ascending
            "extent": float(EXTENT),
            "heat_label": "critic value" if self.wasserstein else "D(x): probability real",
            "arrows_from": tl.to_numpy(at.detach()),
            "arrows_grad": tl.to_numpy(grad),
            "dataset": self.config["dataset"],
            "wasserstein": self.wasserstein,
            **{k: v for k, v in self._last.items()},
        }
        if self.config["dataset"] == "8-gaussians":
            covered, on_modes = mode_coverage(fake_np)
            snap.update(modes_covered=covered, modes_total=8, mode_coverage=covered / 8,
                        on_modes=on_modes)
        self._snap_step, self._snap = self.step_count, snap
        return snap


class WGANGP2D(GAN2D):
    """A Wasserstein GAN with gradient penalty: the critic scores, it does not classify."""

    info = LessonInfo(
        **lesson_text("wgan-gp-2d"),
        explanation=(
            "**What you see.** Real and generated points over the critic's score (blue = "
            "scored as real); arrows show where the generator is pushed. The loss plot shows "
            "the Wasserstein estimate E[D(x)] − E[D(G(z))] and the gradient penalty.\n\n"
            "**What to try.** Set the gradient-penalty weight to 0 and watch the critic's "
            "scores run away; lower k_D to 1 and see the estimate become unreliable. Compare "
            "mode coverage with the plain GAN on the same data. Slow the generator's learning "
            "rate and see the critic stay ahead.\n\n"
            "**Normal.** The Wasserstein estimate falls steadily towards 0 (it is meaningful, "
            "unlike a GAN's losses); points cover the modes with few collapses. About 1–2 "
            "thousand steps, a minute or two."),
        series=("wasserstein", "gp", "loss_g"),
        series_labels={"wasserstein": "Wasserstein estimate", "gp": "Gradient penalty",
                       "loss_g": "G loss"},
        log_scale=False,  # the estimate and G's loss go below 0
    )
    params = _gan_params(5e-4, 5, "discriminator (critic)") + (
        ParamSpec("gp_weight", 0.1, "float", minimum=0.0, maximum=100.0, live=True,
                  label="Gradient penalty λ",
                  help="Weight of (‖∇D‖ − 1)²; it keeps the critic 1-Lipschitz."),
    )
    wasserstein = True
    betas = (0.5, 0.9)

    def _d_loss(self, real: torch.Tensor, fake: torch.Tensor) -> tuple[torch.Tensor, dict]:
        real_n, fake_n = self._noisy(real), self._noisy(fake)
        d_real = self.discriminator(real_n)
        d_fake = self.discriminator(fake_n)
        eps = torch.rand((len(real_n), 1), generator=self._gens["train"])
        mix = (eps * real_n + (1 - eps) * fake_n).detach().requires_grad_(True)
        (grad,) = torch.autograd.grad(self.discriminator(mix).sum(), mix, create_graph=True)
        gp = (grad.norm(dim=1) - 1.0).pow(2).mean()
        w = d_real.mean() - d_fake.mean()
        loss = -w + float(self.config["gp_weight"]) * gp
        return loss, {"d_real": float(d_real.mean().detach()),
                      "d_fake": float(d_fake.mean().detach()),
                      "wasserstein": float(w.detach()), "gp": float(gp.detach())}

    def _g_loss(self, fake: torch.Tensor) -> torch.Tensor:
        return -self.discriminator(self._noisy(fake)).mean()

    def _fill_missing(self) -> None:
        if "loss_d" not in self._last:
            real, z = self._batch()
            # The penalty needs a gradient, so this measurement runs with autograd on.
            loss, extra = self._d_loss(real, self.generator(z).detach())
            self._last.update(loss_d=float(loss.detach()), **extra)
        super()._fill_missing()

    def _main_loss(self) -> float:
        return self._last["wasserstein"]

    def _heat_values(self, logits: torch.Tensor) -> torch.Tensor:
        return logits
