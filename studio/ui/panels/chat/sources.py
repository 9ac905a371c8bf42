"""What a reply grounded in documents shows under its answer; the passage and attached-files
dialogs.

A reply whose message ``meta`` has ``"documents": True`` was asked with documents attached; its
``"sources"`` are the passages the model was given (:meth:`Passage.to_dict`). Under the answer:
the numbered references as links (``source:N`` opens :class:`PassageDialog`), or "Nothing
relevant found in the attached documents."; and "What the model was given" (``given:``), which
expands every passage with its scores in place.
"""

from __future__ import annotations

import html
from typing import Any

from PySide6.QtCore import Qt
from PySide6.QtWidgets import (
    QDialog,
    QDialogButtonBox,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QPlainTextEdit,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from studio.core.wording import count_of
from studio.pipelines.chat.documents import NOTHING_RELEVANT, DocumentIndex, Passage, explain


def passages_of(meta: dict[str, Any] | None) -> list[Passage] | None:
    """The passages a reply was given; None when it was asked without documents."""
    if not meta or not meta.get("documents"):
        return None
    return [Passage.from_dict(d) for d in meta.get("sources") or []]


def sources_html(meta: dict[str, Any] | None, expanded: bool, muted: str) -> str:
    """The HTML appended under an answer ("" for a reply asked without documents)."""
    passages = passages_of(meta)
    if passages is None:
        return ""
    if not passages:
        return f'<p style="color:{muted}; margin-top:8px">{html.escape(NOTHING_RELEVANT)}</p>'
    links = "<br>".join(f'<a href="source:{p.number}">[{p.number}] {html.escape(p.source)}</a>'
                        for p in passages)
    arrow = "▾" if expanded else "▸"
    out = (f'<p style="color:{muted}; margin-top:8px; margin-bottom:2px">Sources</p>'
           f"<p>{links}</p>"
           f'<p><a href="given:">{arrow} What the model was given</a></p>')
    if expanded:
        body = html.escape(explain(passages)).replace("\n", "<br>")
        out += f'<p style="color:{muted}">{body}</p>'
    return out


class PassageDialog(QDialog):
    """One cited passage: where it comes from, its scores, its whole text."""

    def __init__(self, passage: Passage, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle(f"[{passage.number}] {passage.source}")
        self.resize(560, 420)
        box = QVBoxLayout(self)
        where = QLabel(f"{passage.file}" + (f", page {passage.page}" if passage.page else ""))
        where.setWordWrap(True)
        where.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        box.addWidget(where)
        scores = explain([passage]).split("\n", 1)[0].split(" — ", 1)[-1]
        score_label = QLabel(f"Scores: {scores}")
        score_label.setProperty("muted", True)
        box.addWidget(score_label)
        self.text = QPlainTextEdit(passage.text)
        self.text.setReadOnly(True)
        box.addWidget(self.text, 1)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        buttons.rejected.connect(self.reject)
        buttons.button(QDialogButtonBox.StandardButton.Close).clicked.connect(self.accept)
        box.addWidget(buttons)


class AttachedDialog(QDialog):
    """The files a chat answers from (this chat's and the chosen collection's): each with its
    passages, or why it was skipped; "Remove" takes the selected file out of its collection."""

    def __init__(self, index: DocumentIndex, collection_ids: list[int],
                 parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.index = index
        self.collection_ids = collection_ids
        self.setWindowTitle("Attached documents")
        self.resize(620, 380)
        box = QVBoxLayout(self)
        note = QLabel("Replies in this chat are answered from these files. Skipped files say "
                      "why; fix the file and attach it again.")
        note.setWordWrap(True)
        box.addWidget(note)
        self.list = QListWidget()
        box.addWidget(self.list, 1)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        self.remove_button = QPushButton("Remove")
        self.remove_button.setToolTip("Take the selected file out (the file itself is not "
                                      "touched)")
        self.remove_button.clicked.connect(self.remove_selected)
        buttons.addButton(self.remove_button, QDialogButtonBox.ButtonRole.ActionRole)
        buttons.rejected.connect(self.reject)
        buttons.button(QDialogButtonBox.StandardButton.Close).clicked.connect(self.accept)
        box.addWidget(buttons)
        self.list.currentRowChanged.connect(
            lambda row: self.remove_button.setEnabled(row >= 0))
        self.refresh()

    def refresh(self) -> None:
        self.list.clear()
        for cid in self.collection_ids:
            for f in self.index.files(cid):
                text = (f"{f['path']} — {count_of(f['passages'], 'passage')}"
                        if f["status"] == "ok" else f"{f['path']} — skipped: {f['note']}")
                item = QListWidgetItem(text)
                item.setToolTip(text)
                item.setData(Qt.ItemDataRole.UserRole, (cid, f["path"]))
                self.list.addItem(item)
        self.remove_button.setEnabled(self.list.currentRow() >= 0)

    def remove_selected(self) -> None:
        item = self.list.currentItem()
        if item is not None:
            cid, path = item.data(Qt.ItemDataRole.UserRole)
            self.index.remove_file(cid, path)
            self.refresh()
