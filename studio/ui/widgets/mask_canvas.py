"""Painting a mask over an image — brush, eraser, clear, invert, undo and redo — and the tool
row for it (:class:`BrushTools`). Transform paints inpainting masks with it; Generate draws
ControlNet scribbles.

The mask is a grayscale image the size of the picture (white = repaint), drawn over it as a
translucent tint. Left-drag paints (or erases), the wheel zooms, a middle- or right-drag pans; the
brush outline follows the cursor at its real size on the image. Every stroke, clear, invert or
loaded mask can be undone and redone (:meth:`MaskCanvas.undo`, :meth:`MaskCanvas.redo`); the
history holds whole masks, at most :data:`HISTORY_BYTES` of them.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PySide6.QtCore import QPoint, QPointF, QRectF, Qt, Signal
from PySide6.QtGui import (
    QColor,
    QImage,
    QMouseEvent,
    QPainter,
    QPen,
    QPixmap,
)
from PySide6.QtWidgets import (
    QGraphicsView,
    QHBoxLayout,
    QLabel,
    QSlider,
    QToolButton,
    QWidget,
)

from studio.core.files import atomic_write
from studio.ui.widgets.basics import muted_label
from studio.ui.widgets.image_view import ImageView

TINT = QColor(255, 64, 96)
TINT_ALPHA = 120  # of 255: the picture stays visible under the mask
HISTORY_BYTES = 96 << 20  # undo steps kept: ~24 masks of 2048×2048, hundreds of small ones
MIN_BRUSH, MAX_BRUSH = 2, 400


def brush_step(size: int, bigger: bool) -> int:
    """The next brush size for ``]`` (``bigger``) or ``[``: about 15 % a press, at least 1 px,
    so small brushes change finely and large ones quickly (as in image editors)."""
    step = max(1, round(size * 0.15))
    return max(MIN_BRUSH, min(MAX_BRUSH, size + step if bigger else size - step))


class MaskCanvas(ImageView):
    """Shows an image and lets the user paint a mask on it."""

    maskChanged = Signal()
    historyChanged = Signal()  # what undo / redo can do changed

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent, placeholder="Open an image to paint a mask on it")
        self.setDragMode(QGraphicsView.DragMode.NoDrag)
        self.setMouseTracking(True)
        self._mask = QImage()
        self._tint = QPixmap()
        self.tint = QColor(TINT.red(), TINT.green(), TINT.blue(), TINT_ALPHA)  # the mask's look
        self.brush_size = 40  # image pixels
        self.erasing = False
        self._last: QPointF | None = None
        self._pan_from: QPoint | None = None
        self._cursor: QPointF | None = None
        self._undo: list[QImage] = []
        self._redo: list[QImage] = []
        self.viewport().setCursor(Qt.CursorShape.CrossCursor)

    # -- public API --------------------------------------------------------------------------
    def set_picture(self, image: QImage) -> None:
        """Show ``image`` with an empty mask of its size."""
        self.set_image(image)
        self._mask = QImage(image.size(), QImage.Format.Format_Grayscale8)
        self._mask.fill(0)
        self._undo.clear()
        self._redo.clear()
        self._refresh_tint()
        self.historyChanged.emit()

    def set_backdrop(self, image: QImage) -> None:
        """Show ``image`` (the picture's size) under the mask instead of the picture, keeping
        the mask, its history and the view."""
        self.set_image(image, keep_view=True)

    def mask(self) -> QImage:
        return self._mask

    def set_brush_size(self, size: int) -> None:
        """The brush diameter in image pixels; the outline under the cursor follows at once."""
        self.brush_size = int(size)
        self.viewport().update()

    def has_mask(self) -> bool:
        return not self._mask.isNull() and self.coverage() > 0

    def coverage(self) -> float:
        """The share of the picture that is masked (0..1)."""
        if self._mask.isNull():
            return 0.0
        return float((mask_array(self._mask) >= 128).mean())

    def clear_mask(self) -> None:
        if not self._mask.isNull() and self.has_mask():
            self.begin_edit()
            self._mask.fill(0)
            self._changed()

    def invert_mask(self) -> None:
        if not self._mask.isNull():
            self.begin_edit()
            self._mask.invertPixels()
            self._changed()

    # -- history -----------------------------------------------------------------------------
    def begin_edit(self) -> None:
        """Remember the mask as it is now, before a stroke or another change, for :meth:`undo`."""
        if self._mask.isNull():
            return
        self._undo.append(self._mask.copy())
        self._redo.clear()
        # Forget the oldest steps past the budget (always keep the one just taken).
        while len(self._undo) > 1 and \
                sum(m.sizeInBytes() for m in self._undo) > HISTORY_BYTES:
            self._undo.pop(0)
        self.historyChanged.emit()

    def can_undo(self) -> bool:
        return bool(self._undo)

    def can_redo(self) -> bool:
        return bool(self._redo)

    def undo(self) -> bool:
        """Go back one stroke (or clear, invert, loaded mask); False when there is none."""
        return self._step(self._undo, self._redo)

    def redo(self) -> bool:
        """Do again what :meth:`undo` took back; False when there is nothing to redo."""
        return self._step(self._redo, self._undo)

    def _step(self, back: list[QImage], forth: list[QImage]) -> bool:
        """Put the mask of ``back``'s top in force and keep today's on ``forth`` (undo and redo
        are each other's mirror); False when ``back`` is empty or a stroke is under way."""
        if not back or self._last is not None:  # never in the middle of a stroke
            return False
        forth.append(self._mask)
        self._mask = back.pop()
        self._changed()
        self.historyChanged.emit()
        return True

    def set_mask(self, mask: QImage) -> None:
        """Replace the mask (scaled to the picture)."""
        if self._mask.isNull():
            return
        scaled = mask.convertToFormat(QImage.Format.Format_Grayscale8).scaled(
            self._mask.size(), Qt.AspectRatioMode.IgnoreAspectRatio)
        self.begin_edit()
        self._mask = scaled
        self._changed()

    def save_mask(self, path: Path) -> Path:
        """Write the mask as a PNG (atomically); returns ``path``."""
        from PySide6.QtCore import QBuffer, QByteArray, QIODevice

        data = QByteArray()
        buf = QBuffer(data)
        buf.open(QIODevice.OpenModeFlag.WriteOnly)
        self._mask.save(buf, "PNG")
        buf.close()
        raw = bytes(data.data())
        atomic_write(Path(path), lambda fh: fh.write(raw))
        return Path(path)

    def paint_line(self, a: QPointF, b: QPointF) -> None:
        """Paint (or erase) a stroke between two image points."""
        if self._mask.isNull():
            return
        painter = QPainter(self._mask)
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        value = 0 if self.erasing else 255
        pen = QPen(QColor(value, value, value), self.brush_size, Qt.PenStyle.SolidLine,
                   Qt.PenCapStyle.RoundCap, Qt.PenJoinStyle.RoundJoin)
        painter.setPen(pen)
        if a == b:
            painter.setBrush(QColor(value, value, value))
            painter.setPen(Qt.PenStyle.NoPen)
            r = self.brush_size / 2
            painter.drawEllipse(a, r, r)
        else:
            painter.drawLine(a, b)
        painter.end()
        self._changed()

    # -- internals ---------------------------------------------------------------------------
    def _changed(self) -> None:
        self._refresh_tint()
        self.maskChanged.emit()

    def _refresh_tint(self) -> None:
        if self._mask.isNull():
            self._tint = QPixmap()
        else:
            tint = QImage(self._mask.size(), QImage.Format.Format_ARGB32_Premultiplied)
            tint.fill(self.tint)
            painter = QPainter(tint)
            painter.setCompositionMode(QPainter.CompositionMode.CompositionMode_DestinationIn)
            painter.drawImage(0, 0, _alpha_image(self._mask))
            painter.end()
            self._tint = QPixmap.fromImage(tint)
        self.viewport().update()

    def drawForeground(self, painter: QPainter, rect: QRectF) -> None:  # noqa: N802 - Qt
        super().drawForeground(painter, rect)
        if not self._tint.isNull():
            painter.drawPixmap(0, 0, self._tint)
        if self._cursor is not None and self.has_image():
            painter.save()
            painter.setRenderHint(QPainter.RenderHint.Antialiasing)
            r = self.brush_size / 2
            width = 1.5 / max(self.zoom, 1e-3)
            painter.setPen(QPen(QColor(0, 0, 0, 160), width * 2))
            painter.setBrush(Qt.BrushStyle.NoBrush)
            painter.drawEllipse(self._cursor, r, r)
            painter.setPen(QPen(QColor(255, 255, 255, 230), width))
            painter.drawEllipse(self._cursor, r, r)
            painter.restore()

    def _scene_point(self, event: QMouseEvent) -> QPointF:
        return self.mapToScene(event.position().toPoint())

    def mousePressEvent(self, event: QMouseEvent) -> None:  # noqa: N802 - Qt
        if event.button() == Qt.MouseButton.LeftButton and self.has_image():
            p = self._scene_point(event)
            self.begin_edit()  # one undo step per stroke, however long
            self._last = p
            self.paint_line(p, p)
            event.accept()
            return
        if event.button() in (Qt.MouseButton.MiddleButton, Qt.MouseButton.RightButton):
            self._pan_from = event.position().toPoint()
            self.viewport().setCursor(Qt.CursorShape.ClosedHandCursor)
            event.accept()
            return
        super().mousePressEvent(event)

    def mouseMoveEvent(self, event: QMouseEvent) -> None:  # noqa: N802 - Qt
        p = self._scene_point(event)
        self._cursor = p
        if self._last is not None:
            self.paint_line(self._last, p)
            self._last = p
        elif self._pan_from is not None:
            now = event.position().toPoint()
            delta = now - self._pan_from
            self._pan_from = now
            self.horizontalScrollBar().setValue(self.horizontalScrollBar().value() - delta.x())
            self.verticalScrollBar().setValue(self.verticalScrollBar().value() - delta.y())
        self.viewport().update()
        event.accept()

    def mouseReleaseEvent(self, event: QMouseEvent) -> None:  # noqa: N802 - Qt
        self._last = None
        if self._pan_from is not None:
            self._pan_from = None
            self.viewport().setCursor(Qt.CursorShape.CrossCursor)
        event.accept()

    def mouseDoubleClickEvent(self, event: QMouseEvent) -> None:  # noqa: N802 - Qt
        event.accept()  # a double click paints twice; it must not also toggle the zoom

    def leaveEvent(self, event) -> None:  # noqa: N802 - Qt
        self._cursor = None
        self.viewport().update()
        super().leaveEvent(event)


class BrushTools(QWidget):
    """Brush size, brush/eraser, undo/redo, invert and clear for the mask canvas, and a way back
    to the last inpainting result."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.size = QSlider(Qt.Orientation.Horizontal)
        self.size.setRange(MIN_BRUSH, MAX_BRUSH)
        self.size.setValue(40)
        self.size_label = QLabel("40 px")
        self.size_label.setMinimumWidth(48)
        self.size.valueChanged.connect(lambda v: self.size_label.setText(f"{v} px"))
        self.brush = QToolButton(text="Brush")
        self.eraser = QToolButton(text="Eraser")
        for b in (self.brush, self.eraser):
            b.setCheckable(True)
            b.setAutoExclusive(True)
        self.brush.setChecked(True)
        self.size.setToolTip("Brush size in image pixels ([ smaller, ] larger)")
        self.undo = QToolButton(text="↶")
        self.undo.setToolTip("Undo the last stroke (Ctrl+Z)")
        self.redo = QToolButton(text="↷")
        self.redo.setToolTip("Redo (Ctrl+Shift+Z or Ctrl+Y)")
        self.undo.setEnabled(False)
        self.redo.setEnabled(False)
        self.invert = QToolButton(text="Invert")
        self.clear = QToolButton(text="Clear")
        self.show_result = QToolButton(text="Show result")
        self.show_result.setToolTip("Back to the last inpainting result")
        self.show_result.hide()
        self.coverage = muted_label("Paint over what should change", wrap=True)
        row = QHBoxLayout(self)
        row.setContentsMargins(0, 0, 0, 0)
        row.setSpacing(6)
        for w in (self.brush, self.eraser):
            row.addWidget(w)
        row.addSpacing(8)
        row.addWidget(QLabel("Size"))
        row.addWidget(self.size, 1)
        row.addWidget(self.size_label)
        row.addSpacing(8)
        row.addWidget(self.undo)
        row.addWidget(self.redo)
        row.addWidget(self.invert)
        row.addWidget(self.clear)
        row.addSpacing(8)
        row.addWidget(self.coverage, 1)
        row.addWidget(self.show_result)

    def connect_canvas(self, canvas: MaskCanvas) -> None:
        """Size, brush/eraser, invert and clear act on ``canvas``; undo and redo are on while it
        has something to undo or redo (what they call is the caller's: Transform first shows
        the mask)."""
        self.size.valueChanged.connect(canvas.set_brush_size)
        self.eraser.toggled.connect(lambda on: setattr(canvas, "erasing", on))
        self.invert.clicked.connect(canvas.invert_mask)
        self.clear.clicked.connect(canvas.clear_mask)

        def history() -> None:
            self.undo.setEnabled(canvas.can_undo())
            self.redo.setEnabled(canvas.can_redo())

        canvas.historyChanged.connect(history)


def _alpha_image(mask: QImage) -> QImage:
    """The grayscale mask as an alpha-only image (for DestinationIn compositing): the same bytes,
    read as alpha."""
    arr = mask_array(mask)
    return QImage(arr.tobytes(), arr.shape[1], arr.shape[0], arr.shape[1],
                  QImage.Format.Format_Alpha8).copy()


def mask_array(mask: QImage) -> np.ndarray:
    """A Grayscale8 QImage as an h×w uint8 array (a copy)."""
    h, w, bpl = mask.height(), mask.width(), mask.bytesPerLine()
    raw = np.frombuffer(bytes(mask.constBits())[: bpl * h], dtype=np.uint8)
    return raw.reshape(h, bpl)[:, :w].copy()


def composite_preview(before: QImage, frame: QImage, mask: QImage) -> QImage:
    """An inpainting preview as the result will look: ``frame`` (the denoising preview) inside
    the mask, the original picture ``before`` outside it. ``frame`` and ``mask`` are scaled to
    ``before``'s size; grey levels of the mask blend the two (a feathered edge)."""
    size = before.size()
    inside = frame.scaled(size, Qt.AspectRatioMode.IgnoreAspectRatio,
                          Qt.TransformationMode.SmoothTransformation)
    inside = inside.convertToFormat(QImage.Format.Format_ARGB32_Premultiplied)
    alpha = mask.convertToFormat(QImage.Format.Format_Grayscale8)
    if alpha.size() != size:
        alpha = alpha.scaled(size, Qt.AspectRatioMode.IgnoreAspectRatio,
                             Qt.TransformationMode.SmoothTransformation)
    painter = QPainter(inside)
    painter.setCompositionMode(QPainter.CompositionMode.CompositionMode_DestinationIn)
    painter.drawImage(0, 0, _alpha_image(alpha))
    painter.end()
    out = before.convertToFormat(QImage.Format.Format_ARGB32_Premultiplied)
    painter = QPainter(out)
    painter.drawImage(0, 0, inside)
    painter.end()
    return out
