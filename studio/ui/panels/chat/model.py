"""The rows of the conversation view: a page of messages, loaded further back on demand.

A 10,000-message conversation keeps every :class:`Message` (plain data, cheap) but exposes only
the newest page to the view; :meth:`ConversationModel.load_older` prepends another page when the
user scrolls to the top. So opening a conversation lays out a few dozen bubbles, never all of
them. A marker row shows where the oldest turns were left out of the model's context.
"""

from __future__ import annotations

from typing import Any

from PySide6.QtCore import QAbstractListModel, QModelIndex, QObject, QPersistentModelIndex, Qt

from studio.pipelines.chat.store import Message

PAGE = 60
MessageRole = Qt.ItemDataRole.UserRole + 1
MarkerRole = Qt.ItemDataRole.UserRole + 2

Index = QModelIndex | QPersistentModelIndex


class ConversationModel(QAbstractListModel):
    """Messages on screen (newest page first loaded) plus the "context starts here" marker."""

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._all: list[Message] = []
        self._start = 0  # index in _all of the first row shown
        self._marker_before: int | None = None  # index in _all the marker precedes
        self._rows: list[Message | int] = []  # Message, or the number of dropped messages

    # -- contents ----------------------------------------------------------------------------
    def set_messages(self, messages: list[Message], dropped: int = 0) -> None:
        self.beginResetModel()
        self._all = list(messages)
        self._start = max(0, len(self._all) - PAGE)
        self._marker_before = dropped if 0 < dropped < len(self._all) else None
        self._rebuild()
        self.endResetModel()

    def _rebuild(self) -> None:
        rows: list[Message | int] = []
        for i in range(self._start, len(self._all)):
            if i == self._marker_before:
                rows.append(self._marker_before)
            rows.append(self._all[i])
        self._rows = rows

    def messages(self) -> list[Message]:
        return list(self._all)

    def has_older(self) -> bool:
        return self._start > 0

    def load_older(self, count: int = PAGE) -> int:
        """Show ``count`` more older messages at the top; returns how many rows were added."""
        if not self._start:
            return 0
        old_rows = len(self._rows)
        new_start = max(0, self._start - count)
        added = self._start - new_start
        if self._marker_before is not None and new_start <= self._marker_before < self._start:
            added += 1
        self.beginInsertRows(QModelIndex(), 0, added - 1)
        self._start = new_start
        self._rebuild()
        self.endInsertRows()
        assert len(self._rows) == old_rows + added
        return added

    def append(self, message: Message) -> None:
        row = len(self._rows)
        self.beginInsertRows(QModelIndex(), row, row)
        self._all.append(message)
        self._rows.append(message)
        self.endInsertRows()

    def set_dropped(self, dropped: int) -> None:
        """Move the marker (a reply reported how many oldest messages it left out)."""
        if (dropped or None) == self._marker_before:
            return
        self.set_messages(self._all, dropped)

    def update_message(self, message_id: int) -> None:
        """A message's text or state changed: repaint (and re-measure) only its row."""
        for row in range(len(self._rows) - 1, -1, -1):
            item = self._rows[row]
            if isinstance(item, Message) and item.id == message_id:
                index = self.index(row)
                self.dataChanged.emit(index, index)
                return

    def message_at(self, row: int) -> Message | None:
        item = self._rows[row] if 0 <= row < len(self._rows) else None
        return item if isinstance(item, Message) else None

    def last_message(self) -> Message | None:
        return self._all[-1] if self._all else None

    # -- QAbstractListModel ------------------------------------------------------------------
    def rowCount(self, parent: Index = QModelIndex()) -> int:  # noqa: B008
        return 0 if parent.isValid() else len(self._rows)

    def data(self, index: Index, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if not index.isValid() or index.row() >= len(self._rows):
            return None
        item = self._rows[index.row()]
        if role == MessageRole:
            return item if isinstance(item, Message) else None
        if role == MarkerRole:
            return item if not isinstance(item, Message) else None
        if role == Qt.ItemDataRole.DisplayRole:
            return item.content if isinstance(item, Message) else ""
        return None
