"""The view of the ``lora-chat`` lesson: the same questions answered by the base model (adapter
off) and with the LoRA adapter, and how many of the model's parameters train."""

from __future__ import annotations

import html
from typing import Any

from PySide6.QtWidgets import QTextBrowser, QVBoxLayout, QWidget

from studio.ui.panels.train.views.base import LessonView
from studio.ui.panels.train.widgets import ElidedLabel, caption


class LoraChatView(LessonView):
    """Before/after answers in a table, and the trainable-parameter count."""

    def __init__(self, lesson_key: str, parent: QWidget | None = None) -> None:
        super().__init__(lesson_key, parent)
        self.answers_caption = caption(
            "Answers", tip="The same questions answered greedily by the base model (adapter "
                           "off) and with the adapter, every 'Answer every' steps")
        self.params_label = ElidedLabel("", tip="Only the LoRA matrices train; the base model's "
                                                "weights stay frozen")
        self.params_label.setProperty("muted", True)
        self.answers_box = QTextBrowser()
        self.answers_box.setObjectName("answers")
        self.answers_box.setMinimumSize(120, 60)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(4)
        layout.addWidget(self.answers_caption)
        layout.addWidget(self.params_label)
        layout.addWidget(self.answers_box, 1)
        self._body = ""

    def show_snapshot(self, snapshot: dict[str, Any]) -> None:
        self.answers_caption.set_full_text(
            f"Answers · step {snapshot['answered_at']} · {snapshot['model']}")
        self.params_label.set_full_text(f"{snapshot['parameters_note']} · "
                                        f"{snapshot['data_note']}")
        rows = "".join(
            f"<tr><td><b>{html.escape(q)}</b></td><td>{html.escape(b)}</td>"
            f"<td>{html.escape(a)}</td></tr>"
            for q, b, a in zip(snapshot["questions"], snapshot["before"], snapshot["after"],
                               strict=True))
        body = ('<table width="100%" cellspacing="0" cellpadding="4" border="1">'
                "<tr><th>Question</th><th>Before (base model)</th><th>After (with LoRA)</th>"
                f"</tr>{rows}</table>")
        if body != self._body:
            self._body = body
            self.answers_box.setHtml(body)

    def reset(self) -> None:
        self._body = ""
        self.answers_box.clear()
