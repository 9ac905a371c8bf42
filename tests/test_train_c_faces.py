"""The autoencoder lessons on scikit-image's faces: the data ship offline, the lessons learn them
deterministically, the view draws them, and without scikit-image the choice is refused with what
to install. Tests that need scikit-image skip without it (the ``test`` extra installs it)."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import numpy as np
import pytest

from studio.pipelines.train import image_sets
from studio.pipelines.train.base import InvalidParameter
from studio.pipelines.train.registry import lesson_class
from tests.fixtures.torch_threads import one_torch_thread  # noqa: F401

ROOT = Path(__file__).resolve().parents[1]
AUTOENCODERS = ["autoencoder", "denoising-autoencoder", "vae"]
needs_skimage = pytest.mark.skipif(not image_sets.faces_available(),
                                   reason="scikit-image is not installed (pip install -e .[faces])")


@pytest.fixture
def no_network(monkeypatch):
    """Any attempt to open a connection fails the test."""

    def refuse(*_args, **_kwargs):
        raise AssertionError("the faces data set tried to use the network")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


@needs_skimage
def test_faces_ship_with_scikit_image_and_load_offline(no_network):
    image_sets._load.cache_clear()
    faces = image_sets.load_image_set("faces")
    import skimage.data

    lfw = skimage.data.lfw_subset()[:100].reshape(100, -1).astype(np.float32)
    assert faces.side == 25 and faces.pixels == 625
    assert faces.x_test.shape == (20, 625) and faces.x_train.shape == (160, 625)
    # Train and test are the 100 faces, split once; the second half of train is mirrored.
    both = np.concatenate([faces.x_test, faces.x_train[:80]])
    assert sorted(map(bytes, both)) == sorted(map(bytes, lfw))
    mirrored = faces.x_train[:80].reshape(80, 25, 25)[:, :, ::-1].reshape(80, -1)
    np.testing.assert_array_equal(faces.x_train[80:], mirrored)
    assert faces.x_scatter.shape == (100, 625) and not faces.scatter_is_test
    # Colour groups: brightness fifths, darkest first.
    assert np.bincount(faces.groups).tolist() == [20] * 5
    means = [faces.x_scatter[faces.groups == g].mean() for g in range(5)]
    assert means == sorted(means)
    assert faces.group_names[0] == "darkest" and "brightness" in faces.colour_by
    assert image_sets.load_image_set("faces") is faces  # loaded once per process


@needs_skimage
@pytest.mark.parametrize("key", AUTOENCODERS)
def test_autoencoders_learn_to_reconstruct_faces(key):
    trainer = lesson_class(key)(config={"dataset": "faces"}, seed=0)
    first = trainer.snapshot()
    start_err = np.mean((first["originals"] - first["reconstructions"]) ** 2)
    start_loss = trainer.test_loss()
    metrics = [trainer.step() for _ in range(300)]
    snap = trainer.snapshot()
    err = np.mean((snap["originals"] - snap["reconstructions"]) ** 2)
    assert err < 0.75 * start_err  # pixel MSE of the shown test faces
    assert metrics[-1]["test_loss"] < start_loss
    assert snap["dataset"] == "faces"
    assert snap["originals"].shape == snap["reconstructions"].shape == (20, 25, 25)
    assert snap["grid"].shape == (12, 12, 25, 25)
    assert snap["interpolation"].shape == (10, 25, 25)
    assert snap["latent"].shape == (100, 2) and snap["labels"].shape == (100,)
    assert snap["label_names"] == image_sets.BRIGHTNESS_BINS
    assert "faces have no classes" in snap["colour_by"]
    assert snap["interp_names"] == ("face 0", "face 6")
    if key == "denoising-autoencoder":
        assert snap["inputs"].shape == (20, 25, 25)
    if key == "vae":
        assert snap["kl_per_dim"].shape == (2,) and snap["elbo_split"]["reconstruction"] > 0


@needs_skimage
@pytest.mark.parametrize("key", AUTOENCODERS)
def test_faces_runs_are_deterministic_and_resume_exactly(key, tmp_path):
    from studio.pipelines.train.runs import Run

    def make():
        return lesson_class(key)(config={"dataset": "faces", "batch_size": 16}, seed=2)

    a, b = make(), make()
    assert [a.step() for _ in range(5)] == [b.step() for _ in range(5)]
    straight = make()
    for _ in range(4):
        straight.step()
    straight.set_param("lr", 3e-3)
    expected = [straight.step() for _ in range(6)]
    paused = make()
    for _ in range(4):
        paused.step()
    paused.set_param("lr", 3e-3)
    paused.step()
    paused.step()
    run = Run.create(tmp_path, key, 2, paused.config)
    run.save_checkpoint(paused)  # safetensors + JSON, as the window and the CLI save
    resumed = Run(run.path).resume()
    assert resumed.config["dataset"] == "faces" and resumed.config["lr"] == 3e-3
    assert [resumed.step() for _ in range(4)] == expected[2:]


def test_without_scikit_image_faces_are_refused_with_what_to_install(monkeypatch):
    monkeypatch.setattr(image_sets, "faces_available", lambda: False)
    for key in AUTOENCODERS:
        cls = lesson_class(key)
        with pytest.raises(InvalidParameter, match="needs scikit-image.*pip install"):
            cls(config={"dataset": "faces"})
        assert "scikit-image" in cls.unavailable_choices()["dataset"]["faces"]
        assert cls(config={"dataset": "digits"}).snapshot()["label_names"][3] == "3"
    monkeypatch.undo()
    if image_sets.faces_available():
        assert lesson_class("vae").unavailable_choices() == {"dataset": {}}
    with pytest.raises(InvalidParameter, match="dataset must be one of"):
        lesson_class("vae")(config={"dataset": "cats"})


@needs_skimage
def test_cli_trains_faces_and_refuses_an_unknown_data_set(tmp_path):
    def studio(*args):  # main() in this process: tests/fixtures/cli_run.py
        from tests.fixtures.cli_run import studio_in_process

        return studio_in_process("train", *args)

    out = studio("vae", "--steps", "20", "--set", "dataset=faces", "--out", str(tmp_path / "r"),
                 "--json")
    assert out.returncode == 0, out.stderr
    rows = [json.loads(line) for line in out.stdout.splitlines()]
    assert rows[-1]["steps"] == 20 and {"recon", "kl"} <= set(rows[0])
    config = json.loads((tmp_path / "r" / "config.json").read_text())["config"]
    assert config["dataset"] == "faces"
    out = studio("autoencoder", "--set", "dataset=cats")
    assert out.returncode == 2 and "dataset must be one of digits, faces" in out.stderr
