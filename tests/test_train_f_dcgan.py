"""Image lesson 2 (``dcgan``): the networks at both sizes, determinism (drawing pictures never
changes training), one player at a time, separate and scheduled learning rates, resume and
accelerate checkpoints, the mode-collapse sentence, your own folder, the CLI with ``--data`` and
the view (history slider, latent walk, histograms). Two processes are covered by the cnn tests."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from studio.pipelines.train.base import InvalidParameter, TrainingDiverged
from studio.pipelines.train.dcgan import (
    DCGANTrainer,
    Discriminator,
    Generator,
    mean_pairwise_distance,
    variety_hint,
)
from tests.fixtures.resume import assert_resumes_exactly
from tests.fixtures.torch_threads import one_torch_thread  # noqa: F401
from tests.test_train_e_cnn import studio, write_images

FAST = {"batch_size": 8, "width": 4, "latent_dim": 4}


def make(seed: int = 0, **overrides) -> DCGANTrainer:
    return DCGANTrainer(config={**FAST, **overrides}, seed=seed)


def run(trainer, n: int, part: str | None = None) -> list[dict]:
    return [trainer.step(part) for _ in range(n)]


@pytest.mark.parametrize("size", [16, 32])
def test_networks_make_and_judge_images_of_the_size(size):
    g = torch.Generator().manual_seed(0)
    gen, disc = Generator(8, 4, 3, size, g), Discriminator(4, 3, size, g)
    fake = gen(torch.randn(5, 8))
    assert fake.shape == (5, 3, size, size) and fake.abs().max() <= 1.0
    assert disc(fake).shape == (5,)
    assert any(isinstance(m, torch.nn.BatchNorm2d) for m in gen.modules())
    assert any(isinstance(m, torch.nn.ConvTranspose2d) for m in gen.modules())


def test_same_seed_same_metrics_even_interleaved_and_pictures_change_nothing():
    a, b, c = make(seed=3), make(seed=3), make(seed=4)
    global_torch = torch.get_rng_state()
    ma, mb, mc = [], [], []
    for _ in range(4):
        ma.append(a.step())
        a.snapshot()  # drawing (eval mode, no grad) must not move training
        mc.append(c.step())
        mb.append(b.step())
    assert ma == mb and ma != mc
    assert torch.equal(global_torch, torch.get_rng_state())
    assert {"loss", "loss_d", "loss_g", "d_real", "d_fake", "lr_d", "lr_g"} <= set(ma[0])


def test_one_player_at_a_time():
    trainer = make()
    # weights only: BatchNorm's running statistics follow every forward pass in training mode
    g_before = {k: v.clone() for k, v in trainer.generator.named_parameters()}
    d_before = {k: v.clone() for k, v in trainer.discriminator.named_parameters()}
    (m,) = run(trainer, 1, "D")
    assert {"loss_g", "d_fake"} <= set(m)  # measured, so every step has the same keys
    assert all(torch.equal(v, g_before[k]) for k, v in trainer.generator.named_parameters())
    assert not torch.equal(trainer.discriminator.main[0].weight, d_before["main.0.weight"])
    d_now = {k: v.clone() for k, v in trainer.discriminator.named_parameters()}
    run(trainer, 1, "G")
    assert not torch.equal(trainer.generator.main[0].weight, g_before["main.0.weight"])
    assert torch.equal(trainer.discriminator.main[0].weight, d_now["main.0.weight"])
    with pytest.raises(InvalidParameter, match="step part"):
        trainer.step("X")


def test_learning_rates_each_both_live_and_scheduled():
    trainer = make(lr_d=1e-3, lr_g=1e-4)
    m = trainer.step()
    assert (m["lr_d"], m["lr_g"]) == (1e-3, 1e-4)
    trainer.set_param("lr_g", 3e-4)
    assert trainer._opt_g.param_groups[0]["lr"] == 3e-4
    trainer.set_param("lr", 5e-4)
    assert trainer.config["lr_d"] == trainer.config["lr_g"] == 5e-4
    assert make(lr=1e-3).config["lr_d"] == 1e-3  # --set lr=… sets both
    warm = make(schedule="warmup", warmup_steps=4, lr_d=4e-3, lr_g=2e-3)
    rates = [(m["lr_d"], m["lr_g"]) for m in run(warm, 5)]
    assert [d for d, _ in rates] == pytest.approx([1e-3, 2e-3, 3e-3, 4e-3, 4e-3])
    assert [g for _, g in rates] == pytest.approx([5e-4, 1e-3, 1.5e-3, 2e-3, 2e-3])


def test_paused_saved_loaded_resumed_equals_uninterrupted(tmp_path):
    paused, expected = assert_resumes_exactly(make, run, steps=3)
    paused.save_accelerate_state(tmp_path / "acc")
    assert (tmp_path / "acc" / "model.safetensors").is_file()
    assert (tmp_path / "acc" / "model_1.safetensors").is_file()  # G and D
    again = make(seed=1)
    again.load_accelerate_state(tmp_path / "acc")
    assert again.step_count == 3 and run(again, 3) == expected


def test_bad_settings_and_divergence():
    for bad in ({"lr_d": -1}, {"image_size": "24"}, {"batch_size": 1}, {"no_such": 1}):
        with pytest.raises(InvalidParameter):
            DCGANTrainer(config=bad)
    trainer = make()
    run(trainer, 1)
    with torch.no_grad():
        trainer.discriminator.main[-1].weight.fill_(float("nan"))
    with pytest.raises(TrainingDiverged, match="step 2"):
        trainer.step()


def test_variety_and_the_mode_collapse_sentence():
    rng = np.random.default_rng(0)
    varied = rng.uniform(-1, 1, (16, 4, 4, 1))
    assert mean_pairwise_distance(np.repeat(varied[:1], 16, axis=0)) == pytest.approx(0.0,
                                                                                     abs=1e-6)
    assert mean_pairwise_distance(varied) > 1.0
    assert variety_hint(0.2, 0.8, 500).startswith("Mode collapse?")
    assert "falling" in variety_hint(0.5, 0.8, 500)
    assert "no sign" in variety_hint(0.78, 0.8, 500)
    assert "Too early" in variety_hint(0.2, 0.0, 40)  # noise at first is not a collapse


def test_snapshot_has_every_view():
    trainer = make()
    snap0 = trainer.snapshot()
    assert snap0["step"] == 0 and "d_real" not in snap0
    run(trainer, 2)
    snap = trainer.snapshot()
    assert snap["samples"].shape == (64, 16, 16, 1) and snap["walk"].shape == (10, 16, 16, 1)
    assert 0.0 <= snap["samples"].min() and snap["samples"].max() <= 1.0
    assert [h["name"] for h in snap["histograms"]] == ["G 1", "G 2", "G 3", "D 1", "D 2", "D 3"]
    assert snap["variety"] > 0 and isinstance(snap["variety_hint"], str)
    assert 0.0 < snap["d_real"] < 1.0 and 0.0 < snap["d_fake"] < 1.0


def test_your_colour_folder_trains_and_the_cli_takes_it(tmp_path):
    folder = tmp_path / "mine"
    write_images(folder, 6)
    trainer = make(dataset="folder", data_folder=str(folder), image_size="32")
    run(trainer, 2)
    assert trainer.snapshot()["samples"].shape == (64, 32, 32, 3)
    with pytest.raises(InvalidParameter):
        make(dataset="folder", data_folder=str(tmp_path / "missing"))
    out = studio("dcgan", "--data", str(folder), "--steps", "2", "--out", str(tmp_path / "run"),
                 "--set", "batch_size=4", "--set", "width=4")
    assert out.returncode == 0, out.stderr
    config = json.loads((tmp_path / "run" / "config.json").read_text())["config"]
    assert config["dataset"] == "folder"
    assert (tmp_path / "run" / "accelerate" / "model_1.safetensors").is_file()


def test_view_draws_and_goes_back_in_history(qtbot, qapp):
    from studio.ui.panels.train.views import view_class

    trainer = make()
    view = view_class("dcgan")("dcgan")
    qtbot.addWidget(view)
    view.resize(1100, 560)
    view.show()
    view.show_snapshot(trainer.snapshot())
    first = view.samples_image.image.copy()
    for _ in range(2):
        run(trainer, 25)
        view.show_snapshot(trainer.snapshot())
    assert view.samples_image.image.shape == (8 * 17 - 1, 8 * 17 - 1)
    assert view.walk_image.image.shape == (16, 10 * 17 - 1)
    assert view.history_slider.maximum() == 2 and view.history_label.text() == "step 50"
    view.history_slider.setValue(0)
    assert np.array_equal(view.samples_image.image, first, equal_nan=True)
    assert view.history_label.text() == "step 0 (history)"
    assert view.readout._full.startswith("D(x) ") and view.hint.text()
    assert len(view.weight_curves) == 6
    with qtbot.waitSignal(view.stepPartRequested) as sent:
        view.step_d.click()
    assert sent.args == ["D"]
    assert set(view.export_items()) >= {"Samples", "Latent walk"}
