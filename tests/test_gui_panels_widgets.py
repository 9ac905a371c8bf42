"""Shared widgets and workers of the panels: image viewer, image actions, thumbnail loader."""

from __future__ import annotations

import threading
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image
from PySide6.QtCore import QPoint, QPointF, Qt
from PySide6.QtGui import QGuiApplication, QImage, QWheelEvent
from PySide6.QtWidgets import QApplication

from studio.ui.widgets import image_actions
from studio.ui.widgets.image_view import ImageView
from studio.ui.widgets.open_jobs import OpenJobs
from studio.ui.widgets.preview import (
    FrameThrottle,
    StepClock,
    format_eta,
    preview_to_qimage,
    step_text,
)
from studio.workers.thumbnails import ThumbnailLoader, pil_to_qimage

pytestmark = pytest.mark.gui


def solid(w: int, h: int) -> QImage:
    image = QImage(w, h, QImage.Format.Format_RGB32)
    image.fill(Qt.GlobalColor.darkCyan)
    return image


def wheel(view: ImageView, pos: QPoint, notches: int) -> None:
    event = QWheelEvent(QPointF(pos), QPointF(view.viewport().mapToGlobal(pos)), QPoint(0, 0),
                        QPoint(0, 120 * notches), Qt.MouseButton.NoButton,
                        Qt.KeyboardModifier.NoModifier, Qt.ScrollPhase.NoScrollPhase, False)
    QApplication.sendEvent(view.viewport(), event)


def test_image_view_fits_zooms_around_the_cursor_and_toggles(qtbot):
    view = ImageView()
    qtbot.addWidget(view)
    view.resize(400, 300)
    view.show()
    view.set_image(solid(800, 600))
    assert view.fitting and view.zoom == pytest.approx(0.5, abs=0.02)

    # Wheel up zooms in, keeping the scene point under the cursor where it was.
    pos = QPoint(300, 100)
    before = view.mapToScene(pos)
    wheel(view, pos, 2)
    assert not view.fitting
    assert view.zoom == pytest.approx(0.5 * 1.2 ** 2, rel=0.02)
    after = view.mapToScene(pos)
    assert abs(after.x() - before.x()) < 3 and abs(after.y() - before.y()) < 3

    view.fit_button.click()
    assert view.fitting and view.zoom == pytest.approx(0.5, abs=0.02)
    view.actual_button.click()
    assert view.zoom == pytest.approx(1.0)
    # Double-click toggles back to fit, and from fit to 100 %.
    qtbot.mouseDClick(view.viewport(), Qt.MouseButton.LeftButton, pos=QPoint(200, 150))
    assert view.fitting
    qtbot.mouseDClick(view.viewport(), Qt.MouseButton.LeftButton, pos=QPoint(200, 150))
    assert view.zoom == pytest.approx(1.0) and not view.fitting

    # A new frame of the same size keeps the zoom (live preview); clear() empties it.
    view.set_image(solid(800, 600), keep_view=True)
    assert view.zoom == pytest.approx(1.0)
    view.clear()
    assert not view.has_image()


def test_preview_arrays_become_owned_qimages():
    array = np.zeros((8, 12, 3), np.uint8)
    array[..., 0] = 255
    image = preview_to_qimage(array, 96, 64)
    del array  # the QImage must not point into freed numpy memory
    assert (image.width(), image.height()) == (96, 64)
    assert image.pixelColor(40, 30).red() == 255 and image.pixelColor(40, 30).blue() == 0
    with pytest.raises(ValueError):
        preview_to_qimage(np.zeros((8, 8), np.uint8))
    rgba = pil_to_qimage(Image.new("RGBA", (5, 4), (1, 2, 3, 128)))
    assert rgba.size().toTuple() == (5, 4) and rgba.pixelColor(0, 0).alpha() == 128


def test_step_clock_reports_rate_and_eta():
    clock = StepClock(smoothing=1.0)
    clock.tick(1, now=10.0)
    assert clock.rate is None and step_text(1, 20, clock) == "Step 1/20"
    clock.tick(3, now=11.0)  # 2 steps in 1 s
    assert clock.rate == pytest.approx(2.0)
    assert step_text(3, 20, clock) == "Step 3/20 · 2.0 it/s · ETA 00:08"
    clock.tick(4, now=15.0)  # slow steps are shown as seconds per step
    assert step_text(4, 20, clock).startswith("Step 4/20 · 4.0 s/it")
    assert format_eta(3725) == "1:02:05"


def test_an_ended_job_leaves_no_preview_frame_waiting(qtbot):
    drawn: list = []
    frames = FrameThrottle(lambda key, frame: drawn.append((key, frame)), interval_s=0.05)
    jobs = OpenJobs(frames)
    jobs.add(None, SimpleNamespace(id=7))  # type: ignore[arg-type]  # only the id is read
    frames.offer(7, "first")  # drawn at once
    frames.offer(7, "late")  # waits for the interval
    jobs.remove(7)
    qtbot.wait(150)
    assert drawn == [(7, "first")] and 7 not in jobs and len(jobs) == 0
    frames.offer(8, "another job's")  # a waiting frame of another job is not dropped
    frames.offer(8, "its newest")
    jobs.remove(7)
    qtbot.waitUntil(lambda: len(drawn) == 3, timeout=2000)
    assert drawn[-1] == (8, "its newest")


def test_thumbnail_loader_delivers_caches_and_marks_broken_files(qtbot, tmp_path):
    good = tmp_path / "good.png"
    Image.new("RGB", (300, 150), "red").save(good)
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not a png")
    threads = []

    def make(path, size):
        threads.append(threading.current_thread())
        from studio.workers.thumbnails import _pillow_thumbnail

        return _pillow_thumbnail(path, size)

    loader = ThumbnailLoader(make=make, cache_bytes=10 * 2**20)
    try:
        assert loader.get(good, 64) is None
        with qtbot.waitSignal(loader.thumbnailReady, timeout=5000) as sig:
            pass
        path, size, image = sig.args
        assert (path, size) == (str(good), 64)
        assert image.size().toTuple() == (64, 32)
        assert threads and threads[0] is not threading.main_thread()
        assert loader.get(good, 64).size().toTuple() == (64, 32)
        with qtbot.waitSignal(loader.thumbnailReady, timeout=5000) as sig:
            loader.request(broken, 64)
        assert sig.args[2].isNull()
        assert loader.cached(broken, 64).isNull()  # not retried on every paint
        calls = len(threads)
        loader.request(broken, 64)
        assert len(threads) == calls
    finally:
        assert loader.shutdown()


def test_thumbnail_cache_is_bounded(qtbot, tmp_path):
    loader = ThumbnailLoader(make=lambda p, s: Image.new("RGB", (s, s)),
                             cache_bytes=3 * 100 * 100 * 3)  # three RGB888 thumbnails
    try:
        for i in range(6):
            with qtbot.waitSignal(loader.thumbnailReady, timeout=5000):
                loader.request(tmp_path / f"{i}.png", 100)
        kept = [i for i in range(6) if loader.cached(tmp_path / f"{i}.png", 100) is not None]
        assert kept == [3, 4, 5]  # least recently used went first
    finally:
        loader.shutdown()


def test_save_copy_and_delete_and_clipboard(qtbot, tmp_path, monkeypatch):
    src = tmp_path / "a.png"
    Image.new("RGB", (10, 10), "blue").save(src)
    same = image_actions.save_copy(src, tmp_path / "out" / "b.png")
    assert same.read_bytes() == src.read_bytes()
    jpg = image_actions.save_copy(src, tmp_path / "c.jpg")
    with Image.open(jpg) as im:
        assert im.format == "JPEG"
    assert image_actions.copy_image(src)
    assert QGuiApplication.clipboard().mimeData().hasImage()
    mime = image_actions.image_mime_data([src])
    assert [Path(u.toLocalFile()) for u in mime.urls()] == [src] and mime.hasImage()
    monkeypatch.setattr(image_actions, "confirm_delete", lambda parent, path: False)
    assert not image_actions.delete_image(None, src) and src.exists()
    monkeypatch.setattr(image_actions, "confirm_delete", lambda parent, path: True)
    assert image_actions.delete_image(None, src) and not src.exists()


def test_a_retired_widget_is_deleted_on_the_gui_thread_even_in_a_reference_cycle(qtbot):
    """A lesson view caught in a cycle (a lambda that calls back into it) used to be freed by
    whichever thread's garbage collection found it first — a training thread deleting a QWidget,
    which crashed the next style sheet change. retire() keeps it until Qt deletes it here."""
    import gc
    import threading

    from PySide6.QtWidgets import QApplication, QLabel, QVBoxLayout, QWidget

    from studio.ui.widgets.retire import _retiring, retire

    holder = QWidget()
    qtbot.addWidget(holder)
    layout = QVBoxLayout(holder)
    view = QLabel("a lesson view")
    view.callback = view.text  # the cycle: view → its bound method → view
    layout.addWidget(view)
    destroyed_on: list[str] = []
    view.destroyed.connect(lambda *_: destroyed_on.append(threading.current_thread().name))
    retire(view)
    del view
    collector = threading.Thread(target=gc.collect, name="collector")
    collector.start()
    collector.join()  # a collection on another thread finds the cycle: it must not free it
    assert len(_retiring) == 1 and destroyed_on == []
    qtbot.waitUntil(lambda: not _retiring, timeout=5000)  # deleteLater, on the GUI thread
    QApplication.processEvents()
    assert destroyed_on == [threading.main_thread().name]
