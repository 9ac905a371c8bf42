"""The image attached to the message being written: a thumbnail, its name and "Remove"; the
Chat panel's image questions (:class:`ImageQuestions`, a mixin of the panel); and
the message box's image drop and paste (:class:`ImageInput`)."""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from PySide6.QtCore import QEvent, QMimeData, QObject, Qt, Signal
from PySide6.QtGui import QGuiApplication, QImage, QKeyEvent, QKeySequence, QPixmap
from PySide6.QtWidgets import QHBoxLayout, QLabel, QPushButton, QWidget

if TYPE_CHECKING:
    from PySide6.QtWidgets import QPlainTextEdit

    from studio.ui.panels.chat.controls import ChatControls
    from studio.workers.job_bridge import QtJobHandle

THUMB = 48
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".gif", ".tif", ".tiff")


class ImageAttachment(QWidget):
    """Hidden until an image is attached; :attr:`path` is the image to send with the message."""

    changed = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("chatImageAttachment")
        self.path: Path | None = None
        self.thumb = QLabel()
        self.thumb.setFixedSize(THUMB, THUMB)
        self.thumb.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.name = QLabel()
        self.name.setProperty("muted", True)
        self.remove = QPushButton("Remove")
        self.remove.setProperty("flat", True)
        self.remove.setToolTip("Send the message without this image")
        self.remove.clicked.connect(self.clear)
        row = QHBoxLayout(self)
        row.setContentsMargins(0, 0, 0, 4)
        row.addWidget(self.thumb)
        row.addWidget(self.name, 1)
        row.addWidget(self.remove)
        self.setVisible(False)

    def set_image(self, path: str | Path) -> bool:
        """Attach ``path``; False (nothing attached) when it is not a readable image."""
        image = QImage(str(path))
        if image.isNull():
            return False
        self.path = Path(path)
        self.thumb.setPixmap(QPixmap.fromImage(image.scaled(
            THUMB, THUMB, Qt.AspectRatioMode.KeepAspectRatio,
            Qt.TransformationMode.SmoothTransformation)))
        self.name.setText(f"{self.path.name} · {image.width()}×{image.height()} — sent with "
                          "the message")
        self.setVisible(True)
        self.changed.emit()
        return True

    def clear(self) -> None:
        self.path = None
        self.thumb.clear()
        self.name.clear()
        self.setVisible(False)
        self.changed.emit()


def _image_file(mime: QMimeData) -> Path | None:
    for url in mime.urls() if mime.hasUrls() else []:
        path = Path(url.toLocalFile())
        if url.isLocalFile() and path.suffix.lower() in IMAGE_SUFFIXES:
            return path
    return None


class ImageInput(QObject):
    """An event filter for the message box (and its viewport): an image file dropped on it, or
    an image pasted into it (Ctrl+V with pixels on the clipboard), is attached instead of its
    path or nothing being typed. ``attach(path)`` does the attaching."""

    def __init__(self, attach: object) -> None:
        super().__init__()
        self._attach = attach

    def eventFilter(self, obj: QObject, event: QEvent) -> bool:  # noqa: N802 - Qt override
        kind = event.type()
        if kind in (QEvent.Type.DragEnter, QEvent.Type.DragMove):
            mime = event.mimeData()  # type: ignore[attr-defined]
            if _image_file(mime) is not None or mime.hasImage():
                event.acceptProposedAction()  # type: ignore[attr-defined]
                return True
        elif kind == QEvent.Type.Drop:
            mime = event.mimeData()  # type: ignore[attr-defined]
            path = _image_file(mime)
            if path is None and mime.hasImage():
                path = self._save(QImage(mime.imageData()))
            if path is not None:
                self._attach(path)  # type: ignore[operator]
                event.acceptProposedAction()  # type: ignore[attr-defined]
                return True
        elif kind == QEvent.Type.KeyPress and isinstance(event, QKeyEvent) \
                and event.matches(QKeySequence.StandardKey.Paste):
            mime = QGuiApplication.clipboard().mimeData()
            path = _image_file(mime) if mime is not None else None
            if path is None and mime is not None and mime.hasImage() and not mime.hasText():
                path = self._save(QGuiApplication.clipboard().image())
            if path is not None:
                self._attach(path)  # type: ignore[operator]
                return True
        return False

    @staticmethod
    def _save(image: QImage) -> Path | None:
        """Pixels without a file (a pasted screenshot) as a PNG to attach (sending stores a
        copy with the conversation)."""
        if image.isNull():
            return None
        path = Path(tempfile.gettempdir()) / f"studio-pasted-{time.time_ns()}.png"
        return path if image.save(str(path), "PNG") else None


class ImageQuestions:
    """The Chat panel's images (a mixin of :class:`~studio.ui.panels.chat.panel.ChatPanel`, as
    :mod:`.token_actions` is): an image sent from Generate or the Gallery with its question, an
    image dropped or pasted, and why the chosen model cannot see it. It uses the panel's ``job``,
    ``retrieving``, ``attachment``, ``input``, ``status``, ``controls``, ``new_conversation`` and
    ``send``."""

    job: QtJobHandle | None
    retrieving: bool
    attachment: ImageAttachment
    input: QPlainTextEdit
    status: QLabel
    controls: ChatControls
    new_conversation: Callable[[], int]
    send: Callable[[], None]

    def receive(self, payload: object) -> None:
        """An image sent from Generate or the Gallery ("Describe in Chat", "Write a prompt for
        this in Chat"): a new chat with the image attached and the question asked."""
        from studio.ui.widgets.image_actions import CHAT_QUESTIONS, OpenInMode

        if isinstance(payload, OpenInMode) and payload.mode in CHAT_QUESTIONS:
            self.ask_about_image(payload.path, CHAT_QUESTIONS[payload.mode])

    def ask_about_image(self, path: str | Path, question: str) -> None:
        busy = self.job is not None or self.retrieving
        if not busy:
            self.new_conversation()
        if not self.attachment.set_image(path):
            self.status.setText(f"{path} cannot be read as an image.")
            return
        self.input.setPlainText(question)
        if busy:
            self.status.setText("The image is attached: press Send when the reply above ends.")
        elif self.controls.scanning:
            self.status.setText("Looking for models… press Send when the list is ready.")
        else:
            self.send()

    def attach_image(self, path: str | Path) -> None:
        """Attach an image (dropped or pasted) to the message being written."""
        if not self.attachment.set_image(path):
            self.status.setText(f"{Path(path).name} cannot be read as an image.")
        elif not self.controls.sees_images():
            self.status.setText(self._cannot_see())
        else:
            self.status.setText("")

    def _cannot_see(self) -> str:
        """Why the chosen model cannot take the attached image ('' when it can)."""
        from studio.library.chat_models import VISION_HINT

        if self.attachment.path is None or self.controls.sees_images():
            return ""
        found = [self.controls.model.itemText(self.controls.model.findData(spec))
                 for spec in sorted(self.controls.vision)]
        have = f" Found here: {', '.join(found)}." if found else ""
        return (f"{self.controls.model_label()} reads text only, so it cannot see the image; "
                f"choose a model that can. {VISION_HINT}{have}")
