"""Before/after compare: a draggable split line over one view, or two views side by side.

:class:`SplitView` shows the *after* image and paints the *before* image over the part left of the
split line; dragging the line (or its round handle) moves it, dragging elsewhere pans, the wheel
zooms. :class:`CompareView` switches between that and two :class:`ImageView`\\ s side by side whose
zoom and pan follow each other, so the same detail is always under the eye in both. A right-click
on either asks for the shown result's menu (:attr:`CompareView.contextMenuRequested`).
"""

from __future__ import annotations

from PySide6.QtCore import QEvent, QObject, QPoint, QPointF, QRectF, Qt, Signal
from PySide6.QtGui import QColor, QContextMenuEvent, QImage, QMouseEvent, QPainter, QPen, QPixmap
from PySide6.QtWidgets import QHBoxLayout, QLabel, QStackedWidget, QVBoxLayout, QWidget

from studio.ui.widgets.image_view import ImageView

GRAB_PX = 10  # how close (in screen pixels) to the line a press grabs it


class SplitView(ImageView):
    """After image with the before image over the left part; ``split`` is 0..1 of the width."""

    splitChanged = Signal(float)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent, placeholder="")
        self._before = QPixmap()
        self._split = 0.5
        self._dragging = False
        self.setMouseTracking(True)

    @property
    def split(self) -> float:
        return self._split

    def set_split(self, value: float) -> None:
        value = max(0.0, min(1.0, float(value)))
        if value != self._split:
            self._split = value
            self.viewport().update()
            self.splitChanged.emit(value)

    def set_pair(self, before: QImage | None, after: QImage | None, keep_view: bool = False) -> None:
        """Show ``after`` (or ``before`` alone when there is no after yet)."""
        shown = after if after is not None and not after.isNull() else before
        self._before = QPixmap.fromImage(before) if before is not None and after is not None \
            and not after.isNull() and not before.isNull() else QPixmap()
        self.set_image(shown, keep_view=keep_view)
        self.viewport().update()

    def has_pair(self) -> bool:
        return not self._before.isNull()

    def split_x_in_view(self) -> float:
        """Where the line is, in viewport pixels."""
        w, _h = self.image_size()
        return float(self.mapFromScene(QPointF(w * self._split, 0)).x())

    # -- painting ----------------------------------------------------------------------------
    def drawForeground(self, painter: QPainter, rect: QRectF) -> None:  # noqa: N802 - Qt
        super().drawForeground(painter, rect)
        if not self.has_pair():
            return
        w, h = self.image_size()
        split_x = w * self._split
        # Before is drawn into the after image's rectangle (sizes may differ by a few pixels
        # when img2img rounded to multiples of 8).
        target = QRectF(0, 0, split_x, h)
        source = QRectF(0, 0, self._before.width() * self._split, self._before.height())
        painter.save()
        painter.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform)
        painter.drawPixmap(target, self._before, source)
        painter.restore()
        # The line and its handle in screen pixels, whatever the zoom.
        painter.save()
        painter.resetTransform()
        x = self.split_x_in_view()
        top = self.mapFromScene(QPointF(0, 0)).y()
        bottom = self.mapFromScene(QPointF(0, h)).y()
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        painter.setPen(QPen(QColor(0, 0, 0, 90), 3))
        painter.drawLine(QPointF(x, top), QPointF(x, bottom))
        painter.setPen(QPen(QColor(255, 255, 255, 230), 1.5))
        painter.drawLine(QPointF(x, top), QPointF(x, bottom))
        mid = QPointF(x, (max(top, 0) + min(bottom, self.viewport().height())) / 2)
        painter.setBrush(QColor(255, 255, 255, 235))
        painter.setPen(QPen(QColor(0, 0, 0, 80), 1))
        painter.drawEllipse(mid, 11, 11)
        painter.setPen(QPen(QColor(40, 40, 48), 1.6))
        for d in (-1, 1):
            painter.drawLine(QPointF(x + d * 3, mid.y() - 4), QPointF(x + d * 6, mid.y()))
            painter.drawLine(QPointF(x + d * 6, mid.y()), QPointF(x + d * 3, mid.y() + 4))
        painter.setPen(QColor(255, 255, 255, 220))
        font = painter.font()
        font.setPointSizeF(max(8.0, font.pointSizeF() * 0.9))
        painter.setFont(font)
        if x > 70:
            painter.drawText(QRectF(x - 70, max(top, 0) + 8, 62, 20),
                             Qt.AlignmentFlag.AlignRight, "Before")
        if x < self.viewport().width() - 70:
            painter.drawText(QRectF(x + 8, max(top, 0) + 8, 62, 20),
                             Qt.AlignmentFlag.AlignLeft, "After")
        painter.restore()

    # -- dragging the line -------------------------------------------------------------------
    def _near_line(self, pos: QPointF) -> bool:
        return self.has_pair() and abs(pos.x() - self.split_x_in_view()) <= GRAB_PX

    def mousePressEvent(self, event: QMouseEvent) -> None:  # noqa: N802 - Qt
        if event.button() == Qt.MouseButton.LeftButton and self._near_line(event.position()):
            self._dragging = True
            event.accept()
            return
        super().mousePressEvent(event)

    def mouseMoveEvent(self, event: QMouseEvent) -> None:  # noqa: N802 - Qt
        if self._dragging:
            w, _h = self.image_size()
            scene = self.mapToScene(event.position().toPoint())
            self.set_split(scene.x() / w if w else 0.5)
            event.accept()
            return
        if self._near_line(event.position()):
            self.viewport().setCursor(Qt.CursorShape.SplitHCursor)
        else:
            self.viewport().setCursor(Qt.CursorShape.OpenHandCursor)
        super().mouseMoveEvent(event)

    def mouseReleaseEvent(self, event: QMouseEvent) -> None:  # noqa: N802 - Qt
        if self._dragging:
            self._dragging = False
            event.accept()
            return
        super().mouseReleaseEvent(event)


class SyncedPair(QWidget):
    """Two image views side by side; zooming or panning one does the same to the other."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.left = ImageView(placeholder="")
        self.right = ImageView(placeholder="")
        self._syncing = False
        row = QHBoxLayout(self)
        row.setContentsMargins(0, 0, 0, 0)
        row.setSpacing(6)
        for view, title in ((self.left, "Before"), (self.right, "After")):
            col = QVBoxLayout()
            col.setSpacing(4)
            label = QLabel(title)
            label.setProperty("muted", True)
            col.addWidget(label)
            col.addWidget(view, 1)
            row.addLayout(col, 1)
        for a, b in ((self.left, self.right), (self.right, self.left)):
            a.zoomChanged.connect(lambda _z, a=a, b=b: self._follow(a, b))
            a.horizontalScrollBar().valueChanged.connect(lambda _v, a=a, b=b: self._follow(a, b))
            a.verticalScrollBar().valueChanged.connect(lambda _v, a=a, b=b: self._follow(a, b))

    def set_pair(self, before: QImage | None, after: QImage | None) -> None:
        self.left.set_image(before)
        if after is not None and before is not None and not after.isNull() \
                and after.size() != before.size():
            # Same geometry on both sides, so one zoom and one scroll position fit both.
            after = after.scaled(before.size(), Qt.AspectRatioMode.IgnoreAspectRatio,
                                 Qt.TransformationMode.SmoothTransformation)
        self.right.set_image(after)

    def _follow(self, source: ImageView, target: ImageView) -> None:
        if self._syncing or not target.has_image():
            return
        self._syncing = True
        try:
            if source.fitting:
                target.fit_to_window()
            else:
                target.set_zoom(source.zoom)
                target.horizontalScrollBar().setValue(source.horizontalScrollBar().value())
                target.verticalScrollBar().setValue(source.verticalScrollBar().value())
        finally:
            self._syncing = False


class CompareView(QWidget):
    """Before/after in ``split`` or ``side`` mode (``set_mode``)."""

    #: A right-click on the picture, at this global position (the panel shows the result's menu).
    contextMenuRequested = Signal(QPoint)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.split_view = SplitView()
        self.pair = SyncedPair()
        self.stack = QStackedWidget()
        self.stack.addWidget(self.split_view)
        self.stack.addWidget(self.pair)
        col = QVBoxLayout(self)
        col.setContentsMargins(0, 0, 0, 0)
        col.addWidget(self.stack)
        self._before: QImage | None = None
        self._after: QImage | None = None
        for view in self.views():
            view.viewport().installEventFilter(self)

    def views(self) -> list[ImageView]:
        """The image views a right-click can land on."""
        return [self.split_view, self.pair.left, self.pair.right]

    def eventFilter(self, obj: QObject, event: QEvent) -> bool:  # noqa: N802 - Qt
        if event.type() == QEvent.Type.ContextMenu and isinstance(event, QContextMenuEvent):
            self.contextMenuRequested.emit(event.globalPos())
            return True
        return super().eventFilter(obj, event)

    @property
    def mode(self) -> str:
        return "split" if self.stack.currentIndex() == 0 else "side"

    def set_mode(self, mode: str) -> None:
        self.stack.setCurrentIndex(0 if mode == "split" else 1)

    def set_images(self, before: QImage | None, after: QImage | None,
                   keep_view: bool = False) -> None:
        self._before, self._after = before, after
        self.split_view.set_pair(before, after, keep_view=keep_view)
        self.pair.set_pair(before, after)

    def before(self) -> QImage | None:
        return self._before

    def after(self) -> QImage | None:
        return self._after
