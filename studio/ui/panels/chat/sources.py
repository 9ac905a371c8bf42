"""What a reply grounded in documents shows under its answer, and the passage dialog.

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
    QPlainTextEdit,
    QVBoxLayout,
    QWidget,
)

from studio.pipelines.chat.documents import NOTHING_RELEVANT, Passage, explain


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
