"""The gallery's list model and the delegate that paints its tiles.

The model holds only what the index returned (paths, prompts, sizes): never pixels. The delegate
asks the :class:`ThumbnailLoader` for a thumbnail while painting a tile, so only rows on screen
are ever loaded; until it arrives a placeholder is painted, and the model repaints the one tile
when it does.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from PySide6.QtCore import (
    QAbstractListModel,
    QMimeData,
    QModelIndex,
    QObject,
    QPersistentModelIndex,
    QRectF,
    QSize,
    Qt,
)
from PySide6.QtGui import QColor, QImage, QPainter, QPainterPath, QPen
from PySide6.QtWidgets import QStyle, QStyledItemDelegate, QStyleOptionViewItem, QWidget

from studio.ui.widgets.image_actions import image_mime_data
from studio.workers.thumbnails import ThumbnailLoader

if TYPE_CHECKING:
    from studio.media.gallery import GalleryItem

PathRole = Qt.ItemDataRole.UserRole + 1
ItemRole = Qt.ItemDataRole.UserRole + 2

Index = QModelIndex | QPersistentModelIndex


class GalleryModel(QAbstractListModel):
    """Gallery items (``studio.media.gallery.GalleryItem``), newest first."""

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._items: list[GalleryItem] = []
        self._rows: dict[str, int] = {}

    # -- Qt model API ------------------------------------------------------------------------
    def rowCount(self, parent: Index = QModelIndex()) -> int:  # noqa: N802, B008
        return 0 if parent.isValid() else len(self._items)

    def data(self, index: Index, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if not index.isValid() or not 0 <= index.row() < len(self._items):
            return None
        item = self._items[index.row()]
        if role == PathRole:
            return str(item.path)
        if role == ItemRole:
            return item
        if role == Qt.ItemDataRole.DisplayRole:
            return item.prompt or Path(item.path).name
        if role == Qt.ItemDataRole.ToolTipRole:
            prompt = item.prompt if len(item.prompt) <= 200 else item.prompt[:197] + "…"
            size = f"{item.width}×{item.height} · " if item.width else ""
            return f"{prompt or '(no prompt)'}\n{size}{Path(item.path).name}"
        return None

    def flags(self, index: Index) -> Qt.ItemFlag:
        base = super().flags(index)
        return base | Qt.ItemFlag.ItemIsDragEnabled if index.isValid() else base

    def mimeTypes(self) -> list[str]:  # noqa: N802 - Qt override
        return ["text/uri-list", "application/x-qt-image"]

    def mimeData(self, indexes: list[QModelIndex]) -> QMimeData:  # noqa: N802 - Qt override
        paths = [self._items[i.row()].path for i in indexes if i.isValid()]
        return image_mime_data(paths)

    def supportedDragActions(self) -> Qt.DropAction:  # noqa: N802 - Qt override
        return Qt.DropAction.CopyAction

    # -- our API -----------------------------------------------------------------------------
    def set_items(self, items: list[GalleryItem]) -> None:
        self.beginResetModel()
        self._items = list(items)
        self._rows = {str(item.path): row for row, item in enumerate(self._items)}
        self.endResetModel()

    def items(self) -> list[GalleryItem]:
        return list(self._items)

    def item(self, row: int) -> GalleryItem | None:
        return self._items[row] if 0 <= row < len(self._items) else None

    def row_of(self, path: str | Path) -> int:
        return self._rows.get(str(path), -1)

    def remove_path(self, path: str | Path) -> bool:
        row = self.row_of(path)
        if row < 0:
            return False
        self.beginRemoveRows(QModelIndex(), row, row)
        del self._items[row]
        self._rows = {str(item.path): r for r, item in enumerate(self._items)}
        self.endRemoveRows()
        return True

    def refresh_path(self, path: str | Path) -> None:
        """Repaint the tile of ``path`` (its thumbnail arrived)."""
        row = self.row_of(path)
        if row >= 0:
            index = self.index(row)
            self.dataChanged.emit(index, index, [Qt.ItemDataRole.DecorationRole])


class TileDelegate(QStyledItemDelegate):
    """Paints a rounded tile: the thumbnail, or a placeholder while it loads."""

    def __init__(self, loader: ThumbnailLoader, tile: int, thumb_px: int,
                 parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._loader = loader
        self._tile = tile
        self._thumb_px = thumb_px

    def set_tile(self, tile: int) -> None:
        self._tile = tile

    def sizeHint(self, option: QStyleOptionViewItem, index: Index) -> QSize:  # noqa: N802
        return QSize(self._tile, self._tile)

    def paint(self, painter: QPainter, option: QStyleOptionViewItem, index: Index) -> None:
        rect = QRectF(option.rect).adjusted(4, 4, -4, -4)
        palette = option.palette
        selected = bool(option.state & QStyle.StateFlag.State_Selected)
        hover = bool(option.state & QStyle.StateFlag.State_MouseOver)
        painter.save()
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        painter.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform)
        clip = QPainterPath()
        clip.addRoundedRect(rect, 8, 8)
        base = QColor(palette.color(palette.ColorRole.Base))
        painter.fillPath(clip, base)

        image = self._loader.get(index.data(PathRole), self._thumb_px)
        if image is not None and not image.isNull():
            self._draw_image(painter, clip, rect, image)
        else:
            muted = QColor(palette.color(palette.ColorRole.PlaceholderText))
            muted.setAlphaF(0.7)
            painter.setPen(muted)
            text = "Cannot read" if image is not None else ""
            if text:
                painter.drawText(rect, Qt.AlignmentFlag.AlignCenter, text)
        if selected or hover:
            color = QColor(palette.color(palette.ColorRole.Highlight))
            if not selected:
                color.setAlphaF(0.5)
            painter.setPen(QPen(color, 3 if selected else 2))
            painter.setBrush(Qt.BrushStyle.NoBrush)
            painter.drawRoundedRect(rect.adjusted(1, 1, -1, -1), 7, 7)
        painter.restore()

    @staticmethod
    def _draw_image(painter: QPainter, clip: QPainterPath, rect: QRectF, image: QImage) -> None:
        # Cover the square tile (crop the long side), like every photo grid.
        painter.setClipPath(clip)
        scale = max(rect.width() / image.width(), rect.height() / image.height())
        w, h = image.width() * scale, image.height() * scale
        target = QRectF(rect.center().x() - w / 2, rect.center().y() - h / 2, w, h)
        painter.drawImage(target, image)
        painter.setClipping(False)
