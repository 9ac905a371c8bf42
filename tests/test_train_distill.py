"""The ``distill`` lesson: the soft-label loss against an independent computation, the teacher
trained first and then frozen, the two students starting equal and only their labels differing,
live temperature/alpha, and save/load/resume equal to an uninterrupted run."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from studio.pipelines.train.base import InvalidParameter
from studio.pipelines.train.distill import DistillTrainer, distillation_loss
from tests.fixtures.resume import assert_resumes_exactly
from tests.fixtures.torch_threads import one_torch_thread  # noqa: F401

FAST = {"teacher_steps": 3, "teacher_width": 4, "batch_size": 16}


def make(seed: int = 0, **overrides) -> DistillTrainer:
    return DistillTrainer(config={**FAST, **overrides}, seed=seed)


def run(trainer, n: int) -> list[dict]:
    return [trainer.step() for _ in range(n)]


def _log_softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=1, keepdims=True))


@pytest.mark.parametrize(("t", "alpha"), [(1.0, 0.5), (4.0, 0.9), (7.5, 0.0), (2.0, 1.0)])
def test_soft_label_loss_equals_an_independent_computation(t, alpha):
    rng = np.random.default_rng(3)
    s, te = rng.normal(size=(6, 5)) * 3, rng.normal(size=(6, 5)) * 3
    y = rng.integers(0, 5, size=6)
    ls, lt = _log_softmax(s / t), _log_softmax(te / t)
    kl = (np.exp(lt) * (lt - ls)).sum(axis=1).mean()
    ce = -_log_softmax(s)[np.arange(6), y].mean()
    expected = alpha * t * t * kl + (1 - alpha) * ce
    got = distillation_loss(torch.tensor(s), torch.tensor(te), torch.tensor(y), t, alpha)
    assert float(got) == pytest.approx(expected, rel=1e-9)


def test_teacher_trains_first_then_is_frozen_and_students_start_equal():
    trainer = make()
    assert all(torch.equal(a, b) for a, b in zip(trainer.student.state_dict().values(),
                                                 trainer.twin.state_dict().values(), strict=True))
    student0 = {k: v.clone() for k, v in trainer.student.state_dict().items()}
    for _ in range(3):
        trainer.step()
    assert not trainer.teaching
    assert all(torch.equal(student0[k], v) for k, v in trainer.student.state_dict().items())
    teacher = {k: v.clone() for k, v in trainer.teacher.state_dict().items()}
    m = trainer.step()
    assert all(torch.equal(teacher[k], v) for k, v in trainer.teacher.state_dict().items())
    assert {"teacher_acc", "student_acc", "twin_acc", "twin_loss"} <= m.keys()
    # alpha 0: the distilled student learns the labels alone, exactly like its twin
    twins = make(alpha=0.0)
    for _ in range(6):
        m = twins.step()
    assert m["loss"] == pytest.approx(m["twin_loss"])
    assert m["student_acc"] == m["twin_acc"]


def test_temperature_and_alpha_are_live_and_checked():
    trainer = make()
    trainer.set_param("temperature", 8.0)
    trainer.set_param("alpha", 0.25)
    assert trainer.snapshot()["temperature"] == 8.0
    with pytest.raises(InvalidParameter):
        trainer.set_param("alpha", 1.5)
    with pytest.raises(InvalidParameter):
        trainer.set_param("teacher_steps", 5)  # needs a reset


def test_paused_saved_loaded_resumed_equals_uninterrupted():
    # paused in the teacher's last steps, resumed into the students' first
    paused, _ = assert_resumes_exactly(make, run, steps=3)
    snap = paused.snapshot()
    assert snap["params"]["student"] == snap["params"]["twin"] != snap["params"]["teacher"]
    assert snap["soft_label"].sum() == pytest.approx(1.0, abs=1e-5)


# -- the classifier export -------------------------------------------------------------------------
def test_export_round_trips_lists_and_classifies(tmp_path):
    from PIL import Image

    from studio.core.config import Settings, default_paths
    from studio.core.jobs import UserFacingError
    from studio.library.catalog import list_models
    from studio.library.models import find_txt2img_models
    from studio.pipelines.train.classifier_models import load_classifier
    from studio.pipelines.train.classify import classify_with_model
    from studio.pipelines.train.export import export_trainer

    trainer = make()
    for _ in range(5):
        trainer.step()
    paths = default_paths()
    done = export_trainer(trainer, paths.models_dir, "digit-student")
    assert done.path == paths.models_dir / "classifier" / "digit-student"
    assert sorted(p.name for p in done.path.iterdir()) == ["config.json", "model.safetensors"]
    model, info = load_classifier(done.path)
    assert (info["architecture"], info["classes"], info["lesson"]) == (
        "mlp", [str(d) for d in range(10)], "distill")
    x = torch.from_numpy(trainer.data.x_test[:8])
    with torch.no_grad():
        assert torch.equal(model(x), trainer.student.eval()(x))  # the student, bit for bit

    settings = Settings(device="cpu")
    (entry,) = [e for e in list_models(settings, paths) if e.name == "digit-student"]
    assert (entry.kind, entry.workspaces) == ("classifier", ("Gallery",))
    assert entry.detail == "MLP, 16×16 grey, 10 classes, from the distill lesson"
    assert not [e for e in list_models(settings, paths) if e.kind == "unknown"]
    assert find_txt2img_models(settings, paths) == []

    # a test digit as a PNG, classified through the user's path: the student's probabilities
    digit = trainer.data.x_test[3, 0]
    Image.fromarray((digit * 255).round().astype(np.uint8)).save(tmp_path / "d.png")
    answer = classify_with_model(tmp_path / "d.png", done.path)
    with torch.no_grad():
        probs = torch.softmax(trainer.student(torch.from_numpy(digit)[None, None]), 1)[0]
    best = int(probs.argmax())
    assert answer.top[0][0] == str(best)
    assert answer.top[0][1] == pytest.approx(float(probs[best]), abs=0.02)  # 8-bit rounding
    assert "digit-student" in answer.sentence() and "distill" in answer.sentence()

    # weights that do not fit the config are a sentence, never a crash
    config = (done.path / "config.json").read_text()
    (done.path / "config.json").write_text(config.replace('"hidden": 16', '"hidden": 17'))
    with pytest.raises(UserFacingError, match="do not fit its config.json"):
        load_classifier(done.path)


def test_the_cnn_exports_a_classifier_too():
    from studio.core.config import default_paths
    from studio.pipelines.train.classifier_models import load_classifier
    from studio.pipelines.train.cnn import CNNTrainer
    from studio.pipelines.train.export import export_trainer

    cnn = CNNTrainer(config={"batch_size": 16, "width": 4}, seed=0)
    cnn.step()
    done = export_trainer(cnn, default_paths().models_dir, "digits-cnn")
    model, info = load_classifier(done.path)
    assert (info["architecture"], info["width"], info["lesson"]) == ("small-cnn", 4, "cnn")
    x = torch.from_numpy(cnn.data.x_test[:4])
    with torch.no_grad():
        assert torch.equal(model(x), cnn.net.eval()(x))


def test_the_view_shows_accuracies_parameters_and_the_soft_label(qtbot):
    from tests.test_train_b_views import make_view

    trainer = make()
    for _ in range(4):
        trainer.step()
    view = make_view(qtbot, "distill")
    snap = trainer.snapshot()
    view.show_snapshot(snap)
    value, note = view.cards["student"]
    assert value.text() == f"{snap['accuracy']['student']:.1%}"
    assert note.text() == f"{snap['params']['student']:,} parameters"
    assert "behind the teacher" in view.status.full_text()
    soft = view.bar_items["soft"].opts["height"]
    np.testing.assert_array_equal(soft, snap["soft_label"])
    with qtbot.waitSignal(view.setParamRequested) as sig:
        view.pick_box.setValue(7)
    assert sig.args == ["pick", 7]


def test_cli_classifies_with_the_exported_student_and_refuses_bad_input(tmp_path, monkeypatch,
                                                                        capsys):
    import json

    from PIL import Image

    from studio.cli import main

    monkeypatch.setenv("STUDIO_HOME", str(tmp_path / "home"))  # in process: no torch re-import
    Image.new("L", (20, 20), 90).save(tmp_path / "grey.png")
    assert main(["classify", str(tmp_path / "grey.png")]) == 2
    assert "No image classifier yet" in capsys.readouterr().err
    assert main(["train", "distill", "--steps", "4", "--set", "teacher_steps=2", "--set",
                 "teacher_width=4", "--export", "pupil"]) == 0
    capsys.readouterr()
    assert main(["classify", str(tmp_path / "grey.png"), "--json", "--top", "2"]) == 0
    row = json.loads(capsys.readouterr().out)
    assert row["model"] == "pupil" and len(row["top"]) == 2
    assert row["top"][0][1] >= row["top"][1][1] and row["top"][0][0] in [str(d) for d in
                                                                          range(10)]
    assert main(["classify", str(tmp_path / "nosuch.png"), "--model", "pupil"]) == 2
    assert main(["classify", str(tmp_path / "grey.png"), "--model", "other"]) == 2
    assert "the exported ones are: pupil" in capsys.readouterr().err
