"""The ``prune`` lesson: the CNN lesson's digits classifier, trained, then pruned and fine-tuned.

Two methods of ``torch.nn.utils.prune``: *magnitude* (``global_unstructured`` with
``L1Unstructured``: the smallest weights of all layers together set to zero) and *structured*
(``ln_structured`` over dim 0: the convolution filters with the smallest L2 norm removed whole).
The last layer's outputs are the ten classes, so structured pruning leaves it whole, and says so.

After training, the lesson first sweeps both methods over sparsities 0–95 % on copies of the
trained network (one level a step: the accuracy-against-sparsity curves, without fine-tuning),
then prunes a copy at the slider's sparsity and fine-tunes it with the pruning masks in place
(``prune`` keeps ``weight = weight_orig × weight_mask``, so removed weights stay zero). Moving the
slider or switching the method prunes the trained network again and fine-tunes anew; each
fine-tuned point stays on the plot.
"""

from __future__ import annotations

import copy
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import prune

from studio.pipelines.train import torch_lessons as tl
from studio.pipelines.train.base import LessonInfo, ParamSpec, check_loss
from studio.pipelines.train.compress import (
    PRUNABLE,
    CompressLesson,
    base_specs,
    evaluate,
    model_bytes,
    time_forward,
)
from studio.pipelines.train.registry import lesson_text

METHODS = {"magnitude": "Magnitude (single weights)", "structured": "Structured (whole filters)"}
LEVELS = (0.0, 0.2, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95)  # the sweep's sparsities
STRUCTURED = ("conv1", "conv2")  # the layers structured pruning removes filters of
FINE_TUNE_BATCH = 64
TEST_EVERY = 10  # fine-tuning steps between test-set evaluations
BLOCKED_FC = ("fc stays whole: its outputs are the ten classes, and removing one would remove "
              "a digit")

EXPLANATION = """\
**What you see.** First the CNN of the *CNN* lesson learns the digits (the loss plot). Then its
weights are pruned — set to zero for good — at sparsities from 0 to 95 %, each on a copy of the
trained network: the curves show the test accuracy left, *without* any more training, for
*magnitude* pruning (the smallest single weights anywhere) and *structured* pruning (whole
convolution filters, the weakest by their L2 norm). Then the network is pruned at the slider's
sparsity and fine-tuned with the removed weights held at zero: its point climbs as it trains.
The filters show what is left: removed weights and filters are blank, and the line below lists
the filters that went.

**What to try.** Move the sparsity slider to 80 %, then 95 %, and watch fine-tuning win back the
accuracy; the curve without fine-tuning falls much earlier. Switch to *structured*: removing whole
filters hurts sooner, but a removed filter (its weights and its bias) can be cut out of the
layer: the lesson builds that smaller network and times it, while scattered zeros need sparse
kernels to save time. Compare how much of each layer
magnitude pruning takes: it prunes all layers together, so the big last layer loses the most.

**What is normal.** After 300 training steps the network gets about 96 % of the test digits
right. Without fine-tuning, magnitude pruning keeps that up to about 60–70 % sparsity, then falls
(about 86 % at 80 %, 60 % at 90 %); structured pruning falls from about 40 % of the filters (85 %
at half of them). Cut out, half the filters leave about 40 % of the bytes and a clearly faster
test set (the line above the plots says both). Fine-tuning wins most of it back: at 90 % magnitude sparsity about 84 % after
40 steps and 93 % after 300; at half the filters, back to 96 % in 100 steps. The last layer is
never pruned structurally: its ten outputs are the ten digits.
"""


def pruned_copy(net: nn.Module, method: str, sparsity: float) -> Any:
    """A copy of ``net`` pruned by ``method`` to ``sparsity`` (masks in place, as ``prune``
    leaves them: fine-tuning keeps the removed weights at zero)."""
    model = copy.deepcopy(net)
    if method == "magnitude":
        prune.global_unstructured([(getattr(model, n), "weight") for n in PRUNABLE],
                                  pruning_method=prune.L1Unstructured, amount=float(sparsity))
    else:
        for name in STRUCTURED:
            layer = getattr(model, name)
            prune.ln_structured(layer, "weight", amount=float(sparsity), n=2, dim=0)
            # a removed filter's bias goes too: its map is then 0, so it can be cut out exactly
            prune.custom_from_mask(layer, "bias", layer.weight_mask.flatten(1).amax(1))
    return model


def compacted(model: Any) -> Any:
    """A structurally pruned network with its removed filters cut out: smaller conv layers (and
    the last layer without the inputs of the removed maps), the same function."""
    from studio.pipelines.train.cnn import SmallCNN

    def masked(layer: Any, name: str) -> torch.Tensor:
        return (getattr(layer, f"{name}_orig") * getattr(layer, f"{name}_mask")).detach()

    k1 = model.conv1.weight_mask.flatten(1).amax(1) > 0
    k2 = model.conv2.weight_mask.flatten(1).amax(1) > 0
    net: Any = SmallCNN.__new__(SmallCNN)  # its forward, on smaller layers
    nn.Module.__init__(net)
    net.conv1 = nn.Conv2d(model.conv1.in_channels, int(k1.sum()), 3, padding=1)
    net.conv2 = nn.Conv2d(int(k1.sum()), int(k2.sum()), 3, padding=1)
    net.pool = nn.AdaptiveAvgPool2d(4)
    classes = model.fc.out_features
    net.fc = nn.Linear(int(k2.sum()) * 16, classes)  # 16: the 4×4 average-pooled map
    with torch.no_grad():
        net.conv1.weight.copy_(masked(model.conv1, "weight")[k1])
        net.conv1.bias.copy_(masked(model.conv1, "bias")[k1])
        net.conv2.weight.copy_(masked(model.conv2, "weight")[k2][:, k1])
        net.conv2.bias.copy_(masked(model.conv2, "bias")[k2])
        net.fc.weight.copy_(model.fc.weight.detach().reshape(classes, len(k2), 16)[:, k2]
                            .reshape(classes, -1))
        net.fc.bias.copy_(model.fc.bias.detach())
    return net.eval()


def layer_sparsity(model: nn.Module) -> dict[str, float]:
    """Each weighted layer's share of zero weights."""
    return {n: float((getattr(model, n).weight == 0).float().mean()) for n in PRUNABLE}


def removed_filters(model: nn.Module) -> dict[str, list[int]]:
    """Per conv layer, the filters whose every weight is zero."""
    out = {}
    for name in STRUCTURED:
        weight = getattr(model, name).weight.detach()
        out[name] = [int(i) for i in torch.nonzero(weight.flatten(1).abs().sum(1) == 0).flatten()]
    return out


def model_sparsity(model: nn.Module, names: tuple[str, ...] = PRUNABLE) -> float:
    """Share of zero weights over the layers ``names``."""
    zeros = sum(int((getattr(model, n).weight == 0).sum()) for n in names)
    return zeros / sum(getattr(model, n).weight.numel() for n in names)


def unmasked(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A pruned network's state (``weight_orig`` and ``weight_mask``) as a plain one: each
    weight with its removed entries zero, under the names the unpruned network has."""
    out = {}
    for key, value in state.items():
        if key.endswith("_mask"):
            continue
        if key.endswith("_orig"):
            name = key[:-len("_orig")]
            out[name] = (value * state[f"{name}_mask"]).contiguous()
        else:
            out[key] = value
    return out


def checkpoint_pruned(state: dict[str, Any]) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """(spec, weights) of the pruned classifier a saved prune run holds."""
    from studio.core.jobs import UserFacingError
    from studio.pipelines.train.classifier_models import checkpoint_classifier

    pruned = (state.get("work") or {}).get("pruned")
    if pruned is None:
        raise UserFacingError(NOT_PRUNED)
    spec, _ = checkpoint_classifier("cnn", state["cnn"], state["cnn"]["config"])
    return spec, unmasked(pruned)


NOT_PRUNED = ("Nothing is pruned yet: the lesson trains the CNN and sweeps the sparsities first; "
              "export once it prunes at your sparsity and fine-tunes.")


class PruneLesson(CompressLesson):
    """The digits CNN trained, swept over sparsities, then pruned and fine-tuned."""

    info = LessonInfo(
        **lesson_text("prune"), explanation=EXPLANATION,
        series=("loss", "test_loss"),
        series_labels={"loss": "Train loss", "test_loss": "Test loss"},
    )
    params = (
        *base_specs(300),
        ParamSpec("method", "magnitude", "choice", choices=tuple(METHODS), live=True,
                  choice_labels=METHODS, label="Method",
                  help="Magnitude: the smallest single weights of all layers; structured: whole "
                       "convolution filters."),
        ParamSpec("sparsity", 0.8, "float", minimum=0.0, maximum=0.95, live=True,
                  label="Sparsity", help="Share of the weights (magnitude) or of the filters "
                                         "(structured) removed before fine-tuning."),
    )

    def __init__(self, config: dict[str, Any] | None = None, seed: int = 0,
                 step_count: int = 0) -> None:
        super().__init__(config, seed, step_count)
        self._gen = tl.seeded_generator(seed, 11)
        self.curves: dict[str, list[tuple[float, float]]] = {m: [] for m in METHODS}
        self.sweep: list[tuple[str, float]] = []
        self.tuned: dict[str, dict[str, Any]] = {}  # "method@sparsity" -> its fine-tuned point
        self.pruned: Any = None
        self._optimizer: torch.optim.Optimizer | None = None
        self._current = ("", 0.0)  # (method, sparsity) of ``pruned``

    # -- the work ----------------------------------------------------------------------------------
    def restart(self) -> None:
        self.curves = {m: [] for m in METHODS}
        self.sweep = [(m, s) for m in METHODS for s in LEVELS]
        self.tuned, self.pruned, self._optimizer = {}, None, None

    def on_param_changed(self, name: str) -> None:
        super().on_param_changed(name)
        if name in ("method", "sparsity"):
            self.pruned = self._optimizer = None
        elif name == "lr" and self._optimizer is not None:
            tl.set_lr(self._optimizer, float(self.config["lr"]))

    def _prune_now(self) -> None:
        method, sparsity = str(self.config["method"]), float(self.config["sparsity"])
        self.pruned = pruned_copy(self.net, method, sparsity)
        self._optimizer = torch.optim.Adam(self.pruned.parameters(), lr=float(self.config["lr"]))
        self._current = (method, sparsity)
        acc = evaluate(self.pruned, self.x_test, self.y_test)[1]
        point: dict[str, Any] = {"method": method, "sparsity": sparsity, "before": acc,
                                 "acc": acc, "steps": 0}
        if method == "structured":  # what cutting the removed filters out saves (display only)
            small = compacted(self.pruned)
            point.update(dense_bytes=model_bytes(self.net), cut_bytes=model_bytes(small),
                         dense_ms=time_forward(self.net, self.x_test),
                         cut_ms=time_forward(small, self.x_test))
        self.tuned[self._key()] = point

    def _key(self) -> str:
        return f"{self._current[0]}@{self._current[1]:.4f}"

    def work_step(self) -> dict[str, float]:
        if self.sweep:
            method, sparsity = self.sweep.pop(0)
            acc = evaluate(pruned_copy(self.net, method, sparsity), self.x_test, self.y_test)[1]
            self.curves[method].append((sparsity, acc))
            return {"loss": self.last_loss, f"acc_{method}": acc}
        if self.pruned is None:
            self._prune_now()
        assert self.pruned is not None and self._optimizer is not None
        x_train, y_train = self.cnn._x_train, self.cnn._y_train
        idx = torch.randint(0, len(x_train), (FINE_TUNE_BATCH,), generator=self._gen)
        self.pruned.train()
        self._optimizer.zero_grad(set_to_none=True)
        loss = F.cross_entropy(self.pruned(x_train[idx]), y_train[idx])
        loss.backward()
        self._optimizer.step()
        self.last_loss = float(loss.detach())
        check_loss(self.last_loss, self.step_count)
        point = self.tuned[self._key()]
        point["steps"] += 1
        metrics = {"loss": self.last_loss}
        if point["steps"] % TEST_EVERY == 0:
            test_loss, point["acc"] = evaluate(self.pruned, self.x_test, self.y_test)
            metrics.update(test_loss=test_loss, test_acc=point["acc"])
        return metrics

    # -- use elsewhere (the classifier export: Gallery's Classify) -------------------------------
    def classifier_spec(self) -> dict[str, Any]:
        return self.cnn.classifier_spec()

    def classifier_state(self) -> dict[str, torch.Tensor]:
        from studio.core.jobs import UserFacingError

        if self.pruned is None:
            raise UserFacingError(NOT_PRUNED)
        return unmasked(tl.tensor_state(self.pruned))

    def work_state(self) -> dict[str, Any]:
        state: dict[str, Any] = {
            "curves": {m: [list(p) for p in pts] for m, pts in self.curves.items()},
            "sweep": [[m, s] for m, s in self.sweep], "tuned": list(self.tuned.values()),
            "generator": self._gen.get_state().clone(), "current": list(self._current)}
        if self.pruned is not None and self._optimizer is not None:
            state["pruned"] = tl.tensor_state(self.pruned)
            state["optimizer"] = tl.optimizer_state(self._optimizer)
        return state

    def load_work_state(self, state: dict[str, Any]) -> None:
        self.curves = {m: [(float(s), float(a)) for s, a in state["curves"][m]] for m in METHODS}
        self.sweep = [(str(m), float(s)) for m, s in state["sweep"]]
        self._gen.set_state(state["generator"].clone())
        self._current = (str(state["current"][0]), float(state["current"][1]))
        self.tuned = {}
        for point in state["tuned"]:
            self.tuned[f"{point['method']}@{float(point['sparsity']):.4f}"] = dict(point)
        self.pruned = self._optimizer = None
        if "pruned" in state:
            self.pruned = pruned_copy(self.net, *self._current)
            self.pruned.load_state_dict(state["pruned"])
            self._optimizer = torch.optim.Adam(self.pruned.parameters(),
                                               lr=float(self.config["lr"]))
            self._optimizer.load_state_dict(state["optimizer"])

    def report(self) -> str:
        """The curves and the fine-tuned points as text (``studio train prune`` prints it at the
        end); "" before the sweep began."""
        lines = []
        for method, points in self.curves.items():
            if points:
                lines.append(f"{METHODS[method]}, no fine-tuning: " + ", ".join(
                    f"{s:.0%} → {a:.1%}" for s, a in points))
        for point in self.tuned.values():
            lines.append(f"{METHODS[point['method']]} at {point['sparsity']:.0%}: "
                         f"{point['before']:.1%} right after pruning, {point['acc']:.1%} after "
                         f"{point['steps']} fine-tuning steps"
                         + (f"; filters cut out: {point['cut_bytes'] / 1024:.1f} KiB (dense "
                            f"{point['dense_bytes'] / 1024:.1f}), test set {point['cut_ms']:.1f} "
                            f"ms (dense {point['dense_ms']:.1f})" if "cut_bytes" in point else ""))
        if self.pruned is not None:
            removed = removed_filters(self.pruned)
            lines += [f"{name} filters removed: {', '.join(map(str, f))}"
                      for name, f in removed.items() if f]
        return "\n".join(lines)

    # -- pictures ----------------------------------------------------------------------------------
    def snapshot(self) -> dict[str, Any]:
        snap = self.base_snapshot()
        model: Any = self.pruned if self.pruned is not None else self.net
        w1 = model.conv1.weight.detach().float().clone()  # (width, C, 3, 3)
        w2 = model.conv2.weight.detach().float().clone()  # (2·width, width, 3, 3)
        snap.update({
            "curves": {m: np.array(pts, np.float32).reshape(-1, 2) for m, pts in
                       self.curves.items()},
            "method_names": dict(METHODS),
            "config_sparsity": float(self.config["sparsity"]),
            "tuned": [dict(p) for p in self.tuned.values()],
            "pruned": self.pruned is not None,
            "method": self._current[0] if self.pruned is not None else "",
            "sparsity": self._current[1] if self.pruned is not None else 0.0,
            "layer_sparsity": layer_sparsity(model),
            "reached": model_sparsity(model, PRUNABLE if self._current[0] != "structured"
                                      else STRUCTURED),
            "removed": removed_filters(model),
            "blocked": BLOCKED_FC if self._current[0] == "structured" and self.pruned is not None
            else "",
            # zero weights are NaN: the view draws them blank
            "filters1": tl.to_numpy(torch.where(w1 == 0, torch.nan, w1).mean(1)),
            "filters2": tl.to_numpy(torch.where(w2 == 0, torch.nan, w2.abs()).nanmean(1)),
            "filters2_removed": np.array(removed_filters(model)["conv2"], np.int64),
        })
        return snap
