"""The control bar above a lesson: play/pause, one step (or one part of it), speed, seed, reset."""

from __future__ import annotations

import random

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QComboBox,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QSizePolicy,
    QSpinBox,
    QToolButton,
    QWidget,
)

#: label -> (delay after each step in seconds, draw every N steps). Short labels, so the bar fits
#: beside the lesson list and the notes; each choice's tooltip says what it does.
SPEEDS: dict[str, tuple[float, int]] = {
    "Slow": (0.25, 1),
    "Normal": (0.0, 1),
    "Fast": (0.0, 10),
    "Fastest": (0.0, 100),
}
SPEED_TIPS = {
    "Slow": "A quarter-second pause after every step, to watch each one",
    "Normal": "Train at full speed and draw up to 60 frames a second",
    "Fast": "Draw every 10th step: a little more training speed",
    "Fastest": "Draw every 100th step",
}


class ElidedLabel(QLabel):
    """A one-line label that takes the space left over and ends in "…" when that is too little
    (the full text is its tooltip), instead of widening the bar and squeezing the buttons."""

    def __init__(self, text: str = "", parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._full = ""
        self.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        self.setMinimumWidth(24)
        self.set_full_text(text)

    def set_full_text(self, text: str) -> None:
        self._full = text
        self.setToolTip(text)
        self._elide()

    def full_text(self) -> str:
        return self._full

    def resizeEvent(self, event) -> None:  # noqa: N802 - Qt's name
        super().resizeEvent(event)
        self._elide()

    def _elide(self) -> None:
        self.setText(self.fontMetrics().elidedText(self._full, Qt.TextElideMode.ElideRight,
                                                   max(0, self.width())))


class ControlBar(QWidget):
    """Buttons only: the panel connects them to the session."""

    playToggled = Signal(bool)
    stepRequested = Signal(str)  # "" for a whole step, else a step part ("D", "G")
    resetRequested = Signal(int)  # the seed
    speedChanged = Signal(float, int)  # delay_s, draw_every

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.play_button = QPushButton("Play")
        self.play_button.setObjectName("playButton")
        self.play_button.setProperty("accent", True)
        self.play_button.setCheckable(True)
        self.play_button.setMinimumWidth(92)
        self.play_button.setToolTip("Play / pause (Space)")
        self.step_button = QPushButton("Step")
        self.step_button.setObjectName("stepButton")
        self.step_button.setToolTip("One training step, then pause")
        self.part_buttons: dict[str, QPushButton] = {}
        self._parts_row = QHBoxLayout()
        self._parts_row.setSpacing(4)
        self.speed = QComboBox()
        self.speed.setObjectName("speed")
        for i, name in enumerate(SPEEDS):
            self.speed.addItem(name)
            self.speed.setItemData(i, SPEED_TIPS[name], Qt.ItemDataRole.ToolTipRole)
        self.speed.setCurrentText("Normal")
        self.speed.setToolTip("Speed: " + "; ".join(f"{k}: {v.lower()}"
                                                    for k, v in SPEED_TIPS.items()))
        # Wide enough for the longest choice, so no choice is ever clipped.
        self.speed.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToContents)
        self.seed = QSpinBox()
        self.seed.setObjectName("seed")
        self.seed.setRange(0, 2**31 - 1)
        # Sized for the seeds people use (New seed picks five digits; a range of 2³¹ would ask
        # for a box wide enough to crowd the bar; longer seeds scroll inside it).
        self.seed.setFixedWidth(self.seed.fontMetrics().horizontalAdvance("0" * 7) + 44)
        self.seed.setToolTip("The run's random seed: the same seed gives the same run")
        self.reset_button = QPushButton("Reset")
        self.reset_button.setObjectName("resetButton")
        self.reset_button.setToolTip("Start over with this seed")
        self.new_seed_button = QToolButton(text="New seed")
        self.new_seed_button.setObjectName("newSeedButton")
        self.new_seed_button.setToolTip("Start over with a random seed")
        self.status = ElidedLabel("Paused")
        self.status.setObjectName("trainStatus")
        self.status.setProperty("muted", True)
        self.step_label = QLabel("step 0")
        self.step_label.setObjectName("stepLabel")
        self.step_label.setAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)

        row = QHBoxLayout(self)
        row.setContentsMargins(0, 0, 0, 0)
        row.setSpacing(8)
        row.addWidget(self.play_button)
        row.addWidget(self.step_button)
        row.addLayout(self._parts_row)
        row.addSpacing(8)
        row.addWidget(self.speed)
        row.addSpacing(8)
        seed_label = QLabel("Seed")
        seed_label.setProperty("muted", True)
        row.addWidget(seed_label)
        row.addWidget(self.seed)
        row.addWidget(self.reset_button)
        row.addWidget(self.new_seed_button)
        row.addSpacing(12)
        row.addWidget(self.status, 1)
        row.addWidget(self.step_label)

        self.play_button.toggled.connect(self._on_play_toggled)
        self.step_button.clicked.connect(lambda: self.stepRequested.emit(""))
        self.reset_button.clicked.connect(lambda: self.resetRequested.emit(self.seed.value()))
        self.new_seed_button.clicked.connect(self._new_seed)
        self.speed.currentTextChanged.connect(lambda t: self.speedChanged.emit(*SPEEDS[t]))

    def set_step_parts(self, parts: tuple[str, ...]) -> None:
        """Buttons to run one part of a step alone (e.g. "Step D", "Step G" for GANs)."""
        for button in self.part_buttons.values():
            button.deleteLater()
        self.part_buttons = {}
        for part in parts:
            button = QPushButton(f"Step {part}")
            button.setObjectName(f"step{part}Button")
            button.setToolTip(f"Run only the {part} part of a step")
            button.clicked.connect(lambda _c=False, p=part: self.stepRequested.emit(p))
            self._parts_row.addWidget(button)
            self.part_buttons[part] = button

    def set_playing(self, playing: bool) -> None:
        self.play_button.blockSignals(True)
        self.play_button.setChecked(playing)
        self.play_button.blockSignals(False)
        self.play_button.setText("Pause" if playing else "Play")

    def set_status(self, text: str) -> None:
        self.status.set_full_text(text)

    def _on_play_toggled(self, on: bool) -> None:
        self.play_button.setText("Pause" if on else "Play")
        self.playToggled.emit(on)

    def _new_seed(self) -> None:
        self.seed.setValue(random.randrange(0, 100_000))
        self.resetRequested.emit(self.seed.value())
