"""The gallery with 10,000 images: the GUI thread never blocks long while it fills and scrolls.

Measured, then asserted with headroom for a busy test machine; the numbers are printed
(``pytest -s``) so they can be reported.
"""

from __future__ import annotations

import io
import os
import statistics
import time

import pytest
from PIL import Image
from PIL.PngImagePlugin import PngInfo
from PySide6.QtCore import QTimer
from PySide6.QtWidgets import QApplication

from studio.config import Settings, default_paths
from studio.jobs import JobRunner
from studio.ui.context import AppContext
from studio.ui.panels.gallery import GalleryPanel
from studio.ui.panels.gallery.model import PathRole
from studio.workers.job_bridge import JobBridge

pytestmark = [pytest.mark.gui, pytest.mark.slow]

N_IMAGES = 10_000
BUDGET_MS = 50  # what a person notices as a stutter
# A shared 2-core CI machine stalls any process now and then (287 ms seen with other test runs
# beside it); scanning 10,000 files on the GUI thread would cost well over this.
WORST_CASE_MS = 600


def tiny_png(prompt: str, colour: tuple[int, int, int]) -> bytes:
    info = PngInfo()
    info.add_text("parameters", f"{prompt}\nSteps: 20, Sampler: Euler a, CFG scale: 7, "
                                "Seed: 1, Size: 8x8, Model: tiny")
    buf = io.BytesIO()
    Image.new("RGB", (8, 8), colour).save(buf, format="PNG", pnginfo=info)
    return buf.getvalue()


@pytest.fixture
def many_images(studio_home):
    outputs = default_paths().outputs_dir / "2026-01-01"
    outputs.mkdir(parents=True)
    variants = [tiny_png(f"prompt number {k} of a tiny test image", (k * 40, 90, 200))
                for k in range(5)]
    now = time.time()
    for i in range(N_IMAGES):
        path = outputs / f"{i:05d}-{i}.png"
        path.write_bytes(variants[i % 5])
        os.utime(path, (now - N_IMAGES + i, now - N_IMAGES + i))
    return outputs


class Heartbeat:
    """Ticks every 2 ms on the GUI thread; the longest gap is the longest the thread was busy."""

    def __init__(self) -> None:
        self.gaps: list[float] = []
        self._last = time.perf_counter()
        self.timer = QTimer(interval=2)
        self.timer.timeout.connect(self._tick)

    def _tick(self) -> None:
        now = time.perf_counter()
        self.gaps.append((now - self._last) * 1000)
        self._last = now

    def start(self) -> None:
        self._last = time.perf_counter()
        self.timer.start()

    def stop(self) -> list[float]:
        self.timer.stop()
        return self.gaps


def test_ten_thousand_images_fill_and_scroll_without_blocking(qtbot, many_images):
    runner = JobRunner({})
    ctx = AppContext(Settings(), JobBridge(runner), default_paths())
    panel = GalleryPanel(ctx)
    qtbot.addWidget(panel)
    panel.resize(1280, 800)
    beat = Heartbeat()
    try:
        beat.start()
        started = time.perf_counter()
        with qtbot.waitSignal(panel.itemsLoaded, timeout=120_000) as sig:
            panel.show()
        loaded_s = time.perf_counter() - started
        assert sig.args[0] == N_IMAGES
        fill_gaps = list(beat.stop())

        # The model reset on the GUI thread (what the panel does when a listing arrives).
        items = panel.model.items()
        t0 = time.perf_counter()
        panel.model.set_items(items)
        QApplication.processEvents()
        reset_ms = (time.perf_counter() - t0) * 1000

        # Scroll through the whole grid in 60 jumps, letting thumbnails stream in between.
        bar = panel.view.verticalScrollBar()
        assert bar.maximum() > 0
        step_ms = []
        beat = Heartbeat()
        beat.start()
        for k in range(61):
            t0 = time.perf_counter()
            bar.setValue(bar.maximum() * k // 60)
            panel.view.viewport().repaint()  # paint now, as the screen would
            step_ms.append((time.perf_counter() - t0) * 1000)
            qtbot.wait(15)
        scroll_gaps = beat.stop()
        # Thumbnails of the rows on screen at the end arrive.
        last = panel.view.indexAt(panel.view.viewport().rect().center())
        assert last.isValid()
        qtbot.waitUntil(lambda: panel.loader.cached(last.data(PathRole), panel._thumb_px)
                        is not None, timeout=20_000)
    finally:
        panel.shutdown()
        runner.shutdown()

    report = {
        "listing (off-thread) s": round(loaded_s, 2),
        "GUI gaps while indexing: max ms": round(max(fill_gaps, default=0), 1),
        "model reset + layout ms": round(reset_ms, 1),
        "scroll step: median ms": round(statistics.median(step_ms), 1),
        "scroll step: max ms": round(max(step_ms), 1),
        "GUI gaps while scrolling: max ms": round(max(scroll_gaps, default=0), 1),
    }
    print("\n10,000-image gallery:", report)
    assert statistics.median(step_ms) < BUDGET_MS
    assert reset_ms < WORST_CASE_MS
    assert max(step_ms) < WORST_CASE_MS
    assert max(fill_gaps, default=0) < WORST_CASE_MS
