"""Image lesson 2, ``dcgan``: a small DCGAN (Radford et al. 2015), trained through ``accelerate``.

Generator: z → transposed conv 4×4 to a 4×4 map → (transposed conv 4×4 stride 2, BatchNorm,
ReLU) doubling the size up to ``image_size`` → tanh. Discriminator: the mirror image, strided
4×4 convs with LeakyReLU(0.2) and BatchNorm (none on its first layer) down to 4×4, then one 4×4
conv to a logit. Weights start from N(0, 0.02) (BatchNorm scales from N(1, 0.02)) as in the
paper; Adam with β1 = 0.5. Images come from :mod:`studio.pipelines.train.image_data` (labels
unused), scaled to [−1, 1].

One step is one discriminator update (real batch, then fake batch, each its own BatchNorm batch as
in the paper) and one generator update (non-saturating loss); ``step("D")`` / ``step("G")`` runs
one update of that player alone. Each player has its own learning rate (``lr_d``, ``lr_g``);
the schedule (constant, cosine, warm-up) scales both. The loop runs through
:class:`accelerate.Accelerator` as the ``cnn`` lesson's does: under ``accelerate launch`` each
process takes its share of the global batch and backpropagates ``sum × n / batch``.

Deterministic for a seed on the CPU: every random number comes from the lesson's own generators,
and the pictures are drawn with the networks in eval mode (BatchNorm's running statistics), so
drawing them never changes training.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from studio.pipelines.train import torch_lessons as tl
from studio.pipelines.train.base import InvalidParameter, LessonInfo, ParamSpec, check_loss
from studio.pipelines.train.cnn import (
    ImageLesson,
    batch_accelerator,
    data_specs,
    plain_loop,
    schedule_specs,
    scheduled_lr,
)
from studio.pipelines.train.gan2d import PlayerRates, player_lr_spec
from studio.pipelines.train.image_data import (
    ClassImages,
    load_class_images,
)
from studio.pipelines.train.registry import lesson_text

if TYPE_CHECKING:
    from accelerate.optimizer import AcceleratedOptimizer

GAN_SIZES = ("16", "32")  # a DCGAN doubles 4×4 up to the image: powers of two
SAMPLES = 64  # fixed-noise samples in the grid (8 × 8)
WALK = 10  # images in the latent walk
HIST_BINS = 30
COLLAPSE_RATIO = 0.45  # samples this much less varied than real images: collapse
FALLING_RATIO = 0.7  # below this share of the run's best variety: falling
HINT_AFTER = 200  # before this step the samples are noise or blobs: too early to judge

EXPLANATION = """\
**What you see.** Left: 64 samples the generator makes from the same 64 noise vectors all run
long, so you watch the same "people" grow up; drag the slider under them back through training.
Right: the latent walk (ten images on the straight line between two fixed noise vectors); D(x)
(how real the discriminator finds real images) and D(G(z)) (how real it finds fakes); the
samples' variety against real images', with a sentence when it hints at mode collapse; and
histograms of each layer's weights and gradients (G 1–3, D 1–3).

**What to try.** Step D or G alone (the buttons beside the data set) and watch the other react. Give D a
learning rate ten times G's and see D(G(z)) sink to 0 and G stall; give G the faster rate and
look for **mode collapse**: the grid fills with copies of a few shapes and the variety falls (a
sentence says so). Switch the schedule, try *Faces*, *Shapes*, or **your own folder** (any
images; sub-folders are ignored as classes).

**What is normal.** On digits at 16 px blurry strokes appear within 250 steps and recognisable
digits by about 1,000 steps: {normal}. D(x) settles near 0.8–0.9 and D(G(z)) near 0.1–0.25, the
samples varying about 80 % as much as real images; neither loss goes to 0 (if D's does, G has lost). Losses
oscillate, and a sample may change digit.
"""
#: measured on the 2-core development machine under load from other jobs (load average 5–7), one
#: torch thread, seed 0: 1,000 steps in 36–51 s (two runs), digits readable from ~500 steps
NORMAL_TIME = "under a minute of one CPU core"


def _init(module: nn.Module, generator: torch.Generator) -> None:
    """DCGAN init: conv weights N(0, 0.02), BatchNorm scale N(1, 0.02) and shift 0."""
    with torch.no_grad():
        for m in module.modules():
            if isinstance(m, nn.Conv2d | nn.ConvTranspose2d):
                m.weight.normal_(0.0, 0.02, generator=generator)
            elif isinstance(m, nn.BatchNorm2d):
                m.weight.normal_(1.0, 0.02, generator=generator)
                m.bias.zero_()


def _doublings(size: int) -> int:
    return int(round(math.log2(size // 4)))


class Generator(nn.Module):
    def __init__(self, nz: int, width: int, channels: int, size: int,
                 generator: torch.Generator) -> None:
        super().__init__()
        n = _doublings(size)
        w = width * 2 ** (n - 1)
        layers: list[nn.Module] = [nn.ConvTranspose2d(nz, w, 4, 1, 0, bias=False),
                                   nn.BatchNorm2d(w), nn.ReLU(True)]
        for _ in range(n - 1):
            layers += [nn.ConvTranspose2d(w, w // 2, 4, 2, 1, bias=False), nn.BatchNorm2d(w // 2),
                       nn.ReLU(True)]
            w //= 2
        layers += [nn.ConvTranspose2d(w, channels, 4, 2, 1, bias=False), nn.Tanh()]
        self.main = nn.Sequential(*layers)
        self.nz = nz
        _init(self, generator)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.main(z.reshape(len(z), self.nz, 1, 1))


class Discriminator(nn.Module):
    def __init__(self, width: int, channels: int, size: int, generator: torch.Generator) -> None:
        super().__init__()
        n = _doublings(size)
        w = width
        layers: list[nn.Module] = [nn.Conv2d(channels, w, 4, 2, 1, bias=False),
                                   nn.LeakyReLU(0.2, True)]
        for _ in range(n - 1):
            layers += [nn.Conv2d(w, 2 * w, 4, 2, 1, bias=False), nn.BatchNorm2d(2 * w),
                       nn.LeakyReLU(0.2, True)]
            w *= 2
        layers += [nn.Conv2d(w, 1, 4, 1, 0, bias=False)]
        self.main = nn.Sequential(*layers)
        _init(self, generator)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.main(x).reshape(-1)


def mean_pairwise_distance(images: np.ndarray) -> float:
    """Mean L2 distance between every two of ``images`` (n, …), a measure of variety."""
    flat = images.reshape(len(images), -1).astype(np.float64)
    sq = (flat * flat).sum(1)
    d2 = np.clip(sq[:, None] + sq[None, :] - 2 * flat @ flat.T, 0, None)
    n = len(flat)
    return float(np.sqrt(d2)[~np.eye(n, dtype=bool)].mean()) if n > 1 else 0.0


def variety_hint(ratio: float, best: float, step: int) -> str:
    """A sentence about mode collapse from the samples' variety (``ratio``: their mean pairwise
    distance over real images'; ``best``: the highest ratio this run has shown) at ``step``."""
    if step < HINT_AFTER:
        return (f"The samples vary {ratio:.0%} as much as real images. Too early to judge mode "
                f"collapse: the samples are still forming (wait for step {HINT_AFTER}).")
    if ratio < COLLAPSE_RATIO:
        return (f"Mode collapse? The samples vary {ratio:.0%} as much as real images: the "
                "generator makes a few things over and over. Lower G's learning rate, or "
                "step D alone a few times.")
    if best > 0 and ratio < FALLING_RATIO * best:
        return (f"The samples' variety is falling ({ratio:.0%} of the real images', down from "
                f"{best:.0%}): watch for mode collapse.")
    return f"The samples vary {ratio:.0%} as much as real images: no sign of mode collapse."


class AdversarialLesson(ImageLesson):
    """An image lesson of players (dcgan, cyclegan) whose own state beside accelerate's is its
    step, config, random generators and last numbers: its accelerate checkpoints."""

    _gens: dict[str, torch.Generator]
    _last: dict[str, float]
    _snap_step: int

    # -- accelerate checkpoints (headless and multi-process runs) --------------------------------
    def _extra_state(self) -> dict[str, Any]:
        return {"step_count": self.step_count, "config": dict(self.config),
                "generators": tl.generator_states(self._gens), "last": dict(self._last)}

    def _restore_extra(self, extra: dict[str, Any]) -> None:
        self.step_count = int(extra["step_count"])
        tl.load_generator_states(self._gens, extra["generators"])
        self._last = {k: float(v) for k, v in extra["last"].items()}
        self._snap_step = -1

    def save_accelerate_state(self, folder: Path) -> None:
        """The models, optimizers and RNG through accelerate, plus the lesson's own step,
        generators and last numbers."""
        self._save_accelerate_extra(folder)

    def load_accelerate_state(self, folder: Path) -> None:
        self._load_accelerate_extra(folder)



class DCGANTrainer(PlayerRates, AdversarialLesson):
    """A DCGAN on small images, with the views a student needs to watch it."""

    info = LessonInfo(
        **lesson_text("dcgan"),
        explanation=EXPLANATION.format(normal=NORMAL_TIME),
        series=("loss_d", "loss_g", "d_real", "d_fake"),
        series_labels={"loss_d": "D loss", "loss_g": "G loss", "d_real": "D(x)",
                       "d_fake": "D(G(z))"},
    )
    params = (
        ParamSpec("lr", 2e-4, "float", minimum=1e-6, maximum=10.0, live=True, log_scale=True,
                  label="Learning rate (both)",
                  help="Sets the learning rate of both players at once (Adam, β1 = 0.5)."),
        player_lr_spec("lr_d", 2e-4, "D learning rate", "discriminator"),
        player_lr_spec("lr_g", 2e-4, "G learning rate", "generator"),
        *schedule_specs(2000, "Scales both learning rates: "),
        *data_specs("Your own images (sub-folders are read too). Any size; centre-cropped "
                    "and resized.", GAN_SIZES, "Pixels per side the generator makes.", 64),
        ParamSpec("latent_dim", 32, "int", minimum=2, maximum=256, label="Latent dimensions",
                  help="Size of the noise vector z the generator starts from."),
        ParamSpec("width", 32, "int", minimum=4, maximum=128, label="Filters",
                  help="Filters of D's first and G's last hidden layer (doubling towards 4×4)."),
    )
    step_parts = ("D", "G")

    def __init__(self, config: dict[str, Any] | None = None, seed: int = 0,
                 step_count: int = 0) -> None:
        super().__init__(config=self.validate_config(config), seed=seed, step_count=step_count)
        cfg = self.config
        size = int(cfg["image_size"])
        self.data: ClassImages = load_class_images(cfg["dataset"], size, cfg["data_folder"])
        self.accelerator = batch_accelerator(cfg["batch_size"])
        self._x = torch.from_numpy(np.concatenate([self.data.x_train, self.data.x_test])) * 2 - 1
        self._gens = {"init": tl.seeded_generator(seed, 1), "train": tl.seeded_generator(seed, 2)}
        nz, width, ch = int(cfg["latent_dim"]), int(cfg["width"]), self.data.channels
        fixed = tl.seeded_generator(seed, 3)
        self._z_fixed = torch.randn((SAMPLES, nz), generator=fixed)
        ends = torch.randn((2, nz), generator=fixed)
        t = torch.linspace(0, 1, WALK)[:, None]
        self._z_walk = (1 - t) * ends[0] + t * ends[1]
        self.G = self.accelerator.prepare_model(Generator(nz, width, ch, size, self._gens["init"]))
        self.D = self.accelerator.prepare_model(Discriminator(width, ch, size, self._gens["init"]))
        self._plain = plain_loop(self.accelerator)  # torch's own backward() and step()
        self._opt_d = self._new_opt(self.D, cfg["lr_d"])
        self._opt_g = self._new_opt(self.G, cfg["lr_g"])
        pick = torch.randperm(len(self._x), generator=tl.seeded_generator(seed, 4))[:SAMPLES]
        self._real_variety = mean_pairwise_distance(self._x[pick].numpy())
        self._last: dict[str, float] = {}
        self._best_variety = 0.0  # for the hint only (not training state)
        self._snap_step = -1
        self._snap: dict[str, Any] = {}

    @property
    def generator(self) -> Generator:
        return self.accelerator.unwrap_model(self.G)

    @property
    def discriminator(self) -> Discriminator:
        return self.accelerator.unwrap_model(self.D)

    def _new_opt(self, model: nn.Module, lr: float) -> AcceleratedOptimizer:
        opt = tl.make_optimizer("adam", model.parameters(), lr, (0.5, 0.999))
        return self.accelerator.prepare_optimizer(opt)

    def _rates(self) -> tuple[float, float]:
        """(D's, G's) learning rate at this step under the schedule."""
        factor = scheduled_lr({**self.config, "lr": 1.0}, self.step_count)
        return float(self.config["lr_d"]) * factor, float(self.config["lr_g"]) * factor

    # -- one update of each player ---------------------------------------------------------------
    def _mine(self) -> tuple[int, torch.Tensor]:
        """(global batch size, this process's share of a fresh batch of indices)."""
        acc = self.accelerator
        n = int(self.config["batch_size"])
        idx = torch.randint(0, len(self._x), (n,), generator=self._gens["train"])
        return n, idx[acc.process_index::acc.num_processes]

    def _noise(self, k: int) -> torch.Tensor:
        z = torch.randn((k, int(self.config["latent_dim"])), generator=self._gens["train"])
        return z.to(self.accelerator.device)

    def _backward(self, loss: torch.Tensor) -> None:
        if self._plain:
            loss.backward()
        else:
            self.accelerator.backward(loss)

    def _update_d(self) -> None:
        acc = self.accelerator
        n, mine = self._mine()
        scale = acc.num_processes / n
        real = self._x[mine].to(acc.device)
        with torch.no_grad():
            fake = self.G(self._noise(len(mine)))
        self._opt_d.optimizer.zero_grad(set_to_none=True)
        out_real = self.D(real)
        loss_real = F.binary_cross_entropy_with_logits(out_real, torch.ones_like(out_real),
                                                       reduction="sum")
        self._backward(loss_real * scale)
        out_fake = self.D(fake)
        loss_fake = F.binary_cross_entropy_with_logits(out_fake, torch.zeros_like(out_fake),
                                                       reduction="sum")
        self._backward(loss_fake * scale)
        (self._opt_d.optimizer if self._plain else self._opt_d).step()
        totals = torch.stack([loss_real.detach() + loss_fake.detach(),
                              torch.sigmoid(out_real.detach()).sum(),
                              torch.sigmoid(out_fake.detach()).sum()])
        if acc.num_processes > 1:
            totals = acc.reduce(totals, reduction="sum")
        loss, d_real, d_fake = (float(v) / n for v in totals)
        self._last.update(loss_d=loss, d_real=d_real, d_fake=d_fake)

    def _update_g(self) -> None:
        acc = self.accelerator
        n, mine = self._mine()
        self._opt_g.optimizer.zero_grad(set_to_none=True)
        out = self.D(self.G(self._noise(len(mine))))
        loss = F.binary_cross_entropy_with_logits(out, torch.ones_like(out), reduction="sum")
        self._backward(loss * acc.num_processes / n)
        (self._opt_g.optimizer if self._plain else self._opt_g).step()
        total = loss.detach()
        if acc.num_processes > 1:
            total = acc.reduce(total, reduction="sum")
        self._last["loss_g"] = float(total) / n

    def _fill_missing(self) -> None:
        """Before a player's first update its numbers are measured (no update, eval mode), so
        every step's metrics have the same keys."""
        if "loss_d" in self._last and "loss_g" in self._last:
            return
        self.G.eval()
        self.D.eval()
        with torch.no_grad():
            _, mine = self._mine()
            real = self._x[mine].to(self.accelerator.device)
            out_real, out_fake = self.D(real), self.D(self.G(self._noise(len(mine))))
        self._last.setdefault("loss_d", float(
            F.binary_cross_entropy_with_logits(out_real, torch.ones_like(out_real))
            + F.binary_cross_entropy_with_logits(out_fake, torch.zeros_like(out_fake))))
        self._last.setdefault("d_real", float(torch.sigmoid(out_real).mean()))
        self._last.setdefault("d_fake", float(torch.sigmoid(out_fake).mean()))
        self._last.setdefault("loss_g", float(
            F.binary_cross_entropy_with_logits(out_fake, torch.ones_like(out_fake))))

    # -- the Trainer interface ---------------------------------------------------------------------
    def step(self, part: str | None = None) -> dict[str, float]:
        if part not in (None, *self.step_parts):
            raise InvalidParameter(f"Unknown step part {part!r}; use one of {self.step_parts}.")
        lr_d, lr_g = self._rates()
        tl.set_lr(self._opt_d, lr_d)
        tl.set_lr(self._opt_g, lr_g)
        # training mode (batch statistics): the pictures and the first measurements use eval
        self.G.train()
        self.D.train()
        if part in (None, "D"):
            self._update_d()
        if part in (None, "G"):
            self._update_g()
        self._fill_missing()
        self.step_count += 1
        loss = self._last["loss_d"] + self._last["loss_g"]
        check_loss(loss, self.step_count)
        return {"step": self.step_count, "loss": loss, **self._last, "lr_d": lr_d, "lr_g": lr_g}

    def on_param_changed(self, name: str) -> None:
        if name in ("lr", "lr_d", "lr_g", "schedule", "warmup_steps", "schedule_steps"):
            lr_d, lr_g = self._rates()
            tl.set_lr(self._opt_d, lr_d)
            tl.set_lr(self._opt_g, lr_g)

    def state_dict(self) -> dict[str, Any]:
        return {
            "config": dict(self.config), "seed": self.seed, "step_count": self.step_count,
            "generator": tl.tensor_state(self.generator),
            "discriminator": tl.tensor_state(self.discriminator),
            "opt_g": tl.optimizer_state(self._opt_g.optimizer),
            "opt_d": tl.optimizer_state(self._opt_d.optimizer),
            "generators": tl.generator_states(self._gens), "last": dict(self._last),
            "channels": self.data.channels,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.config = self.validate_config(state["config"])
        self.step_count = int(state["step_count"])
        self.generator.load_state_dict(state["generator"])
        self.discriminator.load_state_dict(state["discriminator"])
        self._opt_g.optimizer.load_state_dict(state["opt_g"])
        self._opt_d.optimizer.load_state_dict(state["opt_d"])
        self.on_param_changed("lr")
        tl.load_generator_states(self._gens, state["generators"])
        self._last = dict(state["last"])
        self._snap_step = -1

    # -- using the result ----------------------------------------------------------------------------
    def export_generator(self, folder: Path) -> list[Path]:
        """The generator for Generate (see :func:`write_generator`)."""
        return write_generator(Path(folder), self.generator.state_dict(), self.config,
                               self.data.channels, self.step_count, self.seed)

    # -- pictures ----------------------------------------------------------------------------------
    def _layers(self) -> list[tuple[str, nn.Conv2d | nn.ConvTranspose2d]]:
        convs = nn.Conv2d | nn.ConvTranspose2d
        g = [m for m in self.generator.modules() if isinstance(m, convs)]
        d = [m for m in self.discriminator.modules() if isinstance(m, convs)]
        return [(f"G {i + 1}", m) for i, m in enumerate(g)] + [
            (f"D {i + 1}", m) for i, m in enumerate(d)]

    @torch.no_grad()
    def _draw(self, z: torch.Tensor) -> np.ndarray:
        """Images for ``z`` (n, s, s, C) in [0, 1], the generator in eval mode."""
        gen = self.generator
        gen.eval()
        x = gen(z.to(self.accelerator.device)).float().cpu()
        return tl.to_numpy((x.clamp(-1, 1) + 1) / 2).transpose(0, 2, 3, 1).copy()

    def snapshot(self) -> dict[str, Any]:
        if self._snap_step == self.step_count and self._snap:
            return self._snap
        samples = self._draw(self._z_fixed)
        ratio = mean_pairwise_distance(samples * 2 - 1) / max(self._real_variety, 1e-8)
        if self.step_count >= HINT_AFTER:
            self._best_variety = max(self._best_variety, ratio)
        snap: dict[str, Any] = {
            "step": self.step_count,
            "samples": samples,
            "walk": self._draw(self._z_walk),
            "photo": self.data.photo,
            "channels": self.data.channels,
            "data_short": self.data.short(),
            "data_note": self.data.describe(),
            "variety": ratio,
            "variety_hint": variety_hint(ratio, self._best_variety, self.step_count),
            "histograms": tl.layer_histograms(self._layers(), HIST_BINS),
            **{k: v for k, v in self._last.items()},
        }
        self._snap_step, self._snap = self.step_count, snap
        return snap


def write_generator(folder: Path, state: dict[str, torch.Tensor], config: dict[str, Any],
                    channels: int, steps: int, seed: int) -> list[Path]:
    """The generator for Generate (:mod:`studio.pipelines.gan`): its weights (BatchNorm's
    running statistics included) as ``generator.safetensors`` and its shape and history in
    ``gan.json`` (:mod:`studio.library.gan_models`). No pickle."""
    from studio.library.gan_models import write_gan_folder

    tensors = {k: v.detach().cpu().contiguous() for k, v in state.items()}
    info = {"architecture": "dcgan", "latent_dim": int(config["latent_dim"]),
            "width": int(config["width"]), "channels": int(channels),
            "image_size": int(config["image_size"]), "lesson": "dcgan", "trained_steps": steps,
            "seed": seed, "dataset": config["dataset"]}
    return write_gan_folder(folder, tensors, info)
