"""The ``federated`` lesson: FedAvg is the data-size-weighted mean, the non-IID split holds the
asked classes, a client count the data cannot feed is refused with a sentence, FedProx pulls the
clients toward the global weights, and save/load/resume equals an uninterrupted run."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from studio.pipelines.train.base import InvalidParameter
from studio.pipelines.train.federated import FederatedTrainer, fedavg, split_non_iid
from tests.fixtures.resume import assert_resumes_exactly
from tests.fixtures.torch_threads import one_torch_thread  # noqa: F401

FAST = {"local_steps": 2, "hidden": 8, "batch_size": 8}


def make(seed: int = 0, **overrides) -> FederatedTrainer:
    return FederatedTrainer(config={**FAST, **overrides}, seed=seed)


def run(trainer, n: int) -> list[dict]:
    return [trainer.step() for _ in range(n)]


def test_fedavg_is_the_data_size_weighted_mean():
    rng = np.random.default_rng(0)
    arrays = [rng.normal(size=(3, 4)).astype(np.float32) for _ in range(3)]
    sizes = [10, 30, 60]
    states = [{"w": torch.from_numpy(a), "b": torch.from_numpy(a[0])} for a in arrays]
    avg = fedavg(states, sizes)
    expected = sum(a.astype(np.float64) * n for a, n in zip(arrays, sizes, strict=True)) / 100
    np.testing.assert_allclose(avg["w"].numpy(), expected, rtol=1e-6)
    np.testing.assert_allclose(avg["b"].numpy(), expected[0], rtol=1e-6)
    assert avg["w"].dtype == torch.float32


def test_the_non_iid_split_holds_the_asked_classes():
    labels = np.repeat(np.arange(10), 30)
    parts = split_non_iid(labels, 4, 3, 10, np.random.default_rng(0))
    assert [sorted(set(labels[p])) for p in parts] == [[0, 1, 2], [3, 4, 5], [6, 7, 8],
                                                       [0, 1, 9]]
    used = np.concatenate(parts)
    assert len(used) == len(set(used.tolist())) == 300  # every image with exactly one client
    trainer = make(clients=3, classes_per_client=2)
    for classes, part in zip(trainer.classes, trainer.parts, strict=True):
        assert set(trainer.data.y_train[part].tolist()) == set(classes)


def test_too_many_clients_or_classes_are_refused_with_a_sentence():
    with pytest.raises(InvalidParameter, match=r"300 clients .* At most \d+ clients fit"):
        make(clients=300)
    with pytest.raises(InvalidParameter, match="at most 10"):
        make(classes_per_client=12)


def test_a_round_averages_the_clients_and_fedprox_drifts_less():
    avg, prox = make(local_steps=5), make(local_steps=5, strategy="fedprox", mu=5.0)
    m_avg, m_prox = avg.step(), prox.step()
    assert m_prox["drift"] < m_avg["drift"]
    snap = avg.snapshot()
    assert snap["holdings"].shape == (5, 10) and (snap["holdings"] > 0).sum(axis=1).tolist() == [2] * 5
    assert snap["bytes_per_round"] == 2 * 5 * snap["n_weights"] * 4
    assert m_avg["global_acc"] == snap["global_acc"]


def test_paused_saved_loaded_resumed_equals_uninterrupted():
    assert_resumes_exactly(make, run)


def test_a_saved_run_exports_the_global_model_as_a_classifier():
    from studio.core.config import default_paths
    from studio.pipelines.train.classifier_models import load_classifier
    from studio.pipelines.train.export import export_run
    from studio.pipelines.train.runs import Run

    trainer = make()
    trainer.step()
    paths = default_paths()
    run = Run.create(paths.runs_dir, "federated", 0, trainer.config)
    run.save_checkpoint(trainer)
    done = export_run(run.path, paths.models_dir, "fed-global")
    model, info = load_classifier(done.path)
    assert (info["architecture"], info["hidden"], info["lesson"]) == ("mlp", 8, "federated")
    x = torch.from_numpy(trainer.data.x_test[:8])
    with torch.no_grad():
        assert torch.equal(model(x), trainer.model(x))


def test_the_view_shows_holdings_accuracies_drift_and_what_is_shared(qtbot):
    from tests.test_train_b_views import make_view

    trainer = make()
    trainer.step()
    view = make_view(qtbot, "federated")
    snap = trainer.snapshot()
    view.show_snapshot(snap)
    assert view.holdings_image.image.shape == (5, 10)
    np.testing.assert_allclose(view.drift_bars.opts["height"], snap["last"]["drift"])
    np.testing.assert_allclose(view.acc_bars["global_own_acc"].opts["height"],
                               snap["last"]["global_own_acc"])
    text = view.shared.toPlainText()
    assert "Never leaves a client" in text and f"{snap['n_weights']:,} numbers" in text
    assert "Round 1 · FedAvg" in view.status.full_text()


def test_cli_trains_exports_and_refuses_more_clients_than_the_data_feeds(tmp_path, monkeypatch,
                                                                          capsys):
    from studio.cli import main

    monkeypatch.setenv("STUDIO_HOME", str(tmp_path / "home"))  # in process: no torch re-import
    assert main(["train", "federated", "--steps", "2", "--out", str(tmp_path / "run"),
                 "--set", "local_steps=1", "--set", "strategy=fedprox", "--export", "fed"]) == 0
    saved = tmp_path / "home" / "data" / "models" / "classifier" / "fed"
    assert (saved / "model.safetensors").is_file() and (saved / "config.json").is_file()
    assert "Classify with an exported model" in capsys.readouterr().err
    assert main(["train", "federated", "--steps", "1", "--set", "clients=300"]) == 2
    assert "At most 145 clients fit" in capsys.readouterr().err
