"""The library table: models grouped by kind, with search and a kind filter.

A :class:`QTreeWidget` whose top-level rows are the kinds (with a count) and whose children are
the models; filtering hides rows rather than rebuilding, so the selection survives typing.
"""

from __future__ import annotations

import time

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QFont
from PySide6.QtWidgets import (
    QAbstractItemView,
    QHeaderView,
    QTreeWidget,
    QTreeWidgetItem,
    QWidget,
)

from studio.library.catalog import KINDS, LibraryEntry
from studio.library.manage import human_size

COLUMNS = ("Name", "Source", "Format", "Size", "Precision", "Last used", "Used by")
ENTRY_ROLE = Qt.ItemDataRole.UserRole + 1


def when(ts: float | None) -> str:
    """'today 14:02', 'yesterday', '3 days ago', a date; or '—' for never."""
    if not ts:
        return "—"
    days = int((time.time() - ts) // 86400)
    if days <= 0:
        return time.strftime("today %H:%M", time.localtime(ts))
    if days == 1:
        return "yesterday"
    if days < 30:
        return f"{days} days ago"
    return time.strftime("%Y-%m-%d", time.localtime(ts))


class ModelTree(QTreeWidget):
    """Models grouped by kind; ``entryChosen`` carries the selected :class:`LibraryEntry`."""

    entryChosen = Signal(object)  # LibraryEntry or None

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("modelsTree")
        self.setColumnCount(len(COLUMNS))
        self.setHeaderLabels(COLUMNS)
        self.setRootIsDecorated(False)
        self.setUniformRowHeights(True)
        self.setAlternatingRowColors(False)
        self.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.setIndentation(12)
        header = self.header()
        header.setStretchLastSection(False)
        header.setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)
        for col in range(1, len(COLUMNS)):
            header.setSectionResizeMode(col, QHeaderView.ResizeMode.ResizeToContents)
        self._groups: dict[str, QTreeWidgetItem] = {}
        self.itemSelectionChanged.connect(self._on_selection)

    def set_entries(self, entries: list[LibraryEntry]) -> None:
        selected = self.current_entry()
        keep = selected.path if selected else None
        self.clear()
        self._groups = {}
        bold = QFont(self.font())
        bold.setBold(True)
        for kind in KINDS:
            members = [e for e in entries if e.kind == kind]
            if not members:
                continue
            group = QTreeWidgetItem([f"{members[0].kind_title}"])
            group.setFirstColumnSpanned(True)
            group.setFlags(Qt.ItemFlag.ItemIsEnabled)
            group.setFont(0, bold)
            group.setData(0, Qt.ItemDataRole.UserRole, kind)
            self.addTopLevelItem(group)
            group.setFirstColumnSpanned(True)
            self._groups[kind] = group
            for e in members:
                item = QTreeWidgetItem([e.name, e.source_title, e.format,
                                        human_size(e.size_bytes), e.precision or "?",
                                        when(e.last_used), ", ".join(e.workspaces) or "—"])
                item.setData(0, ENTRY_ROLE, e)
                item.setToolTip(0, f"{e.path}\n{e.detail}" if e.detail else str(e.path))
                item.setTextAlignment(3, Qt.AlignmentFlag.AlignRight
                                      | Qt.AlignmentFlag.AlignVCenter)
                group.addChild(item)
                if keep is not None and e.path == keep:
                    item.setSelected(True)
            group.setExpanded(True)
        self._update_group_titles()

    def apply_filter(self, text: str, kind: str) -> None:
        """Show models whose name, path or details contain ``text`` and whose kind is ``kind``
        (empty: any)."""
        needle = text.strip().lower()
        for k, group in self._groups.items():
            shown = 0
            for i in range(group.childCount()):
                item = group.child(i)
                e: LibraryEntry = item.data(0, ENTRY_ROLE)
                hay = f"{e.name} {e.path} {e.detail} {e.format} {e.repo_id}".lower()
                visible = (not kind or k == kind) and (not needle or needle in hay)
                item.setHidden(not visible)
                shown += visible
            group.setHidden(shown == 0)
        self._update_group_titles()

    def _update_group_titles(self) -> None:
        for group in self._groups.values():
            count = sum(not group.child(i).isHidden() for i in range(group.childCount()))
            title = group.text(0).split("  ·  ")[0]
            group.setText(0, f"{title}  ·  {count}")

    def visible_entries(self) -> list[LibraryEntry]:
        out = []
        for group in self._groups.values():
            for i in range(group.childCount()):
                if not group.child(i).isHidden() and not group.isHidden():
                    out.append(group.child(i).data(0, ENTRY_ROLE))
        return out

    def current_entry(self) -> LibraryEntry | None:
        items = self.selectedItems()
        return items[0].data(0, ENTRY_ROLE) if items else None

    def select_path(self, path) -> bool:
        for group in self._groups.values():
            for i in range(group.childCount()):
                item = group.child(i)
                if item.data(0, ENTRY_ROLE).path == path:
                    self.setCurrentItem(item)
                    return True
        return False

    def _on_selection(self) -> None:
        self.entryChosen.emit(self.current_entry())
