"""The conversation list: search (full text), new, rename, delete, export, import.

Each row shows the title and, under it, when it was last used — or, while searching, the passage
that matched with the matching words highlighted (:class:`ConversationDelegate`).
"""

from __future__ import annotations

import html
import json
import time
from pathlib import Path

from PySide6.QtCore import (
    QModelIndex,
    QPoint,
    QRectF,
    QSize,
    Qt,
    QTimer,
    Signal,
    Slot,
)
from PySide6.QtGui import QAbstractTextDocumentLayout, QColor, QPainter, QTextDocument
from PySide6.QtWidgets import (
    QApplication,
    QFileDialog,
    QHBoxLayout,
    QInputDialog,
    QLabel,
    QLineEdit,
    QListWidget,
    QListWidgetItem,
    QMenu,
    QMessageBox,
    QPushButton,
    QStyle,
    QStyledItemDelegate,
    QStyleOptionViewItem,
    QVBoxLayout,
    QWidget,
)

from studio.core.files import atomic_write_text
from studio.core.jobs import UserFacingError
from studio.pipelines.chat.store import ConversationStore
from studio.pipelines.chat.transfer import (
    export_json,
    export_markdown,
    read_conversation_file,
    write_import,
)
from studio.ui.theme import colors
from studio.workers.lanes import Calls

IdRole = Qt.ItemDataRole.UserRole + 1
PartsRole = Qt.ItemDataRole.UserRole + 2  # the second line as (text, is_match) runs
TitleRole = Qt.ItemDataRole.UserRole + 3  # the first line, the same way
ROW_PAD = 6


def _runs_html(parts: list[tuple[str, bool]], mark: str) -> str:
    return "".join(
        f"<span style='background:{mark}; font-weight:600'>{html.escape(text)}</span>"
        if match else html.escape(text) for text, match in parts)


def row_html(title: list[tuple[str, bool]], detail: list[tuple[str, bool]], muted: str,
             mark: str) -> str:
    """A row's rich text: the title line, then the detail line, matches highlighted."""
    return (f"<div>{_runs_html(title, mark)}</div>"
            f"<div style='color:{muted}'>{_runs_html(detail, mark)}</div>")


class ConversationDelegate(QStyledItemDelegate):
    """Paints a conversation row as rich text, so search matches show highlighted (never the
    raw markers the full-text index puts around them)."""

    def _document(self, option: QStyleOptionViewItem, index: QModelIndex) -> QTextDocument:
        # The theme's colours: a selected row keeps the text colour (the style sheet tints its
        # background), and matches get an amber mark that reads on the selection too.
        c = colors()
        mark = QColor(c.queued)
        doc = QTextDocument()
        doc.setDefaultFont(option.font)
        doc.setDocumentMargin(0)
        doc.setDefaultStyleSheet(f"div {{ color: {c.text}; }}")
        doc.setHtml(row_html(index.data(TitleRole) or [], index.data(PartsRole) or [], c.muted,
                             f"rgba({mark.red()},{mark.green()},{mark.blue()},0.38)"))
        doc.setTextWidth(max(40, option.rect.width() - 2 * ROW_PAD))
        return doc

    def paint(self, painter: QPainter, option: QStyleOptionViewItem, index: QModelIndex) -> None:
        opt = QStyleOptionViewItem(option)
        self.initStyleOption(opt, index)
        opt.text = ""
        style = opt.widget.style() if opt.widget else QApplication.style()
        style.drawControl(QStyle.ControlElement.CE_ItemViewItem, opt, painter, opt.widget)
        doc = self._document(opt, index)
        painter.save()
        painter.translate(opt.rect.left() + ROW_PAD, opt.rect.top() + ROW_PAD)
        clip = QRectF(0, 0, opt.rect.width() - 2 * ROW_PAD, opt.rect.height() - 2 * ROW_PAD)
        painter.setClipRect(clip)
        context = QAbstractTextDocumentLayout.PaintContext()
        context.clip = clip
        doc.documentLayout().draw(painter, context)
        painter.restore()

    def sizeHint(self, option: QStyleOptionViewItem, index: QModelIndex) -> QSize:  # noqa: N802
        opt = QStyleOptionViewItem(option)
        self.initStyleOption(opt, index)
        width = opt.rect.width() if opt.rect.width() > 0 else 220
        opt.rect.setWidth(width)
        doc = self._document(opt, index)
        return QSize(width, int(doc.size().height()) + 2 * ROW_PAD)


def _when(ts: float) -> str:
    days = (time.time() - ts) / 86400
    if days < 1:
        return time.strftime("%H:%M", time.localtime(ts))
    if days < 7:
        return time.strftime("%a", time.localtime(ts))
    return time.strftime("%d %b", time.localtime(ts))


class ConversationList(QWidget):
    """Lists conversations (newest first); ``selected(id)`` when one is picked."""

    selected = Signal(int)
    newRequested = Signal()
    deleted = Signal(int)
    imported = Signal(int)  # a conversation file was imported as this conversation
    importFailed = Signal(str)  # why a file was refused (also shown in a message box)

    def __init__(self, store: ConversationStore, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.store = store
        self._calls = Calls(self, serial=True)  # imports: checked and written off the GUI thread
        self.setObjectName("ChatSidebar")
        layout = QVBoxLayout(self)
        layout.setContentsMargins(12, 12, 8, 12)
        layout.setSpacing(8)
        self.new_button = QPushButton("New chat")
        self.new_button.setProperty("accent", True)
        self.new_button.clicked.connect(self.newRequested)
        layout.addWidget(self.new_button)
        self.search = QLineEdit()
        self.search.setPlaceholderText("Search conversations…")
        self.search.setClearButtonEnabled(True)
        layout.addWidget(self.search)
        self.list = QListWidget()
        self.list.setContextMenuPolicy(Qt.ContextMenuPolicy.CustomContextMenu)
        self.list.customContextMenuRequested.connect(self._menu)
        self.list.currentItemChanged.connect(self._picked)
        self.list.setWordWrap(True)
        self.list.setItemDelegate(ConversationDelegate(self.list))
        layout.addWidget(self.list, 1)
        self.empty = QLabel("No conversations yet.")
        self.empty.setProperty("muted", True)
        self.empty.setAlignment(Qt.AlignmentFlag.AlignCenter)
        layout.addWidget(self.empty)
        row = QHBoxLayout()
        self.import_button = QPushButton("Import…")
        self.import_button.setProperty("flat", True)
        self.import_button.clicked.connect(self.import_file)
        row.addWidget(self.import_button)
        row.addStretch(1)
        layout.addLayout(row)
        self._search_timer = QTimer(self, singleShot=True, interval=150)
        self._search_timer.timeout.connect(self.refresh)
        self.search.textChanged.connect(lambda _t: self._search_timer.start())
        self._quiet = False

    def current_id(self) -> int | None:
        item = self.list.currentItem()
        return item.data(IdRole) if item else None

    @Slot()
    def refresh(self, select: int | None = None) -> None:
        """Re-read the list (or the search hits); keep or set the selection quietly."""
        keep = select if select is not None else self.current_id()
        query = self.search.text().strip()
        self._quiet = True
        self.list.clear()
        rows: list[tuple[int, str, list, list]] = []
        if query:
            for h in self.store.search(query):
                title = h.title or "Untitled"
                if h.message_id is None:  # the title matched: highlight it there
                    rows.append((h.conversation_id, title, h.parts, [(_when(h.updated), False)]))
                else:
                    rows.append((h.conversation_id, title, [(title, False)], h.parts))
        else:
            rows = [(c.id, c.title or "Untitled", [(c.title or "Untitled", False)],
                     [(_when(c.updated), False)]) for c in self.store.conversations()]
        for conv_id, title, title_parts, parts in rows:
            # The plain text (accessibility, tests) has no markers: the delegate highlights.
            item = QListWidgetItem(f"{title}\n{''.join(text for text, _m in parts)}")
            item.setData(IdRole, conv_id)
            item.setData(TitleRole, list(title_parts))
            item.setData(PartsRole, list(parts))
            item.setToolTip(title)
            self.list.addItem(item)
            if conv_id == keep:
                self.list.setCurrentItem(item)
        self._quiet = False
        self.empty.setVisible(not rows)
        self.empty.setText("No matches." if query else "No conversations yet.")

    def _picked(self, current: QListWidgetItem | None, _previous: object) -> None:
        if current is not None and not self._quiet:
            self.selected.emit(current.data(IdRole))

    def _menu(self, pos: QPoint) -> None:
        item = self.list.itemAt(pos)
        if item is None:
            return
        conv_id = item.data(IdRole)
        menu = QMenu(self)
        menu.addAction("Rename…", lambda: self.rename(conv_id))
        menu.addAction("Export as Markdown…", lambda: self.export(conv_id, "md"))
        menu.addAction("Export as JSON…", lambda: self.export(conv_id, "json"))
        menu.addSeparator()
        menu.addAction("Delete", lambda: self.delete(conv_id))
        menu.popup(self.list.viewport().mapToGlobal(pos))

    def rename(self, conv_id: int, title: str | None = None) -> None:
        if title is None:
            current = self.store.conversation(conv_id).title
            title, ok = QInputDialog.getText(self, "Rename conversation", "Title:", text=current)
            if not ok:
                return
        self.store.rename(conv_id, title.strip() or "Untitled")
        self.refresh()

    def delete(self, conv_id: int, confirm: bool = True) -> None:
        if confirm and QMessageBox.question(
                self, "Delete conversation",
                f"Delete “{self.store.conversation(conv_id).title or 'Untitled'}” and all its "
                "messages?") != QMessageBox.StandardButton.Yes:
            return
        self.store.delete_conversation(conv_id)
        self.deleted.emit(conv_id)
        self.refresh()

    def export(self, conv_id: int, kind: str, path: str | None = None) -> Path | None:
        title = self.store.conversation(conv_id).title or "conversation"
        if path is None:
            safe = "".join(ch if ch.isalnum() or ch in " -_" else "_" for ch in title)[:60]
            path, _ = QFileDialog.getSaveFileName(
                self, "Export conversation", f"{safe}.{kind}",
                "Markdown (*.md)" if kind == "md" else "JSON (*.json)")
            if not path:
                return None
        text = (export_markdown(self.store, conv_id) if kind == "md" else
                json.dumps(export_json(self.store, conv_id), indent=2, ensure_ascii=False))
        return atomic_write_text(Path(path), text)

    @Slot()
    def import_file(self, path: str | None = None) -> None:
        """Import a conversation file off the GUI thread (a large file takes a while to check and
        write); ``imported(id)`` follows, or a message saying why the file was refused."""
        if path is None:
            path, _ = QFileDialog.getOpenFileName(self, "Import conversation", "",
                                                  "JSON (*.json)")
            if not path:
                return
        name, store = Path(path).name, self.store

        def work() -> int:
            try:
                return write_import(store, read_conversation_file(path)).id
            except ValueError as exc:
                raise UserFacingError(f"{name} cannot be imported: {exc}") from None

        def done(conv_id: int) -> None:
            self._import_finished()
            self.refresh(select=conv_id)
            self.selected.emit(conv_id)
            self.imported.emit(conv_id)

        def failed(message: str) -> None:
            self._import_finished()
            self.importFailed.emit(message)
            box = QMessageBox(QMessageBox.Icon.Warning, "Import conversation", message,
                              QMessageBox.StandardButton.Ok, self)
            box.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
            box.open()  # not exec(): the window keeps running behind it

        self.import_button.setEnabled(False)
        self.import_button.setText("Importing…")
        self._calls.run(work, done, failed)

    def shutdown(self) -> None:
        """Wait for an import in progress (it runs in one transaction, so it is never cut)."""
        self._calls.wait(30_000)

    def _import_finished(self) -> None:
        self.import_button.setEnabled(True)
        self.import_button.setText("Import…")
