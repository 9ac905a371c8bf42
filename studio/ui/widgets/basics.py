"""Small themed building blocks the workspace panels share: section headings, muted notes and the
scrolling column a sidebar's form sits in. The look comes from the theme's style sheet, through
the ``section`` and ``muted`` properties, so every panel's headings and notes match.
"""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QDialog, QDialogButtonBox, QFrame, QLabel, QScrollArea, QWidget


def section_label(text: str, parent: QWidget | None = None) -> QLabel:
    """A small upper-case heading (styled by the theme's ``section`` property)."""
    label = QLabel(text.upper(), parent)
    label.setProperty("section", True)
    return label


def muted_label(text: str = "", *, wrap: bool = False) -> QLabel:
    """A secondary line of text (the theme's ``muted`` colour)."""
    label = QLabel(text)
    label.setProperty("muted", True)
    if wrap:
        label.setWordWrap(True)
    return label


def keep_place_when_hidden(widget: QWidget) -> QWidget:
    """Let ``widget`` keep its room in the layout while hidden, so showing it (a status line that
    appears when a job starts) never moves the buttons next to it."""
    policy = widget.sizePolicy()
    policy.setRetainSizeWhenHidden(True)
    widget.setSizePolicy(policy)
    return widget


def vertical_scroll(widget: QWidget | None = None) -> QScrollArea:
    """A frameless area scrolling ``widget`` up and down only: a sidebar's form keeps the
    sidebar's width and scrolls when the window is short."""
    scroll = QScrollArea()
    scroll.setWidgetResizable(True)
    scroll.setFrameShape(QFrame.Shape.NoFrame)
    scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
    if widget is not None:
        scroll.setWidget(widget)
    return scroll


def ok_cancel_buttons(dialog: QDialog) -> QDialogButtonBox:
    """OK (the accent button) and Cancel, wired to the dialog's accept/reject."""
    box = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok
                           | QDialogButtonBox.StandardButton.Cancel)
    box.button(QDialogButtonBox.StandardButton.Ok).setProperty("accent", True)
    box.accepted.connect(dialog.accept)
    box.rejected.connect(dialog.reject)
    return box
