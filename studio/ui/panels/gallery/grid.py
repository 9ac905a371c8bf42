"""The gallery's thumbnail grid: a QListView in icon mode whose columns fill the width.

Uniform item sizes and batched layout keep 10,000 rows cheap; the delegate loads thumbnails only
for tiles it paints.
"""

from __future__ import annotations

from PySide6.QtCore import QEvent, QObject, QSize, Qt
from PySide6.QtWidgets import QAbstractItemView, QFrame, QListView, QWidget

from studio.ui.panels.gallery.model import GalleryModel, TileDelegate
from studio.workers.thumbnails import ThumbnailLoader

TILE = 168  # smallest grid cell, px; cells grow so the columns fill the width


class GalleryGrid(QListView):
    """Square tiles, single selection, drag out as files, right-click for actions."""

    def __init__(self, model: GalleryModel, loader: ThumbnailLoader, thumb_px: int,
                 parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("galleryGrid")
        self.setModel(model)
        self.delegate = TileDelegate(loader, TILE, thumb_px, self)
        self.setItemDelegate(self.delegate)
        self.setViewMode(QListView.ViewMode.IconMode)
        self.setMovement(QListView.Movement.Static)
        self.setResizeMode(QListView.ResizeMode.Adjust)
        self.setUniformItemSizes(True)
        self.setLayoutMode(QListView.LayoutMode.Batched)
        self.setBatchSize(500)
        self.setGridSize(QSize(TILE, TILE))
        self.setSpacing(0)
        self.setMouseTracking(True)  # hover highlight
        self.setVerticalScrollMode(QAbstractItemView.ScrollMode.ScrollPerPixel)
        self.verticalScrollBar().setSingleStep(TILE // 3)
        self.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.setDragEnabled(True)
        self.setDragDropMode(QAbstractItemView.DragDropMode.DragOnly)
        self.setDefaultDropAction(Qt.DropAction.CopyAction)
        self.setContextMenuPolicy(Qt.ContextMenuPolicy.CustomContextMenu)
        self.setFrameShape(QFrame.Shape.NoFrame)
        self.setStyleSheet("#galleryGrid { background: transparent; border: none; }")
        self.viewport().installEventFilter(self)

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:  # noqa: N802 - Qt override
        if watched is self.viewport() and event.type() == QEvent.Type.Resize:
            self.fit_columns()
        return super().eventFilter(watched, event)

    def fit_columns(self, *_: object) -> None:
        """Widen the cells so whole columns fill the grid (no ragged gap on the right)."""
        # QListView wraps as if a vertical scroll bar were there, so leave room for one.
        width = self.viewport().width() - self.verticalScrollBar().sizeHint().width() - 2
        columns = max(1, width // TILE)
        cell = max(TILE, width // columns)
        if self.gridSize().width() != cell:
            self.delegate.set_tile(cell)
            self.setGridSize(QSize(cell, cell))
