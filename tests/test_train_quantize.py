"""The ``quantize`` and ``prune`` lessons: the digits CNN trained a few dozen steps, then stored in
fewer bits (torchao) or pruned (torch.nn.utils.prune); and their views fed real snapshots.

Timings are shown by the lesson, never asserted here.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from studio.pipelines.train.compress import model_bytes
from studio.pipelines.train.prune import LEVELS, PruneLesson, compacted, pruned_copy
from studio.pipelines.train.quantize import SETTINGS, QuantizeLesson, quantized
from tests.fixtures.torch_threads import one_torch_thread  # noqa: F401

TRAIN = 60  # steps: the digits CNN is past 85 % test accuracy by then
_CACHE: dict = {}


def lesson(cls, steps: int, **config):
    """A lesson stepped ``steps`` times, shared by the tests (training is the slow part)."""
    key = (cls, steps, tuple(sorted(config.items())))
    if key not in _CACHE:
        trainer = cls({"train_steps": TRAIN, **config}, seed=0)
        for _ in range(steps):
            trainer.step()
        _CACHE[key] = trainer
    return _CACHE[key]


def rows(trainer) -> dict[str, dict]:
    return {r["key"]: r for r in trainer.snapshot()["table"]}


# -- quantize ------------------------------------------------------------------------------------
def test_every_setting_is_measured_and_int_weights_lie_on_their_grid():
    q = lesson(QuantizeLesson, TRAIN + len(SETTINGS))
    table = rows(q)
    assert all(r["measured"] for r in table.values())
    base = table["float32"]
    assert base["acc"] > 0.8
    for key, row in table.items():  # accuracy stays near the float model's
        assert abs(row["acc"] - base["acc"]) <= (0.04 if key == "int4_weight" else 0.02), key
        assert row["bytes"] <= base["bytes"], key
    assert table["float16"]["bytes"] == table["bfloat16"]["bytes"] == base["bytes"] // 2
    assert table["int8_weight"]["bytes"] < 0.7 * base["bytes"]  # fc (half the weights) in 1 byte
    # int8: the stored values are integers in ±127, and the weight is exactly value × row scale
    weight = q._model("int8_weight").fc.weight
    values = weight.qdata
    assert values.dtype == torch.int8 and int(values.abs().max()) <= 127
    assert torch.equal(weight.dequantize(), values.float() * weight.scale.float())
    assert torch.allclose(weight.dequantize(), q.net.fc.weight, atol=float(weight.scale.max()))
    # int4: sixteen levels at most per group, on whole steps
    int4 = q._model("int4_weight").fc.weight.qdata
    assert int(int4.min()) >= -8 and int(int4.max()) <= 7
    assert "packed two a byte" in table["int4_weight"]["note"]
    assert "fc quantized" in table["int8_weight"]["note"]
    report = q.report()  # what `studio train quantize` prints at the end
    assert len(report.splitlines()) == 1 + len(SETTINGS) and "int4 weights" in report


def test_the_histogram_after_rounding_has_only_whole_steps():
    q = lesson(QuantizeLesson, TRAIN + len(SETTINGS))
    for key in ("int4_weight", "int8_weight"):
        q.config["histogram"] = key
        hist = q.snapshot()["histogram"]
        centres = (hist["edges"][:-1] + hist["edges"][1:]) / 2
        filled = centres[hist["after"] > 0]
        assert np.allclose(filled, np.round(filled)), key  # the grid
        assert hist["after"].sum() == hist["before"].sum() == q.net.fc.weight.numel()
        off_grid = centres[hist["before"] > 0]
        assert not np.allclose(off_grid, np.round(off_grid))  # before: between the steps too
    q.config["histogram"] = "int4_weight"


def test_layers_a_method_cannot_take_are_named_and_the_rest_is_quantized():
    from studio.pipelines.train.cnn import SmallCNN

    net = SmallCNN(1, 4, 10, torch.Generator().manual_seed(0))  # fc takes 2·4·16 = 128 inputs
    sample = torch.zeros(1, 1, 16, 16)
    model, done, blocked = quantized(net, "int8_weight", "all", 32, sample)
    assert done == ["fc"] and set(blocked) == {"conv1", "conv2"}
    assert "only Linear layers" in blocked["conv1"]
    assert model_bytes(model) < model_bytes(net)
    model, done, blocked = quantized(net, "int4_weight", "linear", 256, sample)
    assert done == [] and blocked == {"fc": "its 128 inputs do not split into groups of 256"}
    assert model_bytes(model) == model_bytes(net)


def test_a_live_change_measures_again_and_the_table_says_why():
    q = QuantizeLesson({"train_steps": 10, "width": 4}, seed=1)
    for _ in range(10 + len(SETTINGS)):
        q.step()
    q.set_param("group", "256")  # fc's 128 inputs do not split into groups of 256
    q.set_param("layers", "all")
    for _ in range(4):
        q.step()
    table = rows(q)
    assert "fc stays float32: its 128 inputs do not split into groups of 256" in \
        table["int4_weight"]["note"]
    assert "conv1, conv2 stay float32" in table["int8_dynamic"]["note"]
    q.config["histogram"] = "int4_weight"
    assert q.snapshot()["histogram"] is None  # nothing rounded to show
    # a checkpoint continues exactly (the quantized copies are made again)
    again = QuantizeLesson({"train_steps": 10, "width": 4}, seed=1)
    again.load_state_dict(q.state_dict())
    assert [again.step() for _ in range(3)] == [q.step() for _ in range(3)]
    assert rows(again)["int4_weight"]["note"] == rows(q)["int4_weight"]["note"]


# -- prune ---------------------------------------------------------------------------------------
def test_magnitude_pruning_reaches_the_sparsity_asked():
    p = lesson(PruneLesson, TRAIN)
    for sparsity in (0.5, 0.9):
        model = pruned_copy(p.net, "magnitude", sparsity)
        weights = torch.cat([getattr(model, n).weight.flatten() for n in ("conv1", "conv2", "fc")])
        assert abs(float((weights == 0).float().mean()) - sparsity) < 1e-3


def test_structured_pruning_removes_whole_filters_and_leaves_the_classes():
    p = lesson(PruneLesson, TRAIN)
    model = pruned_copy(p.net, "structured", 0.5)
    for name in ("conv1", "conv2"):
        weight = getattr(model, name).weight.detach().flatten(1)
        zero = weight.abs().sum(1) == 0
        assert int(zero.sum()) == weight.shape[0] // 2, name  # half the filters, whole
        assert bool((weight[~zero] != 0).all()), name  # the kept ones untouched
    assert torch.equal(model.fc.weight, p.net.fc.weight)
    # cut out, the removed filters leave a smaller network with the same answers
    small = compacted(model)
    assert (small.conv1.out_channels, small.conv2.in_channels) == (8, 8)
    assert small.conv2.out_channels == 16 and small.fc.in_features == 16 * 16
    assert model_bytes(small) < 0.6 * model_bytes(p.net)
    x = p.x_test[:32]
    with torch.no_grad():
        assert torch.allclose(small(x), model(x), atol=1e-5)


def test_sweep_then_fine_tune_keeps_the_removed_weights_at_zero():
    p = PruneLesson({"train_steps": TRAIN}, seed=0)
    p.load_state_dict(lesson(PruneLesson, TRAIN).state_dict())  # trained already
    p.set_param("sparsity", 0.9)
    for _ in range(2 * len(LEVELS)):
        p.step()
    snap = p.snapshot()
    assert [len(snap["curves"][m]) for m in ("magnitude", "structured")] == [len(LEVELS)] * 2
    assert snap["curves"]["magnitude"][0, 1] > snap["curves"]["magnitude"][-1, 1]
    for _ in range(20):
        p.step()
    snap = p.snapshot()
    assert snap["pruned"] and abs(snap["reached"] - 0.9) < 1e-3  # still 90 % zero after tuning
    point = snap["tuned"][0]
    assert point["steps"] == 20 and point["acc"] > point["before"]
    p.set_param("method", "structured")
    p.set_param("sparsity", 0.5)
    p.step()
    snap = p.snapshot()
    assert len(snap["tuned"]) == 2 and len(snap["removed"]["conv2"]) == 16
    assert snap["tuned"][1]["cut_bytes"] < snap["tuned"][1]["dense_bytes"]
    assert "fc stays whole" in snap["blocked"]
    report = p.report()  # what `studio train prune` prints at the end
    assert "90% → " in report and "conv2 filters removed: " in report

    # export: the pruned, fine-tuned CNN becomes a classifier Gallery uses — from the live lesson
    # and from its saved run alike, answering as the lesson's pruned network does
    from studio.core.config import default_paths
    from studio.pipelines.train.classifier_models import load_classifier
    from studio.pipelines.train.export import export_trainer
    from studio.pipelines.train.prune import checkpoint_pruned

    models = default_paths().models_dir
    done = export_trainer(p, models, "pruned-cnn")
    model, config = load_classifier(done.path)
    assert config["lesson"] == "prune" and "pruned" in done.message
    x = p.x_test[:16]
    p.pruned.eval()
    with torch.no_grad():
        torch.testing.assert_close(model(x), p.pruned(x))
    assert float((model.conv2.weight.abs().sum((1, 2, 3)) == 0).float().mean()) == 0.5
    spec, weights = checkpoint_pruned(p.state_dict())
    assert spec == p.classifier_spec()
    for name, value in model.state_dict().items():
        assert torch.equal(weights[name], value), name


# -- views ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("key", ["quantize", "prune"])
def test_views_draw_every_phase(qtbot, key):
    from studio.ui.panels.train.views import view_class

    cls = QuantizeLesson if key == "quantize" else PruneLesson
    view = view_class(key)(key)
    qtbot.addWidget(view)
    view.resize(1200, 700)
    view.show()
    qtbot.waitExposed(view)
    trainer = cls({"train_steps": 10, "width": 4}, seed=0)
    emitted = []
    view.setParamRequested.connect(lambda name, value: emitted.append((name, value)))
    for _ in range(10 + (len(SETTINGS) if key == "quantize" else 2 * len(LEVELS) + 2)):
        trainer.step()
        view.show_snapshot(trainer.snapshot())
    assert view.note.full_text()
    if key == "prune":
        assert "fine-tuned 2 steps" in view.note.full_text()
        view.slider.setValue(50)
        assert emitted[-1] == ("sparsity", 0.5)
    else:
        assert "7 of 7 settings measured" in view.note.full_text()
        assert "int4 weights" in view.table.toPlainText()
