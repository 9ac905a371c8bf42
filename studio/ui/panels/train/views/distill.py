"""The ``distill`` lesson's view: the teacher and the two students side by side (test accuracy
and parameter count each), the gap to the teacher in words, and for a picked test image its true
label, the teacher's soft label at the temperature and both students' guesses as grouped bars.

The accuracy curves are the loss plot's series (``teacher_acc``, ``student_acc``, ``twin_acc``).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QGridLayout, QHBoxLayout, QLabel, QSpinBox, QVBoxLayout, QWidget

from studio.ui.panels.train import plotting as pk
from studio.ui.panels.train.views.base import LessonView
from studio.ui.panels.train.views.cnn import image_plot, show_pick, show_tiled
from studio.ui.panels.train.widgets import ElidedLabel, LegendStrip, caption, readout_value

MODELS = (("teacher", "Teacher"), ("student", "Distilled student"), ("twin", "Hard-label twin"))
#: the bar groups: (key, legend name, colour)
BARS = (("hard", "True label", pk.SERIES_COLORS[5]),
        ("soft", "Teacher's soft label at T", pk.SERIES_COLORS[0]),
        ("student", "Distilled student", pk.SERIES_COLORS[1]),
        ("twin", "Hard-label twin", pk.SERIES_COLORS[2]))
BAR_WIDTH = 0.2


def readout_cards(parent_layout: QGridLayout, items: tuple[tuple[str, str], ...],
                  prefix: str) -> dict[str, tuple[QLabel, QLabel]]:
    """A caption, a big value and a muted line under it per item, in a row of ``parent_layout``;
    returns key → (value label, note label)."""
    out = {}
    for i, (key, title) in enumerate(items):
        head = QLabel(title.upper())
        head.setProperty("section", True)
        parent_layout.addWidget(head, 0, i, Qt.AlignmentFlag.AlignLeft)
        value = readout_value(f"{prefix}-{key}")
        note = QLabel("")
        note.setProperty("muted", True)
        parent_layout.addWidget(value, 1, i, Qt.AlignmentFlag.AlignLeft)
        parent_layout.addWidget(note, 2, i, Qt.AlignmentFlag.AlignLeft)
        out[key] = (value, note)
    return out


class DistillView(LessonView):
    def __init__(self, lesson_key: str, parent: QWidget | None = None) -> None:
        super().__init__(lesson_key, parent)
        self._names: tuple[str, ...] = ()
        self._lut: np.ndarray | None = None
        self._photo: bool | None = None
        cards = QGridLayout()
        cards.setHorizontalSpacing(24)
        self.cards = readout_cards(cards, MODELS, "distillAcc")
        cards.setColumnStretch(len(MODELS), 1)
        self.status = ElidedLabel("")
        self.status.setObjectName("distillStatus")

        self.picked_plot, self.picked_image = image_plot("distillPicked")
        self.bars_plot = pk.themed_plot()
        self.bars_plot.setObjectName("distillBars")
        self.bars_plot.setYRange(0.0, 1.0, padding=0.02)
        self.bars_plot.getPlotItem().getViewBox().setMouseEnabled(False, False)
        self.bar_items = {}
        for i, (key, _name, color) in enumerate(BARS):
            item = pg.BarGraphItem(x=np.zeros(0), height=np.zeros(0), width=BAR_WIDTH,
                                   brush=pg.mkBrush(color), pen=pg.mkPen(None))
            item._studio_offset = (i - (len(BARS) - 1) / 2) * BAR_WIDTH
            self.bars_plot.addItem(item)
            self.bar_items[key] = item
        self.legend = LegendStrip()
        self.legend.set_entries([(name, color, "square") for _k, name, color in BARS])
        self.pick_box = QSpinBox()
        self.pick_box.setObjectName("distillPick")
        self.pick_box.setRange(0, 0)
        self.pick_box.setToolTip("The test image whose soft label and guesses are shown")
        self.pick_box.valueChanged.connect(
            lambda v: self.setParamRequested.emit("pick", int(v)))
        self.guess = ElidedLabel("")
        self.guess.setObjectName("distillGuess")

        pictures = QGridLayout()
        pictures.setHorizontalSpacing(12)
        pictures.addWidget(caption("Test image", tip="The picked test image (Image # below)"), 0, 0)
        pictures.addWidget(self.picked_plot, 1, 0)
        pictures.addWidget(caption(
            "Soft label and guesses",
            tip="Per class: the true label (one-hot), the teacher's probabilities softened at "
                "temperature T (what the distilled student learns), and each student's "
                "probabilities now"), 0, 1)
        pictures.addWidget(self.bars_plot, 1, 1)
        pictures.setColumnStretch(0, 1)
        pictures.setColumnStretch(1, 4)
        pick_row = QHBoxLayout()
        pick_label = QLabel("Image #")
        pick_label.setProperty("muted", True)
        pick_row.addWidget(pick_label)
        pick_row.addWidget(self.pick_box)
        pick_row.addWidget(self.guess, 1)

        col = QVBoxLayout(self)
        col.setContentsMargins(0, 0, 0, 0)
        col.setSpacing(6)
        col.addLayout(cards)
        col.addWidget(self.status)
        col.addLayout(pictures, 1)
        col.addWidget(self.legend)
        col.addLayout(pick_row)
        self.apply_theme()

    def apply_theme(self) -> None:
        pk.restyle(self.picked_plot)
        pk.restyle(self.bars_plot)
        self._photo = None  # the image's colours follow at the next frame

    def show_snapshot(self, snapshot: dict[str, Any]) -> None:
        params, acc = snapshot["params"], snapshot["accuracy"]
        for key, (value, note) in self.cards.items():
            value.setText(f"{acc[key]:.1%}")
            note.setText(f"{params[key]:,} parameters")
        step, teacher_steps = int(snapshot["step"]), int(snapshot["teacher_steps"])
        if snapshot["teaching"]:
            text = (f"Training the teacher on all {snapshot['n_train']:,} training images: step "
                    f"{step} of {teacher_steps}. The students start after it.")
        else:
            gap_s = acc["teacher"] - acc["student"]
            gap_t = acc["teacher"] - acc["twin"]
            text = (f"Students, step {step - teacher_steps} on {snapshot['n_student_images']:,} "
                    f"images at T = {snapshot['temperature']:g}, alpha = "
                    f"{snapshot['alpha']:g}: {gap_s * 100:.1f} points behind the teacher "  # plural-ok
                    f"(distilled) vs {gap_t * 100:.1f} (hard labels only).")
        self.status.set_full_text(text)

        photo = bool(snapshot["photo"])
        if photo != self._photo:
            self._photo = photo
            self._lut = pk.grey_lut() if photo else pk.ink_lut()
        show_tiled(self.picked_image, snapshot["picked"][None], 1, self._lut)
        names = tuple(snapshot["class_names"])
        if names != self._names:
            self._names = names
            short = list(names) if all(len(n) <= 3 for n in names) else [
                str(i) for i in range(len(names))]
            pk.label_ticks(self.bars_plot, short)
            self.bars_plot.setXRange(-0.5, len(names) - 0.5, padding=0)
            self.bars_plot.setToolTip("Classes: " + ", ".join(
                f"{i}: {n}" for i, n in enumerate(names)))
        heights = {"hard": snapshot["hard_label"], "soft": snapshot["soft_label"],
                   "student": snapshot["probs"]["student"], "twin": snapshot["probs"]["twin"]}
        x = np.arange(len(names), dtype=np.float64)
        for key, item in self.bar_items.items():
            item.setOpts(x=x + item._studio_offset, height=np.asarray(heights[key]))
        label = names[int(snapshot["picked_label"])]
        guesses = ", ".join(f"{title.lower()} {names[int(np.argmax(snapshot['probs'][key]))]}"
                            for key, title in MODELS)
        self.guess.set_full_text(f"is {label} · {guesses}")
        show_pick(self.pick_box, snapshot)

    def reset(self) -> None:
        for value, note in self.cards.values():
            value.setText("—")
            note.setText("")
        self._names = ()

    def export_items(self) -> dict[str, QWidget]:
        return {"Soft label and guesses": self.bars_plot}
