"""The ``quantize`` lesson: the CNN lesson's digits classifier, trained, then stored in fewer bits.

Settings: the float32 model as trained; float16 and bfloat16 (every layer cast); and with torchao
(``torchao.quantization.quantize_``) int8 weight-only (``Int8WeightOnlyConfig``), int8 dynamic
(``Int8DynamicActivationInt8WeightConfig``: activations rounded to int8 per batch too), int4
weight-only in groups (``IntxWeightOnlyConfig(weight_dtype=torch.int4)``, the int4 torchao runs on a
CPU) and float8 weight-only (``Float8WeightOnlyConfig``). Each setting is applied to a copy of the
trained network, one setting a step, and measured: bytes, test accuracy, time per test batch.
After that each step times one setting again, so the speed column settles.

torchao's int8/int4 tensors quantize ``nn.Linear`` layers; a layer a method cannot take (a
convolution, or a layer whose inputs do not split into the int4 groups) is found by trying it, and
stays float32 with the reason in the table — the rest of the model is still quantized.
"""

from __future__ import annotations

import copy
import functools
from typing import Any

import numpy as np
import torch
from torch import nn

from studio.pipelines.train.base import LessonInfo, ParamSpec
from studio.pipelines.train.compress import (
    CompressLesson,
    base_specs,
    evaluate,
    model_bytes,
    tensor_bytes,
    time_forward,
)
from studio.pipelines.train.registry import lesson_text

#: setting -> the name the table shows, in the table's order
SETTINGS: dict[str, str] = {
    "float32": "float32 (as trained)",
    "float16": "float16",
    "bfloat16": "bfloat16",
    "float8_weight": "float8 weights",
    "int8_weight": "int8 weights",
    "int8_dynamic": "int8 dynamic",
    "int4_weight": "int4 weights",
}
TORCHAO = ("float8_weight", "int8_weight", "int8_dynamic", "int4_weight")
#: settings whose weights lie on an integer grid (the histogram's choices), and its half-range
GRIDS = {"int8_weight": 127, "int8_dynamic": 127, "int4_weight": 8}
GROUPS = ("32", "64", "128", "256")
BIN = 0.25  # histogram bin, in steps of the grid: whole steps fall in every fourth bin
KEPT_TIMINGS = 7

EXPLANATION = """\
**What you see.** First the CNN of the *CNN* lesson learns the digits (the loss plot). Then a copy
of the trained network is stored in fewer bits, one setting a step: float16 and bfloat16 (every
layer), and with torchao float8, int8 and int4 weights, and int8 *dynamic* (the activations are
rounded to int8 too, batch by batch). The table gives each setting's bytes, its time for the
whole test set (measured now, on this computer) and its test accuracy; the bars show them next to
float32's. The histogram shows the last layer's weights in steps of their scale: before rounding
a smooth hill, after it spikes on whole steps only — the grid the weights now live on.

**What to try.** Switch the histogram to int4: sixteen levels, each group of inputs with its own
scale. Set *Layers* to *All layers*: torchao has no int8 convolution, and the table says which
layers stay float32 and why. Change the int4 group size: smaller groups cost more scales but round
less. Set *Filters* to 12 and the groups to 256: the last layer's 384 inputs do not split into
groups of 256, and the table says so. Train longer (Training steps) and everything is measured
again.

**What is normal.** After 300 training steps (seconds) the float32 network gets about 96 % of
the test digits right, and every setting keeps that within a point (int4 in groups of 32 too).
int8 and float8 weights take a quarter of float32's bytes; only the last layer is a Linear layer,
half the weights, so the whole model shrinks to about 60 %. float16 and bfloat16 halve every
layer. Times, on a CPU: float16 is many times *slower* (most CPUs have no float16 arithmetic, so
it is emulated), bfloat16 about as fast as float32 or faster (AVX-512 has bfloat16 dot products),
and the int8/int4 weights barely change the time for a network this small: they are turned back
into floats at every batch. Speed from integers needs kernels made for them (GPUs, ARM CPUs); the
bytes saved are the sure gain.
"""


@functools.cache
def int4_packed_reason() -> str:
    """Why torchao's packed int4 (``Int4WeightOnlyConfig``, two values a byte) does not run
    here ("" when it does): its message, tried on a small layer."""
    from torchao.quantization import Int4WeightOnlyConfig, quantize_

    layer = nn.Sequential(nn.Linear(64, 8))
    try:
        quantize_(layer, Int4WeightOnlyConfig(group_size=32))
        with torch.no_grad():
            layer(torch.zeros(1, 64))
    except Exception as exc:  # noqa: BLE001 - any failure is the reason shown
        return str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return ""


def torchao_config(setting: str, group: int) -> Any:
    """The ``quantize_`` config of a torchao setting."""
    from torchao.quantization import (
        Float8WeightOnlyConfig,
        Int8DynamicActivationInt8WeightConfig,
        Int8WeightOnlyConfig,
        IntxWeightOnlyConfig,
        PerGroup,
    )

    if setting == "int8_weight":
        return Int8WeightOnlyConfig()
    if setting == "int8_dynamic":
        return Int8DynamicActivationInt8WeightConfig()
    if setting == "int4_weight":
        return IntxWeightOnlyConfig(weight_dtype=torch.int4,  # type: ignore[attr-defined]
                                    granularity=PerGroup(group))
    if setting == "float8_weight":
        return Float8WeightOnlyConfig()
    raise ValueError(f"not a torchao setting: {setting}")


def why_blocked(module: nn.Module, exc: BaseException, setting: str, group: int) -> str:
    """A sentence's end: why ``setting`` cannot take ``module``."""
    if isinstance(module, nn.Conv2d):
        return (f"torchao stores only Linear layers as {SETTINGS[setting]} (it has no "
                "convolution for them)")
    if "divisible" in str(exc) and isinstance(module, nn.Linear):
        return f"its {module.in_features} inputs do not split into groups of {group}"
    first = str(exc).splitlines()[0] if str(exc) else ""
    return f"{type(exc).__name__}: {first[:160]}"


def quantized(net: nn.Module, setting: str, layers: str, group: int,
              sample: torch.Tensor) -> tuple[Any, list[str], dict[str, str]]:
    """A copy of ``net`` in ``setting``: (model, the layers quantized, {layer: why it stays
    float32}). torchao settings try each chosen layer alone on ``sample`` first, so a layer the
    method cannot take is named and left as it is, never the whole model refused."""
    if setting == "float32":
        return copy.deepcopy(net), [], {}
    if setting in ("float16", "bfloat16"):
        model = copy.deepcopy(net).to(getattr(torch, setting))
        return model, [n for n, m in net.named_modules() if hasattr(m, "weight")], {}
    from torchao.quantization import quantize_

    kinds: tuple[type, ...] = (nn.Linear,) if layers == "linear" else (nn.Linear, nn.Conv2d)
    chosen = [n for n, m in net.named_modules() if isinstance(m, kinds)]
    blocked: dict[str, str] = {}
    for name in chosen:
        probe = copy.deepcopy(net)
        try:
            quantize_(probe, torchao_config(setting, group), filter_fn=lambda m, fqn, n=name: fqn == n)
            with torch.no_grad():
                probe(sample)
        except Exception as exc:  # noqa: BLE001 - a layer the method cannot take, said in words
            blocked[name] = why_blocked(net.get_submodule(name), exc, setting, group)
    done = [n for n in chosen if n not in blocked]
    model = copy.deepcopy(net)
    if done:
        quantize_(model, torchao_config(setting, group), filter_fn=lambda m, fqn: fqn in done)
    return model, done, blocked


def grid_histogram(float_weight: torch.Tensor, qweight: Any, half_range: int
                   ) -> dict[str, np.ndarray]:
    """The weights in steps of their block's scale, before rounding and after (the stored
    integers): histograms on one set of bins (:data:`BIN` steps wide, whole steps at bin
    centres)."""
    rows = float_weight.shape[0]
    scale = qweight.scale.detach().float().reshape(rows, -1)
    scale = scale.repeat_interleave(float_weight.shape[1] // scale.shape[1], dim=1)
    zero = getattr(qweight, "zero_point", None)
    offset = 0.0 if zero is None else zero.detach().float().reshape(rows, -1).repeat_interleave(
        float_weight.shape[1] // zero.reshape(rows, -1).shape[1], dim=1)
    before = (float_weight.detach().float() / scale + offset).numpy().ravel()
    after = qweight.qdata.detach().float().numpy().ravel()
    edges = np.arange(-half_range - 1 - BIN / 2, half_range + 1 + BIN, BIN, dtype=np.float32)
    return {"edges": edges,
            "before": np.histogram(before, edges)[0].astype(np.float32),
            "after": np.histogram(after, edges)[0].astype(np.float32)}


class QuantizeLesson(CompressLesson):
    """The digits CNN trained, then quantized one setting a step, and measured."""

    info = LessonInfo(
        **lesson_text("quantize"), explanation=EXPLANATION,
        series=("loss", "test_loss"),
        series_labels={"loss": "Train loss", "test_loss": "Test loss (float32)"},
    )
    params = (
        *base_specs(300),
        ParamSpec("layers", "linear", "choice", choices=("linear", "all"), live=True,
                  choice_labels={"linear": "Linear layers", "all": "All layers"},
                  label="Layers",
                  help="Which layers torchao's settings quantize; with all, the convolutions are "
                       "tried too (and the table says why they stay float32)."),
        ParamSpec("group", "32", "choice", choices=GROUPS, live=True, label="int4 group",
                  choice_labels={g: f"{g} inputs" for g in GROUPS},
                  help="Inputs that share one int4 scale: smaller groups round less and cost "
                       "more scales."),
        ParamSpec("histogram", "int4_weight", "choice", choices=tuple(GRIDS), live=True,
                  choice_labels={k: SETTINGS[k] for k in GRIDS}, label="Histogram",
                  help="Whose rounding grid the histogram shows."),
    )

    def __init__(self, config: dict[str, Any] | None = None, seed: int = 0,
                 step_count: int = 0) -> None:
        super().__init__(config, seed, step_count)
        self.rows: dict[str, dict[str, Any]] = {}
        self.models: dict[str, Any] = {}
        self.pending: list[str] = []
        self._next_timing = 0
        self.float_loss = float("nan")

    # -- the work ----------------------------------------------------------------------------------
    def restart(self) -> None:
        self.rows, self.models = {}, {}
        self.pending = list(SETTINGS)
        self.float_loss = evaluate(self.net, self.x_test, self.y_test)[0]

    def on_param_changed(self, name: str) -> None:
        super().on_param_changed(name)
        if name in ("layers", "group") and self._worked_on >= 0:
            for key in TORCHAO if name == "layers" else ("int4_weight",):
                self.models.pop(key, None)
                if key not in self.pending:
                    self.pending.append(key)

    def _model(self, key: str) -> Any:
        """The model of setting ``key`` (made again after a checkpoint was loaded)."""
        if key not in self.models:
            self.models[key] = quantized(self.net, key, str(self.config["layers"]),
                                         int(self.config["group"]), self.x_test[:1])[0]
        return self.models[key]

    def measure(self, key: str) -> dict[str, Any]:
        """Quantize the trained network in setting ``key`` and measure it (a table row)."""
        model, done, blocked = quantized(self.net, key, str(self.config["layers"]),
                                         int(self.config["group"]), self.x_test[:1])
        self.models[key] = model
        loss, acc = evaluate(model, self.x_test, self.y_test)
        size = model_bytes(model)
        notes = []
        if key == "float32":
            notes.append("the trained model")
        elif done:
            notes.append(f"{', '.join(done)} {'cast' if key in ('float16', 'bfloat16') else 'quantized'}")
        elif key in TORCHAO:
            notes.append("nothing quantized")
        reasons: dict[str, list[str]] = {}
        for name, why in blocked.items():
            reasons.setdefault(why, []).append(name)
        notes += [f"{', '.join(names)} {'stays' if len(names) == 1 else 'stay'} float32: {why}"
                  for why, names in reasons.items()]
        if key == "int4_weight" and done:
            layers: list[Any] = [model.get_submodule(n) for n in done]
            int4 = sum(tensor_bytes(layer.weight.qdata) for layer in layers)
            reason = int4_packed_reason()
            notes.append(f"int4 values stored one a byte (torchao's CPU layout), so int8's bytes; "
                         f"packed two a byte it would be {(size - int4 // 2) / 1024:.1f} KiB"
                         + (f" (torchao's packed int4 cannot run here: {reason})" if reason
                            else ""))
        return {"key": key, "label": SETTINGS[key], "bytes": size, "loss": loss, "acc": acc,
                "timings": [time_forward(model, self.x_test)], "note": "; ".join(notes),
                "quantized": list(done)}

    def work_step(self) -> dict[str, float]:
        if self.pending:
            key = self.pending.pop(0)
            self.rows[key] = row = self.measure(key)
            return {"loss": self.float_loss, f"acc_{key}": row["acc"]}
        keys = list(SETTINGS)
        key = keys[self._next_timing % len(keys)]
        self._next_timing += 1
        timings = self.rows[key]["timings"]
        timings.append(time_forward(self._model(key), self.x_test))
        del timings[:-KEPT_TIMINGS]
        return {"loss": self.float_loss}

    def work_state(self) -> dict[str, Any]:
        return {"rows": [dict(r) for r in self.rows.values()], "pending": list(self.pending),
                "next_timing": self._next_timing, "float_loss": self.float_loss}

    def load_work_state(self, state: dict[str, Any]) -> None:
        self.rows = {str(r["key"]): dict(r) for r in state["rows"]}
        self.pending = [str(k) for k in state["pending"]]
        self._next_timing = int(state["next_timing"])
        self.float_loss = float(state["float_loss"])
        self.models = {}

    def report(self) -> str:
        """The table as text (``studio train quantize`` prints it at the end); "" before any
        setting is measured."""
        lines = []
        for row in self.snapshot()["table"]:
            if row["measured"]:
                lines.append(f"{row['label']:<22}{row['bytes'] / 1024:8.1f} KiB "
                             f"{row['size_ratio']:6.0%}  {row['ms']:7.2f} ms  {row['acc']:7.1%}  "
                             f"{row['note']}")
        if not lines:
            return ""
        head = f"{'setting':<22}{'size':>12} {'×fp32':>6}  {'test set':>10}  {'accuracy':>7}  notes"
        return "\n".join([head, *lines])

    # -- pictures ----------------------------------------------------------------------------------
    def histogram(self) -> dict[str, Any] | None:
        """The last layer's weights in grid steps, before and after, for the chosen setting; None
        before it is measured or when the layer stayed float32."""
        key = str(self.config["histogram"])
        row = self.rows.get(key)
        if row is None or key in self.pending or "fc" not in row["quantized"]:
            return None
        qweight = self._model(key).fc.weight
        return {"setting": key, "label": SETTINGS[key], "layer": "fc",
                **grid_histogram(self.net.fc.weight, qweight, GRIDS[key])}

    def snapshot(self) -> dict[str, Any]:
        snap = self.base_snapshot()
        reference = self.rows.get("float32")
        table = []
        for key, label in SETTINGS.items():
            row = self.rows.get(key)
            if row is None or key in self.pending:  # a setting changed: measured again soon
                table.append({"key": key, "label": label, "measured": False})
                continue
            ms = float(np.median(row["timings"]))
            base_ms = float(np.median(reference["timings"])) if reference else ms
            table.append({"key": key, "label": label, "measured": True,
                          "bytes": int(row["bytes"]), "ms": ms, "acc": float(row["acc"]),
                          "size_ratio": row["bytes"] / reference["bytes"] if reference else 1.0,
                          "time_ratio": ms / base_ms if base_ms > 0 else 1.0,
                          "timings": len(row["timings"]), "note": str(row["note"])})
        snap.update({"table": table, "histogram": self.histogram(),
                     "n_test": len(self.y_test)})
        return snap
