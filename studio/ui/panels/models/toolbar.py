"""The Models workspace's top row: title, library summary, search, kind filter and the actions."""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtGui import QResizeEvent
from PySide6.QtWidgets import (
    QComboBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QSizePolicy,
    QWidget,
)

from studio.library.catalog import KIND_TITLES, KINDS
from studio.ui.panels.models.memory import UnloadButton


class ElidedLabel(QLabel):
    """A one-line label that gives way in a narrow window, ending in "…" instead of being cut.

    ``text()`` is the full text; the tooltip can say more."""

    def __init__(self, text: str = "", parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._full = ""
        self.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        self.setMinimumWidth(24)
        self.setText(text)

    def setText(self, text: str) -> None:  # noqa: N802 - Qt override
        self._full = text
        self._elide()

    def text(self) -> str:
        return self._full

    def resizeEvent(self, event: QResizeEvent) -> None:  # noqa: N802 - Qt override
        super().resizeEvent(event)
        self._elide()

    def _elide(self) -> None:
        shown = self.fontMetrics().elidedText(self._full, Qt.TextElideMode.ElideRight,
                                              max(0, self.width()))
        super().setText(shown if shown != "…" else "")


class ModelsToolbar(QWidget):
    """Title, "N models · size" summary, search, kind filter, Unload all, Refresh, Import,
    Download. The panel connects the widgets; this only lays them out."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        title = QLabel("Models")
        title.setProperty("heading", True)
        self.summary = ElidedLabel("Scanning…")
        self.summary.setProperty("muted", True)
        self.search = QLineEdit()
        self.search.setPlaceholderText("Search models")
        self.search.setClearButtonEnabled(True)
        self.search.setMinimumWidth(120)
        self.search.setMaximumWidth(300)
        self.kind = QComboBox()
        self.kind.setSizeAdjustPolicy(
            QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
        self.kind.setMinimumContentsLength(9)
        self.kind.addItem("All kinds", "")
        for k in KINDS:
            self.kind.addItem(KIND_TITLES[k], k)
        self.unload_button = UnloadButton()
        self.refresh_button = QPushButton("Refresh")
        self.import_button = QPushButton("Import…")
        self.download_button = QPushButton("Download…")
        self.download_button.setProperty("accent", True)
        row = QHBoxLayout(self)
        row.setContentsMargins(0, 0, 0, 0)
        row.addWidget(title)
        row.addSpacing(10)
        row.addWidget(self.summary, 1)
        row.addWidget(self.search, 1)  # shares spare width with the summary, up to 300
        row.addWidget(self.kind)
        row.addSpacing(8)
        row.addWidget(self.unload_button)
        row.addWidget(self.refresh_button)
        row.addWidget(self.import_button)
        row.addWidget(self.download_button)
