"""Generate workspace, as a tester found it in a real window: the seed field, buttons that must
not move, "Cancelling…" at once, batch progress in words, the strip's order, Return on the
focused Generate button, and the download dialog offered when there is no model."""

from __future__ import annotations

import threading

import pytest
from PySide6.QtCore import QPoint, Qt

from studio.core.jobs import JobState
from studio.core.requests import Txt2ImgRequest
from studio.ui.widgets.input_policy import install_input_policy
from tests.test_gui_panels_generate import ctx, fake, fill, make_panel  # noqa: F401 - fixtures

pytestmark = pytest.mark.gui


def button_place(panel) -> QPoint:
    return panel.generate_button.mapTo(panel, QPoint(0, 0))


def test_the_seed_field_shows_its_number_and_reuse_fills_it(qtbot, ctx):  # noqa: F811
    panel = make_panel(qtbot, ctx)
    seed = panel.controls.seed
    # A fresh form in "Random" says so, and the field cannot be typed into.
    assert panel.controls.seed_mode_key == "random"
    assert seed.lineEdit().text() == "random" and not seed.isEnabled()

    panel.receive(Txt2ImgRequest(model="/models/tiny-sd15", prompt="fox", seed=4_000_000_123))
    assert panel.controls.seed_mode_key == "fixed" and seed.isEnabled()
    assert seed.lineEdit().text() == "4000000123"
    field = seed.lineEdit()
    assert field.isVisible()
    assert field.width() >= field.fontMetrics().horizontalAdvance("4000000123"), \
        f"the seed field is {field.width()} px wide"
    assert panel.build_request().seed == 4_000_000_123

    # Back to random after a job: the field shows the seed that job used, greyed.
    panel.controls.set_seed_mode("random")
    panel.controls.note_seed_used(77)
    assert seed.lineEdit().text() == "77" and not seed.isEnabled()


def test_generate_stays_put_when_a_job_starts_and_when_an_error_shows(qtbot, ctx, fake):  # noqa: F811
    panel = make_panel(qtbot, ctx)
    fill(panel, steps=3)
    place = button_place(panel)
    size = panel.generate_button.size()
    fake.gate = threading.Event()
    qtbot.mouseClick(panel.generate_button, Qt.MouseButton.LeftButton)
    assert fake.at_gate.wait(10)
    qtbot.waitUntil(lambda: panel.queue_label.text() == "1 running", timeout=10_000)
    assert panel.queue_label.isVisible()
    assert button_place(panel) == place and panel.generate_button.size() == size
    panel.generate()  # a second click where the button was queues another job
    qtbot.waitUntil(lambda: panel.queue_label.text() == "1 running · 1 queued", timeout=10_000)
    assert button_place(panel) == place
    fake.gate.set()
    qtbot.waitUntil(lambda: not panel.open_jobs(), timeout=20_000)
    assert not panel.queue_label.isVisible()
    assert button_place(panel) == place

    panel.controls.prompt.setPlainText("x")
    panel.picker.combo.setCurrentIndex(-1)
    qtbot.mouseClick(panel.generate_button, Qt.MouseButton.LeftButton)
    assert panel.error_label.isVisible()
    assert button_place(panel) == place


def test_cancel_says_cancelling_at_once(qtbot, ctx, fake):  # noqa: F811
    panel = make_panel(qtbot, ctx)
    fill(panel, steps=4)
    fake.gate = threading.Event()
    finished = []
    panel.jobFinished.connect(finished.append)
    job = panel.generate()
    assert fake.at_gate.wait(10)
    qtbot.waitUntil(lambda: panel.preview.status.text().startswith("Step 2/4"), timeout=10_000)
    qtbot.mouseClick(panel.cancel_button, Qt.MouseButton.LeftButton)
    # Shown while the worker is still stuck inside its step (it stays there until the gate).
    qtbot.waitUntil(lambda: panel.preview.status.text() == "Cancelling…", timeout=10_000)
    assert job.state is JobState.RUNNING and not fake.gate.is_set()
    assert panel.queue_label.text() == "1 cancelling"
    assert not panel.cancel_button.isEnabled()  # nothing left to cancel
    fake.gate.set()
    qtbot.waitUntil(lambda: bool(finished), timeout=20_000)
    assert finished[0].state is JobState.CANCELLED
    assert panel.preview.status.text().startswith("Cancelled")


def test_batch_progress_says_which_image_and_which_step(qtbot, ctx, fake):  # noqa: F811
    panel = make_panel(qtbot, ctx)
    fill(panel, steps=8)
    panel.controls.count.setValue(4)
    fake.gate = threading.Event()
    fake.gate_step, fake.gate_image = 4, 1  # image 2, step 4: the job reports step 12 of 32
    job = panel.generate()
    assert fake.at_gate.wait(20)
    assert (job.step, job.total) == (12, 32)
    qtbot.waitUntil(lambda: panel.preview.status.text().startswith("Image 2/4 · step 4/8"),
                    timeout=10_000)
    fake.gate.set()
    qtbot.waitUntil(lambda: not panel.open_jobs(), timeout=20_000)

    # The strip holds the batch in the order made, each image numbered.
    results = panel.strip.results()
    assert [r.index for r in results] == [0, 1, 2, 3]
    assert "image 2/4" in panel.strip.item(1).toolTip()
    assert panel.strip.currentRow() == 3  # the newest is selected and shown
    assert panel.preview.status.text().startswith("Done · 4 images")


def test_return_on_the_focused_generate_button_generates(qtbot, ctx, fake, qapp):  # noqa: F811
    install_input_policy(qapp)
    panel = make_panel(qtbot, ctx)
    fill(panel, steps=1)
    button = panel.generate_button
    qtbot.waitUntil(lambda: (panel.activateWindow(), button.setFocus(), button.hasFocus())[-1],
                    timeout=20_000)
    with qtbot.waitSignal(panel.jobFinished, timeout=20_000):
        qtbot.keyClick(panel.generate_button, Qt.Key.Key_Return)
    assert len(fake.requests) == 1


def test_no_model_offers_the_download_dialog_and_the_command(qtbot, ctx):  # noqa: F811
    panel = make_panel(qtbot, ctx, models=())
    empty = panel.empty
    assert panel.stack.currentWidget() is empty
    assert "hf download stabilityai/sd-turbo" in empty.command.text()
    assert empty.download_button.isVisible() and empty.download_button.isEnabled()
    assert "Download a model" in empty.body.text()

    qtbot.mouseClick(empty.download_button, Qt.MouseButton.LeftButton)
    dialog = panel.download_dialog
    assert dialog is not None and dialog.isVisible()
    assert dialog.repo.text() == "stabilityai/sd-turbo"  # an image model is chosen for you
    assert dialog.fp16 is False  # no GPU found in tests

    # A finished download makes the picker look again, and the model shows up.
    scans = len(panel.scanner_calls)
    dialog.downloaded.emit(ctx.paths.models_dir / "stabilityai--sd-turbo")
    qtbot.waitUntil(lambda: len(panel.scanner_calls) == scans + 1 and not panel.picker.scanning,
                    timeout=10_000)
    dialog.reject()
    panel.shutdown()
