"""What the Chat workspace shows before a conversation has messages.

With a model to talk to: how to start. While the models are being looked for: that. With no
model at all (none on this computer, no server): it says so and how to get one — a button that
opens the Models workspace's download dialog on a small recommended chat model, the ``hf
download`` line that does the same in a terminal, and "Look again" once a model was put in place.
"""

from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QFontDatabase, QGuiApplication
from PySide6.QtWidgets import QFrame, QHBoxLayout, QLabel, QPushButton, QVBoxLayout, QWidget

#: The small chat model the empty state offers (in the Models catalog: SmolLM2 360M Instruct).
STARTER_REPO = "HuggingFaceTB/SmolLM2-360M-Instruct"
STARTER_COMMAND = f"hf download {STARTER_REPO}"

READY, SCANNING, NO_MODELS = "ready", "scanning", "none"


class ChatEmptyState(QWidget):
    """``downloadRequested`` asks for the download dialog, ``rescanRequested`` for a new scan."""

    downloadRequested = Signal(str)  # repo id
    rescanRequested = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("chatEmptyState")
        self.state = ""
        self.title = QLabel()
        self.title.setProperty("heading", True)
        self.title.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.text = QLabel()
        self.text.setProperty("muted", True)
        self.text.setWordWrap(True)
        self.text.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.download_button = QPushButton("Download a chat model…")
        self.download_button.setProperty("accent", True)
        self.download_button.setToolTip(f"Open the Models workspace's download dialog on "
                                        f"{STARTER_REPO} (about 0.7 GB)")
        self.download_button.clicked.connect(lambda: self.downloadRequested.emit(STARTER_REPO))
        self.rescan_button = QPushButton("Look again")
        self.rescan_button.setToolTip("Look for chat models again (after downloading one or "
                                      "copying it into the models folder)")
        self.rescan_button.clicked.connect(self.rescanRequested)
        self.terminal_label = QLabel("Or in a terminal:")
        self.terminal_label.setProperty("muted", True)
        self.command = QLabel(STARTER_COMMAND)
        self.command.setObjectName("chatCommand")
        self.command.setFont(QFontDatabase.systemFont(QFontDatabase.SystemFont.FixedFont))
        self.command.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.copy_button = QPushButton("Copy")
        self.copy_button.setProperty("flat", True)
        self.copy_button.setToolTip("Copy the command")
        self.copy_button.clicked.connect(self.copy_command)

        self.command_box = QFrame()
        self.command_box.setObjectName("Card")
        box = QHBoxLayout(self.command_box)
        box.setContentsMargins(12, 6, 6, 6)
        box.addWidget(self.command, 1)
        box.addWidget(self.copy_button)
        buttons = QHBoxLayout()
        buttons.addStretch(1)
        buttons.addWidget(self.download_button)
        buttons.addWidget(self.rescan_button)
        buttons.addStretch(1)
        self.no_models = QWidget()
        extra = QVBoxLayout(self.no_models)
        extra.setContentsMargins(0, 8, 0, 0)
        extra.setSpacing(8)
        extra.addLayout(buttons)
        extra.addSpacing(6)
        extra.addWidget(self.terminal_label, 0, Qt.AlignmentFlag.AlignHCenter)
        extra.addWidget(self.command_box)

        column = QWidget()
        column.setMaximumWidth(560)
        col = QVBoxLayout(column)
        col.setSpacing(10)
        col.addWidget(self.title)
        col.addWidget(self.text)
        col.addWidget(self.no_models)
        outer = QVBoxLayout(self)
        outer.addStretch(1)
        row = QHBoxLayout()
        row.addStretch(1)
        row.addWidget(column, 4)
        row.addStretch(1)
        outer.addLayout(row)
        outer.addStretch(1)
        self.set_state(SCANNING)

    def set_state(self, state: str) -> None:
        """``ready`` (a model is chosen), ``scanning`` or ``none`` (no model at all)."""
        self.state = state
        if state == NO_MODELS:
            self.title.setText("No chat model yet")
            self.text.setText("Chat runs a language model on this computer, and there is none "
                              "here yet. Download a small one to start — SmolLM2 360M Instruct "
                              "(about 0.7 GB) answers quickly on any CPU — or add a server "
                              "with Servers… on the right.")
        elif state == SCANNING:
            self.title.setText("Start a conversation")
            self.text.setText("Looking for chat models…")
        else:
            self.title.setText("Start a conversation")
            self.text.setText("Pick a model on the right, type below, press Enter.")
        self.no_models.setVisible(state == NO_MODELS)

    def copy_command(self) -> None:
        QGuiApplication.clipboard().setText(STARTER_COMMAND)
        self.copy_button.setText("Copied")
