"""Small widgets of the Gallery workspace: the empty state and the large image window."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QImage, QKeySequence, QShortcut
from PySide6.QtWidgets import QDialog, QLabel, QVBoxLayout, QWidget

from studio.ui.widgets.image_view import ImageView
from studio.ui.widgets.input_policy import available_geometry

VIEWER_MIN = (640, 480)
VIEWER_SCREEN_SHARE = 0.9  # of the screen's free area, at most


class ImageDialog(QDialog):
    """A large zoomable view of one image (double-click in the gallery).

    Given the gallery's list, Left/Right (and Page Up/Down) step to the previous/next image and
    Home/End to the first/last; ``currentPathChanged`` says which one is shown. It opens as large
    as the image needs, within the screen it is on.
    """

    currentPathChanged = Signal(object)  # Path

    def __init__(self, path: Path, image: QImage, parent: QWidget | None = None,
                 paths: Sequence[str | Path] = ()) -> None:
        super().__init__(parent)
        self.view = ImageView()
        self._paths = [Path(p) for p in paths] or [Path(path)]
        try:
            self._index = self._paths.index(Path(path))
        except ValueError:
            self._paths, self._index = [Path(path)], 0
        col = QVBoxLayout(self)
        col.setContentsMargins(0, 0, 0, 0)
        col.addWidget(self.view)
        keys = ((Qt.Key.Key_Left, -1), (Qt.Key.Key_PageUp, -1), (Qt.Key.Key_Right, 1),
                (Qt.Key.Key_PageDown, 1), (Qt.Key.Key_Home, "first"), (Qt.Key.Key_End, "last"))
        for key, where in keys:
            QShortcut(QKeySequence(key), self, lambda w=where: self.go(w),
                      context=Qt.ShortcutContext.WindowShortcut)
        self._show(Path(path), image)
        self._fit_to_screen(image)

    @property
    def path(self) -> Path:
        return self._paths[self._index]

    @property
    def index(self) -> int:
        return self._index

    def go(self, where: int | str) -> bool:
        """Show the previous (-1), next (1), "first" or "last" image; False if there is none
        (or it cannot be read: then the title says so and the view stays)."""
        if where == "first":
            target = 0
        elif where == "last":
            target = len(self._paths) - 1
        else:
            target = self._index + int(where)
        if not 0 <= target < len(self._paths) or target == self._index:
            return False
        self._index = target
        path = self._paths[target]
        image = QImage(str(path))
        if image.isNull():
            self.setWindowTitle(f"{path.name} cannot be read — {self._position()}")
            self.view.clear()
            self.view.set_placeholder(f"Cannot read {path.name}")
        else:
            self._show(path, image)
        self.currentPathChanged.emit(path)
        return True

    def _position(self) -> str:
        return f"{self._index + 1} of {len(self._paths)}"

    def _show(self, path: Path, image: QImage) -> None:
        self.view.set_image(image)
        title = path.name
        if len(self._paths) > 1:
            title += f" — {self._position()} (← → to move)"
        self.setWindowTitle(title)

    def _fit_to_screen(self, image: QImage) -> None:
        """As large as the image (at least VIEWER_MIN), never beyond the screen's free area."""
        width, height = max(VIEWER_MIN[0], image.width()), max(VIEWER_MIN[1], image.height())
        room = available_geometry(self)
        if room is not None:
            max_w = int(room.width() * VIEWER_SCREEN_SHARE)
            max_h = int(room.height() * VIEWER_SCREEN_SHARE) - 40  # the title bar
            width, height = min(width, max_w), min(height, max_h)
        self.resize(width, height)


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
