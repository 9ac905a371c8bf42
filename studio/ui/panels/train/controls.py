"""The control bar above a lesson: play/pause, one step (or one part of it), speed, reset, the
seed, the state and the step count.

It fits a 1366-pixel laptop screen beside the lesson list and the notes: the seed, which people
change rarely, is a button that shows it and opens a menu (a new random seed, or one typed in);
when even that is too wide (a narrow window) the bar wraps onto a second row instead of clipping
its buttons.
"""

from __future__ import annotations

import random

from PySide6.QtCore import QSize, Qt, Signal
from PySide6.QtGui import QAction
from PySide6.QtWidgets import (
    QComboBox,
    QGridLayout,
    QHBoxLayout,
    QInputDialog,
    QLabel,
    QMenu,
    QPushButton,
    QSizePolicy,
    QToolButton,
    QWidget,
)

from studio.ui.panels.train.widgets import ElidedLabel

__all__ = ["SPEEDS", "SPEED_TIPS", "ControlBar", "ElidedLabel"]

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
MAX_SEED = 2**31 - 1
SPACING = 8


class ControlBar(QWidget):
    """Buttons only: the panel connects them to the session."""

    playToggled = Signal(bool)
    stepRequested = Signal(str)  # "" for a whole step, else a step part ("D", "G")
    resetRequested = Signal(int)  # the seed
    speedChanged = Signal(float, int)  # delay_s, draw_every

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._seed = 0
        self.play_button = QPushButton("Play")
        self.play_button.setObjectName("playButton")
        self.play_button.setProperty("accent", True)
        self.play_button.setCheckable(True)
        self.play_button.setToolTip("Play / pause (Space)")
        self.step_button = QPushButton("Step")
        self.step_button.setObjectName("stepButton")
        self.step_button.setToolTip("One training step, then pause")
        self.part_buttons: dict[str, QPushButton] = {}
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
        self.reset_button = QPushButton("Reset")
        self.reset_button.setObjectName("resetButton")

        # The seed: shown on a button whose menu starts over with another one.
        self.seed_menu = QMenu(self)
        self.reset_action = QAction("Start over with this seed", self)
        self.new_seed_action = QAction("Start over with a new random seed", self)
        self.new_seed_action.setObjectName("newSeed")
        self.choose_seed_action = QAction("Choose the seed…", self)
        for action in (self.new_seed_action, self.choose_seed_action, self.reset_action):
            self.seed_menu.addAction(action)
        self.seed_button = QToolButton()
        self.seed_button.setObjectName("seedButton")
        self.seed_button.setPopupMode(QToolButton.ToolButtonPopupMode.InstantPopup)
        self.seed_button.setMenu(self.seed_menu)
        self.seed_button.setProperty("chevron", True)  # the theme draws its menu arrow

        self.status = ElidedLabel("Paused", min_text="Training…")
        self.status.setObjectName("trainStatus")
        self.status.setProperty("muted", True)
        self.step_label = QLabel("step 0")
        self.step_label.setObjectName("stepLabel")
        self.step_label.setAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        self.step_label.setMinimumWidth(
            self.step_label.fontMetrics().horizontalAdvance("step 9,999,999") + 4)
        self.step_label.setToolTip("Training steps so far in this run")

        # Two groups: what is used all the time, and the run's state and seed. They share one
        # row when it is wide enough, else the second group gets a row of its own.
        self.transport = QWidget()
        left = QHBoxLayout(self.transport)
        left.setContentsMargins(0, 0, 0, 0)
        left.setSpacing(SPACING)
        left.addWidget(self.play_button)
        left.addWidget(self.step_button)
        self._parts_row = QHBoxLayout()
        self._parts_row.setSpacing(4)
        left.addLayout(self._parts_row)
        left.addWidget(self.speed)
        self.run_box = QWidget()
        right = QHBoxLayout(self.run_box)
        right.setContentsMargins(0, 0, 0, 0)
        right.setSpacing(SPACING)
        right.addWidget(self.status, 1)
        right.addWidget(self.step_label)
        right.addWidget(self.reset_button)
        right.addWidget(self.seed_button)
        for box in (self.transport, self.run_box):
            box.setSizePolicy(QSizePolicy.Policy.Preferred, QSizePolicy.Policy.Fixed)
        self._grid = QGridLayout(self)
        self._grid.setContentsMargins(0, 0, 0, 0)
        self._grid.setHorizontalSpacing(SPACING * 2)
        self._grid.setVerticalSpacing(6)
        self.two_rows = None  # set by _arrange
        self._arrange(two_rows=False)

        self.play_button.toggled.connect(self._on_play_toggled)
        self.step_button.clicked.connect(lambda: self.stepRequested.emit(""))
        self.reset_button.clicked.connect(lambda: self.resetRequested.emit(self._seed))
        self.reset_action.triggered.connect(lambda: self.resetRequested.emit(self._seed))
        self.new_seed_action.triggered.connect(self._new_seed)
        self.choose_seed_action.triggered.connect(self._choose_seed)
        self.speed.currentTextChanged.connect(lambda t: self.speedChanged.emit(*SPEEDS[t]))
        self.set_playing(False)
        self.set_seed(0)

    # -- the seed -----------------------------------------------------------------------------
    def seed_value(self) -> int:
        return self._seed

    def set_seed(self, seed: int) -> None:
        """Show ``seed`` (the one the next Reset uses); starts nothing."""
        self._seed = int(seed)
        self.seed_button.setText(f"Seed {self._seed}")
        self.seed_button.setToolTip(
            f"The run's random seed is {self._seed}: the same seed gives the same run. "
            "Click for a new random seed or to type one (each starts over).")
        self.reset_button.setToolTip(f"Start over with seed {self._seed}")
        self.reset_action.setText(f"Start over with seed {self._seed}")
        self._fit()

    def _new_seed(self) -> None:
        self.set_seed(random.randrange(0, 100_000))
        self.resetRequested.emit(self._seed)

    def _choose_seed(self) -> None:
        seed, ok = QInputDialog.getInt(self, "Seed", "Start over with the seed (0 to "
                                       f"{MAX_SEED:,}):", self._seed, 0, MAX_SEED)
        if ok:
            self.set_seed(seed)
            self.resetRequested.emit(seed)

    # -- buttons ------------------------------------------------------------------------------
    def set_step_parts(self, parts: tuple[str, ...]) -> None:
        """Buttons to run one part of a step alone (e.g. "Step D", "Step G" for GANs)."""
        for button in self.part_buttons.values():
            self._parts_row.removeWidget(button)
            button.deleteLater()
        self.part_buttons = {}
        for part in parts:
            button = QPushButton(f"Step {part}")
            button.setObjectName(f"step{part}Button")
            button.setToolTip(f"Run only the {part} part of a step")
            button.clicked.connect(lambda _c=False, p=part: self.stepRequested.emit(p))
            self._parts_row.addWidget(button)
            self.part_buttons[part] = button
        self._fit()

    def set_playing(self, playing: bool) -> None:
        self.play_button.blockSignals(True)
        self.play_button.setChecked(playing)
        self.play_button.blockSignals(False)
        self.play_button.setText("Pause" if playing else "Play")

    def set_status(self, text: str) -> None:
        self.status.set_full_text(text)

    def set_step(self, step: int) -> None:
        self.step_label.setText(f"step {step:,}")

    def _on_play_toggled(self, on: bool) -> None:
        self.play_button.setText("Pause" if on else "Play")
        self.playToggled.emit(on)

    # -- fitting the width --------------------------------------------------------------------
    def changeEvent(self, event) -> None:  # noqa: N802 - Qt's name
        super().changeEvent(event)
        if event.type() in (event.Type.StyleChange, event.Type.FontChange):
            self._fit()

    def _fit(self) -> None:
        """The play button as wide as its longer text, so Play/Pause never shifts the bar."""
        if not hasattr(self, "_grid"):  # a style change while the bar is being built
            return
        metrics = self.play_button.fontMetrics()
        extra = self.play_button.sizeHint().width() - metrics.horizontalAdvance(
            self.play_button.text())
        self.play_button.setMinimumWidth(
            max(metrics.horizontalAdvance(t) for t in ("Play", "Pause")) + extra)
        self._arrange(self.two_rows)

    def one_row_width(self) -> int:
        return (self.transport.minimumSizeHint().width() + self._grid.horizontalSpacing()
                + self.run_box.minimumSizeHint().width())

    def minimumSizeHint(self) -> QSize:  # noqa: N802 - Qt's name
        """As narrow as the wider group: below one row's width the bar wraps."""
        hint = super().minimumSizeHint()
        width = max(self.transport.minimumSizeHint().width(),
                    self.run_box.minimumSizeHint().width())
        return QSize(width, hint.height())

    def resizeEvent(self, event) -> None:  # noqa: N802 - Qt's name
        super().resizeEvent(event)
        self._arrange(event.size().width() < self.one_row_width())

    def _arrange(self, two_rows: bool | None) -> None:
        two_rows = bool(two_rows)
        if two_rows == self.two_rows:
            return
        self.two_rows = two_rows
        self._grid.removeWidget(self.transport)
        self._grid.removeWidget(self.run_box)
        if two_rows:
            self._grid.addWidget(self.transport, 0, 0, Qt.AlignmentFlag.AlignLeft)
            self._grid.addWidget(self.run_box, 1, 0)
            self._grid.setColumnStretch(0, 1)
            self._grid.setColumnStretch(1, 0)
        else:
            self._grid.addWidget(self.transport, 0, 0)
            self._grid.addWidget(self.run_box, 0, 1)
            self._grid.setColumnStretch(0, 0)
            self._grid.setColumnStretch(1, 1)
        self.updateGeometry()
