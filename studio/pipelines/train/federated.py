"""``federated``: federated learning — clients that never share their data train one model.

Several simulated clients each hold a few classes of the training images (a non-IID split:
client k holds classes k·c … k·c + c − 1, modulo the class count, for c ``classes_per_client``;
a class's images are dealt out among the clients holding it). One step is one **round**: every
client receives the global model's weights, trains ``local_steps`` updates of plain SGD on its
own images only, and sends back its weights; the server averages them, weighted by how many
images each client holds (**FedAvg**, McMahan et al., 2017). **FedProx** (Li et al., 2020) adds
μ/2 · ‖w − w_global‖² to each client's loss, pulling the clients back toward the weights they
received, so they drift less on their skewed data.

Everything runs in this process: Flower (``flwr``) would need its simulation engine, which runs
on Ray; neither ships with Studio, and a round of this lesson's tiny MLP takes milliseconds while
starting Ray takes seconds. The averaging is the same arithmetic as Flower's FedAvg strategy
(:func:`fedavg`). Deterministic for a seed; no Qt here.
"""

from __future__ import annotations

import copy
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from studio.core.wording import count_of
from studio.pipelines.train import torch_lessons as tl
from studio.pipelines.train.base import InvalidParameter, LessonInfo, ParamSpec, check_loss
from studio.pipelines.train.classifier_models import MLPClassifier, count_parameters, spec
from studio.pipelines.train.cnn import ImageDataLesson, data_specs
from studio.pipelines.train.image_data import (
    SIZES,
    SOURCE_NAMES,
    load_class_images,
)
from studio.pipelines.train.registry import lesson_text

MIN_CLIENT_IMAGES = 10  # a client with fewer images has nothing to train on
STRATEGIES = ("fedavg", "fedprox")
STRATEGY_NAMES = {"fedavg": "FedAvg", "fedprox": "FedProx"}
BYTES_PER_WEIGHT = 4  # float32 on the wire

EXPLANATION = """\
**What you see.** Each client (a phone, a hospital) holds its own images and only a few of the
classes: the grid shows how many images of each class each client has. A step is one **round**:
every client gets the global model's weights, trains a few steps on its own images, and sends
its weights back; the server averages them, weighted by each client's image count. The plot
shows the global model's test accuracy beside the clients' own models' (each scores well only on
its classes). The bars show each client's drift, how far its weights walked from the global model
it received, and the panel lists what travelled: weights only; the images never leave a client.

**What to try.** Give each client more classes (less skewed data): the global model learns faster
and the clients drift less. Switch to **FedProx** and raise μ: the clients are pulled back toward
the global weights and drift less; too much μ and they barely learn. Raise the local steps: fewer
rounds (less communication) but more drift. Add clients: each holds fewer images; more clients
than the data can feed is refused with a sentence.

**What is normal.** With 5 clients holding 2 digit classes each, the averaged model passes 80 %
test accuracy within about 10 rounds and 90 % by about 60, while each client's own model, after
its local steps on two classes, scores 20–30 % on the whole test set in the first 30 rounds: it
forgets what it does not hold (later, starting from a better global model, it forgets less).
FedProx at μ = 1 cuts the drift by about a quarter. {normal}.

**Why not Flower.** Flower (`flwr`) is the usual library for this, but its simulation engine
runs on Ray, which Studio does not ship (and which takes longer to start than this whole lesson
takes to learn); the lesson runs the same FedAvg arithmetic in one process, milliseconds a round.
"""
NORMAL_TIME = ("100 rounds take about 3 s of one CPU core (seeds 0–2, "
               "`python -m bench.train --normal`)")


def fedavg(states: list[dict[str, torch.Tensor]], sizes: list[int]) -> dict[str, torch.Tensor]:
    """The weighted mean of the clients' weights: Σ nₖ·wₖ / Σ nₖ, tensor by tensor."""
    total = float(sum(sizes))
    out = {}
    for key, first in states[0].items():
        acc = torch.zeros_like(first, dtype=torch.float64)
        for state, n in zip(states, sizes, strict=True):
            acc += state[key].double() * (n / total)
        out[key] = acc.to(first.dtype)
    return out


def client_classes(clients: int, per_client: int, n_classes: int) -> list[list[int]]:
    """Client k holds classes k·c … k·c + c − 1 (modulo the class count)."""
    return [[(k * per_client + j) % n_classes for j in range(per_client)] for k in range(clients)]


def split_non_iid(labels: np.ndarray, clients: int, per_client: int, n_classes: int,
                  rng: np.random.Generator) -> list[np.ndarray]:
    """The training images' indices each client holds: each class's images shuffled and dealt
    out evenly among the clients that hold the class (a class nobody holds is unused)."""
    holders: dict[int, list[int]] = {}
    for k, classes in enumerate(client_classes(clients, per_client, n_classes)):
        for c in classes:
            holders.setdefault(c, []).append(k)
    parts: list[list[np.ndarray]] = [[] for _ in range(clients)]
    for c, ks in holders.items():
        idx = rng.permutation(np.flatnonzero(labels == c))
        for k, chunk in zip(ks, np.array_split(idx, len(ks)), strict=True):
            parts[k].append(chunk)
    return [np.sort(np.concatenate(p)) for p in parts]


def _smallest_client(labels: np.ndarray, clients: int, per_client: int, n_classes: int) -> int:
    counts = np.bincount(labels, minlength=n_classes)
    holders = np.zeros(n_classes, dtype=np.int64)
    for classes in client_classes(clients, per_client, n_classes):
        for c in classes:
            holders[c] += 1
    return min(sum(int(counts[c]) // int(holders[c]) for c in classes)
               for classes in client_classes(clients, per_client, n_classes))


def check_split(labels: np.ndarray, clients: int, per_client: int, n_classes: int,
                data_name: str) -> None:
    """Refuse a split that leaves a client too few images (or asks for more classes than
    exist), saying how many clients the data allows."""
    if per_client > n_classes:
        raise InvalidParameter(
            f"Classes per client is {per_client}, but {data_name} has only "
            f"{count_of(n_classes, 'class', 'classes')}: give each client at most {n_classes}.")
    if _smallest_client(labels, clients, per_client, n_classes) >= MIN_CLIENT_IMAGES:
        return
    fits = max((k for k in range(1, clients)
                if _smallest_client(labels, k, per_client, n_classes) >= MIN_CLIENT_IMAGES),
               default=0)
    raise InvalidParameter(
        f"{clients} clients with {count_of(per_client, 'class', 'classes')} each are more than "
        f"{data_name} can feed: some client would hold fewer than {MIN_CLIENT_IMAGES} training "
        f"images. At most {fits} clients fit with {per_client} each — lower Clients, or give "
        "each client more classes.")


class FederatedTrainer(ImageDataLesson):
    """Simulated clients with non-IID data, FedAvg or FedProx rounds, in one process."""

    info = LessonInfo(
        **lesson_text("federated"),
        explanation=EXPLANATION.format(normal=NORMAL_TIME),
        series=("global_acc", "client_acc"),
        series_labels={"global_acc": "Global model (test acc.)",
                       "client_acc": "Clients' own models (mean test acc.)"},
        log_scale=False,
    )
    params = (
        tl.lr_spec(0.1, "Step size of each client's SGD."),
        ParamSpec("strategy", "fedavg", "choice", choices=STRATEGIES, live=True,
                  choice_labels=STRATEGY_NAMES, label="Strategy",
                  help="FedAvg: plain weighted average. FedProx: the same average, with each "
                       "client's loss pulled toward the weights it received (μ)."),
        ParamSpec("mu", 0.1, "float", minimum=0.0, maximum=10.0, live=True, label="FedProx μ",
                  help="How strongly FedProx pulls each client toward the global weights "
                       "(FedAvg ignores it)."),
        ParamSpec("local_steps", 10, "int", minimum=1, maximum=500, live=True,
                  label="Local steps", help="SGD updates each client makes per round."),
        ParamSpec("clients", 5, "int", minimum=2, maximum=500, label="Clients",
                  help="Simulated clients; each holds its own share of the images."),
        ParamSpec("classes_per_client", 2, "int", minimum=1, maximum=64,
                  label="Classes per client",
                  help="How many classes each client holds (fewer: more skewed data)."),
        ParamSpec("hidden", 32, "int", minimum=2, maximum=512, label="Model width",
                  help="Hidden units of the shared one-layer MLP."),
        *data_specs("Your own images: one sub-folder per class (its name is the class).",
                    SIZES, "Pixels per side the model sees.", 32),
    )

    def __init__(self, config: dict[str, Any] | None = None, seed: int = 0,
                 step_count: int = 0) -> None:
        super().__init__(config=self.validate_config(config), seed=seed, step_count=step_count)
        cfg = self.config
        self.data = load_class_images(cfg["dataset"], int(cfg["image_size"]), cfg["data_folder"])
        k = self.data.n_classes
        clients, per_client = int(cfg["clients"]), int(cfg["classes_per_client"])
        check_split(self.data.y_train, clients, per_client, k,
                    SOURCE_NAMES[self.data.name].lower())
        self.classes = client_classes(clients, per_client, k)
        self.parts = split_non_iid(self.data.y_train, clients, per_client, k,
                                   np.random.default_rng(seed))
        self._x_train = torch.from_numpy(self.data.x_train)
        self._y_train = torch.from_numpy(self.data.y_train)
        self._x_test = torch.from_numpy(self.data.x_test)
        self._y_test = torch.from_numpy(self.data.y_test)
        self._gens = {"init": tl.seeded_generator(seed, 1), "train": tl.seeded_generator(seed, 2)}
        size, channels = self.data.size, self.data.channels
        self.model = MLPClassifier(channels * size * size, int(cfg["hidden"]), k,
                                   self._gens["init"])
        self._own_test = [torch.from_numpy(np.isin(self.data.y_test, c)) for c in self.classes]
        n = len(self.parts)
        #: the last round's numbers per client (zeros before the first round)
        self.last: dict[str, list[float]] = {key: [0.0] * n for key in (
            "loss", "acc", "own_acc", "global_own_acc", "drift")}

    # -- rounds ---------------------------------------------------------------------------------
    @torch.no_grad()
    def _accuracy(self, model: torch.nn.Module, mask: torch.Tensor | None = None) -> float:
        x, y = (self._x_test, self._y_test) if mask is None else (self._x_test[mask],
                                                                   self._y_test[mask])
        if not len(y):
            return 0.0
        return float((model(x).argmax(1) == y).float().mean())

    def _train_client(self, k: int, start: dict[str, torch.Tensor]
                      ) -> tuple[dict[str, torch.Tensor], float]:
        cfg = self.config
        local = copy.deepcopy(self.model)
        opt = torch.optim.SGD(local.parameters(), lr=float(cfg["lr"]))
        prox = float(cfg["mu"]) if cfg["strategy"] == "fedprox" else 0.0
        anchors = [start[name] for name, _p in local.named_parameters()]
        part = torch.from_numpy(self.parts[k])
        batch = min(int(cfg["batch_size"]), len(part))
        loss_value = 0.0
        for _ in range(int(cfg["local_steps"])):
            idx = part[torch.randint(0, len(part), (batch,), generator=self._gens["train"])]
            loss = F.cross_entropy(local(self._x_train[idx]), self._y_train[idx])
            loss_value = float(loss.detach())
            if prox:
                loss = loss + prox / 2 * sum(((p - a) ** 2).sum() for p, a in
                                             zip(local.parameters(), anchors, strict=True))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        return tl.tensor_state(local), loss_value

    def step(self, part: str | None = None) -> dict[str, float]:
        start = tl.tensor_state(self.model)
        states, losses = [], []
        for k in range(len(self.parts)):
            state, loss = self._train_client(k, start)
            states.append(state)
            losses.append(loss)
        sizes = [len(p) for p in self.parts]
        probe = copy.deepcopy(self.model)
        accs, own, drift = [], [], []
        for k, state in enumerate(states):
            probe.load_state_dict(state)
            accs.append(self._accuracy(probe))
            own.append(self._accuracy(probe, self._own_test[k]))
            drift.append(float(torch.cat([(state[n] - start[n]).flatten() for n in start]).norm()))
        self.model.load_state_dict(fedavg(states, sizes))
        self.step_count += 1
        loss = float(np.average(losses, weights=sizes))
        check_loss(loss, self.step_count)
        self.last = {"loss": losses, "acc": accs, "own_acc": own, "drift": drift,
                     "global_own_acc": [self._accuracy(self.model, m) for m in self._own_test]}
        return {"step": self.step_count, "loss": loss, "global_acc": self._accuracy(self.model),
                "client_acc": float(np.mean(accs)), "drift": float(np.mean(drift))}

    def state_dict(self) -> dict[str, Any]:
        return {"config": dict(self.config), "seed": self.seed, "step_count": self.step_count,
                "model": tl.tensor_state(self.model),
                "generators": tl.generator_states(self._gens),
                "last": {key: list(v) for key, v in self.last.items()},
                # for using the global model without its data (the classifier export)
                "classes": list(self.data.class_names), "channels": self.data.channels}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.config = self.validate_config(state["config"])
        self.step_count = int(state["step_count"])
        self.model.load_state_dict(state["model"])
        tl.load_generator_states(self._gens, state["generators"])
        self.last = {key: [float(x) for x in v] for key, v in state["last"].items()}

    # -- use elsewhere --------------------------------------------------------------------------
    def classifier_spec(self) -> dict[str, Any]:
        """The global model as an exported classifier describes it."""
        return spec("mlp", self.data.channels, self.data.size, list(self.data.class_names),
                    int(self.config["hidden"]))

    def classifier_state(self) -> dict[str, torch.Tensor]:
        return tl.tensor_state(self.model)

    # -- pictures -------------------------------------------------------------------------------
    def snapshot(self) -> dict[str, Any]:
        k = self.data.n_classes
        holdings = np.stack([np.bincount(self.data.y_train[p], minlength=k) for p in self.parts])
        n_weights = count_parameters(self.model)
        rounds = self.step_count
        return {
            "step": rounds,
            "data_note": self.data.describe(),
            "class_names": self.data.class_names,
            "strategy": STRATEGY_NAMES[self.config["strategy"]],
            "mu": float(self.config["mu"]),
            "local_steps": int(self.config["local_steps"]),
            "holdings": holdings.astype(np.int64),  # (clients, classes) images held
            "client_classes": [list(c) for c in self.classes],
            "global_acc": self._accuracy(self.model),
            "last": {key: np.asarray(v, dtype=np.float32) for key, v in self.last.items()},
            "n_weights": n_weights,
            # every round each client downloads and uploads the weights, nothing else
            "bytes_per_round": 2 * len(self.parts) * n_weights * BYTES_PER_WEIGHT,
            "bytes_total": rounds * 2 * len(self.parts) * n_weights * BYTES_PER_WEIGHT,
            "images_kept": [int(len(p)) for p in self.parts],
            "image_bytes": int(self.data.x_train[0].size),  # pixels per image, never sent
        }
