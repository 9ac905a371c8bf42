"""A zoom-and-pan image viewer shared by Generate, Gallery and Transform.

Wheel zooms around the cursor, dragging pans, double-click toggles between "fit" and 100 %, and two
small overlay buttons do the same. In fit mode the image follows the widget's size. When no image
is shown, a placeholder text is painted in the middle.
"""

from __future__ import annotations

from PySide6.QtCore import QEvent, QPointF, QRectF, Qt, Signal
from PySide6.QtGui import QColor, QImage, QMouseEvent, QPainter, QPixmap, QWheelEvent
from PySide6.QtWidgets import (
    QFrame,
    QGraphicsPixmapItem,
    QGraphicsScene,
    QGraphicsView,
    QHBoxLayout,
    QLabel,
    QToolButton,
    QWidget,
)

MIN_ZOOM = 0.02
MAX_ZOOM = 32.0
WHEEL_STEP = 1.2  # zoom factor per wheel notch


class ImageView(QGraphicsView):
    """Show one image; zoom with the wheel, pan by dragging, double-click to toggle fit/100 %."""

    zoomChanged = Signal(float)  # the scale in force (1.0 == 100 %)

    def __init__(self, parent: QWidget | None = None, placeholder: str = "") -> None:
        super().__init__(parent)
        self._scene = QGraphicsScene(self)
        self._item = QGraphicsPixmapItem()
        self._item.setTransformationMode(Qt.TransformationMode.SmoothTransformation)
        self._scene.addItem(self._item)
        self.setScene(self._scene)
        self._fit = True
        self._placeholder = placeholder
        self._has_image = False
        self.setFrameShape(QFrame.Shape.NoFrame)
        self.setRenderHints(QPainter.RenderHint.SmoothPixmapTransform
                            | QPainter.RenderHint.Antialiasing)
        self.setTransformationAnchor(QGraphicsView.ViewportAnchor.NoAnchor)
        self.setResizeAnchor(QGraphicsView.ViewportAnchor.AnchorViewCenter)
        self.setDragMode(QGraphicsView.DragMode.ScrollHandDrag)
        self.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.setVerticalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.setBackgroundBrush(self.palette().color(self.backgroundRole()).darker(115))
        self.setMinimumSize(120, 120)
        self._build_overlay()

    # -- public API --------------------------------------------------------------------------
    def set_image(self, image: QImage | QPixmap | None, keep_view: bool = False) -> None:
        """Show ``image`` (None clears). ``keep_view`` keeps zoom and pan if the size is unchanged."""
        if image is None or image.isNull():
            self.clear()
            return
        pixmap = image if isinstance(image, QPixmap) else QPixmap.fromImage(image)
        same_size = self._has_image and pixmap.size() == self._item.pixmap().size()
        self._item.setPixmap(pixmap)
        self._has_image = True
        self._scene.setSceneRect(QRectF(pixmap.rect()))
        self._overlay.setVisible(True)
        if not (keep_view and same_size) or self._fit:
            self.fit_to_window()
        self.viewport().update()

    def clear(self) -> None:
        self._item.setPixmap(QPixmap())
        self._has_image = False
        self._overlay.setVisible(False)
        self.resetTransform()
        self.viewport().update()

    def has_image(self) -> bool:
        return self._has_image

    def image_size(self) -> tuple[int, int]:
        size = self._item.pixmap().size()
        return size.width(), size.height()

    def set_placeholder(self, text: str) -> None:
        self._placeholder = text
        self.viewport().update()

    @property
    def zoom(self) -> float:
        return self.transform().m11()

    @property
    def fitting(self) -> bool:
        return self._fit

    def fit_to_window(self) -> None:
        self._fit = True
        if self._has_image:
            self.fitInView(self._item, Qt.AspectRatioMode.KeepAspectRatio)
        self._zoom_changed()

    def actual_size(self) -> None:
        self.set_zoom(1.0)

    def set_zoom(self, scale: float, anchor: QPointF | None = None) -> None:
        """Zoom to ``scale`` (1.0 == 100 %), keeping ``anchor`` (view coords) still if given."""
        scale = max(MIN_ZOOM, min(MAX_ZOOM, scale))
        self._fit = False
        factor = scale / self.zoom if self.zoom else scale
        self.setTransformationAnchor(QGraphicsView.ViewportAnchor.NoAnchor)
        if anchor is None:
            anchor = QPointF(self.viewport().rect().center())
        before = self.mapToScene(anchor.toPoint())
        self.scale(factor, factor)
        # Scroll so the scene point that was under the anchor is under it again.
        drift = self.mapFromScene(before) - anchor.toPoint()
        self.horizontalScrollBar().setValue(self.horizontalScrollBar().value() + drift.x())
        self.verticalScrollBar().setValue(self.verticalScrollBar().value() + drift.y())
        self._zoom_changed()

    # -- events ------------------------------------------------------------------------------
    def wheelEvent(self, event: QWheelEvent) -> None:
        if not self._has_image:
            return
        steps = event.angleDelta().y() / 120.0
        if steps:
            self.set_zoom(self.zoom * WHEEL_STEP ** steps, anchor=event.position())
        event.accept()

    def mouseDoubleClickEvent(self, event: QMouseEvent) -> None:
        if event.button() == Qt.MouseButton.LeftButton and self._has_image:
            if self._fit:
                self.set_zoom(1.0, anchor=event.position())
            else:
                self.fit_to_window()
            event.accept()
            return
        super().mouseDoubleClickEvent(event)

    def resizeEvent(self, event: QEvent) -> None:
        super().resizeEvent(event)
        if self._fit:
            self.fit_to_window()
        self._place_overlay()

    def drawForeground(self, painter: QPainter, rect: QRectF) -> None:
        super().drawForeground(painter, rect)
        if self._has_image or not self._placeholder:
            return
        painter.save()
        painter.resetTransform()
        color = QColor(self.palette().color(self.foregroundRole()))
        color.setAlphaF(0.45)
        painter.setPen(color)
        font = painter.font()
        font.setPointSizeF(font.pointSizeF() * 1.15)
        painter.setFont(font)
        area = self.viewport().rect().adjusted(24, 24, -24, -24)
        painter.drawText(area, Qt.AlignmentFlag.AlignCenter | Qt.TextFlag.TextWordWrap,
                         self._placeholder)
        painter.restore()

    # -- overlay: zoom label, Fit and 100 % buttons ------------------------------------------
    def _build_overlay(self) -> None:
        self._overlay = QFrame(self)
        self._overlay.setObjectName("imageViewOverlay")
        self._overlay.setStyleSheet(
            "#imageViewOverlay { background: rgba(20, 20, 24, 170); border-radius: 6px; }"
            "#imageViewOverlay QToolButton, #imageViewOverlay QLabel"
            " { color: #e8e8ec; background: transparent; border: none; padding: 2px 6px; }"
            "#imageViewOverlay QToolButton:hover { background: rgba(255, 255, 255, 40);"
            " border-radius: 4px; }")
        row = QHBoxLayout(self._overlay)
        row.setContentsMargins(4, 2, 4, 2)
        row.setSpacing(2)
        self._zoom_label = QLabel("100%")
        self._zoom_label.setMinimumWidth(44)
        self._zoom_label.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.fit_button = QToolButton(text="Fit")
        self.fit_button.setToolTip("Fit the image to the window (double-click the image)")
        self.fit_button.clicked.connect(self.fit_to_window)
        self.actual_button = QToolButton(text="100%")
        self.actual_button.setToolTip("Show the image at its actual size")
        self.actual_button.clicked.connect(self.actual_size)
        for w in (self._zoom_label, self.fit_button, self.actual_button):
            row.addWidget(w)
        self._overlay.setVisible(False)
        self._overlay.adjustSize()

    def _place_overlay(self) -> None:
        self._overlay.adjustSize()
        self._overlay.move(self.width() - self._overlay.width() - 10, 10)

    def _zoom_changed(self) -> None:
        self._zoom_label.setText(f"{self.zoom * 100:.0f}%")
        self._place_overlay()
        self.zoomChanged.emit(self.zoom)
