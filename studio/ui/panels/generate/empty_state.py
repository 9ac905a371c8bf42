"""What the Generate workspace shows when there is no image model at all: how to get one."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import Qt, QUrl, Signal
from PySide6.QtGui import QDesktopServices, QFont
from PySide6.QtWidgets import QFrame, QHBoxLayout, QLabel, QPushButton, QVBoxLayout, QWidget

DOWNLOAD_COMMAND = "hf download stabilityai/sd-turbo"  # huggingface_hub >= 1.0 names its CLI hf


class NoModelsState(QWidget):
    """A centered card: where to put models, how to download one (the built-in download dialog,
    or a command line), and four working buttons."""

    addModelRequested = Signal()
    rescanRequested = Signal()
    downloadRequested = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._models_dir = Path()
        card = QFrame()
        card.setObjectName("Card")  # the theme's card style
        col = QVBoxLayout(card)
        col.setContentsMargins(32, 28, 32, 28)
        col.setSpacing(12)

        title = QLabel("No image models yet")
        title.setProperty("heading", True)
        font = title.font()
        font.setPointSizeF(font.pointSizeF() * 1.5)
        font.setWeight(QFont.Weight.DemiBold)
        title.setFont(font)
        col.addWidget(title)

        self.body = QLabel()
        self.body.setWordWrap(True)
        self.body.setTextFormat(Qt.TextFormat.RichText)
        self.body.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        col.addWidget(self.body)

        self.command = QLabel(DOWNLOAD_COMMAND)
        self.command.setObjectName("commandLine")
        mono = QFont("Monospace")
        mono.setStyleHint(QFont.StyleHint.Monospace)
        self.command.setFont(mono)
        self.command.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.command.setStyleSheet("#commandLine { background: rgba(127, 127, 127, 40);"
                                   " border-radius: 6px; padding: 8px 10px; }")
        col.addWidget(self.command)

        hint = QLabel("After a command-line download, press <b>Look again</b>. Small “Turbo” "
                      "models are a good start: they make an image in 1–4 steps, even on a CPU.")
        hint.setWordWrap(True)
        hint.setProperty("muted", True)
        col.addWidget(hint)
        col.addSpacing(6)

        buttons = QHBoxLayout()
        buttons.setSpacing(8)
        self.download_button = QPushButton("Download a model…")
        self.download_button.setProperty("accent", True)
        self.download_button.setToolTip("Choose a recommended model (SD Turbo is small and fast) "
                                        "and download it with progress")
        self.download_button.clicked.connect(self.downloadRequested)
        self.add_button = QPushButton("Add model…")
        self.add_button.setToolTip("Use a diffusers folder or a .safetensors file you have")
        self.add_button.clicked.connect(self.addModelRequested)
        self.open_button = QPushButton("Open models folder")
        self.open_button.clicked.connect(self.open_models_folder)
        self.rescan_button = QPushButton("Look again")
        self.rescan_button.clicked.connect(self.rescanRequested)
        buttons.addWidget(self.download_button)
        buttons.addWidget(self.add_button)
        buttons.addWidget(self.open_button)
        buttons.addStretch(1)
        buttons.addWidget(self.rescan_button)
        col.addLayout(buttons)

        # Readable line length, but never narrower than the row of buttons (they would be
        # squeezed below their text).
        card.ensurePolished()  # the style sheet's fonts (bold accent) decide the widths
        card.setMaximumWidth(max(620, card.minimumSizeHint().width()))
        outer = QVBoxLayout(self)
        outer.addStretch(1)
        row = QHBoxLayout()
        row.addStretch(1)
        row.addWidget(card, 10)
        row.addStretch(1)
        outer.addLayout(row)
        outer.addStretch(2)

    def set_models_dir(self, folder: Path, error: str = "") -> None:
        self._models_dir = Path(folder)
        problem = (f"<p style='color:#ff8a80'>The last search failed: {error}</p>"
                   if error else "")
        self.body.setText(
            "Studio makes images with Stable Diffusion models that live on your computer. "
            "It looks in its models folder and in your Hugging Face cache.<br><br>"
            "Put a <b>diffusers folder</b> or a single <b>.safetensors</b> checkpoint in"
            f"<br><code>{folder}</code><br><br>"
            "or press <b>Download a model…</b> below, or download one from the command line:"
            + problem)

    def open_models_folder(self) -> bool:
        self._models_dir.mkdir(parents=True, exist_ok=True)
        return QDesktopServices.openUrl(QUrl.fromLocalFile(str(self._models_dir)))
