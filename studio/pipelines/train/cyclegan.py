"""Image lesson 4, ``cyclegan``: CycleGAN (Zhu et al. 2017) between two unpaired image domains.

The generators are the ResNet generator Transform runs for released models, built by
:func:`studio.pipelines.cyclegan.model.build_generator` (the reference's module layout, so the
state-dict keys are the reference's), at a small size: ``ngf`` filters and ``blocks`` residual
blocks. G_A turns A into B, G_B turns B into A. The discriminators are the reference's PatchGAN
(``NLayerDiscriminator``: strided 4×4 convs with InstanceNorm and LeakyReLU(0.2), then two 4×4
convs of stride 1 down to a grid of real/fake scores, one per patch), with ``d_layers`` strided
convs. Weights start from N(0, 0.02), biases 0 (the reference's ``init_type normal``); Adam with
β1 = 0.5.

Losses as in the reference: LSGAN (mean squared error to 1 for real, 0 for fake; D's loss halved),
the cycle loss ``λ_cycle · (|G_B(G_A(a)) − a| + |G_A(G_B(b)) − b|)`` and the identity loss
``λ_identity · λ_cycle · (|G_A(b) − b| + |G_B(a) − a|)`` (L1 means). Both λ are live knobs. One
step updates both generators, then both discriminators on the fakes just made (no image pool:
at these sizes it changes little, and every step stays a function of the seed).

Data: shipped unpaired pairs of domains generated from :mod:`studio.pipelines.train.image_data`
(the first half of a set becomes domain A, the second half domain B, so no image has its
partner), or two of the student's folders. The loop runs through :class:`accelerate.Accelerator`
(device placement, backward, optimizer wrapper), so ``accelerate launch`` runs it across processes
or GPUs: each process trains on its share of every batch. Each generator runs twice per step (the
translation and the cycle back), so both generators sit in one module (:class:`Generators`) whose
one forward makes every image the losses need, and both discriminators in another
(:class:`Discriminators`): ``DistributedDataParallel`` sees one forward per backward. Deterministic for a seed on the CPU; the pictures are drawn without
gradients and never change training.

:meth:`CycleGANTrainer.export_generators` writes ``latest_net_G_A.pth`` / ``latest_net_G_B.pth``
(state dicts only, as the reference's ``save_networks``), which Transform lists beside the
released models.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from studio.core.wording import count_of
from studio.pipelines.cyclegan.model import GeneratorSpec, build_generator
from studio.pipelines.train import torch_lessons as tl
from studio.pipelines.train.base import InvalidParameter, LessonInfo, ParamSpec, check_loss
from studio.pipelines.train.cnn import (
    ImageDataLesson,
    batch_accelerator,
    plain_loop,
    schedule_specs,
    scheduled_lr,
)
from studio.pipelines.train.dcgan import AdversarialLesson
from studio.pipelines.train.image_data import load_class_images
from studio.pipelines.train.registry import lesson_text

if TYPE_CHECKING:
    from accelerate.optimizer import AcceleratedOptimizer

#: shipped pairs of domains, then your two folders
DOMAINS: tuple[str, ...] = ("colours", "digits", "textures", "folders")
DOMAIN_NAMES: dict[str, str] = {
    "colours": "Red shapes on cream ↔ blue shapes at night",
    "digits": "Digits ↔ inverted digits",
    "textures": "Stripes ↔ checks",
    "folders": "Your two folders (A and B)",
}
DOMAIN_SIDES: dict[str, tuple[str, str]] = {
    "colours": ("red on cream", "blue at night"), "digits": ("ink on paper", "inverted"),
    "textures": ("stripes", "checks"), "folders": ("folder A", "folder B")}
SIZES = ("16", "24", "32")
SHOWN = 4  # fixed examples per row of the view
HIST_BINS = 30
GEN_NAMES = ("latest_net_G_A.pth", "latest_net_G_B.pth")
RED, CREAM = np.array([0.85, 0.15, 0.1]), np.array([0.95, 0.9, 0.75])
BLUE, NIGHT = np.array([0.3, 0.55, 1.0]), np.array([0.05, 0.06, 0.15])

EXPLANATION = """\
**What you see.** Two rows of four fixed examples, redrawn as it learns. Top: an image of domain
A, G_A's translation of it into B, and G_B's translation of that back into A (A → B → A); bottom
the same from B (B → A → B). The losses: the generators' LSGAN loss (fooling both
discriminators), the discriminators' loss, the **cycle** loss (how far A → B → A lands from A)
and the **identity** loss (how much G_A changes an image that already is a B). Histograms of the
weights and gradients of G_A's first, a residual and its last layer, and of each discriminator's
first layer.

**What to try.** Set λ cycle to 0 while it plays: the translations still look like the other
domain but stop matching their input (the round trip fails). Set λ identity to 0 on *Red shapes*:
colours may drift. Try *Stripes ↔ checks* (the shape of the pattern must change, which is harder)
or **your own two folders** (horses and zebras, summer and winter). Then **Export** the run
(Runs → Export model, or `studio train cyclegan --export NAME`): Transform lists it beside the
released CycleGAN models.

**What is normal.** On *Red shapes* at 32 px the translations take the other domain's colours
as blurry blobs within 100 steps, and the shapes come through sharp both ways by about 600 steps:
{normal}. The cycle and identity losses fall (about 0.3 at step 100, 0.15 at step 600) and keep
falling slowly; D's loss hovers near 0.35–0.4 (it can hardly tell) and G's near 0.6–0.8 (both
discriminators together). Losses wobble; that is the game.
"""
#: measured on the 2-core development machine under load from other jobs, one torch thread,
#: seed 0, defaults (32 px, ngf 8, 2 blocks, batch 4): 100 steps in 6 s, 600 steps in 36 s
NORMAL_TIME = "about 40 seconds of one CPU core"


def _init(module: nn.Module, generator: torch.Generator) -> None:
    """The reference's ``init_type normal``: conv weights N(0, 0.02), biases 0."""
    with torch.no_grad():
        for m in module.modules():
            if isinstance(m, nn.Conv2d | nn.ConvTranspose2d):
                m.weight.normal_(0.0, 0.02, generator=generator)
                if m.bias is not None:
                    m.bias.zero_()


def make_generator(channels: int, ngf: int, blocks: int, generator: torch.Generator) -> nn.Module:
    """Transform's ResNet generator (plain InstanceNorm), initialised from ``generator``. The
    construction's default init would draw from torch's global generator: it runs forked, so
    building a generator changes no one's random numbers."""
    with torch.random.fork_rng(devices=[]):
        net = build_generator(GeneratorSpec(channels, channels, ngf, blocks), fixed_norm=False)
    _init(net, generator)
    return net


class PatchDiscriminator(nn.Module):
    """The reference's ``NLayerDiscriminator`` with InstanceNorm (its CycleGAN default)."""

    def __init__(self, channels: int, ndf: int, n_layers: int, generator: torch.Generator) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.Conv2d(channels, ndf, 4, 2, 1), nn.LeakyReLU(0.2, True)]
        mult = 1
        for n in range(1, n_layers):
            prev, mult = mult, min(2 ** n, 8)
            layers += [nn.Conv2d(ndf * prev, ndf * mult, 4, 2, 1, bias=True),
                       nn.InstanceNorm2d(ndf * mult), nn.LeakyReLU(0.2, True)]
        prev, mult = mult, min(2 ** n_layers, 8)
        layers += [nn.Conv2d(ndf * prev, ndf * mult, 4, 1, 1, bias=True),
                   nn.InstanceNorm2d(ndf * mult), nn.LeakyReLU(0.2, True),
                   nn.Conv2d(ndf * mult, 1, 4, 1, 1)]
        self.model = nn.Sequential(*layers)
        _init(self, generator)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


class Generators(nn.Module):
    """G_A and G_B as one module: one forward makes a step's translations, cycles and identity
    images (one forward per backward, as ``DistributedDataParallel`` needs)."""

    def __init__(self, g_a: nn.Module, g_b: nn.Module) -> None:
        super().__init__()
        self.G_A, self.G_B = g_a, g_b

    def forward(self, real_a: torch.Tensor, real_b: torch.Tensor,
                identity_grad: bool = True) -> tuple[torch.Tensor, ...]:
        """(fake_b, fake_a, rec_a, rec_b, idt_b, idt_a); the identity images without gradient
        unless ``identity_grad``."""
        fake_b, fake_a = self.G_A(real_a), self.G_B(real_b)
        rec_a, rec_b = self.G_B(fake_b), self.G_A(fake_a)
        with torch.set_grad_enabled(identity_grad and torch.is_grad_enabled()):
            idt_b, idt_a = self.G_A(real_b), self.G_B(real_a)
        return fake_b, fake_a, rec_a, rec_b, idt_b, idt_a


class Discriminators(nn.Module):
    """D_A (judges B-like images) and D_B (A-like ones) as one module: one forward scores every
    pair it is given."""

    def __init__(self, d_a: nn.Module, d_b: nn.Module) -> None:
        super().__init__()
        self.D_A, self.D_B = d_a, d_b

    def forward(self, *pairs: tuple[torch.Tensor, torch.Tensor]
                ) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """For each (B-like, A-like) pair: (D_A's scores, D_B's scores)."""
        return [(self.D_A(b_like), self.D_B(a_like)) for b_like, a_like in pairs]


@dataclass(frozen=True)
class Domains:
    """Two unpaired sets of images, (n, C, s, s) in [0, 1], and what a person should know."""

    a: np.ndarray
    b: np.ndarray
    names: tuple[str, str]
    photo: bool
    notes: tuple[str, ...] = ()

    @property
    def channels(self) -> int:
        return int(self.a.shape[1])

    def describe(self) -> str:
        head = (f"A ({self.names[0]}): {count_of(len(self.a), 'image')} · B ({self.names[1]}): "
                f"{count_of(len(self.b), 'image')}")
        return " ".join((head + ".",) + self.notes)


def _colour(masks: np.ndarray, ink: np.ndarray, paper: np.ndarray) -> np.ndarray:
    """Grey shapes (n, 1, s, s) painted ``ink`` on ``paper``: (n, 3, s, s)."""
    m = masks[:, 0][:, None]
    return (m * ink[None, :, None, None] + (1 - m) * paper[None, :, None, None]).astype(np.float32)


def _halves(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    half = len(x) // 2
    return x[:half], x[half:]


def _all(source: str, size: int, folder: str = "") -> Any:
    data = load_class_images(source, size, folder)
    return data, np.concatenate([data.x_train, data.x_test])


def load_domains(config: dict[str, Any]) -> Domains:
    """The two domains the config names (a folder that is empty, missing or holds no usable
    image is refused with a sentence that says which domain)."""
    kind, size = config["domains"], int(config["image_size"])
    sides = DOMAIN_SIDES[kind]
    if kind == "colours":
        _, x = _all("shapes", size)
        a, b = _halves(x)
        return Domains(_colour(a, RED, CREAM), _colour(b, BLUE, NIGHT), sides, photo=True)
    if kind == "digits":
        _, x = _all("digits", size)
        a, b = _halves(x)
        return Domains(np.ascontiguousarray(a), np.ascontiguousarray(1.0 - b), sides,
                       photo=False)
    if kind == "textures":
        data, x = _all("textures", size)
        y = np.concatenate([data.y_train, data.y_test])
        names = list(data.class_names)
        return Domains(x[y == names.index("stripes")], x[y == names.index("checks")], sides,
                       photo=True)
    got, notes = [], []
    for side, key in (("A", "data_folder"), ("B", "data_folder_b")):
        try:
            data, x = _all("folder", size, config[key])
        except InvalidParameter as exc:
            raise InvalidParameter(f"Domain {side}: {exc}") from None
        got.append(x)
        notes += [f"Domain {side}: {n}" for n in data.notes]
    return Domains(got[0], got[1], sides, photo=True, notes=tuple(notes))


class CycleGANTrainer(AdversarialLesson):
    """CycleGAN between two small image domains, with the views a student needs to watch it."""

    info = LessonInfo(
        **lesson_text("cyclegan"),
        explanation=EXPLANATION.format(normal=NORMAL_TIME),
        series=("loss_g", "loss_d", "loss_cycle", "loss_idt"),
        series_labels={"loss_g": "G loss (LSGAN)", "loss_d": "D loss", "loss_cycle": "cycle loss",
                       "loss_idt": "identity loss"},
    )
    params = (
        tl.lr_spec(2e-4, "Adam (β1 = 0.5) for both generators and both discriminators."),
        ParamSpec("lambda_cycle", 10.0, "float", minimum=0.0, maximum=100.0, live=True,
                  label="λ cycle", help="Weight of the cycle loss (A → B → A should give A back)."),
        ParamSpec("lambda_identity", 0.5, "float", minimum=0.0, maximum=10.0, live=True,
                  label="λ identity",
                  help="Weight of the identity loss, times λ cycle (G_A should leave a B alone)."),
        *schedule_specs(2000, "Scales the four networks' learning rate: "),
        ParamSpec("domains", "colours", "choice", choices=DOMAINS, choice_labels=DOMAIN_NAMES,
                  label="Domains",
                  help="Two unpaired sets of images to translate between: generated ones, or "
                       "your two folders."),
        ParamSpec("data_folder", "", "folder", label="Folder A",
                  help="Your images of domain A (sub-folders are read too). Any size; "
                       "centre-cropped and resized."),
        ParamSpec("data_folder_b", "", "folder", label="Folder B",
                  help="Your images of domain B (sub-folders are read too)."),
        ParamSpec("image_size", "32", "choice", choices=SIZES, label="Image size",
                  choice_labels={s: f"{s}×{s}" for s in SIZES},
                  help="Pixels per side the generators see (multiples of 4)."),
        ParamSpec("batch_size", 4, "int", minimum=1, maximum=256, label="Batch size",
                  help="Images of each domain per update."),
        ParamSpec("ngf", 8, "int", minimum=2, maximum=64, label="Generator filters (ngf)",
                  help="Filters of the generators' first layer (the released models use 64)."),
        ParamSpec("blocks", 2, "int", minimum=1, maximum=9, label="Residual blocks",
                  help="Residual blocks in each generator (the released models use 9)."),
        ParamSpec("ndf", 8, "int", minimum=2, maximum=64, label="Discriminator filters (ndf)",
                  help="Filters of the discriminators' first layer (the reference uses 64)."),
        ParamSpec("d_layers", 2, "int", minimum=1, maximum=3, label="Discriminator layers",
                  help="Strided layers of each PatchGAN discriminator: more layers, bigger "
                       "patches judged."),
    )

    @classmethod
    def validate_config(cls, overrides: dict[str, Any] | None = None) -> dict[str, Any]:
        """Checks the knobs (not the shipped-set ``dataset`` knob the other image lessons
        have), and that both folders are chosen when the domains are folders."""
        from studio.pipelines.train.image_data import check_source

        # past the image lessons' data-set check (ImageDataLesson): the base's knob checks only
        config = super(ImageDataLesson, cls).validate_config(overrides)
        size, layers = int(config["image_size"]), int(config["d_layers"])
        if size >> layers < 3:  # the last two 4×4 convs need a 3×3 map to leave a score
            most = max(n for n in range(1, 4) if size >> n >= 3)
            raise InvalidParameter(
                f"At {size}×{size} a PatchGAN discriminator has room for {most} strided "
                f"layers, not {layers}: lower Discriminator layers or raise the Image size.")
        if config["domains"] == "folders":
            for side, key in (("A", "data_folder"), ("B", "data_folder_b")):
                if not str(config[key]).strip():
                    raise InvalidParameter(
                        f"Choose the folder of domain {side} first (Folder {side}): CycleGAN "
                        "learns to translate between two folders of images.")
                try:
                    check_source("folder", config[key])
                except InvalidParameter as exc:
                    raise InvalidParameter(f"Domain {side}: {exc}") from None
        return config

    @classmethod
    def unavailable_choices(cls) -> dict[str, dict[str, str]]:
        return {}

    def __init__(self, config: dict[str, Any] | None = None, seed: int = 0,
                 step_count: int = 0) -> None:
        super().__init__(config=self.validate_config(config), seed=seed, step_count=step_count)
        cfg = self.config
        self.data = load_domains(cfg)
        self.accelerator = batch_accelerator(cfg["batch_size"])
        self._a = torch.from_numpy(self.data.a) * 2 - 1
        self._b = torch.from_numpy(self.data.b) * 2 - 1
        self._gens = {"init": tl.seeded_generator(seed, 1), "train": tl.seeded_generator(seed, 2)}
        ch, init = self.data.channels, self._gens["init"]
        ngf, blocks = int(cfg["ngf"]), int(cfg["blocks"])
        ndf, layers = int(cfg["ndf"]), int(cfg["d_layers"])
        g_a = make_generator(ch, ngf, blocks, init)
        g_b = make_generator(ch, ngf, blocks, init)
        d_a = PatchDiscriminator(ch, ndf, layers, init)
        d_b = PatchDiscriminator(ch, ndf, layers, init)
        prepare = self.accelerator.prepare_model  # DistributedDataParallel under a launch
        self._g, self._d = prepare(Generators(g_a, g_b)), prepare(Discriminators(d_a, d_b))
        self._plain = plain_loop(self.accelerator)
        self._opt_g = self._new_opt(list(self.G_A.parameters()) + list(self.G_B.parameters()))
        self._opt_d = self._new_opt(list(self.D_A.parameters()) + list(self.D_B.parameters()))
        pick = tl.seeded_generator(seed, 3)
        self._show_a = self._a[torch.randperm(len(self._a), generator=pick)[:SHOWN]]
        self._show_b = self._b[torch.randperm(len(self._b), generator=pick)[:SHOWN]]
        self._last: dict[str, float] = {}
        self._snap_step = -1
        self._snap: dict[str, Any] = {}

    @property
    def G_A(self) -> nn.Module:
        return self.accelerator.unwrap_model(self._g).G_A

    @property
    def G_B(self) -> nn.Module:
        return self.accelerator.unwrap_model(self._g).G_B

    @property
    def D_A(self) -> nn.Module:
        return self.accelerator.unwrap_model(self._d).D_A

    @property
    def D_B(self) -> nn.Module:
        return self.accelerator.unwrap_model(self._d).D_B

    def _new_opt(self, params: list[nn.Parameter]) -> AcceleratedOptimizer:
        opt = tl.make_optimizer("adam", params, float(self.config["lr"]), (0.5, 0.999))
        return self.accelerator.prepare_optimizer(opt)

    def _batch(self, x: torch.Tensor) -> torch.Tensor:
        """This process's share of a fresh batch (every process draws the whole batch)."""
        acc = self.accelerator
        n = int(self.config["batch_size"])
        idx = torch.randint(0, len(x), (n,), generator=self._gens["train"])
        return x[idx[acc.process_index::acc.num_processes]].to(acc.device)

    def _backward(self, loss: torch.Tensor) -> None:
        if self._plain:
            loss.backward()
        else:
            self.accelerator.backward(loss)

    def _step_opt(self, opt: AcceleratedOptimizer) -> None:
        (opt.optimizer if self._plain else opt).step()

    @staticmethod
    def _gan(scores: torch.Tensor, real: bool) -> torch.Tensor:
        """LSGAN: mean squared distance of every patch's score to 1 (real) or 0 (fake)."""
        return F.mse_loss(scores, torch.full_like(scores, 1.0 if real else 0.0))

    # -- the Trainer interface ---------------------------------------------------------------------
    def step(self, part: str | None = None) -> dict[str, float]:
        if part is not None:
            raise InvalidParameter(f"Unknown step part {part!r}; this lesson steps as a whole.")
        lr = scheduled_lr(self.config, self.step_count)
        tl.set_lr(self._opt_g, lr)
        tl.set_lr(self._opt_d, lr)
        lam_c = float(self.config["lambda_cycle"])
        lam_i = float(self.config["lambda_identity"]) * lam_c
        real_a, real_b = self._batch(self._a), self._batch(self._b)
        # generators (the discriminators' gradients from this pass are cleared below)
        self._opt_g.optimizer.zero_grad(set_to_none=True)
        # the identity loss is still measured at λ 0, so the curve goes on; no gradient then
        fake_b, fake_a, rec_a, rec_b, idt_b, idt_a = self._g(real_a, real_b, lam_i > 0)
        ((score_b, score_a),) = self._d((fake_b, fake_a))
        loss_gan = self._gan(score_b, True) + self._gan(score_a, True)
        loss_cycle = F.l1_loss(rec_a, real_a) + F.l1_loss(rec_b, real_b)
        loss_idt = F.l1_loss(idt_b, real_b) + F.l1_loss(idt_a, real_a)
        self._backward(loss_gan + lam_c * loss_cycle + lam_i * loss_idt)
        self._step_opt(self._opt_g)
        # discriminators: D_A judges B-like images (real B against G_A's fakes), D_B A-like ones
        self._opt_d.optimizer.zero_grad(set_to_none=True)
        fake_b, fake_a = fake_b.detach(), fake_a.detach()
        (real_on_a, real_on_b), (fake_on_a, fake_on_b) = self._d((real_b, real_a),
                                                                  (fake_b, fake_a))
        loss_d = 0.5 * (self._gan(real_on_a, True) + self._gan(fake_on_a, False)
                        + self._gan(real_on_b, True) + self._gan(fake_on_b, False))
        self._backward(loss_d)
        self._step_opt(self._opt_d)
        self.step_count += 1
        losses = torch.stack([v.detach() for v in (loss_gan, loss_d, loss_cycle, loss_idt)])
        if self.accelerator.num_processes > 1:  # every process's share weighs alike
            losses = self.accelerator.reduce(losses, reduction="mean")
        self._last = dict(zip(("loss_g", "loss_d", "loss_cycle", "loss_idt"),
                              (float(v) for v in losses), strict=True))
        last = self._last
        loss = last["loss_g"] + lam_c * last["loss_cycle"] + lam_i * last["loss_idt"]
        check_loss(loss + last["loss_d"], self.step_count)
        return {"step": self.step_count, "loss": loss, **self._last, "lr": lr}

    def on_param_changed(self, name: str) -> None:
        if name in ("lr", "schedule", "warmup_steps", "schedule_steps"):
            lr = scheduled_lr(self.config, self.step_count)
            tl.set_lr(self._opt_g, lr)
            tl.set_lr(self._opt_d, lr)

    def _nets(self) -> dict[str, nn.Module]:
        return {"G_A": self.G_A, "G_B": self.G_B, "D_A": self.D_A, "D_B": self.D_B}

    def state_dict(self) -> dict[str, Any]:
        return {
            "config": dict(self.config), "seed": self.seed, "step_count": self.step_count,
            **{name: tl.tensor_state(net) for name, net in self._nets().items()},
            "opt_g": tl.optimizer_state(self._opt_g.optimizer),
            "opt_d": tl.optimizer_state(self._opt_d.optimizer),
            "generators": tl.generator_states(self._gens), "last": dict(self._last),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.config = self.validate_config(state["config"])
        self.step_count = int(state["step_count"])
        for name, net in self._nets().items():
            net.load_state_dict(state[name])
        self._opt_g.optimizer.load_state_dict(state["opt_g"])
        self._opt_d.optimizer.load_state_dict(state["opt_d"])
        self.on_param_changed("lr")
        tl.load_generator_states(self._gens, state["generators"])
        self._last = {k: float(v) for k, v in state["last"].items()}
        self._snap_step = -1

    # -- using the result ----------------------------------------------------------------------------
    def export_generators(self, folder: Path) -> list[Path]:
        """``latest_net_G_A.pth`` and ``latest_net_G_B.pth`` in ``folder`` (see
        :func:`write_generators`)."""
        return write_generators(Path(folder), self.G_A.state_dict(), self.G_B.state_dict())

    # -- pictures ----------------------------------------------------------------------------------
    def _layers(self) -> list[tuple[str, nn.Conv2d | nn.ConvTranspose2d]]:
        convs = nn.Conv2d | nn.ConvTranspose2d
        g = [m for m in self.G_A.modules() if isinstance(m, convs)]
        da = [m for m in self.D_A.modules() if isinstance(m, convs)]
        db = [m for m in self.D_B.modules() if isinstance(m, convs)]
        return [("G_A in", g[0]), ("G_A res", g[3]), ("G_A out", g[-1]), ("D_A 1", da[0]),
                ("D_B 1", db[0])]

    @torch.no_grad()
    def _round_trip(self, x: torch.Tensor, there: nn.Module, back: nn.Module) -> np.ndarray:
        """(3, n, s, s, C) in [0, 1]: the inputs, their translations, and those translated back."""
        x = x.to(self.accelerator.device)
        y = there(x)
        z = back(y)
        rows = [(t.float().cpu().clamp(-1, 1) + 1) / 2 for t in (x, y, z)]
        return np.stack([tl.to_numpy(r).transpose(0, 2, 3, 1) for r in rows])

    def snapshot(self) -> dict[str, Any]:
        if self._snap_step == self.step_count and self._snap:
            return self._snap
        snap: dict[str, Any] = {
            "step": self.step_count,
            "a_to_b": self._round_trip(self._show_a, self.G_A, self.G_B),
            "b_to_a": self._round_trip(self._show_b, self.G_B, self.G_A),
            "domain_names": self.data.names,
            "photo": self.data.photo,
            "channels": self.data.channels,
            "data_short": f"A {len(self.data.a):,} · B {count_of(len(self.data.b), 'image')}",
            "data_note": self.data.describe(),
            "histograms": tl.layer_histograms(self._layers(), HIST_BINS),
            **self._last,
        }
        self._snap_step, self._snap = self.step_count, snap
        return snap


def write_generators(folder: Path, g_a: dict[str, torch.Tensor],
                     g_b: dict[str, torch.Tensor]) -> list[Path]:
    """``latest_net_G_A.pth`` and ``latest_net_G_B.pth`` in ``folder``: the generators' state
    dicts (tensors only, on the CPU), as the reference's ``save_networks`` writes them, so
    Transform (``torch.load(weights_only=True)``) and the reference's test script load them."""
    from studio.core.files import atomic_write_bytes

    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for name, state in zip(GEN_NAMES, (g_a, g_b), strict=True):
        buffer = io.BytesIO()
        torch.save({k: v.detach().cpu().clone() for k, v in state.items()}, buffer)
        out.append(atomic_write_bytes(folder / name, buffer.getvalue()))
    return out
