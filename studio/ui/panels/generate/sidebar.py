"""The Generate workspace's left column: model, parameters, and the Generate / Cancel buttons."""

from __future__ import annotations

from PySide6.QtWidgets import (
    QFrame,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from studio.ui.panels.generate.controls import GenerateControls
from studio.ui.widgets.basics import keep_place_when_hidden, section_label, vertical_scroll
from studio.ui.widgets.model_picker import ModelPicker

SIDEBAR_WIDTH = 372


class GenerateSidebar(QFrame):
    """Lays out the picker and the form (scrolling) above buttons that always stay visible."""

    def __init__(self, picker: ModelPicker, controls: GenerateControls,
                 parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("generateSidebar")
        self.setFixedWidth(SIDEBAR_WIDTH)
        col = QVBoxLayout(self)
        col.setContentsMargins(16, 16, 16, 16)
        col.setSpacing(8)
        col.addWidget(section_label("Model"))
        col.addWidget(picker)
        col.addSpacing(6)
        col.addWidget(vertical_scroll(controls), 1)

        self.error_label = QLabel()
        self.error_label.setObjectName("generateError")
        self.error_label.setWordWrap(True)
        self.error_label.setStyleSheet("#generateError { color: #ff6b6b; }")
        self.error_label.hide()
        self.generate_button = QPushButton("Generate")
        self.generate_button.setObjectName("generateButton")
        self.generate_button.setProperty("accent", True)
        self.generate_button.setMinimumHeight(42)
        self.generate_button.setToolTip("Generate (Ctrl+Enter). While a job runs, this queues "
                                        "another one.")
        font = self.generate_button.font()
        font.setPointSizeF(font.pointSizeF() * 1.1)
        font.setBold(True)
        self.generate_button.setFont(font)
        self.cancel_button = QToolButton(text="Cancel")
        self.cancel_button.setObjectName("cancelButton")
        self.cancel_button.setToolTip("Stop the image being made (Esc)")
        self.cancel_button.setMinimumHeight(42)
        self.cancel_button.setEnabled(False)
        self.queue_label = QLabel()
        self.queue_label.setProperty("muted", True)
        self.queue_label.setFixedHeight(self.queue_label.fontMetrics().lineSpacing() + 2)
        keep_place_when_hidden(self.queue_label)
        buttons = QHBoxLayout()
        buttons.setSpacing(8)
        buttons.addWidget(self.generate_button, 1)
        buttons.addWidget(self.cancel_button)
        # Nothing under the buttons may appear or grow: the buttons would move up, and a second
        # click where Generate was a moment ago would miss. The queue line below keeps its place
        # while hidden; an error above the buttons takes its room from the scrolling form.
        col.addWidget(self.error_label)
        col.addLayout(buttons)
        col.addWidget(self.queue_label)
