"""The gallery with 10,000 images: every file is read off the GUI thread while it fills and scrolls.

That is the behaviour that keeps the window answering, and it is what is asserted: each scan,
index query, metadata read and thumbnail runs on a worker thread, the listing arrives whole, and
scrolling to the end brings the last thumbnails. How long the GUI thread is busy meanwhile (model
reset, scroll steps, the longest gap of a 2 ms heartbeat) is measured by ``bench/gallery.py``.
"""

from __future__ import annotations

import io
import os
import threading
import time

import pytest
from PIL import Image
from PIL.PngImagePlugin import PngInfo
from PySide6.QtWidgets import QApplication

from studio.core.config import Settings, default_paths
from studio.ui.panels.gallery import GalleryPanel
from studio.ui.panels.gallery.model import PathRole
from tests.gui_fixtures import app_context

pytestmark = [pytest.mark.gui, pytest.mark.slow]

N_IMAGES = 10_000


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


@pytest.fixture
def file_work_threads(monkeypatch):
    """Records which thread runs each piece of file work the gallery does."""
    import studio.media.gallery as gallery

    seen: dict[str, list[bool]] = {}

    def spy(owner, name):
        real = getattr(owner, name)

        def record(*args, **kwargs):
            seen.setdefault(name, []).append(threading.current_thread() is threading.main_thread())
            return real(*args, **kwargs)

        monkeypatch.setattr(owner, name, record)

    for name in ("_scan", "_describe", "make_thumbnail"):
        spy(gallery, name)
    for name in ("refresh", "list"):
        spy(gallery.GalleryIndex, name)
    return seen


def test_ten_thousand_images_are_read_off_the_gui_thread(qtbot, many_images, file_work_threads):
    ctx = app_context(Settings())
    panel = GalleryPanel(ctx)
    qtbot.addWidget(panel)
    panel.resize(1280, 800)
    try:
        with qtbot.waitSignal(panel.itemsLoaded, timeout=300_000) as sig:
            panel.show()
        assert sig.args[0] == N_IMAGES == panel.model.rowCount()

        # Scroll through the whole grid in 60 jumps, painting each, as a person flicking through.
        bar = panel.view.verticalScrollBar()
        assert bar.maximum() > 0
        for k in range(61):
            bar.setValue(bar.maximum() * k // 60)
            panel.view.viewport().repaint()
            QApplication.processEvents()
        # Thumbnails of the rows on screen at the end arrive.
        last = panel.view.indexAt(panel.view.viewport().rect().center())
        assert last.isValid() and last.row() > N_IMAGES - 200
        qtbot.waitUntil(lambda: panel.loader.cached(last.data(PathRole), panel._thumb_px)
                        is not None, timeout=300_000)
    finally:
        panel.shutdown()
        ctx.bridge.shutdown()

    seen = file_work_threads
    assert len(seen.get("_describe", [])) == N_IMAGES  # each file's text read once…
    assert seen.get("_scan") and seen.get("refresh") and seen.get("list")
    assert seen.get("make_thumbnail")
    on_gui = {name: sum(calls) for name, calls in seen.items() if any(calls)}
    assert on_gui == {}, f"file work on the GUI thread: {on_gui}"  # …and none on the GUI thread
