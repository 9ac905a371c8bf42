"""Image lesson 1, ``cnn``: a small convolutional classifier, trained through ``accelerate``.

The network: conv 3×3 (``width`` filters) → ReLU → max-pool 2 → conv 3×3 (2·``width``) → ReLU →
max-pool 2 → average-pool to 4×4 → linear to the classes. Images come from
:mod:`studio.pipelines.train.image_data` (digits, generated shapes and textures, faces, photo
patches, or the student's own folder) at ``image_size`` px.

One step is one optimizer update on a global batch of ``batch_size`` images, drawn from the
lesson's own seeded generator. The loop runs through :class:`accelerate.Accelerator`: device
placement (CPU, or a GPU where there is one), mixed precision (off on a CPU), gradient
accumulation (``grad_accum`` micro-batches per update, synchronised across processes only on the
last one), and ``save_state``/``load_state`` for the checkpoints of a headless run. Started as
``accelerate launch -m studio train cnn …``, each process takes its share of the same global batch
(process r the images r, r + n, … of it) and backpropagates ``sum of its losses × n / batch``, so
the gradient the processes average is exactly the single-process batch mean: the loss curve of
two processes matches one process with the same batch (up to float rounding).

The learning rate follows a schedule computed from the step (constant, cosine decay to 5 %, or a
linear warm-up), so pausing, changing it live and resuming never desynchronise it.

Deterministic for a seed on the CPU. No Qt here; torch and accelerate are imported when the module
is (the registry imports lessons lazily).
"""

from __future__ import annotations

import contextlib
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from studio.pipelines.train import torch_lessons as tl
from studio.pipelines.train.base import InvalidParameter, LessonInfo, ParamSpec, Trainer, check_loss
from studio.pipelines.train.image_data import (
    SIZES,
    SOURCE_NAMES,
    SOURCES,
    ClassImages,
    check_source,
    load_class_images,
    preview,
    unavailable_sources,
)
from studio.pipelines.train.registry import lesson_text

if TYPE_CHECKING:
    from accelerate import Accelerator
    from accelerate.optimizer import AcceleratedOptimizer

TEST_EVERY = 25  # steps between test-set evaluations (test_loss, test_acc)
#: while it plays, the confusion matrix and the mistakes are at most this many steps old (the
#: test set's forward pass is most of a snapshot's cost); paused, they are of the step shown
TEST_REFRESH = 10
MISSED_SHOWN = 16  # misclassified test images in the view
HIST_BINS = 30
PREVIEW = 32  # images in the "what the model sees" grid
SCHEDULES = ("constant", "cosine", "warmup")
SCHEDULE_NAMES = {"constant": "Constant", "cosine": "Cosine decay", "warmup": "Linear warm-up"}
COSINE_FLOOR = 0.05  # cosine decays to this share of the learning rate, then stays
EXTRA_STATE = "studio_state.json"  # beside accelerate's files: the lesson's step and generators

EXPLANATION = """\
**What you see.** Top row: the input (what the model sees: prepared training images), the filters
of both convolution layers (first layer: what it looks for in the pixels; second layer: its
filters' 3×3 kernels over the first layer's maps; blue negative, orange positive), the test image
you pick with its saliency (how much each pixel moves the score of its true class: the gradient of
that score with respect to the input), and its feature maps. Bottom row: the confusion matrix on
the test set (rows: the true class, columns: the guess), the test images it gets wrong, and
histograms of each layer's weights and gradients.

**What to try.** Pick another image (Image #) and watch which pixels matter. Switch the schedule
to *cosine* or *warm-up*; raise the learning rate to 0.05 and see the loss jump. Try *Shapes* or
*Textures* (generated), *Photo patches*, or **your own folder**: one sub-folder of images per class
(cats/, dogs/, …). Change the image size: the input grid shows what the network gets. Widen the
network, or accumulate gradients over micro-batches (same result, less memory). Then right-click
any image in Gallery: *Classify with the trained CNN*; or export it (Runs → *Export model to
Gallery…*) to keep it as a classifier in your library.

**What is normal.** On digits at 16 px the test accuracy passes 95 % after about 200 steps:
{normal}, and settles near 97 %. The first-layer filters turn from noise into edge and blob
detectors; mistakes cluster on look-alikes (4/9, 3/8, 1/7). Weight histograms widen slowly;
gradients shrink as it learns. Run it headless, or on several processes or GPUs, with
`accelerate launch --multi_gpu --num_processes 2 -m studio train cnn --steps 1000 --out DIR`.
"""
#: measured with ``python -m bench.train --bare`` (seeds 0–2: steps 175–225, 0.8–1.0 s)
NORMAL_TIME = "about one second of one CPU core"


def _conv(n_in: int, n_out: int, generator: torch.Generator) -> nn.Conv2d:
    """A 3×3 ``nn.Conv2d`` (padding 1) with PyTorch's default init, drawn from ``generator``."""
    layer = torch.nn.utils.skip_init(nn.Conv2d, n_in, n_out, 3, padding=1)
    bound = 1.0 / math.sqrt(n_in * 9)
    with torch.no_grad():
        layer.weight.uniform_(-bound, bound, generator=generator)
        assert layer.bias is not None
        layer.bias.uniform_(-bound, bound, generator=generator)
    return layer


class SmallCNN(nn.Module):
    """Two conv blocks and a linear classifier; works at any input size ≥ 8 px."""

    def __init__(self, channels: int, width: int, n_classes: int,
                 generator: torch.Generator) -> None:
        super().__init__()
        self.conv1 = _conv(channels, width, generator)
        self.conv2 = _conv(width, 2 * width, generator)
        self.pool = nn.AdaptiveAvgPool2d(4)
        self.fc = tl.linear(2 * width * 16, n_classes, generator)

    def features(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(first conv's ReLU maps, second conv's ReLU maps, class scores)."""
        a1 = F.relu(self.conv1(x - 0.5))
        a2 = F.relu(self.conv2(F.max_pool2d(a1, 2)))
        return a1, a2, self.fc(self.pool(F.max_pool2d(a2, 2)).flatten(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)[2]


def data_specs(folder_help: str, sizes: tuple[str, ...], size_help: str,
               batch: int) -> tuple[ParamSpec, ParamSpec, ParamSpec, ParamSpec]:
    """The data knobs every image lesson has: the data set, your folder, the image size and the
    batch size."""
    return (
        ParamSpec("dataset", "digits", "choice", choices=SOURCES, label="Data set",
                  choice_labels=SOURCE_NAMES,
                  help="Digits (scikit-learn, upscaled), generated shapes or textures, faces or "
                       "photo patches (scikit-image), or your own folder of images."),
        ParamSpec("data_folder", "", "folder", label="Data folder", help=folder_help),
        ParamSpec("image_size", "16", "choice", choices=sizes, label="Image size",
                  choice_labels={s: f"{s}×{s}" for s in sizes}, help=size_help),
        ParamSpec("batch_size", batch, "int", minimum=2, maximum=1024, label="Batch size",
                  help="Images per update (across all processes)."),
    )


def scheduled_lr(config: dict[str, Any], step: int) -> float:
    """The learning rate of update number ``step`` (0-based) under the config's schedule."""
    lr = float(config["lr"])
    kind = config["schedule"]
    if kind == "warmup":
        return lr * min(1.0, (step + 1) / max(1, int(config["warmup_steps"])))
    if kind == "cosine":
        t = min(1.0, step / max(1, int(config["schedule_steps"])))
        return lr * (COSINE_FLOOR + (1 - COSINE_FLOOR) * 0.5 * (1 + math.cos(math.pi * t)))
    return lr


def schedule_specs(cosine_steps: int, scales: str = "") -> tuple[ParamSpec, ...]:
    """The image lessons' three live schedule knobs (``scales``: what the schedule scales, said
    first in its help, e.g. "Scales both learning rates: ")."""
    return (
        ParamSpec("schedule", "constant", "choice", choices=SCHEDULES, live=True,
                  choice_labels=SCHEDULE_NAMES, label="Learning-rate schedule",
                  help=(f"{scales}constant" if scales else "Constant") + "; cosine decay to 5 % "
                       "over the schedule's steps; or a linear warm-up from 0 over the warm-up "
                       "steps."),
        ParamSpec("warmup_steps", 100, "int", minimum=1, maximum=100_000, live=True,
                  label="Warm-up steps", help="Steps the warm-up schedule takes to reach the "
                                              "learning rate."),
        ParamSpec("schedule_steps", cosine_steps, "int", minimum=1, maximum=1_000_000, live=True,
                  label="Cosine steps", help="Steps the cosine schedule takes to decay."),
    )


def accelerator() -> Accelerator:
    """The process's Accelerator: a GPU where there is one (bf16 when it supports it), else the
    CPU in full precision. Under ``accelerate launch`` it joins the process group (gloo on
    CPUs)."""
    from studio.pipelines.train.torch_lessons import new_accelerator

    cuda = torch.cuda.is_available()
    precision = "bf16" if cuda and torch.cuda.is_bf16_supported() else "no"
    return new_accelerator(cpu=not cuda, mixed_precision=precision)


def batch_accelerator(batch_size: Any) -> Accelerator:
    """:func:`accelerator`, refusing a batch smaller than the processes that share it (under
    ``accelerate launch`` each process takes its share of the global batch)."""
    acc = accelerator()
    world = acc.num_processes
    if int(batch_size) < world:
        raise InvalidParameter(f"Batch size {batch_size} is too small for {world} "
                               f"processes: raise it to at least {world}.")
    return acc


def plain_loop(acc: Accelerator) -> bool:
    """Whether a loop may call torch's own backward(), step() and zero_grad() instead of the
    Accelerator's: where they would add nothing (no gradient scaler: full precision or bf16; no
    DeepSpeed or Megatron). Accelerator.backward() and its optimizer's step() look for an
    optional package on disk (accelerate's is_lomo_available(), a filesystem search, at every
    call): 0.35 ms of a 4.5 ms step of the cnn lesson (bench/train.py --bare). DDP still syncs
    in backward."""
    from accelerate.utils import DistributedType

    return acc.scaler is None and acc.distributed_type in (
        DistributedType.NO, DistributedType.MULTI_CPU, DistributedType.MULTI_GPU)


def _normalised(maps: torch.Tensor) -> np.ndarray:
    """Each map scaled to [0, 1] on its own (a dead map is all 0)."""
    flat = maps.reshape(len(maps), -1)
    lo = flat.min(dim=1).values[:, None, None]
    hi = flat.max(dim=1).values[:, None, None]
    return tl.to_numpy((maps - lo) / (hi - lo).clamp_min(1e-8))


class ImageDataLesson(Trainer):
    """A lesson on the image data sets (:func:`data_specs`): its data set and folder checked up
    front, the data sets this install cannot load greyed out."""

    @classmethod
    def validate_config(cls, overrides: dict[str, Any] | None = None) -> dict[str, Any]:
        """As the base, plus: a data set this install cannot load, or a missing folder, is
        refused with the reason."""
        config = super().validate_config(overrides)
        check_source(config["dataset"], config["data_folder"])
        return config

    @classmethod
    def unavailable_choices(cls) -> dict[str, dict[str, str]]:
        return {"dataset": unavailable_sources()}


class ImageLesson(ImageDataLesson):
    """What every accelerate image lesson shares: the image data sets, and an ``accelerator``
    that knows the main process."""

    accelerator: Accelerator

    @property
    def is_main_process(self) -> bool:
        return bool(self.accelerator.is_main_process)

    # -- accelerate checkpoints of the lessons that keep their numbers in ``_extra_state`` -------
    def _extra_state(self) -> dict[str, Any]:
        """The lesson's own state beside accelerate's (step, config, generators, …)."""
        raise NotImplementedError

    def _restore_extra(self, extra: dict[str, Any]) -> None:
        """Take back what :meth:`_extra_state` gave (after accelerate loaded the rest)."""
        raise NotImplementedError

    def _save_accelerate_extra(self, folder: Path) -> None:
        """``Accelerator.save_state`` (models as safetensors, optimizers, RNG) into ``folder``,
        plus :meth:`_extra_state`. Every process must call it."""
        from studio.pipelines.train.checkpoint import save_state

        folder = Path(folder)
        self.accelerator.save_state(str(folder), safe_serialization=True)
        if self.is_main_process:
            save_state(self._extra_state(), folder / "studio_state.safetensors",
                       folder / EXTRA_STATE)
        self.accelerator.wait_for_everyone()

    def _load_accelerate_extra(self, folder: Path) -> None:
        """Continue from :meth:`_save_accelerate_extra` (``load_state`` reads tensors with
        ``weights_only=True``)."""
        from studio.pipelines.train.checkpoint import load_state

        folder = Path(folder)
        extra, _ = load_state(folder / EXTRA_STATE)
        self.accelerator.load_state(str(folder))
        self._restore_extra(extra)


class CNNTrainer(ImageLesson):
    """A small CNN classifying images, with everything a student needs to see it learn."""

    info = LessonInfo(
        **lesson_text("cnn"),
        explanation=EXPLANATION.format(normal=NORMAL_TIME),
        series=("loss", "test_loss"),
        series_labels={"loss": "Train loss", "test_loss": "Test loss"},
    )
    params = (
        tl.lr_spec(3e-3),
        tl.optimizer_spec(),
        *schedule_specs(1000),
        ParamSpec("pick", 0, "int", minimum=0, maximum=100_000, live=True, label="Image #",
                  help="The test image whose feature maps and saliency are shown."),
        *data_specs("Your own images: one sub-folder per class (its name is the class), or a "
                    "folder of images. Any size; centre-cropped and resized.", SIZES,
                    "Pixels per side the network sees; every image is resized to it.", 64),
        ParamSpec("grad_accum", 1, "int", minimum=1, maximum=16, label="Gradient accumulation",
                  help="Micro-batches the batch is split into, their gradients summed before one "
                       "update: the same result with less memory."),
        ParamSpec("width", 16, "int", minimum=2, maximum=64, label="Filters",
                  help="Filters in the first conv layer (the second has twice as many)."),
    )

    def __init__(self, config: dict[str, Any] | None = None, seed: int = 0,
                 step_count: int = 0) -> None:
        super().__init__(config=self.validate_config(config), seed=seed, step_count=step_count)
        cfg = self.config
        self.data: ClassImages = load_class_images(cfg["dataset"], int(cfg["image_size"]),
                                                   cfg["data_folder"])
        if self.data.n_classes < 2:
            raise InvalidParameter(
                f"A classifier needs at least two classes, and {self.data.describe()} Put each "
                "class's images in its own sub-folder (for example cats/ and dogs/).")
        self.accelerator = accelerator()
        world = self.accelerator.num_processes
        if int(cfg["batch_size"]) < world * int(cfg["grad_accum"]):
            raise InvalidParameter(
                f"Batch size {cfg['batch_size']} is too small for {world} processes × "
                f"{cfg['grad_accum']} micro-batches: raise it to at least "
                f"{world * int(cfg['grad_accum'])}.")
        self._x_train = torch.from_numpy(self.data.x_train)
        self._y_train = torch.from_numpy(self.data.y_train)
        self._x_test = torch.from_numpy(self.data.x_test)
        self._y_test = torch.from_numpy(self.data.y_test)
        self._gens = {"init": tl.seeded_generator(seed, 1), "train": tl.seeded_generator(seed, 2)}
        model = SmallCNN(self.data.channels, int(cfg["width"]), self.data.n_classes,
                         self._gens["init"])
        self.model = self.accelerator.prepare_model(model)
        self._plain = plain_loop(self.accelerator)
        self._optimizer = self._new_optimizer()
        self._test_cache: tuple[int, torch.Tensor] | None = None
        self._snap_key: tuple | None = None
        self._snap: dict[str, Any] = {}
        self._preview = preview(self.data, PREVIEW)

    # -- model -----------------------------------------------------------------------------------
    @property
    def net(self) -> SmallCNN:
        """The model itself (unwrapped from DistributedDataParallel under a launch)."""
        return self.accelerator.unwrap_model(self.model)

    def _new_optimizer(self) -> AcceleratedOptimizer:
        opt = tl.make_optimizer(self.config["optimizer"], self.model.parameters(),
                                self.config["lr"])
        return self.accelerator.prepare_optimizer(opt)

    def _layers(self) -> list[tuple[str, nn.Conv2d | nn.Linear]]:
        net = self.net
        return [("conv 1", net.conv1), ("conv 2", net.conv2), ("linear", net.fc)]

    # -- the Trainer interface --------------------------------------------------------------------
    def step(self, part: str | None = None) -> dict[str, float]:
        acc = self.accelerator
        g = self._gens["train"]
        n = int(self.config["batch_size"])
        idx = torch.randint(0, len(self._x_train), (n,), generator=g)
        mine = idx[acc.process_index::acc.num_processes]
        chunks = torch.tensor_split(mine, int(self.config["grad_accum"]))
        lr = scheduled_lr(self.config, self.step_count)
        tl.set_lr(self._optimizer, lr)
        self.model.train()
        # (accelerate's zero_grad inspects the optimizer's signature at every call)
        opt = self._optimizer.optimizer if self._plain else self._optimizer
        opt.zero_grad(set_to_none=True)
        loss_sum = correct = 0.0
        scale = acc.num_processes / n  # → after DDP's average: the global batch mean
        amp = acc.mixed_precision != "no"
        for k, chunk in enumerate(chunks):
            last = k == len(chunks) - 1
            # accelerate's no_sync: the processes exchange gradients once, after the last one
            with contextlib.nullcontext() if last else acc.no_sync(self.model):
                x, y = self._x_train[chunk], self._y_train[chunk]
                if acc.device.type != "cpu":
                    x, y = x.to(acc.device), y.to(acc.device)
                with acc.autocast() if amp else contextlib.nullcontext():
                    logits = self.model(x)
                    chunk_loss = F.cross_entropy(logits.float(), y, reduction="sum")
                self._backward(chunk_loss * scale)
            loss_sum += float(chunk_loss.detach())
            correct += float((logits.argmax(1) == y).sum())
        totals = [loss_sum, correct]
        if acc.num_processes > 1:
            totals = acc.reduce(torch.tensor(totals, device=acc.device), reduction="sum").tolist()
        loss = float(totals[0]) / n
        self.step_count += 1
        check_loss(loss, self.step_count)
        opt.step()
        metrics = {"step": self.step_count, "loss": loss, "acc": float(totals[1]) / n, "lr": lr}
        if self.step_count == 1 or self.step_count % TEST_EVERY == 0:
            metrics.update(self.evaluate())
        return metrics

    @torch.no_grad()
    def _test_logits(self) -> torch.Tensor:
        self.model.eval()
        return self.net(self._x_test.to(self.accelerator.device)).float().cpu()

    def _backward(self, loss: torch.Tensor) -> None:
        if self._plain:
            loss.backward()
        else:
            self.accelerator.backward(loss)

    def _test_view(self, fresh: bool = False) -> tuple[int, torch.Tensor]:
        """(step, test-set logits) for the pictures: recomputed when ``fresh`` or
        :data:`TEST_REFRESH` steps old."""
        cached = self._test_cache
        if cached is None or (cached[0] != self.step_count
                              and (fresh or self.step_count - cached[0] >= TEST_REFRESH)):
            cached = self._test_cache = (self.step_count, self._test_logits())
        return cached

    def prepare_snapshot(self, finish: bool = False) -> None:
        if finish:  # a paused frame shows the test set at the step shown
            self._test_view(fresh=True)

    def evaluate(self) -> dict[str, float]:
        """Loss and accuracy on the whole test set."""
        logits = self._test_logits()
        self._test_cache = (self.step_count, logits)
        return {"test_loss": float(F.cross_entropy(logits, self._y_test)),
                "test_acc": float((logits.argmax(1) == self._y_test).float().mean())}

    def on_param_changed(self, name: str) -> None:
        if name == "lr":
            tl.set_lr(self._optimizer, scheduled_lr(self.config, self.step_count))
        elif name == "optimizer":
            self._optimizer = self._new_optimizer()

    def state_dict(self) -> dict[str, Any]:
        return {
            "config": dict(self.config), "seed": self.seed, "step_count": self.step_count,
            "model": tl.tensor_state(self.net),
            "optimizer": tl.optimizer_state(self._optimizer.optimizer),
            "generators": tl.generator_states(self._gens),
            # for using the model without its data (Gallery's Classify)
            "classes": list(self.data.class_names), "channels": self.data.channels,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.config = self.validate_config(state["config"])
        self.step_count = int(state["step_count"])
        self.net.load_state_dict(state["model"])
        self._optimizer = self._new_optimizer()
        self._optimizer.optimizer.load_state_dict(state["optimizer"])
        tl.load_generator_states(self._gens, state["generators"])
        self._snap_key = self._test_cache = None

    # -- use elsewhere (the classifier export) ----------------------------------------------------
    def classifier_spec(self) -> dict[str, Any]:
        from studio.pipelines.train.classifier_models import spec

        return spec("small-cnn", self.data.channels, self.data.size,
                    list(self.data.class_names), int(self.config["width"]))

    def classifier_state(self) -> dict[str, torch.Tensor]:
        return tl.tensor_state(self.net)

    # -- accelerate checkpoints (headless and multi-process runs) --------------------------------
    def _extra_state(self) -> dict[str, Any]:
        return {"step_count": self.step_count, "config": dict(self.config),
                "generators": tl.generator_states(self._gens)}

    def _restore_extra(self, extra: dict[str, Any]) -> None:
        self.step_count = int(extra["step_count"])
        tl.load_generator_states(self._gens, extra["generators"])
        self._snap_key = self._test_cache = None

    def save_accelerate_state(self, folder: Path) -> None:
        """The model, optimizer and RNG through accelerate, plus the lesson's own step and
        generators. Every process must call it."""
        self._save_accelerate_extra(folder)

    def load_accelerate_state(self, folder: Path) -> None:
        self._load_accelerate_extra(folder)

    # -- pictures ----------------------------------------------------------------------------------
    def _picked(self) -> int:
        return int(self.config["pick"]) % len(self._x_test)

    def _saliency(self, x: torch.Tensor, label: int) -> np.ndarray:
        """|∂ score(true class) / ∂ pixel|, the largest over the colour channels, in [0, 1]."""
        x = x.clone().requires_grad_(True)
        with torch.enable_grad():
            score = self.net(x)[0, label]
            (grad,) = torch.autograd.grad(score, x)
        sal = grad.abs().amax(dim=1)[0]
        return tl.to_numpy(sal / sal.max().clamp_min(1e-12))

    def snapshot(self) -> dict[str, Any]:
        test_step, logits = self._test_view()
        key = (self.step_count, self._picked(), id(self.model), test_step)
        if key == self._snap_key:
            return self._snap
        net = self.net
        net.eval()
        data = self.data
        guesses = logits.argmax(1)
        k = data.n_classes
        confusion = np.zeros((k, k), dtype=np.int64)
        np.add.at(confusion, (self._y_test.numpy(), guesses.numpy()), 1)
        missed = np.flatnonzero(guesses.numpy() != self._y_test.numpy())
        pick = self._picked()
        x = self._x_test[pick:pick + 1].to(self.accelerator.device)
        with torch.no_grad():
            a1, a2, scores = net.features(x)
        probs = torch.softmax(scores.float()[0], 0).cpu()
        top = torch.topk(probs, min(3, k))
        label = int(self._y_test[pick])
        w1 = net.conv1.weight.detach().float().cpu()  # (width, channels, 3, 3)
        w2 = net.conv2.weight.detach().float().cpu()  # (2·width, width, 3, 3)

        def images(rows: torch.Tensor) -> np.ndarray:  # (n, C, s, s) → (n, s, s, C)
            return rows.numpy().transpose(0, 2, 3, 1).copy()

        snap: dict[str, Any] = {
            "step": self.step_count,
            "dataset": data.name,
            "data_note": data.describe(),
            "data_short": data.short(),
            "class_names": data.class_names,
            "photo": data.photo,
            "channels": data.channels,
            "preview": self._preview[0], "preview_labels": self._preview[1],
            "filters1": tl.to_numpy(w1.permute(0, 2, 3, 1)),  # (width, 3, 3, channels), raw
            "filters2": tl.to_numpy(w2),  # (2·width, width, 3, 3), raw
            "maps1": _normalised(a1[0].float().cpu()), "maps2": _normalised(a2[0].float().cpu()),
            "pick": pick, "n_test": len(self._x_test),
            "picked": images(self._x_test[pick:pick + 1])[0],
            "picked_label": label,
            "picked_top": [(int(i), float(p)) for p, i in zip(top.values, top.indices,
                                                                strict=True)],
            "saliency": self._saliency(x, label),
            "confusion": confusion,
            "test_step": test_step,  # the step the confusion matrix and mistakes are of
            "test_acc": float(np.trace(confusion)) / max(1, len(self._y_test)),
            "missed": images(self._x_test[missed[:MISSED_SHOWN]]),
            "missed_true": self._y_test.numpy()[missed[:MISSED_SHOWN]].copy(),
            "missed_guess": guesses.numpy()[missed[:MISSED_SHOWN]].copy(),
            "n_missed": int(len(missed)),
            "histograms": tl.layer_histograms(self._layers(), HIST_BINS),
            "lr": scheduled_lr(self.config, self.step_count),
        }
        self._snap_key, self._snap = key, snap
        return snap

