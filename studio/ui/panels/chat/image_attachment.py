"""The image attached to the message being written: a thumbnail, its name and "Remove"."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QImage, QPixmap
from PySide6.QtWidgets import QHBoxLayout, QLabel, QPushButton, QWidget

THUMB = 48


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
