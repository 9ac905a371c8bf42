"""The Train workspace in the real window (pytest-qt, offscreen): controls drive the session, the
plots receive data, divergence is shown, runs can be overlaid and exported, threads stop."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from PySide6.QtCore import Qt

SCREENSHOTS = Path(__file__).resolve().parents[1] / "screenshots"


@pytest.fixture
def train(main_window, qtbot, monkeypatch):
    """The Train workspace, its lessons on a thread of this process: what these tests check is the
    panel; test_the_window_trains_in_a_child_process… checks the child (a child per lesson would
    import torch again for each, ~25 CPU-s over this file)."""
    from studio.ui.panels.train.panel import TrainPanel

    monkeypatch.setattr(TrainPanel, "session_in_process", False)
    main_window.resize(1480, 920)
    main_window.show()
    panel = main_window.show_workspace("train")
    qtbot.waitUntil(lambda: panel.frames_drawn >= 1, timeout=60000)
    return panel


def curve_len(panel, name):
    x, _y = panel.loss_plot.curves[name].getData()
    return 0 if x is None else len(x)


def wait_for_lesson(qtbot, panel, key):
    """Until the new lesson's child has started and its first frame is drawn (the last frame
    before that is the previous lesson's; starting a child under load takes seconds)."""
    keys = set(panel.lessons[key].validate_config())
    qtbot.waitUntil(lambda: panel.lesson == key and panel.session.state == "paused"
                    and panel.last_frame is not None and set(panel.last_frame.config) == keys,
                    timeout=60000)


def play_for(qtbot, panel, steps):
    start = panel.session.step_count
    qtbot.mouseClick(panel.controls.play_button, Qt.MouseButton.LeftButton)
    # the first frame of a lesson opened again may still be on its way (a loaded machine)
    qtbot.waitUntil(lambda: panel.last_frame is not None
                    and panel.last_frame.step >= start + steps, timeout=120000)
    qtbot.mouseClick(panel.controls.play_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: panel.session.state == "paused", timeout=120000)


def test_every_lesson_is_listed_and_optimizers_race_draws(train, qtbot):
    keys = [train.lesson_list.item(i).data(Qt.ItemDataRole.UserRole)
            for i in range(train.lesson_list.count())]
    from studio.pipelines.train.registry import lesson_keys

    assert keys[:2] == ["optimizers", "classifier-2d"] and keys == lesson_keys()
    assert "Optimizers race" in train.explanation.toPlainText()
    play_for(qtbot, train, 150)
    assert train.controls.play_button.text() == "Play"
    qtbot.waitUntil(lambda: curve_len(train, "adam") >= 150, timeout=2000)
    path_x, _ = train.view.paths["adam"].getData()
    assert len(path_x) >= 150
    assert "Adam" in train.view.readout.text()
    # The form's "Learning rate (all)" slider reaches every optimizer, live.
    train.form.editors["lr"].slider.setValue(train.form.editors["lr"].slider.value() + 10)
    train.form.flush()
    qtbot.waitUntil(lambda: train.last_frame.config["lr_adam"] == train.last_frame.config["lr"]
                    and train.last_frame.config["lr"] > 0.002, timeout=5000)
    _shot(train, "train-optimizers")


def test_classifier_controls_step_speed_live_param_reset(train, qtbot, tmp_path):
    train.lesson_list.setCurrentRow(1)
    assert train.lesson == "classifier-2d"
    wait_for_lesson(qtbot, train, "classifier-2d")
    qtbot.mouseClick(train.controls.step_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: train.last_frame.step == 1, timeout=5000)
    qtbot.waitUntil(lambda: curve_len(train, "loss") == 1 and curve_len(train, "test_loss") == 1,
                    timeout=2000)
    train.controls.speed.setCurrentText("Fast")
    assert train.session.draw_every == 10
    train.set_param("lr", 0.03)
    play_for(qtbot, train, 300)
    assert train.last_frame.config["lr"] == 0.03
    assert float(train.view.values["test_accuracy"].text().rstrip("%")) > 95
    assert train.view.image.image.shape == (72, 72)
    # The decision boundary covers the data square (it was once drawn 72× too large).
    rect = train.view.image.mapRectToParent(train.view.image.boundingRect())
    e = train.view._extent
    assert (rect.left(), rect.top(), rect.width(), rect.height()) == pytest.approx(
        (-e, -e, 2 * e, 2 * e))
    # Runs: the current one is listed; overlay it, export CSV, PNG and GIF.
    assert train.runs.list.count() == 1
    train.runs.list.item(0).setCheckState(Qt.CheckState.Checked)
    assert len(train.loss_plot.overlays) == 1
    train.runs.list.setCurrentRow(0)
    from studio.pipelines.train.runs import export_csv

    csv = export_csv(train.runs.selected(), tmp_path / "m.csv").read_text().splitlines()
    assert csv[0].startswith("step,loss") and len(csv) > 300
    assert train.export_plot_png(tmp_path / "p.png").stat().st_size > 10000
    from PIL import Image

    gif = Image.open(train.export_gif(tmp_path / "e.gif"))
    assert gif.n_frames >= 5
    _shot(train, "train-classifier-2d")
    # A knob that needs a restart resets: a new run, the curves cleared.
    box = train.form.editors["dataset"]
    assert box.currentText() == "Two moons"  # a readable name; the stored value is the id
    box.setCurrentIndex(box.findData("spirals"))
    qtbot.waitUntil(lambda: train.last_frame.new_run and train.last_frame.step == 0
                    and train.last_frame.config["dataset"] == "spirals", timeout=5000)
    qtbot.waitUntil(lambda: curve_len(train, "loss") == 0, timeout=2000)
    train.controls.new_seed_action.trigger()
    qtbot.waitUntil(lambda: train.session.seed == train.controls.seed_value(), timeout=5000)
    assert train.controls.seed_button.text() == f"Seed {train.session.seed}"


def test_divergence_pauses_with_the_message_and_bad_values_are_refused(train, qtbot):
    train.lesson_list.setCurrentRow(1)
    wait_for_lesson(qtbot, train, "classifier-2d")
    train.set_param("lr", -1.0)
    assert train.error.isVisible() and "at least" in train.error.text()
    train.set_param("optimizer", "sgd")
    train.set_param("lr", 1000.0)
    qtbot.mouseClick(train.controls.play_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: train.session.state == "diverged", timeout=10000)
    qtbot.waitUntil(lambda: "lower learning rate" in train.error.text(), timeout=5000)
    assert train.controls.play_button.text() == "Play"
    assert "diverged" in train.controls.status.full_text()


def test_gan_learning_rates_of_d_and_g_change_live_in_the_form(train, qtbot):
    train.open_lesson("gan-2d")
    wait_for_lesson(qtbot, train, "gan-2d")
    lr_d, lr_g = train.form.editors["lr_d"], train.form.editors["lr_g"]
    assert lr_d.isVisibleTo(train) and lr_g.isVisibleTo(train)
    # "Step D"/"Step G" live in the view only, so the control bar's buttons keep their width.
    assert train.controls.part_buttons == {}
    qtbot.waitUntil(lambda: train.controls.speed.width() > 0, timeout=2000)
    for widget in (train.controls.speed, train.controls.seed_button,
                   train.controls.step_button, train.controls.reset_button):
        assert widget.width() >= widget.sizeHint().width(), widget.objectName()
    qtbot.mouseClick(train.view.step_d, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: train.last_frame.step == 1, timeout=5000)
    # The D slider moves D's rate only, live, without a new run.
    lr_d.slider.setValue(lr_d.slider.value() + 10)
    train.form.flush()
    qtbot.waitUntil(lambda: train.last_frame.config["lr_d"] > 0.003, timeout=5000)
    assert train.last_frame.config["lr_g"] == 0.001 and not train.last_frame.new_run
    play_for(qtbot, train, 20)
    # "Learning rate (both)" sets both, and the form shows it on both sliders.
    train.set_param("lr", 0.0004)
    qtbot.waitUntil(lambda: train.last_frame.config["lr_d"] == 0.0004, timeout=5000)
    assert lr_d.value() == lr_g.value() == 0.0004
    assert lr_d.label.text() == "0.0004"
    train.set_param("lr_g", -1.0)
    assert train.error.isVisible() and "lr_g must be at least" in train.error.text()
    _shot(train, "train-gan-2d")


def test_autoencoder_data_set_choice_faces_or_what_it_needs(train, qtbot, monkeypatch):
    from studio.pipelines.train import image_sets

    # Without scikit-image: faces are listed greyed out, saying what they need, and refused.
    monkeypatch.setattr(image_sets, "faces_available", lambda: False)
    train.open_lesson("vae")
    wait_for_lesson(qtbot, train, "vae")
    box = train.form.editors["dataset"]
    assert [box.itemText(i) for i in range(box.count())] == ["Handwritten digits",
                                                             "Faces (needs scikit-image)"]
    assert not box.model().item(1).isEnabled()
    assert "pip install scikit-image" in box.model().item(1).toolTip()
    assert "pip install scikit-image" in box.toolTip()
    train.reset(overrides={"dataset": "faces"})
    assert train.error.isVisible() and "needs scikit-image" in train.error.text()
    monkeypatch.undo()
    if not image_sets.faces_available():
        return
    # With it: choosing faces starts a new run on faces, drawn as faces.
    train.open_lesson("vae")
    wait_for_lesson(qtbot, train, "vae")
    box = train.form.editors["dataset"]
    assert box.itemText(1) == "Faces" and box.model().item(1).isEnabled()
    box.setCurrentIndex(1)
    qtbot.waitUntil(lambda: train.last_frame.config["dataset"] == "faces"
                    and train.last_frame.snapshot["dataset"] == "faces", timeout=10000)
    assert train.form.values()["dataset"] == "faces"
    play_for(qtbot, train, 40)
    assert train.view.recon_image.image.shape[1] == 5 * 26 - 1  # 25×25 faces, five a row
    assert [item.name() for item in train.view.class_scatter][0] == "darkest"
    # The five brightness groups are named under the latent plot, not drawn over its points.
    legend, plot = train.view.legend, train.view.latent_plot
    assert legend.names() == ["darkest", "darker", "middle", "brighter", "brightest"]
    assert legend.isVisible() and not legend.geometry().intersects(plot.geometry())
    qtbot.waitUntil(lambda: curve_len(train, "recon") >= 40, timeout=2000)
    _shot(train, "train-vae-faces")


def test_waits_while_the_job_queue_is_busy(train, qtbot, monkeypatch):
    engine = train.ctx.bridge.engine
    monkeypatch.setattr(type(engine), "gpu_busy", property(lambda self: True))
    qtbot.mouseClick(train.controls.play_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: train.session.state == "waiting", timeout=5000)
    assert train.session.step_count == 0
    qtbot.waitUntil(lambda: "job queue" in train.controls.status.full_text(), timeout=5000)
    monkeypatch.undo()
    qtbot.waitUntil(lambda: train.session.step_count > 5, timeout=5000)


def test_the_window_trains_in_a_child_process_and_says_so_while_it_starts(main_window, qtbot):
    from studio.pipelines.train.process_session import ProcessTrainingSession

    main_window.show()
    panel = main_window.show_workspace("train")
    session = panel.session
    assert isinstance(session, ProcessTrainingSession) and session.process.pid != os.getpid()
    assert panel.controls.status.full_text() == "Starting…"
    qtbot.waitUntil(lambda: panel.frames_drawn >= 1, timeout=60000)
    assert panel.controls.status.full_text() == "Paused"
    # A dead child is an error the window shows, not a hang; choosing the lesson again recovers.
    session.process.kill()
    qtbot.waitUntil(lambda: "killed" in panel.error.text(), timeout=10000)
    assert panel.controls.status.full_text() == "Stopped by an error"
    panel.open_lesson("optimizers")
    assert panel.session is not session and not session.alive
    qtbot.waitUntil(lambda: panel.session.state == "paused", timeout=60000)
    play_for(qtbot, panel, 20)


def test_a_stopped_sessions_queued_frames_never_reach_the_next_lesson(qtbot):
    """Qt delivers a queued call even after its connection is cut: the bridge drops them."""
    import threading

    from studio.pipelines.train.session import Frame
    from studio.ui.panels.train.bridge import SessionBridge

    bridge = SessionBridge("classifier-2d", runs_root=None, config=None, seed=0, busy=None,
                           in_process=False)
    got = []
    bridge.frame.connect(got.append)
    bridge.stateChanged.connect(lambda *s: got.append(s))
    emit = threading.Thread(target=lambda: (bridge._frameIn.emit(Frame(1, {})),
                                            bridge._stateIn.emit("paused", "")))
    emit.start()
    emit.join()
    bridge.stop()  # before the event loop turns: both are still queued
    qtbot.wait(50)
    assert got == []
    emit = threading.Thread(target=lambda: bridge._stateIn.emit("paused", ""))
    bridge._stopped = False  # the same path delivers while the session is current
    emit.start()
    emit.join()
    qtbot.waitUntil(lambda: got == [("paused", "")], timeout=2000)


def _shot(panel, name):
    SCREENSHOTS.mkdir(exist_ok=True)
    panel.window().grab().save(str(SCREENSHOTS / f"{name}.png"))
