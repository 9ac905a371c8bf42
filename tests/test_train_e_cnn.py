"""Image lesson 1 (``cnn``) and its data: the shipped and generated sets, your own folder (with
every kind of bad input), the lesson's determinism, resume, schedules, accelerate checkpoints,
the CLI with ``--data``, and two CPU processes under ``accelerate launch`` matching one."""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from studio.pipelines.train import image_data
from studio.pipelines.train.base import InvalidParameter, TrainingDiverged
from studio.pipelines.train.cnn import CNNTrainer, scheduled_lr
from tests.fixtures.torch_threads import one_torch_thread  # noqa: F401

ROOT = Path(__file__).resolve().parents[1]
FAST = {"batch_size": 16, "width": 4}


def make(seed: int = 0, **overrides) -> CNNTrainer:
    return CNNTrainer(config={**FAST, **overrides}, seed=seed)


def run(trainer, n: int) -> list[dict]:
    return [trainer.step() for _ in range(n)]


def write_images(folder: Path, n: int, size: int = 40, colour: tuple = (200, 30, 30),
                 fmt: str = "PNG") -> None:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(len(str(folder)))
    for i in range(n):
        arr = (np.array(colour)[None, None] * rng.uniform(0.6, 1.0, (size, size + 8, 1)))
        Image.fromarray(arr.astype(np.uint8)).save(folder / f"im{i}.{fmt.lower()}", fmt)


@pytest.fixture
def two_classes(tmp_path) -> Path:
    root = tmp_path / "mine"
    write_images(root / "red", 8, colour=(220, 40, 40))
    write_images(root / "blue", 8, colour=(30, 40, 220), fmt="JPEG")
    return root


# -- data ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("source", ["digits", "shapes", "textures", "faces", "photos"])
def test_shipped_sets_are_square_labelled_and_split(source):
    data = image_data.load_class_images(source, 16)
    assert data.x_train.shape[1:] == (data.channels, 16, 16) and data.x_train.dtype == np.float32
    assert 0.0 <= data.x_train.min() and data.x_train.max() <= 1.0
    assert set(np.unique(data.y_train)) == set(range(data.n_classes)) >= {0, 1}
    assert set(np.unique(data.y_test)) == set(range(data.n_classes))
    assert image_data.load_class_images(source, 16) is data  # cached, the same every run
    grid, labels = image_data.preview(data, 12)
    assert grid.shape == (12, 16, 16, data.channels)
    assert list(labels[:2]) == [0, 1]  # every class early in the preview


def test_optional_scikit_image_sets_say_so_when_missing(monkeypatch):
    monkeypatch.setattr(image_data, "_skimage_dir", lambda: None)
    monkeypatch.setattr(image_data, "faces_available", lambda: False)
    missing = image_data.unavailable_sources()
    assert set(missing) == {"faces", "photos"} and "pip install scikit-image" in missing["photos"]
    with pytest.raises(InvalidParameter, match="scikit-image"):
        CNNTrainer.validate_config({"dataset": "photos"})
    assert CNNTrainer.unavailable_choices() == {"dataset": missing}


def test_your_folder_classes_skipped_files_and_preview(two_classes):
    (two_classes / "red" / "notes.txt").write_text("not an image")
    (two_classes / "red" / "broken.png").write_bytes(b"\x89PNG not really")
    write_images(two_classes / "blue" / "tiny", 0)  # an empty sub-sub-folder is ignored
    Image.new("RGB", (10, 10)).save(two_classes / "blue" / "small.png")
    Image.new("RGB", (50, 50)).save(two_classes / "loose.png")
    data = image_data.load_class_images("folder", 32, str(two_classes))
    assert data.class_names == ("blue", "red") and data.channels == 3
    assert len(data.x_train) + len(data.x_test) == 16
    assert data.skipped == 3
    note = data.describe()
    assert "3 files skipped (1 not an image, 1 damaged, 1 smaller than 32×32)" in note
    assert "1 image directly in the folder was left out" in note
    red = data.x_train[data.y_train == 1]
    assert red[:, 0].mean() > 0.5 > red[:, 2].mean()  # colours kept, resized and centre-cropped


@pytest.mark.parametrize("case,message", [
    ("empty", "is empty: put images in it"),
    ("text", "holds 2 files but no image Studio reads"),
    ("small", "All 3 images in .* are smaller than 32×32 pixels"),
    ("damaged", "None of the 2 images in .* could be read"),
    ("missing", "does not exist or is not a folder"),
    ("unset", "Choose your folder of images first"),
])
def test_bad_folders_get_a_sentence(tmp_path, case, message):
    folder = tmp_path / case
    folder.mkdir()
    if case == "text":
        (folder / "a.txt").write_text("x")
        (folder / "b.csv").write_text("x")
    elif case == "small":
        write_images(folder / "cats", 3, size=20)
    elif case == "damaged":
        (folder / "a.jpg").write_bytes(b"nope")
        (folder / "b.png").write_bytes(b"nope")
    path = {"missing": str(tmp_path / "nowhere"), "unset": ""}.get(case, str(folder))
    with pytest.raises(InvalidParameter, match=message):
        make(dataset="folder", data_folder=path, image_size="32")


def test_one_class_folder_is_refused_by_the_classifier(tmp_path):
    write_images(tmp_path / "only", 6)
    with pytest.raises(InvalidParameter, match="at least two classes.*own sub-folder"):
        make(dataset="folder", data_folder=str(tmp_path / "only"))


# -- the lesson ----------------------------------------------------------------------------------
def test_same_seed_same_metrics_even_interleaved():
    a, b, c = make(seed=3), make(seed=3), make(seed=4)
    global_torch = torch.get_rng_state()
    ma, mb, mc = [], [], []
    for _ in range(8):
        ma.append(a.step())
        mc.append(c.step())
        mb.append(b.step())
    assert ma == mb and ma != mc
    assert torch.equal(global_torch, torch.get_rng_state())
    assert {"loss", "acc", "lr", "test_loss", "test_acc"} <= set(ma[0])


def test_paused_saved_loaded_resumed_equals_uninterrupted():
    straight = make(seed=1, grad_accum=2)
    run(straight, 5)
    straight.set_param("schedule", "cosine")
    expected = run(straight, 8)

    paused = make(seed=1, grad_accum=2)
    run(paused, 5)
    paused.set_param("schedule", "cosine")
    run(paused, 3)
    buffer = io.BytesIO()
    torch.save(paused.state_dict(), buffer)
    buffer.seek(0)
    resumed = make(seed=1, grad_accum=2)
    resumed.load_state_dict(torch.load(buffer, weights_only=True))
    assert resumed.config["schedule"] == "cosine"
    assert run(resumed, 5) == expected[3:]


def test_accelerate_save_state_and_load_state_continue_exactly(tmp_path):
    straight = make(seed=2)
    run(straight, 4)
    expected = run(straight, 4)
    saved = make(seed=2)
    run(saved, 4)
    saved.save_accelerate_state(tmp_path / "acc")
    assert (tmp_path / "acc" / "model.safetensors").is_file()
    resumed = make(seed=2)
    resumed.load_accelerate_state(tmp_path / "acc")
    assert resumed.step_count == 4
    assert run(resumed, 4) == expected


def test_gradient_accumulation_gives_the_same_update():
    one, four = make(seed=5), make(seed=5, grad_accum=4)
    a, b = run(one, 3), run(four, 3)
    assert [m["loss"] for m in a] == pytest.approx([m["loss"] for m in b], rel=1e-4)


def test_schedules():
    cfg = {"lr": 0.01, "schedule": "warmup", "warmup_steps": 10, "schedule_steps": 100}
    assert scheduled_lr(cfg, 0) == pytest.approx(0.001) and scheduled_lr(cfg, 50) == 0.01
    cfg["schedule"] = "cosine"
    assert scheduled_lr(cfg, 0) == 0.01
    assert scheduled_lr(cfg, 50) == pytest.approx(0.01 * (0.05 + 0.95 * 0.5))
    assert scheduled_lr(cfg, 500) == pytest.approx(0.0005)
    trainer = make(schedule="warmup", warmup_steps=4)
    assert [m["lr"] for m in run(trainer, 5)] == pytest.approx([7.5e-4, 1.5e-3, 2.25e-3, 3e-3,
                                                                3e-3])


def test_bad_settings_and_divergence():
    for bad in ({"lr": -1}, {"batch_size": 0}, {"image_size": "17"}, {"no_such": 1}):
        with pytest.raises(InvalidParameter):
            CNNTrainer(config=bad)
    with pytest.raises(InvalidParameter, match="too small"):
        make(batch_size=2, grad_accum=4)
    trainer = make()
    with pytest.raises(InvalidParameter, match="reset"):
        trainer.set_param("width", 8)
    run(trainer, 2)
    with torch.no_grad():
        trainer.net.fc.weight.fill_(float("nan"))
    with pytest.raises(TrainingDiverged, match="loss became nan at step 3"):
        trainer.step()


def test_learns_digits_and_snapshot_has_every_view():
    trainer = CNNTrainer(config={}, seed=0)
    metrics = run(trainer, 250)
    assert metrics[-1]["test_acc"] > 0.9  # > 95 % by ~200 steps on the bench; margin for seeds
    trainer.set_param("pick", 7)
    snap = trainer.snapshot()
    assert snap["pick"] == 7 and snap["picked"].shape == (16, 16, 1)
    assert snap["filters1"].shape == (16, 3, 3, 1) and snap["filters2"].shape == (32, 16, 3, 3)
    assert snap["maps1"].shape == (16, 16, 16) and snap["maps2"].shape == (32, 8, 8)
    assert snap["saliency"].shape == (16, 16) and snap["saliency"].max() == pytest.approx(1.0)
    assert snap["confusion"].sum() == snap["n_test"] and snap["confusion"].shape == (10, 10)
    assert len(snap["missed"]) == min(16, snap["n_missed"])
    assert [h["name"] for h in snap["histograms"]] == ["conv 1", "conv 2", "linear"]
    assert all(h["grad_norm"] > 0 for h in snap["histograms"])
    assert snap["preview"].shape == (32, 16, 16, 1)


def test_colour_folder_trains(two_classes):
    trainer = make(dataset="folder", data_folder=str(two_classes), image_size="24")
    run(trainer, 30)
    snap = trainer.snapshot()
    assert snap["channels"] == 3 and snap["filters1"].shape == (4, 3, 3, 3)
    assert snap["test_acc"] == 1.0  # red vs blue


# -- the command line ----------------------------------------------------------------------------
def studio(*args: str, launcher: list[str] | None = None, env: dict | None = None):
    """``studio train ARGS``: through its ``main()`` in this process (tests/fixtures/cli_run.py,
    the same output, files and exit status without a child importing torch again), or in the
    processes ``launcher`` starts (``accelerate launch …``)."""
    if launcher is None and env is None:
        from tests.fixtures.cli_run import studio_in_process

        return studio_in_process("train", *args)
    cmd = (launcher or [sys.executable, "-m"]) + ["studio", "train", *args]
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=240,
                          env={**os.environ, **(env or {})})


def test_cli_trains_on_a_data_folder(tmp_path, two_classes):
    out = studio("cnn", "--data", str(two_classes), "--steps", "3", "--json",
                 "--out", str(tmp_path / "run"), "--set", "batch_size=8")
    assert out.returncode == 0, out.stderr
    config = json.loads((tmp_path / "run" / "config.json").read_text())["config"]
    assert config["dataset"] == "folder" and config["data_folder"] == str(two_classes)
    assert (tmp_path / "run" / "accelerate" / "model.safetensors").is_file()
    out = studio("gan-2d", "--data", str(two_classes), "--steps", "3")
    assert out.returncode == 2 and "--data is for the image lessons" in out.stderr


def studio_in_two_processes(*args: str):
    """``accelerate launch`` of ``studio train ARGS`` in two CPU processes (gloo), one torch
    thread each."""
    accelerate = shutil.which("accelerate") or str(Path(sys.executable).parent / "accelerate")
    launcher = [accelerate, "launch", "--multi_gpu", "--num_processes", "2", "--num_machines",
                "1", "--mixed_precision", "no", "--dynamo_backend", "no",
                "--main_process_port", str(29500 + os.getpid() % 2000), "-m"]
    return studio(*args, launcher=launcher, env={"OMP_NUM_THREADS": "1"})


@pytest.mark.slow
def test_two_cpu_processes_match_one(tmp_path):
    """``accelerate launch`` with two CPU processes (gloo): it finishes, writes one checkpoint,
    and its loss curve matches one process with the same global batch to 1e-4 (float rounding
    of the split sums; measured 1e-7). About 10 s on two cores."""
    args = ("cnn", "--steps", "12", "--json", "--set", "batch_size=16", "--set", "width=4")
    one = studio(*args, "--out", str(tmp_path / "one"))
    assert one.returncode == 0, one.stderr
    two = studio_in_two_processes(*args, "--out", str(tmp_path / "two"))
    assert two.returncode == 0, two.stderr[-2000:]
    rows = [json.loads(line) for line in two.stdout.splitlines()]
    assert rows[-1]["steps"] == 12 and len(rows) == 13  # one process printed
    run = tmp_path / "two"
    assert sorted(p.name for p in run.iterdir()) == [
        "accelerate", "checkpoint", "config.json", "metrics.jsonl"]
    assert sorted(p.name for p in (run / "checkpoint").iterdir()) == [
        "checkpoint.json", "checkpoint.safetensors"]
    assert sorted(p.name for p in (run / "accelerate").glob("random_states_*")) == [
        "random_states_0.pkl", "random_states_1.pkl"]
    loss = lambda p: [json.loads(x)["loss"] for x in (p / "metrics.jsonl").read_text().splitlines()]  # noqa: E731
    assert loss(run) == pytest.approx(loss(tmp_path / "one"), rel=1e-4)


# -- the view ------------------------------------------------------------------------------------
@pytest.mark.parametrize("colour", [False, True])
def test_view_draws_every_part_and_asks_for_the_picked_image(qtbot, qapp, two_classes, colour):
    from studio.ui.panels.train.views import view_class

    trainer = (make(dataset="folder", data_folder=str(two_classes), image_size="24") if colour
               else make())
    run(trainer, 3)
    snap = trainer.snapshot()
    view = view_class("cnn")("cnn")
    qtbot.addWidget(view)
    view.resize(1100, 560)
    view.show()
    view.show_snapshot(snap)
    side = snap["picked"].shape[0]
    assert view.picked_image.image.shape == ((side, side, 3) if colour else (side, side))
    rows = -(-len(snap["preview"]) // 8)
    assert view.preview_image.image.shape[:2] == (rows * (side + 1) - 1, 8 * (side + 1) - 1)
    w = 4  # FAST width: a row of first-layer filters over w rows (input maps) of 2·w kernels
    assert view.filters_image.image.shape == (3 + 2 + w * 4 - 1, 2 * w * 4 - 1)
    assert view.confusion_image.image.shape == (snap["confusion"].shape)
    assert f"{snap['test_acc']:.1%}" in view.missed_caption.toolTip()
    assert view.guess._full.startswith("is ")
    assert view.pick_box.maximum() == snap["n_test"] - 1
    with qtbot.waitSignal(view.setParamRequested) as sent:
        view.pick_box.setValue(1)
    assert sent.args == ["pick", 1]
    assert set(view.export_items()) >= {"Filters", "Feature maps", "Saliency",
                                        "Confusion matrix"}


def test_a_reset_to_an_unusable_folder_keeps_the_session_and_says_why(tmp_path):
    """In the window: choosing a folder with one class refuses in words; the lesson goes on
    with the trainer and config it had (the form is not left showing the refused ones)."""
    import threading

    from studio.pipelines.train.session import TrainingSession

    write_images(tmp_path / "one" / "cats", 4)
    states, frames, changed = [], [], threading.Condition()

    def on_frame(frame):
        with changed:
            frames.append(frame)
            changed.notify_all()
        session.frame_done()

    def on_state(state, message):
        with changed:
            states.append((state, message))
            changed.notify_all()

    session = TrainingSession("cnn", on_frame, on_state, runs_root=tmp_path / "runs",
                              config=FAST)
    try:
        session.start()
        with changed:
            assert changed.wait_for(lambda: frames, 60)
        session.step_once()
        with changed:
            assert changed.wait_for(lambda: frames and frames[-1].step == 1, 60)
        session.reset({**FAST, "dataset": "folder", "data_folder": str(tmp_path / "one")})
        with changed:
            assert changed.wait_for(lambda: any("two classes" in m for _, m in states), 60)
        session.step_once()
        with changed:
            assert changed.wait_for(lambda: frames[-1].step == 2, 60)
        assert frames[-1].config["dataset"] == "digits" and session.config["dataset"] == "digits"
    finally:
        session.stop()


# -- using the trained model: Gallery's Classify ---------------------------------------------------
def trained_run(runs_dir: Path, folder: Path, steps: int = 30) -> Path:
    from studio.pipelines.train.runs import Run

    trainer = make(dataset="folder", data_folder=str(folder), image_size="24")
    run(trainer, steps)
    saved = Run.create(runs_dir, "cnn", 0, trainer.config)
    saved.save_checkpoint(trainer)
    return saved.path


def test_classify_any_image_with_the_newest_cnn_run(tmp_path, two_classes):
    from studio.core.jobs import UserFacingError
    from studio.pipelines.train.classify import classify_image

    photo = tmp_path / "red.jpg"
    Image.new("RGB", (300, 200), (230, 20, 25)).save(photo)
    with pytest.raises(UserFacingError, match="No trained CNN yet: open Train"):
        classify_image(photo, tmp_path / "runs")
    trained_run(tmp_path / "runs", two_classes)
    shutil.rmtree(two_classes)  # the model needs no training data to classify
    answer = classify_image(photo, tmp_path / "runs")
    assert [name for name, _ in answer.top] == ["red", "blue"]
    assert answer.top[0][1] > 0.5 and "red" in answer.sentence()
    assert "step 30" in answer.sentence() and "your folder" in answer.sentence()
