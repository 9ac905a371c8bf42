"""The Chat workspace's composer: the message box with Send and Stop (an image dropped or pasted
on it is attached), the banners above it (editing a message, a reply the database refused), the
attached-documents bar and the attached image. The panel
wires the actions and drives what shows; this module only builds the card."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from PySide6.QtCore import Qt
from PySide6.QtWidgets import (
    QFrame,
    QHBoxLayout,
    QLabel,
    QPlainTextEdit,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from studio.ui.panels.chat.controls import EnterSends
from studio.ui.panels.chat.documents_bar import DocumentsBar
from studio.ui.panels.chat.image_attachment import ImageAttachment, ImageInput

if TYPE_CHECKING:
    from studio.pipelines.chat.store import ConversationStore

CHAT_HINT = "Message the model…  (Enter sends, Shift+Enter: new line)"
COMPLETE_HINT = "Text to continue, as typed — or nothing, to go on  (Enter continues)"


class Composer(QWidget):
    """The card under the conversation (see the module docstring)."""

    def __init__(self, store: ConversationStore, models_dir: Path,
                 conversation_for_documents: Callable[[], int],
                 on_send: Callable[[], None], on_stop: Callable[[], None],
                 on_cancel_edit: Callable[[], None], on_save_again: Callable[[], Any],
                 on_image: Callable[..., Any], parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("Card")
        box = QVBoxLayout(self)
        box.setContentsMargins(12, 8, 12, 8)
        self.edit_banner = QWidget()
        eb = QHBoxLayout(self.edit_banner)
        eb.setContentsMargins(0, 0, 0, 0)
        self.edit_label = QLabel("Editing a message — sending makes a new branch; the old one "
                                 "stays.")
        self.edit_label.setProperty("muted", True)
        eb.addWidget(self.edit_label, 1)
        cancel_edit = QPushButton("Cancel edit")
        cancel_edit.setProperty("flat", True)
        cancel_edit.clicked.connect(on_cancel_edit)
        eb.addWidget(cancel_edit)
        box.addWidget(self.edit_banner)
        self.save_banner = QFrame()  # styled as the window's error banners
        self.save_banner.setObjectName("Banner")
        self.save_banner.setProperty("kind", "error")
        self.save_banner.setAttribute(Qt.WidgetAttribute.WA_StyledBackground, True)
        sb = QHBoxLayout(self.save_banner)
        sb.setContentsMargins(10, 6, 6, 6)
        self.save_error = QLabel("")
        self.save_error.setWordWrap(True)
        self.save_error.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        sb.addWidget(self.save_error, 1)
        self.save_again = QPushButton("Save again")
        self.save_again.setToolTip("Write the reply kept here into the conversations database")
        self.save_again.clicked.connect(on_save_again)
        sb.addWidget(self.save_again)
        self.save_banner.setVisible(False)
        box.addWidget(self.save_banner)
        self.documents = DocumentsBar(store, models_dir, conversation_for_documents)
        box.addWidget(self.documents)
        self.attachment = ImageAttachment()
        box.addWidget(self.attachment)
        row = QHBoxLayout()
        self.input = QPlainTextEdit()
        self.input.setPlaceholderText(CHAT_HINT)
        self.input.setFixedHeight(72)
        self._enter = EnterSends(on_send)
        self.input.installEventFilter(self._enter)
        self._image_input = ImageInput(on_image)  # drop or paste an image
        self.input.installEventFilter(self._image_input)
        self.input.viewport().installEventFilter(self._image_input)
        row.addWidget(self.input, 1)
        self.send_button = QPushButton("Send")
        self.send_button.setProperty("accent", True)
        self.send_button.clicked.connect(on_send)
        self.stop_button = QPushButton("Stop")
        self.stop_button.setToolTip("Stop the reply (Esc); what it wrote so far is kept")
        self.stop_button.clicked.connect(on_stop)
        buttons = QVBoxLayout()
        buttons.addWidget(self.send_button)
        buttons.addWidget(self.stop_button)
        row.addLayout(buttons)
        box.addLayout(row)
        self.status = QLabel("")
        self.status.setProperty("muted", True)
        self.status.setWordWrap(True)
        box.addWidget(self.status)
        self.documents.message.connect(self.status.setText)

    def show_mode(self, complete: bool) -> None:
        """Complete mode: "Continue" adds the text typed (if any) and the model goes on."""
        self.send_button.setText("Continue" if complete else "Send")
        self.send_button.setToolTip("Add what you typed, if anything, and let the model go on "
                                    "writing" if complete else "")
        self.input.setPlaceholderText(COMPLETE_HINT if complete else CHAT_HINT)
