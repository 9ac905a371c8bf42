"""Thumbnails decoded off the GUI thread, delivered as QImage, kept in a small LRU.

Views ask for a thumbnail while painting a row (:meth:`ThumbnailLoader.get` returns the cached
image or ``None`` and queues a load). Loads run on the CPU pool (at most ``threads`` at once),
newest request first, so the rows on screen now load before the rows the user scrolled past; requests beyond
``max_pending`` are dropped oldest first (they are re-requested if those rows are painted again).
Workers produce ``QImage`` (never ``QPixmap``, which only the GUI thread may create, DESIGN rule 2).
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from PySide6.QtCore import QCoreApplication, QObject, QRunnable, Signal, Slot
from PySide6.QtGui import QImage

from studio.workers.lanes import cpu_pool

if TYPE_CHECKING:
    from PIL import Image

log = logging.getLogger(__name__)

Key = tuple[str, int]  # (path, size)


def _pillow_thumbnail(path: str | Path, size: int = 256) -> Image.Image:
    """Decode ``path`` reduced to fit ``size``×``size``; JPEGs decode at reduced scale (draft)."""
    from PIL import Image

    with Image.open(path) as im:
        im.draft("RGB", (size, size))  # JPEG: let the decoder skip detail we would throw away
        im.thumbnail((size, size), Image.Resampling.LANCZOS)
        return im.convert("RGBA" if im.mode in ("RGBA", "LA", "P") else "RGB")


def default_thumbnail_function() -> Callable[[str | Path, int], Image.Image]:
    """``studio.media.gallery.make_thumbnail`` when the gallery module provides it, else Pillow."""
    try:
        from studio.media.gallery import make_thumbnail
    except ImportError:
        return _pillow_thumbnail
    return make_thumbnail


def pil_to_qimage(image: Image.Image) -> QImage:
    """Convert a PIL image to a QImage that owns its pixels (safe after ``image`` is gone)."""
    if image.mode not in ("RGB", "RGBA"):
        image = image.convert("RGBA" if "A" in image.getbands() else "RGB")
    fmt = QImage.Format.Format_RGBA8888 if image.mode == "RGBA" else QImage.Format.Format_RGB888
    data = image.tobytes()
    bpl = image.width * (4 if image.mode == "RGBA" else 3)
    # QImage borrows ``data``; copy() makes it own a buffer of its own before ``data`` is freed.
    return QImage(data, image.width, image.height, bpl, fmt).copy()


class _Load(QRunnable):
    def __init__(self, loader: ThumbnailLoader, key: Key,
                 make: Callable[[str | Path, int], Image.Image]) -> None:
        super().__init__()
        self._loader = loader
        self._key = key
        self._make = make

    def run(self) -> None:  # pool thread
        path, size = self._key
        image = QImage()
        try:
            image = pil_to_qimage(self._make(path, size))
        except Exception as exc:  # noqa: BLE001 - a broken file gets a "broken" tile, not a crash
            log.debug("thumbnail of %s failed: %s", path, exc)
        try:
            self._loader._delivered.emit(self._key, image)
        except RuntimeError:  # the loader was destroyed while we worked
            pass


class ThumbnailLoader(QObject):
    """Loads thumbnails on a private pool and emits ``thumbnailReady(path, size, QImage)``.

    A load that fails yields a null QImage (``image.isNull()``); views paint a "broken" tile.
    """

    thumbnailReady = Signal(str, int, QImage)
    _delivered = Signal(object, QImage)  # worker → GUI thread (queued)

    def __init__(self, parent: QObject | None = None, *, threads: int = 2,
                 cache_bytes: int = 96 * 2**20, max_pending: int = 400,
                 make: Callable[[str | Path, int], Image.Image] | None = None) -> None:
        super().__init__(parent)
        self._pool = cpu_pool()  # the CPU lane: decoding computes
        self._make = make or default_thumbnail_function()
        self._cache: OrderedDict[Key, QImage] = OrderedDict()
        self._cache_bytes = 0
        self._cache_limit = cache_bytes
        self._pending: OrderedDict[Key, None] = OrderedDict()  # waiting, newest last
        self._running: set[Key] = set()
        self._broken: set[Key] = set()  # failed loads: not retried until forget()
        self._max_pending = max_pending
        self._threads = max(1, threads)
        self._closed = False
        self._delivered.connect(self._on_delivered)

    # -- GUI thread API ----------------------------------------------------------------------
    def cached(self, path: str | Path, size: int) -> QImage | None:
        key = (str(path), int(size))
        image = self._cache.get(key)
        if image is not None:
            self._cache.move_to_end(key)
        elif key in self._broken:
            return QImage()  # null: the caller paints a "cannot read" tile
        return image

    def get(self, path: str | Path, size: int) -> QImage | None:
        """The cached thumbnail, or ``None`` after queueing a load (``thumbnailReady`` follows)."""
        image = self.cached(path, size)
        if image is None:
            self.request(path, size)
        return image

    def request(self, path: str | Path, size: int) -> None:
        key = (str(path), int(size))
        if self._closed or key in self._cache or key in self._running or key in self._broken:
            return
        self._pending[key] = None
        self._pending.move_to_end(key)  # asked again: it is on screen now, load it first
        while len(self._pending) > self._max_pending:
            self._pending.popitem(last=False)
        self._pump()

    def forget(self, path: str | Path) -> None:
        """Drop every cached size of ``path`` (the file changed or was deleted)."""
        for key in [k for k in self._cache if k[0] == str(path)]:
            self._cache_bytes -= self._cache.pop(key).sizeInBytes()
        for key in [k for k in self._pending if k[0] == str(path)]:
            del self._pending[key]
        self._broken = {k for k in self._broken if k[0] != str(path)}

    def clear_pending(self) -> None:
        """Forget queued loads (e.g. the list was replaced); loads already running finish."""
        self._pending.clear()

    @property
    def busy(self) -> bool:
        return bool(self._pending or self._running)

    def shutdown(self, timeout_ms: int = 5000) -> bool:
        """Stop taking requests and wait for running loads; True if all finished in time."""
        self._closed = True
        self._pending.clear()
        deadline = time.monotonic() + timeout_ms / 1000
        while self._running and time.monotonic() < deadline:
            # A load hands its image over through a queued signal: let it arrive.
            QCoreApplication.processEvents()
            time.sleep(0.005)
        return not self._running

    # -- internals ---------------------------------------------------------------------------
    def _pump(self) -> None:
        while self._pending and len(self._running) < self._threads:
            key, _ = self._pending.popitem(last=True)  # newest first
            self._running.add(key)
            self._pool.start(_Load(self, key, self._make))

    @Slot(object, QImage)
    def _on_delivered(self, key: Key, image: QImage) -> None:
        self._running.discard(key)
        if not self._closed:
            if image.isNull():
                self._broken.add(key)
            else:
                self._store(key, image)
            self.thumbnailReady.emit(key[0], key[1], image)
            self._pump()

    def _store(self, key: Key, image: QImage) -> None:
        self._cache[key] = image
        self._cache_bytes += image.sizeInBytes()
        while self._cache_bytes > self._cache_limit and len(self._cache) > 1:
            _, old = self._cache.popitem(last=False)
            self._cache_bytes -= old.sizeInBytes()
