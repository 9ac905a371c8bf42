"""Image lesson 3, ``ddpm``: a small diffusers ``UNet2DModel`` learns to denoise images (Ho et al.
2020), trained through ``accelerate`` as the ``cnn`` and ``dcgan`` lessons are.

Forward process: diffusers' :class:`~diffusers.DDPMScheduler` (1000 steps, linear or cosine β)
adds noise, ``x_t = √ᾱ_t·x₀ + √(1−ᾱ_t)·ε``; the UNet (two resolution levels, ``width`` and
2·``width`` channels, optionally a class embedding) predicts ε; the loss is the ε-MSE. Images come
from :mod:`studio.pipelines.train.image_data`, scaled to [−1, 1]; with ``class_conditional`` the
image's class (the sub-folder of your folder, the digit…) is the UNet's class label.

The pictures: a noise-level scrubber over a few fixed real images (their noise is fixed too, so the
slider only moves t), the ε-MSE per fifth of the timesteps, and the reverse chain as a film strip:
eight fixed noise images walked back by DDIM in ``preview_steps`` steps, a frame every few steps.
The chain runs on a copy of the model frozen when it began, a few steps per frame in
:meth:`DDPMImageTrainer.prepare_snapshot` (while the window draws), and through the same loop
Generate uses (:mod:`studio.pipelines.diffusion.pixel`). :meth:`DDPMImageTrainer.export_model` writes
the model as a ``DDPMPipeline`` folder (DDIM scheduler) Generate lists.

Deterministic for a seed on the CPU: the UNet is initialised under ``torch.random.fork_rng`` from
the lesson's seed (diffusers' layers draw from the global generator, which is restored after), and
every other random number comes from the lesson's own generators.
"""

from __future__ import annotations

import copy
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from studio.core.wording import count_of
from studio.library.models import DDPM_CLASSES_FILE
from studio.pipelines.diffusion.pixel import denoise
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
from studio.pipelines.train.image_data import ClassImages, load_class_images
from studio.pipelines.train.registry import lesson_text

DDPM_SIZES = ("16", "24", "32")  # two 2× downsamplings: a multiple of 4
TIMESTEPS = 1000
BETA_SCHEDULES = ("linear", "squaredcos_cap_v2")
BETA_NAMES = {"linear": "Linear (DDPM)", "squaredcos_cap_v2": "Cosine (improved DDPM)"}
BUCKETS = 5  # ε-MSE per fifth of the timesteps: mse_t0 (least noise) … mse_t4 (most)
STRIP_ROWS = 8  # fixed noise images in the film strip
STRIP_FRAMES = 6  # frames of each row: pure noise … the sample
STRIP_EVERY = 50  # steps between film strips while it plays
CHAIN_BUDGET_S = 0.03  # CPU time a frame spends on the film strip (at least one step)
SCRUB_IMAGES = 8
HIST_BINS = 30

EXPLANATION = """\
**What you see.** Left: a few real images and the noise slider: drag it from t = 0 (clean) to
t = 1000 (pure noise) to see what the model is asked to undo at each level. Below: the film strip,
eight fixed noise images walked back to images by the model (DDIM, a frame every few steps, from
noise on the left to the sample on the right); it is redrawn every {every}. Right: the
ε-MSE per range of noise levels, and histograms of each layer's weights and gradients.

**What to try.** Scrub slowly: around t = 300 the digit is still readable, by t = 700 it is gone —
the model must invent it there. Turn on *class-conditional* (reset) and the strip's rows become
the classes 0, 1, 2…; try the cosine β schedule; more preview steps give cleaner strips. Try
*Faces*, *Shapes*, or **your own folder**. Then pause, use **Runs → Export model to
Generate…** (or `studio train ddpm --export NAME`) and draw new images in Generate (pick the
model; a class instead of a prompt).

**What is normal.** The loss drops from about 1 to 0.1 within 100 steps and then creeps down
while staying noisy (every batch draws fresh noise and noise levels). The error is highest at low
noise, where ε is hard to see under the image. On digits at 16 px the strip turns from noise
into blobs and then stroke-like shapes after about 300 steps ({normal}), recognisable digits
after about 1,500.
"""
#: measured on the 2-core development machine under load from other jobs (load average ~16), one
#: torch thread, seed 0, batch 32: ~0.3 s a step, 300 steps in about 90 s
NORMAL_TIME = "about a minute and a half of one CPU core"


def build_unet(channels: int, size: int, width: int, n_classes: int, seed: int) -> Any:
    """A small ``UNet2DModel`` (two levels, no attention) initialised from ``seed`` without moving
    torch's global generator."""
    from diffusers import UNet2DModel

    groups = 8 if width % 8 == 0 else (4 if width % 4 == 0 else 1)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(seed) * 1_000_003 + 11)
        return UNet2DModel(
            sample_size=size, in_channels=channels, out_channels=channels,
            block_out_channels=(width, 2 * width), layers_per_block=1,
            down_block_types=("DownBlock2D", "DownBlock2D"),
            up_block_types=("UpBlock2D", "UpBlock2D"), norm_num_groups=groups,
            num_class_embeds=n_classes or None)


def make_scheduler(beta_schedule: str) -> Any:
    from diffusers import DDPMScheduler

    return DDPMScheduler(num_train_timesteps=TIMESTEPS, beta_schedule=beta_schedule)


def preview_scheduler(train_scheduler: Any) -> Any:
    """DDIM over the training scheduler's βs (η = 0: the same noise gives the same image)."""
    from diffusers import DDIMScheduler

    return DDIMScheduler.from_config(train_scheduler.config)


class DDPMImageTrainer(ImageLesson):
    """A small diffusion model on images, with the views a student needs to watch it learn."""

    info = LessonInfo(
        **lesson_text("ddpm"),
        explanation=EXPLANATION.format(every=count_of(STRIP_EVERY, "step"), normal=NORMAL_TIME),
        series=tl.bucket_series(BUCKETS),
        series_labels={"loss": "ε-MSE (all t)", **{
            f"mse_t{i}": f"ε-MSE, t {TIMESTEPS * i // BUCKETS}–{TIMESTEPS * (i + 1) // BUCKETS}"
            for i in range(BUCKETS)}},
    )
    params = (
        tl.lr_spec(2e-3),
        *schedule_specs(2000),
        ParamSpec("preview_steps", 20, "int", minimum=2, maximum=200, live=True,
                  label="Preview steps",
                  help="DDIM steps of the film strip: more give cleaner samples, slower."),
        ParamSpec("class_conditional", False, "bool", label="Class-conditional",
                  help="Give the UNet each image's class, so it can draw the class you ask for."),
        ParamSpec("beta_schedule", "linear", "choice", choices=BETA_SCHEDULES,
                  choice_labels=BETA_NAMES, label="Noise (β) schedule",
                  help="How fast the 1000 steps add noise: linear as in DDPM, or cosine, which "
                       "destroys the image more slowly."),
        *data_specs("Your own images (one sub-folder per class for class-conditional). Any "
                    "size; centre-cropped and resized.", DDPM_SIZES,
                    "Pixels per side of the images the model learns and draws.", 32),
        ParamSpec("width", 16, "int", minimum=4, maximum=128, label="Channels",
                  help="Channels of the UNet's first level (the second has twice as many)."),
    )

    def __init__(self, config: dict[str, Any] | None = None, seed: int = 0,
                 step_count: int = 0) -> None:
        super().__init__(config=self.validate_config(config), seed=seed, step_count=step_count)
        cfg = self.config
        size = int(cfg["image_size"])
        self.data: ClassImages = load_class_images(cfg["dataset"], size, cfg["data_folder"])
        self.n_classes = self.data.n_classes if cfg["class_conditional"] else 0
        if cfg["class_conditional"] and self.data.n_classes < 2:
            raise InvalidParameter(
                f"A class-conditional model needs at least two classes, and "
                f"{self.data.describe()} Put each class's images in its own sub-folder, or "
                "turn class-conditional off.")
        self.accelerator = batch_accelerator(cfg["batch_size"])
        self._x = torch.from_numpy(np.concatenate([self.data.x_train, self.data.x_test])) * 2 - 1
        self._y = torch.from_numpy(np.concatenate([self.data.y_train, self.data.y_test]))
        self._gens = {"train": tl.seeded_generator(seed, 2)}
        self.scheduler = make_scheduler(cfg["beta_schedule"])
        self._abar = self.scheduler.alphas_cumprod.float()
        unet = build_unet(self.data.channels, size, int(cfg["width"]), self.n_classes, seed)
        self.model = self.accelerator.prepare_model(unet)
        self._plain = plain_loop(self.accelerator)
        self._optimizer = self.accelerator.prepare_optimizer(
            tl.make_optimizer("adam", self.model.parameters(), float(cfg["lr"])))
        fixed = tl.seeded_generator(seed, 3)
        pick = torch.randperm(len(self._x), generator=fixed)[:SCRUB_IMAGES]
        self._scrub_x0 = self._x[pick].clone()
        self._scrub_eps = torch.randn(self._scrub_x0.shape, generator=fixed)
        self._strip_noise = torch.randn((STRIP_ROWS, self.data.channels, size, size),
                                        generator=fixed)
        self._strip_labels = (torch.arange(STRIP_ROWS) % self.n_classes
                              if self.n_classes else None)
        self._bucket_mse = [float("nan")] * BUCKETS
        self._chain: dict[str, Any] | None = None  # the film strip being sampled
        self._strip: tuple[int, np.ndarray] | None = None  # (step, frames) of the last strip
        self._snap_step = -1
        self._snap: dict[str, Any] = {}

    @property
    def unet(self) -> Any:
        return self.accelerator.unwrap_model(self.model)

    # -- the Trainer interface ------------------------------------------------------------------
    def step(self, part: str | None = None) -> dict[str, float]:
        acc = self.accelerator
        g = self._gens["train"]
        n = int(self.config["batch_size"])
        idx = torch.randint(0, len(self._x), (n,), generator=g)
        # stratified timesteps: every fifth of them gets its share of each batch
        u = torch.rand(n, generator=g)
        t = ((torch.arange(n) + u) / n * TIMESTEPS).long().clamp(max=TIMESTEPS - 1)
        t = t[torch.randperm(n, generator=g)]
        eps = torch.randn((n, *self._x.shape[1:]), generator=g)
        mine = slice(acc.process_index, None, acc.num_processes)
        x0, eps_m, t_m = self._x[idx][mine], eps[mine], t[mine]
        labels = self._y[idx][mine] if self.n_classes else None
        lr = scheduled_lr(self.config, self.step_count)
        tl.set_lr(self._optimizer, lr)
        self.model.train()
        opt = self._optimizer.optimizer if self._plain else self._optimizer
        opt.zero_grad(set_to_none=True)
        noisy = self.scheduler.add_noise(x0, eps_m, t_m)
        dev = acc.device
        extra = {} if labels is None else {"class_labels": labels.to(dev)}
        pred = self.model(noisy.to(dev), t_m.to(dev), **extra).sample.float()
        per_sample = (pred - eps_m.to(dev)).pow(2).flatten(1).mean(1)
        loss_sum = per_sample.sum()
        scaled = loss_sum * acc.num_processes / n
        if self._plain:
            scaled.backward()
        else:
            acc.backward(scaled)
        detached = per_sample.detach().cpu()
        bucket = (t_m * BUCKETS) // TIMESTEPS
        sums = torch.zeros(2 * BUCKETS + 1)
        sums[0] = detached.sum()
        for b in range(BUCKETS):
            mask = bucket == b
            sums[1 + b] = detached[mask].sum()
            sums[1 + BUCKETS + b] = mask.sum()
        if acc.num_processes > 1:
            sums = acc.reduce(sums.to(dev), reduction="sum").cpu()
        loss = float(sums[0]) / n
        self.step_count += 1
        check_loss(loss, self.step_count)
        opt.step()
        metrics: dict[str, float] = {"step": self.step_count, "loss": loss, "lr": lr}
        for b in range(BUCKETS):
            count = float(sums[1 + BUCKETS + b])
            if count:
                tl.note_bucket(metrics, self._bucket_mse, b, float(sums[1 + b]) / count)
        return metrics

    def on_param_changed(self, name: str) -> None:
        if name in ("lr", "schedule", "warmup_steps", "schedule_steps"):
            tl.set_lr(self._optimizer, scheduled_lr(self.config, self.step_count))
        elif name == "preview_steps":
            self._chain = None
            self._strip = None

    def state_dict(self) -> dict[str, Any]:
        return {
            "config": dict(self.config), "seed": self.seed, "step_count": self.step_count,
            "model": tl.tensor_state(self.unet),
            "optimizer": tl.optimizer_state(self._optimizer.optimizer),
            "generators": tl.generator_states(self._gens),
            "bucket_mse": list(self._bucket_mse),
            # for exporting the model without its data
            "classes": list(self.data.class_names), "channels": self.data.channels,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.config = self.validate_config(state["config"])
        self.step_count = int(state["step_count"])
        self.unet.load_state_dict(state["model"])
        self._optimizer.optimizer.load_state_dict(state["optimizer"])
        self.on_param_changed("lr")
        tl.load_generator_states(self._gens, state["generators"])
        self._bucket_mse = [float(v) for v in state["bucket_mse"]]
        self._chain = self._strip = None
        self._snap_step = -1

    # -- accelerate checkpoints (headless and multi-process runs) --------------------------------
    def _extra_state(self) -> dict[str, Any]:
        return {"step_count": self.step_count, "config": dict(self.config),
                "generators": tl.generator_states(self._gens),
                "bucket_mse": list(self._bucket_mse)}

    def _restore_extra(self, extra: dict[str, Any]) -> None:
        self.step_count = int(extra["step_count"])
        tl.load_generator_states(self._gens, extra["generators"])
        self._bucket_mse = [float(v) for v in extra["bucket_mse"]]
        self._chain = self._strip = None
        self._snap_step = -1

    def save_accelerate_state(self, folder: Path) -> None:
        """The UNet, optimizer and RNG through accelerate, plus the lesson's own step,
        generators and per-level errors."""
        self._save_accelerate_extra(folder)

    def load_accelerate_state(self, folder: Path) -> None:
        self._load_accelerate_extra(folder)

    # -- export ----------------------------------------------------------------------------------
    def export_model(self, folder: Path) -> list[Path]:
        """The model for Generate as a ``DDPMPipeline`` folder (safetensors, DDIM scheduler over
        the training βs), with ``class_names.json`` when class-conditional; see
        :func:`export_state`."""
        return export_state(self.state_dict(), folder)

    # -- pictures ----------------------------------------------------------------------------------
    def _layers(self) -> list[tuple[str, nn.Conv2d | nn.Linear]]:
        unet = self.unet
        down = [m for b in unet.down_blocks for m in b.modules() if isinstance(m, nn.Conv2d)]
        up = [m for b in unet.up_blocks for m in b.modules() if isinstance(m, nn.Conv2d)]
        return [("in", unet.conv_in), ("down", down[0]), ("middle", unet.mid_block.resnets[0].conv1),
                ("up", up[-1]), ("out", unet.conv_out)]

    def _start_chain(self) -> None:
        frozen = copy.deepcopy(self.unet).eval()
        scheduler = preview_scheduler(self.scheduler)
        steps = int(self.config["preview_steps"])
        labels = self._strip_labels
        chain = denoise(frozen, scheduler, self._strip_noise.clone(), steps, None, labels)
        keep = sorted(set(np.linspace(0, steps - 1, STRIP_FRAMES - 1).round().astype(int)))
        self._chain = {"step": self.step_count, "iter": chain, "keep": keep,
                       "frames": [self._strip_noise.clone()]}

    def _advance_chain(self, budget_s: float | None) -> None:
        chain = self._chain
        assert chain is not None
        start = time.process_time()
        for i, _, image in chain["iter"]:
            if i in chain["keep"]:
                chain["frames"].append(image.detach().float().cpu())
            if budget_s is not None and time.process_time() - start >= budget_s:
                return
        frames = torch.stack(chain["frames"], dim=1)  # (rows, frames, C, s, s)
        pixels = tl.to_numpy(((frames.clamp(-1, 1) + 1) / 2).permute(0, 1, 3, 4, 2))
        self._strip = (chain["step"], pixels)
        self._chain = None

    def prepare_snapshot(self, finish: bool = False) -> None:
        due = self._strip is None or self.step_count - self._strip[0] >= STRIP_EVERY
        if finish and self._strip is not None and self._strip[0] != self.step_count:
            due = True
            if self._chain is not None and self._chain["step"] != self.step_count:
                self._chain = None  # a paused frame shows the model of the step shown
        if self._chain is None and due:
            self._start_chain()
        if self._chain is not None:
            self._advance_chain(None if finish else CHAIN_BUDGET_S)

    def sample_strip(self) -> np.ndarray:
        """The film strip of the current model, sampled in one go: (rows, frames, s, s, C)."""
        self._chain = None
        self._start_chain()
        self._advance_chain(None)
        assert self._strip is not None
        return self._strip[1]

    def snapshot(self) -> dict[str, Any]:
        if self._snap_step == self.step_count and self._snap and (
                self._strip is None or self._snap.get("strip_step") == self._strip[0]):
            return self._snap
        if self._strip is None:  # the first frame waits for a strip
            self.sample_strip()
        assert self._strip is not None

        def to_hwc(x: torch.Tensor) -> np.ndarray:
            return tl.to_numpy(x.permute(0, 2, 3, 1))

        snap: dict[str, Any] = {
            "step": self.step_count,
            "photo": self.data.photo,
            "channels": self.data.channels,
            "data_short": self.data.short(),
            "data_note": self.data.describe(),
            "class_names": self.data.class_names if self.n_classes else (),
            "strip_labels": ([self.data.class_names[int(k)] for k in self._strip_labels]
                             if self._strip_labels is not None else []),
            # the scrubber: x_t = √ᾱ_t·x₀ + √(1−ᾱ_t)·ε, computed by the view for any t
            "scrub_x0": to_hwc(self._scrub_x0), "scrub_eps": to_hwc(self._scrub_eps),
            "alphas_cumprod": tl.to_numpy(self._abar),
            "strip": self._strip[1], "strip_step": self._strip[0],
            "preview_steps": int(self.config["preview_steps"]),
            "bucket_mse": np.array(self._bucket_mse, dtype=np.float32),
            "bucket_labels": tl.bucket_labels(TIMESTEPS, BUCKETS),
            "histograms": tl.layer_histograms(self._layers(), HIST_BINS),
            "lr": scheduled_lr(self.config, self.step_count),
        }
        self._snap_step, self._snap = self.step_count, snap
        return snap


def export_state(state: dict[str, Any], folder: Path) -> list[Path]:
    """Write a ``ddpm`` lesson's ``state_dict()`` (or its run checkpoint) into ``folder`` as a
    ``DDPMPipeline``: ``unet/`` and ``scheduler/`` (DDIM over the training βs) in safetensors and
    JSON, ``model_index.json``, ``class_names.json`` for a class-conditional model, and
    ``studio_lesson.json`` (seed, steps, data); returns what it wrote there. The library puts it
    in place (:mod:`studio.pipelines.train.export`: a hidden folder renamed when whole)."""
    from diffusers import DDPMPipeline

    # the saved values over the defaults, unchecked: a data folder since moved must not stop it
    config = {**{p.name: p.default for p in DDPMImageTrainer.params}, **state["config"]}
    classes = [str(c) for c in state.get("classes", [])]
    n_classes = len(classes) if config["class_conditional"] else 0
    unet = build_unet(int(state["channels"]), int(config["image_size"]), int(config["width"]),
                      n_classes, 0)
    unet.load_state_dict(state["model"])
    pipe: Any = DDPMPipeline(unet=unet.eval(),
                             scheduler=preview_scheduler(make_scheduler(config["beta_schedule"])))
    folder = Path(folder)
    pipe.save_pretrained(str(folder), safe_serialization=True)
    if n_classes:
        (folder / DDPM_CLASSES_FILE).write_text(json.dumps(classes), encoding="utf-8")
    (folder / "studio_lesson.json").write_text(json.dumps({
        "lesson": "ddpm", "seed": int(state.get("seed", 0)),
        "steps": int(state["step_count"]), "config": config,
        "preview_steps": int(config["preview_steps"])}, indent=1), encoding="utf-8")
    return sorted(folder.iterdir())
