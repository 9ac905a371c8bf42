"""Lesson 3: an autoencoder, a denoising autoencoder and a VAE on small images.

The images are scikit-learn's 8×8 digits or, where scikit-image is installed, its 25×25 faces
(``dataset``; see :mod:`studio.pipelines.train.image_sets`: both ship offline, split into fixed
train and test sets). Encoder and decoder are small MLPs; the latent space is 2-D by default so
its scatter plot is the latent space itself. With more latent dimensions the scatter and the
decoded grid use the *first two* dimensions (the others held at the scatter images' mean for the
autoencoders, at the prior mean 0 for the VAE).

Reconstruction loss: binary cross-entropy summed over the pixels, averaged over the batch. The
VAE adds β·KL(q(z|x) ‖ N(0, I)); its ``loss`` is that negative ELBO (``recon`` + β·``kl``).
"""

from __future__ import annotations

from statistics import NormalDist
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from studio.pipelines.train import torch_lessons as tl
from studio.pipelines.train.base import LessonInfo, ParamSpec, Trainer, check_loss
from studio.pipelines.train.image_sets import (
    DATASET_NAMES,
    DATASETS,
    check_dataset,
    load_image_set,
    unavailable_datasets,
)
from studio.pipelines.train.registry import lesson_text

FACES_TRY = (
    "Set Data set to *faces* (100 small photos; needs scikit-image): faces have no classes, "
    "so the scatter is coloured by brightness, which is what a 2-number code of a face "
    "learns first; give faces 8 or more latent dimensions to see them sharpen.")
TEST_EVERY = 20  # steps between test-set evaluations (``test_loss``)
GRID = 12  # decoded latent grid is GRID × GRID
INTERP_STEPS = 10


def _common_params(lr: float) -> tuple[ParamSpec, ...]:
    return (
        tl.lr_spec(lr),
        tl.optimizer_spec(),
        ParamSpec("dataset", "digits", "choice", choices=DATASETS, label="Data set",
                  choice_labels=DATASET_NAMES,
                  help="Handwritten digits: scikit-learn's 8×8 digits. Faces: scikit-image's "
                       "25×25 faces (needs scikit-image)."),
        ParamSpec("batch_size", 64, "int", minimum=1, maximum=1024, label="Batch size",
                  help="Images per step."),
        ParamSpec("latent_dim", 2, "int", minimum=2, maximum=32, label="Latent dimensions",
                  help="Size of the code; with 2 the scatter plot is the whole latent space."),
        ParamSpec("hidden", 128, "int", minimum=8, maximum=1024, label="Hidden width",
                  help="Units in each hidden layer of the encoder and decoder."),
        ParamSpec("interp_from", 0, "int", minimum=0, maximum=9, live=True,
                  label="Interpolate from",
                  help="Where the interpolation strip starts: a digit class (digits), or one "
                       "of the first ten test faces, numbered 0–9 (faces)."),
        ParamSpec("interp_to", 6, "int", minimum=0, maximum=9, live=True,
                  label="Interpolate to", help="… and where it ends."),
    )


class AutoencoderTrainer(Trainer):
    """A plain autoencoder: pixels → hidden → hidden/2 → latent → hidden/2 → hidden → pixels."""

    info = LessonInfo(
        **lesson_text("autoencoder"),
        explanation=(
            "**What you see.** Top: test digits and their reconstructions. The scatter is the "
            "2-D code (latent) of every test digit, coloured by its class; the grid decodes "
            "evenly spaced points of that plane back into images.\n\n"
            "**What to try.** Raise the learning rate until it gets noisy; switch to SGD; "
            "give it more latent dimensions (reset) and watch reconstructions sharpen. "
            f"{FACES_TRY}\n\n"
            "**Normal.** The loss falls fast in the first few hundred steps, then slowly. Classes "
            "form clusters, but the latent space has gaps: decoding a gap gives a blur. "
            "A minute or two on a CPU shows most of it."),
        series=("loss", "test_loss"),
        series_labels={"loss": "Train loss", "test_loss": "Test loss"},
    )
    params = _common_params(1e-3)
    variational = False
    denoising = False

    def __init__(self, config: dict[str, Any] | None = None, seed: int = 0,
                 step_count: int = 0) -> None:
        super().__init__(config=self.validate_config(config), seed=seed, step_count=step_count)
        data = self.data = load_image_set(self.config["dataset"])
        self._x_train = torch.from_numpy(data.x_train)
        self._x_test = torch.from_numpy(data.x_test)
        self._x_scatter = torch.from_numpy(data.x_scatter)
        self._gens = {"init": tl.seeded_generator(seed, 1), "train": tl.seeded_generator(seed, 2)}
        # Fixed noise for the test set (denoising): test loss and pictures do not flicker.
        self._test_noise = torch.randn(self._x_test.shape, generator=tl.seeded_generator(seed, 3))
        self._scatter_noise = (self._test_noise if data.scatter_is_test else torch.randn(
            self._x_scatter.shape, generator=tl.seeded_generator(seed, 4)))
        h, d = int(self.config["hidden"]), int(self.config["latent_dim"])
        enc_out = 2 * d if self.variational else d
        self.encoder = tl.mlp([data.pixels, h, max(h // 2, 2), enc_out], self._gens["init"])
        self.decoder = tl.mlp([d, max(h // 2, 2), h, data.pixels], self._gens["init"])
        self._optimizer = self._new_optimizer()
        self._snap_key: tuple | None = None
        self._snap: dict[str, Any] = {}

    @classmethod
    def validate_config(cls, overrides: dict[str, Any] | None = None) -> dict[str, Any]:
        """As the base, plus: a data set this install cannot load is refused with the reason."""
        config = super().validate_config(overrides)
        check_dataset(config["dataset"])
        return config

    @classmethod
    def unavailable_choices(cls) -> dict[str, dict[str, str]]:
        return {"dataset": unavailable_datasets()}

    # -- model -----------------------------------------------------------------------------------
    def _new_optimizer(self) -> torch.optim.Optimizer:
        params = list(self.encoder.parameters()) + list(self.decoder.parameters())
        return tl.make_optimizer(self.config["optimizer"], params, self.config["lr"])

    def _encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        out = self.encoder(x)
        if self.variational:
            d = int(self.config["latent_dim"])
            return out[:, :d], out[:, d:]
        return out, None

    def _corrupt(self, x: torch.Tensor, unit_noise: torch.Tensor) -> torch.Tensor:
        if not self.denoising:
            return x
        return (x + float(self.config["noise"]) * unit_noise).clamp(0.0, 1.0)

    def _losses(self, x: torch.Tensor, unit_noise: torch.Tensor,
                eps: torch.Tensor | None) -> dict[str, torch.Tensor]:
        """Per-batch losses; ``eps`` is the VAE's sampling noise (None → use the mean)."""
        mu, logvar = self._encode(self._corrupt(x, unit_noise))
        z = mu
        if logvar is not None and eps is not None:  # a VAE sampling
            z = mu + torch.exp(0.5 * logvar) * eps
        logits = self.decoder(z)
        recon = F.binary_cross_entropy_with_logits(logits, x, reduction="sum") / len(x)
        if logvar is None:  # not variational
            return {"loss": recon}
        kl = 0.5 * (mu.pow(2) + logvar.exp() - 1.0 - logvar).sum() / len(x)
        return {"loss": recon + float(self.config["beta"]) * kl, "recon": recon, "kl": kl}

    # -- the Trainer interface --------------------------------------------------------------------
    def step(self, part: str | None = None) -> dict[str, float]:
        g = self._gens["train"]
        n = int(self.config["batch_size"])
        idx = torch.randint(0, len(self._x_train), (n,), generator=g)
        x = self._x_train[idx]
        unit_noise = torch.randn(x.shape, generator=g) if self.denoising else x
        eps = (torch.randn((n, int(self.config["latent_dim"])), generator=g)
               if self.variational else None)
        losses = self._losses(x, unit_noise, eps)
        self.step_count += 1
        check_loss(float(losses["loss"].detach()), self.step_count)
        self._optimizer.zero_grad(set_to_none=True)
        losses["loss"].backward()
        self._optimizer.step()
        metrics = {"step": self.step_count, **{k: float(v.detach()) for k, v in losses.items()}}
        if self.step_count == 1 or self.step_count % TEST_EVERY == 0:
            metrics["test_loss"] = self.test_loss()
        return metrics

    @torch.no_grad()
    def test_loss(self) -> float:
        """The main loss on the whole test set (the VAE decodes the posterior mean)."""
        return float(self._losses(self._x_test, self._test_noise, None)["loss"])

    def on_param_changed(self, name: str) -> None:
        if name == "lr":
            tl.set_lr(self._optimizer, self.config["lr"])
        elif name == "optimizer":
            self._optimizer = self._new_optimizer()

    def state_dict(self) -> dict[str, Any]:
        return {
            "config": dict(self.config), "seed": self.seed, "step_count": self.step_count,
            "encoder": tl.tensor_state(self.encoder), "decoder": tl.tensor_state(self.decoder),
            "optimizer": tl.optimizer_state(self._optimizer),
            "generators": tl.generator_states(self._gens),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.config = self.validate_config(state["config"])
        self.step_count = int(state["step_count"])
        self.encoder.load_state_dict(state["encoder"])
        self.decoder.load_state_dict(state["decoder"])
        self._optimizer = self._new_optimizer()
        self._optimizer.load_state_dict(state["optimizer"])
        tl.load_generator_states(self._gens, state["generators"])
        self._snap_key = None

    # -- pictures ----------------------------------------------------------------------------------
    def _decode_images(self, z: torch.Tensor) -> np.ndarray:
        side = self.data.side
        return tl.to_numpy(torch.sigmoid(self.decoder(z))).reshape(-1, side, side)

    def _grid_axes(self, mu: torch.Tensor) -> tuple[np.ndarray, np.ndarray, torch.Tensor]:
        """Latent values along the two shown axes, and the fill-in for the other dimensions."""
        if self.variational:
            q = [NormalDist().inv_cdf(p) for p in np.linspace(0.04, 0.96, GRID)]
            return np.array(q), np.array(q), torch.zeros(mu.shape[1])
        lo = np.percentile(tl.to_numpy(mu[:, :2]), 2, axis=0)
        hi = np.percentile(tl.to_numpy(mu[:, :2]), 98, axis=0)
        return (np.linspace(lo[0], hi[0], GRID), np.linspace(lo[1], hi[1], GRID),
                mu.mean(dim=0))

    @torch.no_grad()
    def snapshot(self) -> dict[str, Any]:
        key = (self.step_count, self.config["interp_from"], self.config["interp_to"],
               self.config.get("noise"), id(self.encoder))
        if key == self._snap_key:
            return self._snap
        data, side = self.data, self.data.side
        x_show = self._x_test[data.shown]
        inputs = self._corrupt(x_show, self._test_noise[data.shown])
        mu, logvar = self._encode(self._corrupt(self._x_scatter, self._scatter_noise))
        xs, ys, fill = self._grid_axes(mu)
        gz = fill.repeat(GRID * GRID, 1)
        # Rows from high z₂ (top) to low, so the grid reads like the scatter plot.
        gz[:, 0] = torch.tensor(np.tile(xs, GRID), dtype=torch.float32)
        gz[:, 1] = torch.tensor(np.repeat(ys[::-1], GRID), dtype=torch.float32)
        a = int(data.anchors[int(self.config["interp_from"])])
        b = int(data.anchors[int(self.config["interp_to"])])
        t = torch.linspace(0.0, 1.0, INTERP_STEPS)[:, None]
        z_interp = (1 - t) * mu[a] + t * mu[b]
        snap: dict[str, Any] = {
            "step": self.step_count,
            "dataset": data.name,
            "photo": data.photo,  # draw as a grey photo, not as ink
            "originals": x_show.numpy().reshape(-1, side, side).copy(),
            "reconstructions": self._decode_images(self._encode(inputs)[0]),
            "latent": tl.to_numpy(mu[:, :2]),
            # The scatter's colour groups (digit classes, or brightness fifths of the faces).
            "labels": data.groups,
            "label_names": data.group_names,
            "colour_by": data.colour_by,
            "scatter_of": data.scatter_of,
            "latent_dim": int(self.config["latent_dim"]),
            "latent_axes": "first two latent dimensions",
            "grid": self._decode_images(gz).reshape(GRID, GRID, side, side),
            "grid_extent": (float(xs[0]), float(xs[-1]), float(ys[0]), float(ys[-1])),
            "interpolation": self._decode_images(z_interp),
            "interp_ends": (int(self.config["interp_from"]), int(self.config["interp_to"])),
            "interp_names": (data.anchor_names[int(self.config["interp_from"])],
                             data.anchor_names[int(self.config["interp_to"])]),
            "variational": self.variational,
        }
        if self.denoising:
            snap["inputs"] = inputs.numpy().reshape(-1, side, side).copy()
        if self.variational:
            if not data.scatter_is_test:
                mu, logvar = self._encode(self._corrupt(self._x_test, self._test_noise))
            assert logvar is not None  # a VAE's encoder gives a log-variance
            kl = 0.5 * (mu.pow(2) + logvar.exp() - 1.0 - logvar)
            snap["kl_per_dim"] = tl.to_numpy(kl.mean(dim=0))
            # The ELBO split on the test set (decoding the means), for the bars.
            recon = F.binary_cross_entropy_with_logits(
                self.decoder(mu), self._x_test, reduction="sum") / len(mu)
            snap["elbo_split"] = {"reconstruction": float(recon),
                                  "KL": float(kl.sum(dim=1).mean()),
                                  "beta": float(self.config["beta"])}
        self._snap_key, self._snap = key, snap
        return snap


class DenoisingAutoencoderTrainer(AutoencoderTrainer):
    """The same autoencoder, fed noisy digits and asked for the clean ones."""

    info = LessonInfo(
        **lesson_text("denoising-autoencoder"),
        explanation=(
            "**What you see.** Each test digit three times: clean, with noise added (what the "
            "network gets) and the network's reconstruction. The scatter and grid show its 2-D "
            "code as in the plain autoencoder.\n\n"
            "**What to try.** Move the noise slider while it trains: a little noise makes the "
            "code more robust; a lot makes digits ambiguous (a 3 or an 8?). "
            f"{FACES_TRY}\n\n"
            "**Normal.** Reconstructions look cleaner than the inputs within a few hundred "
            "steps; the loss settles higher than the plain autoencoder's, since some noise "
            "destroys information. A minute or two on a CPU."),
        series=("loss", "test_loss"),
        series_labels={"loss": "Train loss", "test_loss": "Test loss"},
    )
    params = _common_params(1e-3) + (
        ParamSpec("noise", 0.3, "float", minimum=0.0, maximum=1.0, live=True, label="Noise",
                  help="Standard deviation of the Gaussian noise added to the input images."),
    )
    denoising = True


class VAETrainer(AutoencoderTrainer):
    """A variational autoencoder: the encoder gives a Gaussian per image; the loss is −ELBO."""

    info = LessonInfo(
        **lesson_text("vae"),
        explanation=(
            "**What you see.** Reconstructions, the 2-D latent means of the test digits, and a "
            "grid decoded at the quantiles of N(0, 1) — what sampling the prior gives. The bars "
            "split the loss (the negative ELBO) into reconstruction and KL, and show the KL of "
            "each latent dimension.\n\n"
            "**What to try.** Slide β: at 0 it is an autoencoder (sharp, gappy latent space); "
            "at 3–4 the codes crowd around 0 and digits blur or collapse. With more latent "
            "dimensions, watch unused ones fall to KL ≈ 0. "
            f"{FACES_TRY} On faces, β = 1 leaves one dimension unused (its KL falls to 0: "
            "*posterior collapse*); slide β to 0.3 and both come alive.\n\n"
            "**Normal.** Reconstruction falls while KL first rises then settles; the grid "
            "morphs smoothly between classes after a few hundred steps (a minute or two)."),
        series=("loss", "recon", "kl", "test_loss"),
        series_labels={"loss": "−ELBO (train)", "recon": "Reconstruction", "kl": "KL",
                       "test_loss": "−ELBO (test)"},
    )
    params = _common_params(1e-3) + (
        ParamSpec("beta", 1.0, "float", minimum=0.0, maximum=4.0, live=True, label="β",
                  help="Weight of the KL term: higher = smoother, blurrier latent space."),
    )
    variational = True
