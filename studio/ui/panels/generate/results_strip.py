"""The strip of finished images under the preview, in the order they were made (left to right,
the newest scrolled into view), so "image 2 of 4" is the second of its batch; each image of a
batch carries its number in a corner.

Click shows an image large, right-click offers the shared image actions, and dragging an item out
gives other applications the file and its pixels.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from PySide6.QtCore import QPoint, QRectF, QSize, Qt, Signal
from PySide6.QtGui import QColor, QFont, QIcon, QImage, QPainter, QPixmap
from PySide6.QtWidgets import (
    QAbstractItemView,
    QListView,
    QListWidget,
    QListWidgetItem,
    QMenu,
    QWidget,
)

from studio.core.requests import GeneratedImage, Txt2ImgRequest, image_seeds
from studio.core.wording import count_of
from studio.ui.widgets.image_actions import OpenInMode, build_image_menu, start_image_drag

THUMB = 84
ResultRole = Qt.ItemDataRole.UserRole + 1


def reuse_request(result: GeneratedImage) -> Txt2ImgRequest:
    """The request that makes this very image again: its own seed (and variation seed), first
    in the batch."""
    _, variation_seed = image_seeds(result.request, result.index)
    if variation_seed is None:
        return dataclasses.replace(result.request, seed=int(result.seed))
    return dataclasses.replace(result.request, seed=int(result.seed),
                               variation_seed=variation_seed)


def square_thumbnail(image: QImage, size: int) -> QImage:
    """The centre square of ``image`` scaled to ``size`` (a uniform strip, like a photo roll)."""
    side = min(image.width(), image.height())
    x, y = (image.width() - side) // 2, (image.height() - side) // 2
    return image.copy(x, y, side, side).scaled(size, size, Qt.AspectRatioMode.IgnoreAspectRatio,
                                                Qt.TransformationMode.SmoothTransformation)


def batch_label(result: GeneratedImage) -> str:
    """'2/4' for the second image of a batch of four; '' for a single image."""
    count = int(getattr(result.request, "count", 1) or 1)
    return f"{result.index + 1}/{count}" if count > 1 else ""


def badge(image: QImage, text: str) -> QImage:
    """``image`` with ``text`` in a dark rounded tag in its bottom-left corner."""
    if not text or image.isNull():
        return image
    out = image.convertToFormat(QImage.Format.Format_ARGB32_Premultiplied)
    painter = QPainter(out)
    painter.setRenderHint(QPainter.RenderHint.Antialiasing)
    font = QFont(painter.font())
    font.setPixelSize(max(10, out.height() // 7))
    font.setBold(True)
    painter.setFont(font)
    metrics = painter.fontMetrics()
    pad = max(3, out.height() // 40)
    box = QRectF(pad, out.height() - pad - metrics.height() - 2,
                 metrics.horizontalAdvance(text) + 2 * pad + 4, metrics.height() + 2)
    painter.setPen(Qt.PenStyle.NoPen)
    painter.setBrush(QColor(0, 0, 0, 170))
    painter.drawRoundedRect(box, pad, pad)
    painter.setPen(QColor("white"))
    painter.drawText(box, int(Qt.AlignmentFlag.AlignCenter), text)
    painter.end()
    return out


class ResultsStrip(QListWidget):
    """Thumbnails of the images this panel made; ``resultActivated(GeneratedImage)`` on click."""

    resultActivated = Signal(object)
    reuseRequested = Signal(object)  # Txt2ImgRequest
    resultDeleted = Signal(object)  # Path
    sendRequested = Signal(str, object)  # workspace key, Path ("Send to Transform")

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("resultsStrip")
        self.setViewMode(QListView.ViewMode.IconMode)
        self.setFlow(QListView.Flow.LeftToRight)
        self.setWrapping(False)
        self.setMovement(QListView.Movement.Static)
        self.setResizeMode(QListView.ResizeMode.Adjust)
        self.setUniformItemSizes(True)
        self.setIconSize(QSize(THUMB, THUMB))
        self.setGridSize(QSize(THUMB + 10, THUMB + 10))
        self.setSpacing(0)
        self.setHorizontalScrollMode(QAbstractItemView.ScrollMode.ScrollPerPixel)
        self.setVerticalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        # Room for a row of thumbnails and, below them, the scroll bar of a long session
        # (it used to cover the bottom of the thumbnails and their batch numbers).
        self.setFixedHeight(THUMB + 38)
        self.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.setDragEnabled(True)
        self.setDragDropMode(QAbstractItemView.DragDropMode.DragOnly)
        self.setContextMenuPolicy(Qt.ContextMenuPolicy.CustomContextMenu)
        self.customContextMenuRequested.connect(self._context_menu)
        self.currentItemChanged.connect(self._current_changed)
        self.itemClicked.connect(lambda item: self.resultActivated.emit(item.data(ResultRole)))

    def add_result(self, result: GeneratedImage, image: QImage | None = None) -> QListWidgetItem:
        """Put ``result`` last (the newest, scrolled into view); ``image`` (the full picture)
        makes the icon without a disk read."""
        if image is None or image.isNull():
            image = QImage(str(result.path)) if result.path else QImage()
        icon = QPixmap.fromImage(badge(square_thumbnail(image, THUMB * 2), batch_label(result))) \
            if not image.isNull() else QPixmap()
        item = QListWidgetItem(QIcon(icon), "")
        # Keep the metadata, not the PIL pixels: a long session must not hold every image twice.
        item.setData(ResultRole, dataclasses.replace(result, image=None))
        item.setToolTip(self._tooltip(result))
        item.setSizeHint(QSize(THUMB + 10, THUMB + 10))
        self.blockSignals(True)
        self.addItem(item)
        self.setCurrentItem(item)
        self.blockSignals(False)
        self.scrollToItem(item)
        return item

    def results(self) -> list[GeneratedImage]:
        return [self.item(i).data(ResultRole) for i in range(self.count())]

    def remove_path(self, path: str | Path) -> None:
        for i in reversed(range(self.count())):
            result = self.item(i).data(ResultRole)
            if result.path and Path(result.path) == Path(path):
                self.takeItem(i)

    def context_menu_for(self, item: QListWidgetItem) -> QMenu:
        """The right-click menu of ``item`` (built, not shown)."""
        result: GeneratedImage = item.data(ResultRole)
        return build_image_menu(
            self, result.path,
            reuse=lambda: self.reuseRequested.emit(reuse_request(result)),
            on_deleted=self._deleted,
            send_to=lambda key, path: self.sendRequested.emit(key, Path(path)),
            upscale=lambda path: self.sendRequested.emit(
                "transform", OpenInMode(Path(path), "upscale")),
            chat=lambda ask: self.sendRequested.emit("chat", ask))

    # -- internals ---------------------------------------------------------------------------
    @staticmethod
    def _tooltip(result: GeneratedImage) -> str:
        prompt = result.request.prompt or "(no prompt)"
        if len(prompt) > 120:
            prompt = prompt[:117] + "…"
        where = batch_label(result)
        made = "GAN" if result.seed_alone else count_of(result.request.steps, "step")
        size = result.image.size if result.seed_alone and result.image is not None else (
            result.request.width, result.request.height)
        return f"{prompt}\nSeed {result.seed} · {size[0]}×{size[1]} · {made}" + (
            f" · image {where}" if where else "")

    def _context_menu(self, pos: QPoint) -> None:
        item = self.itemAt(pos)
        if item is None or not item.data(ResultRole).path:
            return
        self.context_menu_for(item).exec(self.viewport().mapToGlobal(pos))

    def _deleted(self, path: Path) -> None:
        self.remove_path(path)
        self.resultDeleted.emit(path)

    def _current_changed(self, current: QListWidgetItem | None,
                         _previous: QListWidgetItem | None) -> None:
        if current is not None:
            self.resultActivated.emit(current.data(ResultRole))

    def startDrag(self, supported: Qt.DropAction) -> None:  # noqa: N802 - Qt override
        item = self.currentItem()
        if item is None:
            return
        result: GeneratedImage = item.data(ResultRole)
        if result.path:
            start_image_drag(self, [result.path], item.icon().pixmap(THUMB, THUMB))
