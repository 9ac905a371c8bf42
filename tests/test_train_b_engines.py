"""Lessons 3–5 (autoencoders, GANs, DDPM) headless: they learn, they are deterministic, a saved
and resumed run equals an uninterrupted one, bad settings are refused, divergence is caught."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch

from studio.pipelines.train.base import InvalidParameter, TrainingDiverged
from studio.pipelines.train.registry import lesson_class
from tests.fixtures.torch_threads import one_torch_thread  # noqa: F401

LESSONS = ["autoencoder", "denoising-autoencoder", "vae", "gan-2d", "wgan-gp-2d", "ddpm-2d"]
# Small settings so the generic tests run in milliseconds per step.
FAST = {"gan-2d": {"batch_size": 64}, "wgan-gp-2d": {"batch_size": 64, "k_d": 2},
        "ddpm-2d": {"batch_size": 64}}


def make(key: str, seed: int = 0, **overrides):
    cls = lesson_class(key)
    return cls(config={**FAST.get(key, {}), **overrides}, seed=seed)


def run(trainer, n: int) -> list[dict]:
    return [trainer.step() for _ in range(n)]


@pytest.mark.parametrize("key", LESSONS)
def test_same_seed_same_metrics_even_interleaved(key):
    a, b, c = make(key, seed=3), make(key, seed=3), make(key, seed=4)
    global_torch, global_np = torch.get_rng_state(), np.random.get_state()[1].copy()
    ma, mb, mc = [], [], []
    for _ in range(12):  # interleaved: no trainer may touch another's (or the global) RNG
        ma.append(a.step())
        mc.append(c.step())
        mb.append(b.step())
    assert ma == mb
    assert ma != mc
    assert torch.equal(global_torch, torch.get_rng_state())
    assert np.array_equal(global_np, np.random.get_state()[1])
    assert all(m["step"] == i + 1 and np.isfinite(m["loss"]) for i, m in enumerate(ma))


@pytest.mark.parametrize("key", LESSONS)
def test_paused_saved_loaded_resumed_equals_uninterrupted(key):
    live = {"autoencoder": ("optimizer", "rmsprop"), "denoising-autoencoder": ("noise", 0.5),
            "vae": ("beta", 2.0), "gan-2d": ("k_d", 2), "wgan-gp-2d": ("gp_weight", 1.0),
            "ddpm-2d": ("lr", 1e-3)}[key]
    straight = make(key, seed=1)
    run(straight, 6)
    straight.set_param(*live)
    expected = run(straight, 10)

    paused = make(key, seed=1)
    run(paused, 6)
    paused.set_param(*live)
    run(paused, 2)
    buffer = io.BytesIO()
    torch.save(paused.state_dict(), buffer)  # the state must survive a safe (weights-only) load
    buffer.seek(0)
    state = torch.load(buffer, weights_only=True)
    resumed = make(key, seed=1)  # built with the defaults: the saved config must win
    resumed.load_state_dict(state)
    assert resumed.config[live[0]] == live[1]
    assert run(resumed, 8) == expected[2:]


@pytest.mark.parametrize("key", LESSONS)
def test_bad_settings_are_refused(key):
    cls = lesson_class(key)
    for bad in ({"lr": -1}, {"lr": 0}, {"batch_size": 0}, {"no_such_knob": 1}, {"lr": "fast"}):
        with pytest.raises(InvalidParameter):
            cls(config=bad)
    trainer = make(key)
    reset_only = next(p.name for p in cls.params if not p.live)
    with pytest.raises(InvalidParameter, match="reset"):
        trainer.set_param(reset_only, cls.spec(reset_only).default)
    with pytest.raises(InvalidParameter):
        trainer.set_param("lr", float("nan"))
    assert any(p.name == "lr" and p.live for p in cls.params)


@pytest.mark.parametrize("key", ["gan-2d", "wgan-gp-2d", "ddpm-2d"])
def test_drawn_data_needs_enough_points(key):
    cls = lesson_class(key)
    with pytest.raises(InvalidParameter, match="at least 20"):
        cls(config={"dataset": "drawn", "points": [[0.1 * i, 0.0] for i in range(5)]})
    with pytest.raises(InvalidParameter, match="at least 20"):
        cls(config={"dataset": "drawn"})
    with pytest.raises(InvalidParameter):
        cls(config={"dataset": "drawn", "points": "a circle"})
    circle = [[np.cos(a), np.sin(a)] for a in np.linspace(0, 2 * np.pi, 40)]
    trainer = cls(config={"dataset": "drawn", "points": circle})
    trainer.step()
    radius = np.linalg.norm(trainer._pool.numpy() * getattr(trainer, "_scale", 1.0), axis=1)
    assert abs(np.median(radius) - 1.0) < 0.05  # the pool is the drawn circle


@pytest.mark.parametrize("key", LESSONS)
def test_divergence_is_caught_with_an_actionable_message(key):
    trainer = make(key, lr=10.0)
    with pytest.raises(TrainingDiverged, match=r"at step \d+ — try a lower learning rate"):
        run(trainer, 300)
    # A NaN weight is reported as NaN, with the step it happened at.
    trainer = make(key)
    run(trainer, 3)
    with torch.no_grad():
        next(iter(trainer.state_dict()))  # state_dict works mid-run
        for module in (getattr(trainer, n) for n in ("decoder", "discriminator", "model")
                       if hasattr(trainer, n)):
            next(module.parameters()).fill_(float("nan"))
            break
    with pytest.raises(TrainingDiverged, match="loss became nan at step 4 — try a lower"):
        trainer.step()


@pytest.mark.parametrize("key", ["autoencoder", "denoising-autoencoder", "vae"])
def test_autoencoders_learn_to_reconstruct(key):
    # Strong noise for the denoiser, so removing it is measurable through a 2-D bottleneck.
    trainer = make(key, seed=0, **({"noise": 0.5} if key == "denoising-autoencoder" else {}))
    start = trainer.test_loss()
    first = trainer.snapshot()
    start_err = np.mean((first["originals"] - first["reconstructions"]) ** 2)
    metrics = run(trainer, 300)
    assert metrics[-1]["step"] == 300 and "test_loss" in metrics[-1]  # every TEST_EVERY steps
    assert metrics[-1]["test_loss"] < 0.65 * start
    snap = trainer.snapshot()
    assert snap["originals"].shape == snap["reconstructions"].shape == (20, 8, 8)
    assert snap["latent"].shape == (len(snap["labels"]), 2)
    assert set(snap["labels"]) == set(range(10))
    assert snap["grid"].shape == (12, 12, 8, 8)
    assert snap["interpolation"].shape == (10, 8, 8)
    err = np.mean((snap["originals"] - snap["reconstructions"]) ** 2)
    assert err < 0.5 * start_err  # pixel MSE of the shown digits
    if key == "vae":
        assert {"recon", "kl"} <= set(metrics[-1])
        assert metrics[-1]["loss"] == pytest.approx(metrics[-1]["recon"] + metrics[-1]["kl"])
        assert snap["kl_per_dim"].shape == (2,) and (snap["kl_per_dim"] > 0).all()
    if key == "denoising-autoencoder":
        noisy, clean, recon = snap["inputs"], snap["originals"], snap["reconstructions"]
        assert np.mean((recon - clean) ** 2) < np.mean((noisy - clean) ** 2)


def test_more_latent_dimensions_show_the_first_two():
    trainer = make("vae", latent_dim=5)
    run(trainer, 5)
    snap = trainer.snapshot()
    assert snap["latent"].shape[1] == 2 and snap["kl_per_dim"].shape == (5,)
    assert "first two" in snap["latent_axes"]


@pytest.mark.parametrize("key,steps", [("gan-2d", 600), ("wgan-gp-2d", 300)])
def test_gans_cover_most_modes_of_eight_gaussians(key, steps):
    trainer = lesson_class(key)(config={}, seed=0)
    before = trainer.snapshot()["modes_covered"]
    metrics = run(trainer, steps)
    snap = trainer.snapshot()
    assert before <= 3 < 6 <= snap["modes_covered"]
    assert snap["mode_coverage"] == snap["modes_covered"] / 8
    assert {"loss_d", "loss_g", "d_real", "d_fake"} <= set(metrics[-1])
    assert snap["heatmap"].shape == (64, 64)
    # The heatmap is D at each pixel's centre (row = y, column = x), computed in blocks of rows.
    axis = torch.linspace(-2.5, 2.5, 64)
    with torch.no_grad():
        logits = trainer.discriminator(torch.tensor([[x, y] for y in axis for x in axis]))
    expected = logits if key == "wgan-gp-2d" else torch.sigmoid(logits)
    np.testing.assert_allclose(snap["heatmap"], expected.reshape(64, 64).numpy(), atol=1e-5)
    assert snap["arrows_from"].shape == snap["arrows_grad"].shape
    if key == "wgan-gp-2d":
        assert metrics[-1]["loss"] == metrics[-1]["wasserstein"]
        assert {"gp", "wasserstein"} <= set(metrics[-1])
    else:
        assert metrics[-1]["loss"] == metrics[-1]["loss_d"] + metrics[-1]["loss_g"]
        assert 0.2 < metrics[-1]["d_fake"] < 0.8  # D is being fooled about half the time


@pytest.mark.parametrize("key", ["gan-2d", "wgan-gp-2d"])
def test_step_part_updates_only_that_player(key):
    trainer = make(key)
    trainer.step()
    g0, d0 = trainer.state_dict()["generator"], trainer.state_dict()["discriminator"]
    m = trainer.step(part="D")
    g1, d1 = trainer.state_dict()["generator"], trainer.state_dict()["discriminator"]
    assert all(torch.equal(g0[k], g1[k]) for k in g0)
    assert not all(torch.equal(d0[k], d1[k]) for k in d0)
    assert m["step"] == 2 and "loss_g" in m
    trainer.step(part="G")
    g2, d2 = trainer.state_dict()["generator"], trainer.state_dict()["discriminator"]
    assert all(torch.equal(d1[k], d2[k]) for k in d1)
    assert not all(torch.equal(g1[k], g2[k]) for k in g1)
    with pytest.raises(InvalidParameter):
        trainer.step(part="X")


def _weights_equal(a: dict, b: dict) -> bool:
    return all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("key", ["gan-2d", "wgan-gp-2d"])
def test_gan_players_have_their_own_learning_rates(key):
    cls = lesson_class(key)
    # lr sets both players; lr_d / lr_g win over it; defaults equal the shared default.
    default = cls.spec("lr").default
    assert cls.validate_config()["lr_d"] == cls.validate_config()["lr_g"] == default
    assert {k: cls.validate_config({"lr": 2e-3})[k] for k in ("lr_d", "lr_g")} == \
        {"lr_d": 2e-3, "lr_g": 2e-3}
    both = cls.validate_config({"lr": 2e-3, "lr_d": 5e-3})
    assert (both["lr_d"], both["lr_g"]) == (5e-3, 2e-3)
    trainer = make(key, lr_d=4e-3, lr_g=1e-4)
    assert trainer._opt_d.param_groups[0]["lr"] == 4e-3
    assert trainer._opt_g.param_groups[0]["lr"] == 1e-4
    # Live: each knob reaches its own player's optimizer only; lr moves both (and the form).
    trainer.set_param("lr_g", 3e-4)
    assert trainer._opt_g.param_groups[0]["lr"] == 3e-4
    assert trainer._opt_d.param_groups[0]["lr"] == 4e-3
    trainer.set_param("lr", 7e-4)
    assert (trainer.config["lr_d"], trainer.config["lr_g"]) == (7e-4, 7e-4)
    assert {o.param_groups[0]["lr"] for o in (trainer._opt_d, trainer._opt_g)} == {7e-4}
    # A D step with a different lr_d changes D differently and G not at all.
    a, b = make(key, seed=2), make(key, seed=2, lr_d=1e-2)
    a.step(part="D")
    b.step(part="D")
    assert not _weights_equal(a.state_dict()["discriminator"], b.state_dict()["discriminator"])
    assert _weights_equal(a.state_dict()["generator"], b.state_dict()["generator"])
    # A G step with a different lr_g, from the same D, changes G differently.
    a, b = make(key, seed=2), make(key, seed=2, lr_g=1e-2)
    a.step(part="G")
    b.step(part="G")
    assert _weights_equal(a.state_dict()["discriminator"], b.state_dict()["discriminator"])
    assert not _weights_equal(a.state_dict()["generator"], b.state_dict()["generator"])
    for bad in ({"lr_d": -1}, {"lr_g": 0}, {"lr_d": "fast"}, {"lr_g": 11}):
        with pytest.raises(InvalidParameter, match="lr_"):
            cls(config=bad)
    with pytest.raises(InvalidParameter, match="lr_d"):
        trainer.set_param("lr_d", float("nan"))
    assert trainer.config["lr_d"] == 7e-4


@pytest.mark.parametrize("key", ["gan-2d", "wgan-gp-2d"])
def test_gan_separate_learning_rates_survive_save_load_resume(key):
    straight = make(key, seed=5)
    run(straight, 4)
    straight.set_param("lr_d", 3e-3)
    straight.set_param("lr_g", 2e-4)
    expected = run(straight, 8)

    paused = make(key, seed=5)
    run(paused, 4)
    paused.set_param("lr_d", 3e-3)
    paused.set_param("lr_g", 2e-4)
    run(paused, 3)
    buffer = io.BytesIO()
    torch.save(paused.state_dict(), buffer)
    buffer.seek(0)
    resumed = make(key, seed=5)
    resumed.load_state_dict(torch.load(buffer, weights_only=True))
    assert (resumed.config["lr_d"], resumed.config["lr_g"]) == (3e-3, 2e-4)
    assert resumed._opt_d.param_groups[0]["lr"] == 3e-3
    assert resumed._opt_g.param_groups[0]["lr"] == 2e-4
    assert run(resumed, 5) == expected[3:]
    # A run saved before the players had their own rates (config with lr only) resumes with
    # that lr for both.
    old = paused.state_dict()
    old["config"] = {k: v for k, v in old["config"].items() if k not in ("lr_d", "lr_g")}
    old["config"]["lr"] = 6e-4
    again = make(key, seed=5)
    again.load_state_dict(old)
    assert {o.param_groups[0]["lr"] for o in (again._opt_d, again._opt_g)} == {6e-4}


def test_ddpm_frozen_sampler_predicts_what_the_model_does_at_its_step():
    from studio.pipelines.train.ddpm2d import FrozenEpsilon

    trainer = lesson_class("ddpm-2d")(config={"timesteps": 50}, seed=0)
    run(trainer, 20)
    frozen = FrozenEpsilon(trainer.model)
    x = torch.randn((300, 2), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        for k in (0, 17, 49):
            expected = trainer.model(x, torch.full((300,), k, dtype=torch.long))
            torch.testing.assert_close(frozen(x, k), expected, rtol=1e-5, atol=1e-5)
        before = frozen(x, 17).clone()
    run(trainer, 5)  # the model trains on; the frozen copy does not change
    assert torch.equal(frozen(x, 17), before)
    with torch.no_grad():
        assert not torch.allclose(trainer.model(x, torch.full((300,), 17)), before)


def test_ddpm_samples_land_near_the_data():
    from studio.pipelines.train.ddpm2d import nearest_distance

    trainer = lesson_class("ddpm-2d")(config={"sample_every": 10_000}, seed=0)
    snap = trainer.snapshot()
    data, T = snap["data"], snap["timesteps"]
    noise_distance = nearest_distance(snap["reverse"][T], data)
    metrics = run(trainer, 700)
    assert trainer.snapshot()["samples_step"] == 0  # sampling waits for sample_every
    trainer.set_param("sample_every", 1)
    # The chain is sampled a few levels per snapshot by the model of the step it began at, and
    # shown once complete: equal to the chain that model samples in one go.
    snaps = [trainer.snapshot() for _ in range(T + 1)]
    done = [i for i, s in enumerate(snaps) if s["samples_step"] == 700]
    assert done and all(s["samples_step"] == 0 for s in snaps[:done[0]])
    snap = snaps[done[0]]
    np.testing.assert_array_equal(snap["reverse"], trainer.sample_chain())
    np.testing.assert_array_equal(snap["samples"], snap["reverse"][0])
    assert nearest_distance(snap["samples"], data) < 0.5 * noise_distance
    assert snap["forward"].shape == snap["reverse"].shape == (T + 1, 600, 2)
    np.testing.assert_allclose(snap["forward"][0], data)
    assert abs(snap["forward"][T].std() / data.std() - 1) < 0.2  # level T is (scaled) noise
    assert {f"mse_t{b}" for b in range(5)} <= set(metrics[-1])
    # Low noise levels are the hardest to predict ε from.
    assert metrics[-1]["mse_t0"] > metrics[-1]["mse_t4"]
    assert snap["bucket_mse"].shape == (5,)
