"""The Chat workspace's context meter: the conversation's tokens against the model's context, as
a label and a bar that turns the "queued" colour when the oldest messages are being left out.
The panel works out the numbers (with the engine's own rule); this widget only shows them."""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QHBoxLayout, QLabel, QProgressBar, QWidget

from studio.core.wording import count_of
from studio.ui.theme import colors


class ContextMeter(QWidget):
    """"1,234 / 4,096 tokens" and a bar, in the conversation's header."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        row = QHBoxLayout(self)
        row.setContentsMargins(0, 0, 0, 0)
        row.setSpacing(0)
        self.label = QLabel("")
        self.label.setProperty("muted", True)
        self.label.setMinimumWidth(170)
        self.label.setAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        row.addWidget(self.label)
        row.addSpacing(8)
        self.bar = QProgressBar()
        self.bar.setObjectName("contextMeter")
        self.bar.setTextVisible(False)
        self.bar.setFixedWidth(110)
        self.bar.setToolTip("Tokens of this conversation / the model's context length")
        row.addWidget(self.bar)

    def show_use(self, used: int, ctx_len: int, full: bool, reserve: int) -> None:
        """``used`` tokens of ``ctx_len`` (0: not known), ``full`` when messages are left out,
        ``reserve`` tokens kept free for the reply."""
        if ctx_len:
            self.bar.setVisible(True)
            self.bar.setRange(0, ctx_len)
            self.bar.setValue(min(used, ctx_len))
            self.label.setText(f"{used:,} / {ctx_len:,} tokens" + (" · full" if full else ""))
            tip = (f"This conversation takes {count_of(used, 'token')} of the model's "
                   f"{ctx_len:,}; {count_of(reserve, 'token')} stay free for the reply.")
            if full:
                tip += " It no longer fits whole: the oldest messages are left out."
            self.bar.setToolTip(tip)
            self.label.setToolTip(tip)
        else:
            self.bar.setVisible(False)
            self.label.setText(count_of(used, "token") if used else "")
        if self.bar.property("full") != full:
            self.bar.setProperty("full", full)
            self.bar.setStyleSheet(
                f"#contextMeter::chunk {{ background: {colors().queued}; }}" if full else "")
