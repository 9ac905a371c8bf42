"""The queue drawer and the status bar follow the job bridge: states, progress, cancel, errors."""

from __future__ import annotations

import dataclasses
import threading
import time

import pytest
from PySide6.QtCore import Qt

from studio.core.jobs import JobState
from studio.ui.widgets.queue_drawer import JobCard
from tests.gui_fixtures import press

pytestmark = pytest.mark.gui


def stepper(request, progress, cancel):
    """A fake job: ``request["steps"]`` steps of ``request["delay"]`` seconds each."""
    for i in range(request["steps"]):
        cancel.raise_if_cancelled()
        progress(i + 1, request["steps"])
        time.sleep(request.get("delay", 0.0))
    return "done"


def failing(request, progress, cancel):
    progress(3, 20)
    raise RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB")


def gated(request, progress, cancel):
    """Runs until the test opens the gate (or cancels), so a job stays 'running' on demand."""
    progress(1, 10)
    while not request.wait(0.01):
        cancel.raise_if_cancelled()
    return "ok"


@pytest.fixture
def window(shell_window, qtbot):
    runner = shell_window.ctx.bridge.engine
    runner.register("step", stepper)
    runner.register("fail", failing)
    runner.register("gated", gated)
    shell_window.show()
    qtbot.waitExposed(shell_window)
    return shell_window


def card(window, job) -> JobCard:
    return window.queue_drawer.cards[job.id]


def wait_state(qtbot, window, job, state, timeout=120_000):
    qtbot.waitUntil(lambda: job.id in window.queue_drawer.cards
                    and card(window, job).state_label.text() == state.value, timeout=timeout)


def test_drawer_lists_jobs_newest_first_with_state_and_progress(window, qtbot, screenshot):
    bridge = window.ctx.bridge
    gate = threading.Event()
    done = bridge.engine.gpu.submit("step", {"steps": 4}, "Portrait of a cat · 512×512")
    failed = bridge.engine.gpu.submit("fail", None, "Castle at dusk · 1024×1024")
    running = bridge.engine.gpu.submit("gated", gate, "Forest · 768×512")
    queued = bridge.engine.gpu.submit("step", {"steps": 2}, "Queued thing")
    cancelled = bridge.engine.gpu.submit("step", {"steps": 2}, "Cancelled before it ran")
    bridge.cancel(cancelled)

    wait_state(qtbot, window, done, JobState.DONE)
    wait_state(qtbot, window, failed, JobState.FAILED)
    wait_state(qtbot, window, running, JobState.RUNNING)
    wait_state(qtbot, window, cancelled, JobState.CANCELLED)
    assert card(window, queued).state_label.text() == "queued"

    # newest first: the layout holds the cards in reverse order of submission
    drawer = window.queue_drawer
    order = [drawer._list.itemAt(i).widget() for i in range(drawer._list.count())]
    cards = [w for w in order if isinstance(w, JobCard)]
    assert [c.job.id for c in cards] == [cancelled.id, queued.id, running.id, failed.id, done.id]

    assert card(window, done).bar.value() == 4 and card(window, done).bar.maximum() == 4
    qtbot.waitUntil(lambda: card(window, running).steps.text() == "1/10")
    assert not card(window, done).cancel_button.isEnabled()
    assert card(window, running).cancel_button.isEnabled()
    assert card(window, queued).cancel_button.isEnabled()
    assert window.status.queue_button.text() == "Queue: 2"  # running + queued

    window.toggle_queue()
    qtbot.waitUntil(drawer.isVisible)
    screenshot(window, "window_with_queue")
    screenshot(drawer, "queue_drawer")
    gate.set()
    wait_state(qtbot, window, queued, JobState.DONE)
    assert window.status.queue_button.text() == "Queue: 0"


def test_failed_job_shows_its_message_readable_and_selectable(window, qtbot):
    job = window.ctx.bridge.engine.gpu.submit("fail", None, "Too big")
    wait_state(qtbot, window, job, JobState.FAILED)
    message = card(window, job).message
    assert not message.isHidden()
    assert message.text().startswith("Out of memory")
    assert "Tried to allocate 2.00 GiB" in message.text()  # the whole text, not cut off
    assert message.wordWrap()
    assert message.textInteractionFlags() & Qt.TextInteractionFlag.TextSelectableByMouse


def test_cancel_button_stops_a_running_job_within_a_step(window, qtbot):
    job = window.ctx.bridge.engine.gpu.submit("step", {"steps": 10_000, "delay": 0.02}, "Long")
    qtbot.waitUntil(lambda: job.step >= 2, timeout=120_000)
    button = card(window, job).cancel_button
    assert button.isEnabled()
    qtbot.mouseClick(button, Qt.MouseButton.LeftButton)  # cancels before it returns
    at_click = job.step  # the worker may finish the step it is in, no more
    wait_state(qtbot, window, job, JobState.CANCELLED)
    assert job.step <= at_click + 1 < 10_000  # how soon, in time: bench/gui_responsiveness.py
    assert not card(window, job).cancel_button.isEnabled()


def test_clear_finished_removes_only_finished_jobs(window, qtbot):
    bridge = window.ctx.bridge
    gate = threading.Event()
    finished = bridge.engine.gpu.submit("step", {"steps": 1}, "Finished")
    running = bridge.engine.gpu.submit("gated", gate, "Still running")
    wait_state(qtbot, window, finished, JobState.DONE)
    wait_state(qtbot, window, running, JobState.RUNNING)
    drawer = window.queue_drawer
    assert drawer.clear_button.isEnabled()
    qtbot.mouseClick(drawer.clear_button, Qt.MouseButton.LeftButton)
    assert finished.id not in drawer.cards
    assert running.id in drawer.cards
    assert [j.id for j in bridge.jobs()] == [running.id]
    assert not drawer.clear_button.isEnabled()
    gate.set()
    wait_state(qtbot, window, running, JobState.DONE)


def test_progress_repaints_are_throttled(window, qtbot, monkeypatch):
    job = window.ctx.bridge.engine.gpu.submit("step", {"steps": 300, "delay": 0.001}, "Fast steps")
    qtbot.waitUntil(lambda: job.id in window.queue_drawer.cards)
    refreshes = []
    monkeypatch.setattr(card(window, job), "refresh",
                        lambda: refreshes.append(job.step) or JobCard.refresh(card(window, job)))
    wait_state(qtbot, window, job, JobState.DONE)
    # ~300 progress signals in well under a second must not mean ~300 repaints
    assert len(refreshes) < 60
    assert card(window, job).bar.value() == 300


def test_ctrl_j_and_status_bar_toggle_the_drawer(window, qtbot):
    drawer = window.queue_drawer
    assert not drawer.isVisible()
    press(window, Qt.Key.Key_J)
    assert drawer.isVisible()
    assert window.sidebar.queue_button.isChecked()
    qtbot.mouseClick(window.status.queue_button, Qt.MouseButton.LeftButton)
    assert not drawer.isVisible()
    assert not window.sidebar.queue_button.isChecked()


def stuck(request, progress, cancel):
    """One long step that does not look at the token until the test opens the gate."""
    progress(1, 10)
    request.wait(20)
    cancel.raise_if_cancelled()
    return "ok"


def test_cancel_in_the_drawer_says_cancelling_at_once(window, qtbot):
    window.ctx.bridge.engine.register("stuck", stuck)
    gate = threading.Event()
    job = window.ctx.bridge.engine.gpu.submit("stuck", gate, "A long step")
    wait_state(qtbot, window, job, JobState.RUNNING)
    qtbot.waitUntil(lambda: job.step == 1, timeout=10_000)
    the_card = card(window, job)
    qtbot.mouseClick(the_card.cancel_button, Qt.MouseButton.LeftButton)
    # The worker is still inside its step: the card says so anyway, at once.
    assert job.state is JobState.RUNNING
    assert the_card.state_label.text() == "cancelling"
    assert the_card.message.text() == "Cancelling…" and not the_card.message.isHidden()
    assert not the_card.cancel_button.isEnabled()
    gate.set()
    wait_state(qtbot, window, job, JobState.CANCELLED, timeout=20_000)
    assert the_card.cancel_button.isHidden()


def _inside(widget, ancestor) -> bool:
    top_left = widget.mapTo(ancestor, widget.rect().topLeft())
    bottom_right = widget.mapTo(ancestor, widget.rect().bottomRight())
    return ancestor.rect().contains(top_left) and ancestor.rect().contains(bottom_right)


def test_cards_fit_a_narrow_drawer_and_tell_same_titled_jobs_apart(window, qtbot):
    from PIL import Image

    from studio.core.requests import GeneratedImage, Txt2ImgRequest

    outputs = window.ctx.paths.outputs_dir
    outputs.mkdir(parents=True, exist_ok=True)

    def images(request, progress, cancel):
        for i in range(request.count):
            for step in range(1, request.steps + 1):
                cancel.raise_if_cancelled()
                progress(i * request.steps + step, request.count * request.steps)
            path = outputs / f"{request.seed + i}.png"
            Image.new("RGB", (request.width, request.height), (request.seed % 256, 80, 40)
                      ).save(path)
            progress.partial(GeneratedImage(request, request.seed + i, i, path))
        return "ok"

    bridge = window.ctx.bridge
    bridge.engine.register("images", images)
    window.resize(1366, 768)
    window.toggle_queue()
    drawer = window.queue_drawer
    window.resizeDocks([drawer], [drawer.minimumWidth()], Qt.Orientation.Horizontal)
    qtbot.waitUntil(lambda: drawer.isVisible())
    first = bridge.engine.gpu.submit("images", Txt2ImgRequest(model="/models/tiny-sd15", prompt="fox",
                                                   steps=2, width=64, height=64, seed=11),
                          "fox")
    second = bridge.engine.gpu.submit("images", Txt2ImgRequest(model="/models/tiny-sd15", prompt="fox",
                                                    steps=2, width=64, height=96, seed=22,
                                                    count=2), "fox")
    wait_state(qtbot, window, first, JobState.DONE, timeout=20_000)
    wait_state(qtbot, window, second, JobState.DONE, timeout=20_000)
    a, b = card(window, first), card(window, second)
    assert a.title.text() == b.title.text() == "fox"
    assert a.details.text().replace("\u00a0", " ") == "seed 11 · 64×64 · 2 steps · tiny-sd15"
    assert b.details.text().replace("\u00a0", " ") == \
        "seed 22 · 64×96 · 2 steps · 2 images · tiny-sd15"
    assert "2\u00a0images" in b.details.text()  # a line breaks between parts, never inside one
    # Each card shows the image its job made last.
    qtbot.waitUntil(lambda: a.thumb.isVisible() and b.thumb.isVisible(), timeout=20_000)
    assert a.thumbnail_path.endswith("11.png") and b.thumbnail_path.endswith("23.png")

    # A long job's duration and every control fit the card; the card fits the drawer.
    b.job = dataclasses.replace(b.job, started=b.job.ended - 109)
    b.refresh()
    assert b.steps.text() == "1 min 49 s"
    qtbot.waitUntil(lambda: b.steps.width() >= b.steps.sizeHint().width(), timeout=5000)
    viewport = drawer.widget().viewport()
    for c in (a, b):
        assert _inside(c, viewport), "a card is wider than the drawer"
        for part in (c.title, c.details, c.state_label, c.bar, c.steps, c.thumb):
            if part.isVisible():
                assert _inside(part, c), f"{part.text() if hasattr(part, 'text') else part}"
        assert c.state_label.width() >= c.state_label.sizeHint().width()

    # While it can still be cancelled, the Cancel button shows its whole word.
    gate = threading.Event()
    running = bridge.engine.gpu.submit("gated", gate, "A job with a rather long title that must be elided")
    wait_state(qtbot, window, running, JobState.RUNNING)
    c = card(window, running)
    qtbot.waitUntil(lambda: c.cancel_button.isVisible(), timeout=5000)
    assert c.cancel_button.width() >= c.cancel_button.sizeHint().width()
    assert _inside(c.cancel_button, c) and _inside(c, viewport)
    gate.set()
    wait_state(qtbot, window, running, JobState.DONE)
