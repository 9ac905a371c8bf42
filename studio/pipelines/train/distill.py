"""``distill``: knowledge distillation — a small student learns from a large teacher's soft labels.

The lesson trains its own teacher first (a :class:`~studio.pipelines.train.cnn.SmallCNN`,
``teacher_steps`` updates on every training image), then freezes it. From then on two students of
the same small MLP, starting from the same weights, train side by side on the same few images
(``student_images``) and the same batches:

- the **distilled** student on ``alpha`` × T² × KL(teacher ‖ student at temperature T) +
  (1 − ``alpha``) × cross-entropy with the true labels (Hinton et al., 2015; the T² keeps the
  soft term's gradients the size of the hard term's as T changes);
- its **twin** on the true labels alone (cross-entropy).

The teacher's softened probabilities say more than the label: a 7 that looks a bit like a 1 is
"mostly 7, some 1", and that is what lets the distilled student generalise from few images.
Temperature and alpha are live. Deterministic for a seed; no Qt here.
"""

from __future__ import annotations

import copy
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from studio.pipelines.train import torch_lessons as tl
from studio.pipelines.train.base import InvalidParameter, LessonInfo, ParamSpec, check_loss
from studio.pipelines.train.classifier_models import MLPClassifier, count_parameters, spec
from studio.pipelines.train.cnn import ImageDataLesson, SmallCNN, data_specs
from studio.pipelines.train.image_data import (
    SIZES,
    load_class_images,
)
from studio.pipelines.train.registry import lesson_text

TEACHER_EVAL_EVERY = 10  # teacher test accuracy while it trains (then it is frozen: once)

EXPLANATION = """\
**What you see.** First the **teacher** trains: a convolutional network with tens of thousands
of weights, on every training image (the first *Teacher steps*). Then it is frozen and two small
**students** (the same MLP, same starting weights, about a seventh of the teacher's size) train on the
same few images (*Student images*) and the same batches: the **distilled** student learns from
the teacher's *soft labels* (its probabilities softened by the temperature T) mixed with the true
label, its **twin** from the true labels alone. The plot shows the three test accuracies; the
bars show, for the test image you pick, the label, the teacher's soft label at T, and both
students' guesses.

**What to try.** Raise the temperature: the soft label spreads over the classes the teacher finds
similar (the "dark knowledge"); at T = 1 it is almost the hard label again and the two students
train alike. Set alpha to 0 (hard labels only: the students become equal twins) or 1 (soft
labels only). Give the students more images: the gap shrinks, because the labels alone already
say enough. Make the student wider or narrower and compare the parameter counts.

**What is normal.** On digits at 16 px the teacher passes 95 % test accuracy in its 200 steps;
the students start near 10 %. With 50 images (five a class) and T = 4 the distilled student
reaches 88–91 % by step 600 while its twin stays at 76–84 %: {normal}. The distilled student's
loss includes the soft term, so it does not fall to zero: compare accuracies, not losses.
"""
NORMAL_TIME = ("600 steps, teacher included, take about 3 s of one CPU core "
               "(seeds 0–2, `python -m bench.train --normal`)")


def distillation_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor,
                      labels: torch.Tensor, temperature: float, alpha: float) -> torch.Tensor:
    """``alpha`` · T² · KL(softmax(teacher/T) ‖ softmax(student/T)) + (1 − ``alpha``) ·
    cross-entropy(student, labels), both averaged over the batch."""
    t = float(temperature)
    soft = F.kl_div(F.log_softmax(student_logits / t, dim=1),
                    F.log_softmax(teacher_logits / t, dim=1),
                    reduction="batchmean", log_target=True)
    hard = F.cross_entropy(student_logits, labels)
    return alpha * t * t * soft + (1.0 - alpha) * hard


class DistillTrainer(ImageDataLesson):
    """A teacher trained first, then a distilled student and its hard-label twin side by side."""

    info = LessonInfo(
        **lesson_text("distill"),
        explanation=EXPLANATION.format(normal=NORMAL_TIME),
        series=("teacher_acc", "student_acc", "twin_acc"),
        series_labels={"teacher_acc": "Teacher (test acc.)",
                       "student_acc": "Distilled student (test acc.)",
                       "twin_acc": "Hard-label twin (test acc.)"},
        log_scale=False,
    )
    params = (
        tl.lr_spec(3e-3),
        ParamSpec("temperature", 4.0, "float", minimum=1.0, maximum=20.0, live=True,
                  label="Temperature T",
                  help="Softens the teacher's probabilities before the student learns them: 1 is "
                       "the teacher as it is, higher spreads them over similar classes."),
        ParamSpec("alpha", 0.9, "float", minimum=0.0, maximum=1.0, live=True, label="Alpha",
                  help="The distilled student's share of the soft-label loss (the rest is the "
                       "true label's cross-entropy). 0: hard labels only, 1: soft only."),
        ParamSpec("pick", 0, "int", minimum=0, maximum=100_000, live=True, label="Image #",
                  help="The test image whose soft label and guesses are shown."),
        ParamSpec("teacher_steps", 200, "int", minimum=1, maximum=100_000,
                  label="Teacher steps",
                  help="Updates the teacher trains on every training image before the students "
                       "start."),
        ParamSpec("teacher_width", 32, "int", minimum=4, maximum=64, label="Teacher filters",
                  help="Filters in the teacher's first conv layer (the second has twice as "
                       "many)."),
        ParamSpec("student_hidden", 16, "int", minimum=2, maximum=512, label="Student width",
                  help="Hidden units of the students' one-layer MLP."),
        ParamSpec("student_images", 50, "int", minimum=10, maximum=100_000,
                  label="Student images",
                  help="Training images the students see (the teacher saw them all): few "
                       "images is where soft labels help most."),
        *data_specs("Your own images: one sub-folder per class (its name is the class).",
                    SIZES, "Pixels per side the networks see.", 64),
    )

    def __init__(self, config: dict[str, Any] | None = None, seed: int = 0,
                 step_count: int = 0) -> None:
        super().__init__(config=self.validate_config(config), seed=seed, step_count=step_count)
        cfg = self.config
        self.data = load_class_images(cfg["dataset"], int(cfg["image_size"]), cfg["data_folder"])
        if self.data.n_classes < 2:
            raise InvalidParameter(
                f"Distillation needs at least two classes, and {self.data.describe()} Put each "
                "class's images in its own sub-folder.")
        self._x_train = torch.from_numpy(self.data.x_train)
        self._y_train = torch.from_numpy(self.data.y_train)
        self._x_test = torch.from_numpy(self.data.x_test)
        self._y_test = torch.from_numpy(self.data.y_test)
        n_student = min(int(cfg["student_images"]), len(self._x_train))
        self._gens = {"teacher": tl.seeded_generator(seed, 1), "train": tl.seeded_generator(seed, 2),
                      "student": tl.seeded_generator(seed, 3)}
        self._subset = torch.randperm(len(self._x_train), generator=tl.seeded_generator(seed, 4)
                                      )[:n_student]
        size, channels, k = self.data.size, self.data.channels, self.data.n_classes
        self.teacher = SmallCNN(channels, int(cfg["teacher_width"]), k, self._gens["teacher"])
        self.student = MLPClassifier(channels * size * size, int(cfg["student_hidden"]), k,
                                     self._gens["student"])
        self.twin = copy.deepcopy(self.student)  # the same start: only the labels differ
        self._opts = {name: tl.make_optimizer("adam", m.parameters(), cfg["lr"])
                      for name, m in self._models().items()}
        self._soft: torch.Tensor | None = None  # the frozen teacher's logits on the subset
        self._teacher_acc = self._accuracy(self.teacher)

    # -- helpers --------------------------------------------------------------------------------
    def _models(self) -> dict[str, torch.nn.Module]:
        return {"teacher": self.teacher, "student": self.student, "twin": self.twin}

    @property
    def teaching(self) -> bool:
        """Still training the teacher (the students wait)."""
        return self.step_count < int(self.config["teacher_steps"])

    @torch.no_grad()
    def _accuracy(self, model: torch.nn.Module) -> float:
        model.eval()
        return float((model(self._x_test).argmax(1) == self._y_test).float().mean())

    @torch.no_grad()
    def _teacher_logits(self) -> torch.Tensor:
        if self._soft is None:
            self.teacher.eval()
            self._soft = self.teacher(self._x_train[self._subset])
        return self._soft

    def _update(self, name: str, loss: torch.Tensor) -> None:
        opt = self._opts[name]
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    # -- the Trainer interface --------------------------------------------------------------------
    def step(self, part: str | None = None) -> dict[str, float]:
        cfg = self.config
        n = int(cfg["batch_size"])
        if self.teaching:
            idx = torch.randint(0, len(self._x_train), (n,), generator=self._gens["train"])
            self.teacher.train()
            loss_t = F.cross_entropy(self.teacher(self._x_train[idx]), self._y_train[idx])
            self._update("teacher", loss_t)
            self.step_count += 1
            loss = float(loss_t.detach())
            check_loss(loss, self.step_count)
            if self.step_count % TEACHER_EVAL_EVERY == 0 or not self.teaching:
                self._teacher_acc = self._accuracy(self.teacher)
            metrics = {"loss": loss}
        else:
            pos = torch.randint(0, len(self._subset), (n,), generator=self._gens["train"])
            x, y = self._x_train[self._subset[pos]], self._y_train[self._subset[pos]]
            teacher = self._teacher_logits()[pos]
            self.student.train()
            self.twin.train()
            loss_s = distillation_loss(self.student(x), teacher, y, cfg["temperature"],
                                       cfg["alpha"])
            loss_h = F.cross_entropy(self.twin(x), y)
            self._update("student", loss_s)
            self._update("twin", loss_h)
            self.step_count += 1
            loss = float(loss_s.detach())
            check_loss(loss, self.step_count)
            check_loss(float(loss_h.detach()), self.step_count)
            metrics = {"loss": loss, "twin_loss": float(loss_h.detach())}
        return {"step": self.step_count, **metrics, "teacher_acc": self._teacher_acc,
                "student_acc": self._accuracy(self.student), "twin_acc": self._accuracy(self.twin)}

    def on_param_changed(self, name: str) -> None:
        if name == "lr":
            for opt in self._opts.values():
                tl.set_lr(opt, self.config["lr"])

    def state_dict(self) -> dict[str, Any]:
        models = self._models()
        return {
            "config": dict(self.config), "seed": self.seed, "step_count": self.step_count,
            **{name: tl.tensor_state(m) for name, m in models.items()},
            "optimizers": {name: tl.optimizer_state(o) for name, o in self._opts.items()},
            "generators": tl.generator_states(self._gens),
            "teacher_acc": self._teacher_acc,
            # for using the student without its data (the classifier export)
            "classes": list(self.data.class_names), "channels": self.data.channels,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.config = self.validate_config(state["config"])
        self.step_count = int(state["step_count"])
        for name, model in self._models().items():
            model.load_state_dict(state[name])
            self._opts[name].load_state_dict(state["optimizers"][name])
        tl.load_generator_states(self._gens, state["generators"])
        self._teacher_acc = float(state["teacher_acc"])
        self._soft = None

    # -- use elsewhere --------------------------------------------------------------------------
    def classifier_spec(self) -> dict[str, Any]:
        """The distilled student as an exported classifier describes it."""
        return spec("mlp", self.data.channels, self.data.size, list(self.data.class_names),
                    int(self.config["student_hidden"]))

    def classifier_state(self) -> dict[str, torch.Tensor]:
        return tl.tensor_state(self.student)

    # -- pictures -------------------------------------------------------------------------------
    @torch.no_grad()
    def snapshot(self) -> dict[str, Any]:
        cfg = self.config
        t = float(cfg["temperature"])
        pick = int(cfg["pick"]) % len(self._x_test)
        x = self._x_test[pick:pick + 1]
        probs = {}
        for name, model in self._models().items():
            model.eval()
            probs[name] = tl.to_numpy(torch.softmax(model(x)[0], 0))
        self.teacher.eval()
        soft = tl.to_numpy(torch.softmax(self.teacher(x)[0] / t, 0))
        accs = {"teacher": self._teacher_acc, "student": self._accuracy(self.student),
                "twin": self._accuracy(self.twin)}
        return {
            "step": self.step_count,
            "teaching": self.teaching,
            "teacher_steps": int(cfg["teacher_steps"]),
            "data_note": self.data.describe(),
            "class_names": self.data.class_names,
            "channels": self.data.channels,
            "photo": self.data.photo,
            "n_student_images": int(len(self._subset)),
            "n_train": int(len(self._x_train)),
            "params": {name: count_parameters(m) for name, m in self._models().items()},
            "accuracy": accs,
            "temperature": t, "alpha": float(cfg["alpha"]),
            "pick": pick, "n_test": int(len(self._x_test)),
            "picked": self._x_test[pick].numpy().transpose(1, 2, 0).copy(),
            "picked_label": int(self._y_test[pick]),
            "probs": probs,  # each model's probabilities at T = 1
            "soft_label": soft,  # the teacher's at T: what the distilled student learns
            "hard_label": np.eye(self.data.n_classes, dtype=np.float32)[int(self._y_test[pick])],
        }
