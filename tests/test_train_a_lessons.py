"""Lessons 1–2 (optimizers, classifier-2d), the 2D data sets and the run store, without a window."""

from __future__ import annotations

import json

import numpy as np
import pytest

from studio.pipelines.train.base import InvalidParameter, TrainingDiverged
from studio.pipelines.train.classifier2d import Classifier2D
from studio.pipelines.train.datasets2d import (
    CLASSIFICATION_DATASETS,
    DATASETS_2D,
    MIN_DRAWN_POINTS,
    classification_2d,
    sample_2d,
)
from studio.pipelines.train.optimizers import OPTIMIZERS, OptimizerRace
from studio.pipelines.train.runs import Run, export_csv, list_runs, load_metrics
from tests.fixtures.torch_threads import one_torch_thread  # noqa: F401


def run_steps(trainer, n):
    return [trainer.step() for _ in range(n)]


# -- data ----------------------------------------------------------------------------------------

def test_datasets_are_seeded_and_in_range():
    for name in DATASETS_2D[:-1]:
        a = sample_2d(name, 300, np.random.default_rng(1))
        b = sample_2d(name, 300, np.random.default_rng(1))
        assert a.shape == (300, 2) and a.dtype == np.float32
        assert np.array_equal(a, b)
        assert not np.array_equal(a, sample_2d(name, 300, np.random.default_rng(2)))
        assert np.abs(a).max() <= 2.5
    for name in CLASSIFICATION_DATASETS:
        x, y = classification_2d(name, 200, np.random.default_rng(0))
        assert x.shape == (200, 2) and set(np.unique(y)) == {0, 1}


def test_drawn_dataset_needs_enough_points():
    pts = np.random.default_rng(0).uniform(-1, 1, (MIN_DRAWN_POINTS, 2))
    out = sample_2d("drawn", 500, np.random.default_rng(0), points=pts)
    # Every sample sits near one of the drawn points.
    dist = np.linalg.norm(out[:, None, :] - pts[None, :, :], axis=2).min(axis=1)
    assert dist.max() < 0.2
    with pytest.raises(InvalidParameter, match="at least 20"):
        sample_2d("drawn", 10, np.random.default_rng(0), points=pts[:5])
    with pytest.raises(InvalidParameter):
        sample_2d("drawn", 10, np.random.default_rng(0))
    with pytest.raises(InvalidParameter):
        sample_2d("nope", 10, np.random.default_rng(0))


# -- lessons reach a result ----------------------------------------------------------------------

def test_adam_reaches_the_rosenbrock_minimum_and_beats_sgd():
    trainer = OptimizerRace({"surface": "rosenbrock"}, seed=0)
    first = trainer.step()
    metrics = run_steps(trainer, 999)[-1]
    assert metrics["adam"] < 0.02 < first["adam"]
    end = trainer.snapshot()["paths"]["adam"][-1]
    assert np.linalg.norm(end - np.array([1.0, 1.0])) < 0.3
    assert metrics["sgd"] > 10 * metrics["adam"]  # the point of the lesson
    assert metrics["loss"] == pytest.approx(np.mean([metrics[k] for k in OPTIMIZERS]))


def test_adaptive_optimizers_escape_the_saddle_faster_than_sgd():
    trainer = OptimizerRace({"surface": "saddle"}, seed=0)
    metrics = run_steps(trainer, 300)[-1]
    assert metrics["adam"] < 0.01 and metrics["rmsprop"] < 0.01
    assert metrics["sgd"] > 0.1


def test_every_surface_trains_without_diverging_and_snapshot_is_drawable():
    for surface in ("beale", "ill-conditioned", "noisy"):
        trainer = OptimizerRace({"surface": surface}, seed=0)
        first, last = trainer.step(), run_steps(trainer, 200)[-1]
        assert last["loss"] < first["loss"]
        snap = trainer.snapshot()
        assert snap["grid"]["z"].shape == (len(snap["grid"]["y"]), len(snap["grid"]["x"]))
        assert all(p.shape == (202, 2) for p in snap["paths"].values())


def test_classifier_learns_moons():
    trainer = Classifier2D({"dataset": "moons"}, seed=0)
    first = trainer.step()
    last = run_steps(trainer, 300)[-1]
    assert last["test_accuracy"] > 0.95 and last["train_accuracy"] > 0.95
    assert last["loss"] < first["loss"] / 5
    snap = trainer.snapshot()
    probs = snap["grid"]["probs"]
    assert probs.shape == (72, 72) and 0 <= probs.min() and probs.max() <= 1
    assert len(snap["train"][0]) + len(snap["test"][0]) == 400


def test_classifier_architecture_knobs_change_the_network():
    small = Classifier2D({"layers": 1, "width": 3, "activation": "tanh"}, seed=0)
    big = Classifier2D({"layers": 3, "width": 32}, seed=0)
    count = lambda t: sum(p.numel() for p in t.model.parameters())  # noqa: E731
    assert count(small) == 2 * 3 + 3 + 3 + 1
    assert count(big) > 2000


# -- determinism, live knobs, divergence, bad values ---------------------------------------------

@pytest.mark.parametrize("cls,config", [(OptimizerRace, {"surface": "noisy"}),
                                        (Classifier2D, {"dataset": "spirals"})])
def test_same_seed_same_metrics_even_interleaved(cls, config):
    alone = run_steps(cls(config, seed=3), 40)
    a, b = cls(config, seed=3), cls(config, seed=4)
    interleaved = []
    for _ in range(40):
        interleaved.append(a.step())
        b.step()
        np.random.rand(), __import__("torch").rand(1)  # global RNG use must not matter
    assert interleaved == alone
    assert run_steps(cls(config, seed=4), 40) != alone


def test_live_lr_changes_the_run_and_lr_sets_every_optimizer():
    race = OptimizerRace({"lr": 0.02}, seed=0)
    assert all(race.config[f"lr_{k}"] == 0.02 for k in OPTIMIZERS)
    race.set_param("lr_adam", 0.1)
    assert race._opts["adam"].param_groups[0]["lr"] == 0.1
    race.set_param("lr", 0.005)
    assert {o.param_groups[0]["lr"] for o in race._opts.values()} == {0.005}
    with pytest.raises(InvalidParameter, match="reset"):
        race.set_param("surface", "beale")

    a, b = Classifier2D(seed=0), Classifier2D(seed=0)
    run_steps(a, 5), run_steps(b, 5)
    b.set_param("lr", 0.1)
    b.set_param("optimizer", "sgd")
    assert a.step() != b.step()


def test_invalid_values_are_refused():
    for cls, bad in [(Classifier2D, {"lr": -1}), (Classifier2D, {"batch_size": 0}),
                     (Classifier2D, {"dataset": "cats"}), (Classifier2D, {"bogus": 1}),
                     (OptimizerRace, {"lr": "fast"}), (OptimizerRace, {"surface": "moon"})]:
        with pytest.raises(InvalidParameter):
            cls(bad)


def test_divergence_raises_a_message_not_a_crash():
    with pytest.raises(TrainingDiverged, match="lower learning rate"):
        run_steps(Classifier2D({"lr": 1e3, "optimizer": "sgd"}, seed=0), 20)
    with pytest.raises(TrainingDiverged, match="SGD"):
        run_steps(OptimizerRace({"lr_sgd": 1.0}, seed=0), 50)


# -- runs: pause, save, load, resume equals uninterrupted --------------------------------------

@pytest.mark.parametrize("cls,config", [(OptimizerRace, {"surface": "noisy"}),
                                        (Classifier2D, {"dataset": "xor", "batch_size": 16})])
def test_paused_saved_loaded_resumed_equals_uninterrupted(tmp_path, cls, config):
    reference = run_steps(cls(config, seed=7), 50)
    trainer = cls(config, seed=7)
    run = Run.create(tmp_path, cls.info.key, 7, trainer.config)
    run.append_metrics(run_steps(trainer, 20))
    run.save_checkpoint(trainer)
    run.append_metrics(run_steps(trainer, 3))  # logged after the checkpoint: dropped on resume
    resumed = Run(run.path).resume()
    run.append_metrics(run_steps(resumed, 30))
    assert load_metrics(run.path) == json.loads(json.dumps(reference))
    assert not list(run.path.glob("*.pt")) and not list(run.path.glob("*.pkl"))


def test_live_change_is_kept_in_the_checkpoint_and_config(tmp_path):
    trainer = Classifier2D(seed=1)
    run = Run.create(tmp_path, "classifier-2d", 1, trainer.config)
    run_steps(trainer, 5)
    trainer.set_param("lr", 0.05)
    run.record_change(5, "lr", 0.05)
    run.save_checkpoint(trainer)
    again = Run(run.path).load_trainer()
    assert again.config["lr"] == 0.05 and again._opt.param_groups[0]["lr"] == 0.05
    assert Run(run.path).meta["changes"] == [{"step": 5, "name": "lr", "value": 0.05}]


def test_list_runs_metrics_and_csv(tmp_path):
    for seed in (1, 2):
        trainer = OptimizerRace(seed=seed)
        run = Run.create(tmp_path, "optimizers", seed, trainer.config)
        run.append_metrics(run_steps(trainer, 4))
    (tmp_path / "junk").mkdir()
    with open(run.path / "metrics.jsonl", "a") as fh:
        fh.write('{"step": 5, "lo')  # a line cut short by a crash
    runs = list_runs(tmp_path)
    assert [r.seed for r in runs] == [2, 1] and runs[0].last_step == 4
    assert list_runs(tmp_path, lesson="classifier-2d") == []
    out = export_csv(run.path, tmp_path / "m.csv")
    lines = out.read_text().splitlines()
    assert lines[0].startswith("step,loss,sgd,") and len(lines) == 5


def test_trajectory_keeps_the_start_and_thins_like_a_list():
    from studio.pipelines.train.optimizers import HISTORY, Trajectory

    points = [(float(i), -float(i)) for i in range(3 * HISTORY + 7)]
    reference, traj = [], Trajectory([])
    for xy in points:
        reference.append(xy)
        traj.append(xy)
        if len(reference) > HISTORY:
            reference = reference[:1] + reference[1::2]
    got = traj.array()
    np.testing.assert_array_equal(got, np.asarray(reference))
    assert len(traj) == len(reference) <= HISTORY and tuple(got[0]) == (0.0, 0.0)
    got[0] = (9.0, 9.0)  # a snapshot's copy: the trainer's path does not change with it
    assert tuple(traj.array()[0]) == (0.0, 0.0)
