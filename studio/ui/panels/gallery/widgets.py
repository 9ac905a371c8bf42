"""Small widgets of the Gallery workspace: the empty state and the large image window."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import Qt
from PySide6.QtGui import QImage
from PySide6.QtWidgets import QDialog, QLabel, QVBoxLayout, QWidget

from studio.ui.widgets.image_view import ImageView


class ImageDialog(QDialog):
    """A large zoomable view of one image (double-click in the gallery)."""

    def __init__(self, path: Path, image: QImage, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle(path.name)
        self.view = ImageView()
        self.view.set_image(image)
        col = QVBoxLayout(self)
        col.setContentsMargins(0, 0, 0, 0)
        col.addWidget(self.view)
        self.resize(1000, 800)


class EmptyGallery(QWidget):
    """A centered title and a line of help, shown instead of an empty grid."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.title = QLabel()
        self.title.setProperty("heading", True)
        self.body = QLabel()
        self.body.setProperty("muted", True)
        self.body.setWordWrap(True)
        self.body.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        col = QVBoxLayout(self)
        col.addStretch(2)
        for label in (self.title, self.body):
            label.setAlignment(Qt.AlignmentFlag.AlignCenter)
            col.addWidget(label)
        col.setSpacing(10)
        col.addStretch(3)

    def set_text(self, title: str, body: str = "") -> None:
        self.title.setText(title)
        self.body.setText(body)
        self.body.setVisible(bool(body))

    def text(self) -> str:
        return f"{self.title.text()}\n{self.body.text()}".strip()
