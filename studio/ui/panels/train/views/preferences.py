"""The ``dpo`` lesson's view: the answers to the same prompts before training and now, beside
the answer people preferred and the one they rejected (the loss plot shows loss, margin and
accuracy)."""

from __future__ import annotations

import html
from typing import Any

from PySide6.QtWidgets import QLabel, QTextBrowser, QVBoxLayout, QWidget

from studio.ui.panels.train.views.base import LessonView


class PreferenceView(LessonView):
    def __init__(self, lesson_key: str, parent: QWidget | None = None) -> None:
        super().__init__(lesson_key, parent)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        self.note = QLabel("Answers to the same prompts: before (the reference) and now.")
        self.note.setWordWrap(True)
        self.answers = QTextBrowser()
        self.answers.setOpenLinks(False)
        layout.addWidget(self.note)
        layout.addWidget(self.answers, 1)

    def show_snapshot(self, snapshot: dict[str, Any]) -> None:
        self.note.setText(f"{snapshot.get('data_note', '')} — step {snapshot.get('step', 0)}. "
                          f"{snapshot.get('phase', '')}")
        rows = []
        for row in snapshot.get("answers", []):
            # a zero-width space after each ↵ lets a run of new lines (an untrained model's
            # answer) wrap instead of squeezing the other columns
            cells = [html.escape(str(row[k])).replace("\n", "↵\u200b")
                     for k in ("prompt", "before", "after", "chosen", "rejected")]
            rows.append("<tr>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
        self.answers.setHtml(
            "<table border='1' cellpadding='4' cellspacing='0' width='100%'><tr>"
            "<th width='16%'>Prompt</th><th width='21%'>Before</th><th width='21%'>Now</th>"
            "<th width='21%'>Chosen</th><th width='21%'>Rejected</th></tr>"
            + "".join(rows) + "</table>")

    def reset(self) -> None:
        self.answers.clear()
