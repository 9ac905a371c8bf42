"""A form group turned on by the check box in its header, with an arrow that shows or hides its
fields (Generate's hires fix and ControlNet groups).

Ticking the box opens the group; the arrow only shows or hides the fields, so a group that is on
can be folded away. Subclasses lay their fields out in :attr:`body`.
"""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QCheckBox, QHBoxLayout, QToolButton, QVBoxLayout, QWidget


class CheckSection(QWidget):
    """``enabled`` (the header's check box), ``expand`` (its arrow) and ``body`` (the fields)."""

    def __init__(self, title: str, tooltip: str, expand_tooltip: str,
                 parent: QWidget | None = None) -> None:
        super().__init__(parent)
        col = QVBoxLayout(self)
        col.setContentsMargins(0, 0, 0, 0)
        col.setSpacing(6)
        header = QHBoxLayout()
        header.setSpacing(6)
        self.enabled = QCheckBox(title)
        self.enabled.setToolTip(tooltip)
        self.expand = QToolButton()
        self.expand.setCheckable(True)
        self.expand.setAutoRaise(True)
        self.expand.setProperty("flat", True)  # a disclosure arrow, not a framed button
        self.expand.setFixedSize(26, 26)
        self.expand.setToolTip(expand_tooltip)
        header.addWidget(self.enabled)
        header.addStretch(1)
        header.addWidget(self.expand)
        col.addLayout(header)
        self.body = QWidget()
        col.addWidget(self.body)
        self.enabled.toggled.connect(self._enabled_toggled)
        self.expand.toggled.connect(self._show_body)

    def _enabled_toggled(self, on: bool) -> None:
        if on:
            self._show_body(True)

    def _show_body(self, shown: bool) -> None:
        self.expand.blockSignals(True)
        self.expand.setChecked(shown)
        self.expand.blockSignals(False)
        self.expand.setArrowType(Qt.ArrowType.DownArrow if shown else Qt.ArrowType.RightArrow)
        self.body.setVisible(shown)
