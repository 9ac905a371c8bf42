"""The view of the GAN and WGAN-GP lessons: real vs generated points over the discriminator's
heatmap, the generator's gradient arrows, D(x)/D(G(z)), mode coverage, single-player steps and a
"Draw data" mode in which the user draws the distribution to learn with the mouse.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QEvent, QObject, QPointF, Qt, Slot
from PySide6.QtWidgets import (
    QFrame,
    QGridLayout,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from studio.core.wording import count_of
from studio.ui.panels.train import plotting as pk
from studio.ui.panels.train.views.base import LessonView
from studio.ui.panels.train.widgets import LegendStrip, caption
from studio.ui.theme import colors
from studio.ui.widgets.basics import section_label, vertical_scroll

EXTENT = 2.5  # the data square of datasets2d (kept here: the view must not import the engine)
MIN_POINTS = 20  # a drawing with fewer points is refused by the lesson too
DRAW_SPACING = 0.04  # a new drawn point at least this far from the last (data units)
ARROW_LENGTH = 0.35  # the longest gradient arrow, in data units
SIDE_WIDTH = 230  # the card of numbers and buttons beside the plot


def step_part_buttons(view: LessonView) -> tuple[QPushButton, QPushButton]:
    """"Step D" and "Step G": one update of that player (the view's ``stepPartRequested``)."""
    step_d, step_g = QPushButton("Step D"), QPushButton("Step G")
    step_d.setToolTip("Run one update of the discriminator only")
    step_g.setToolTip("Run one update of the generator only")
    step_d.clicked.connect(lambda: view.stepPartRequested.emit("D"))
    step_g.clicked.connect(lambda: view.stepPartRequested.emit("G"))
    return step_d, step_g


class GANView(LessonView):
    """Pictures of a GAN learning a 2D distribution."""

    offers_step_parts = True  # "Step D" / "Step G" under "One player at a time"

    def __init__(self, lesson_key: str, parent: QWidget | None = None) -> None:
        super().__init__(lesson_key, parent)
        self.wasserstein = lesson_key == "wgan-gp-2d"
        self.drawn: list[list[float]] = []
        self._real: np.ndarray | None = None  # the real points shown
        self._modes_color: str | None = None

        self.plot = pk.themed_plot()
        self.plot.setAspectLocked(True)
        self.plot.setRange(xRange=(-EXTENT, EXTENT), yRange=(-EXTENT, EXTENT), padding=0.02)
        self.heat = pk.image_item()
        self.plot.addItem(self.heat)
        self.real = pg.ScatterPlotItem(size=4, pen=pg.mkPen(None))
        self.fake = pg.ScatterPlotItem(size=5, pen=pg.mkPen(None))
        self.arrows = pg.PlotDataItem(connect="pairs")
        self.drawing = pg.ScatterPlotItem(size=7)
        # Under the plot, not on it: a legend inside covered points.
        self.legend = LegendStrip()
        self.legend.setObjectName("ganLegend")
        for item in (self.real, self.fake, self.arrows, self.drawing):
            self.plot.addItem(item)
        self.plot.viewport().installEventFilter(self)

        self.step_d, self.step_g = step_part_buttons(self)
        self.draw_button = QPushButton("Draw data")
        self.draw_button.setCheckable(True)
        self.draw_button.toggled.connect(self._on_draw_toggled)
        self.clear_button = QPushButton("Clear")
        self.clear_button.clicked.connect(self.clear_drawing)
        self.use_button = QPushButton("Use drawing")
        self.use_button.setProperty("accent", True)
        self.use_button.clicked.connect(self.use_drawing)
        self.draw_hint = QLabel()
        self.draw_hint.setProperty("muted", True)
        self.draw_hint.setWordWrap(True)

        self.readouts: dict[str, QLabel] = {}
        side = QVBoxLayout()
        side.setSpacing(6)
        side.addWidget(section_label("Discriminator" if not self.wasserstein else "Critic"))
        grid = QGridLayout()
        grid.setVerticalSpacing(4)
        grid.setHorizontalSpacing(8)
        rows = [("d_real", "D(x)" if not self.wasserstein else "mean D(x)"),
                ("d_fake", "D(G(z))" if not self.wasserstein else "mean D(G(z))"),
                ("loss_d", "loss D"), ("loss_g", "loss G")]
        if self.wasserstein:
            rows += [("wasserstein", "Wasserstein est."), ("gp", "grad. penalty")]
        for i, (key, text) in enumerate(rows):
            name = QLabel(text)
            name.setProperty("muted", True)
            value = QLabel("–")
            value.setObjectName(f"readout-{key}")
            value.setAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
            value.setStyleSheet("font-family: monospace; font-size: 13px;")
            # Room for "-123.456": the numbers never squeeze (they did, in a short window).
            value.setMinimumWidth(value.fontMetrics().horizontalAdvance("-0000.000") + 4)
            grid.addWidget(name, i, 0)
            grid.addWidget(value, i, 1)
            self.readouts[key] = value
        side.addLayout(grid)
        heat_note = QLabel("Heatmap: the critic's score (blue = scored as real)."
                           if self.wasserstein else
                           "Heatmap: D's probability that a point is real (blue = real).")
        heat_note.setProperty("muted", True)
        heat_note.setWordWrap(True)
        side.addWidget(heat_note)
        side.addSpacing(8)
        side.addWidget(section_label("Mode coverage"))
        self.modes_label = QLabel("–")
        self.modes_label.setStyleSheet("font-size: 22px; font-weight: 600;")
        self.modes_detail = QLabel("8-gaussians only")
        self.modes_detail.setProperty("muted", True)
        self.modes_detail.setWordWrap(True)
        side.addWidget(self.modes_label)
        side.addWidget(self.modes_detail)
        side.addSpacing(8)
        side.addWidget(section_label("One player at a time"))
        steps = QHBoxLayout()
        steps.addWidget(self.step_d)
        steps.addWidget(self.step_g)
        side.addLayout(steps)
        side.addSpacing(8)
        side.addWidget(section_label("Your own data"))
        draw_row = QHBoxLayout()
        draw_row.addWidget(self.draw_button)
        draw_row.addWidget(self.clear_button)
        side.addLayout(draw_row)
        side.addWidget(self.use_button)
        side.addWidget(self.draw_hint)
        side.addStretch(1)
        panel = QFrame()
        panel.setObjectName("Card")
        panel.setLayout(side)
        # In a short window the card scrolls; nothing in it is squeezed.
        self.side = vertical_scroll(panel)
        self.side.setObjectName("ganSide")
        self.side.setFixedWidth(SIDE_WIDTH)

        self.caption = caption("Real and generated points")
        left = QVBoxLayout()
        left.setSpacing(4)
        left.addWidget(self.caption)
        left.addWidget(self.plot, 1)
        left.addWidget(self.legend)
        layout = QHBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(12)
        layout.addLayout(left, 1)
        layout.addWidget(self.side)
        self._update_draw_controls()
        self.apply_theme()

    def apply_theme(self) -> None:
        c = colors()
        pk.restyle(self.plot)
        self.heat.setLookupTable(pk.heat_lut())
        real = c.text + "99"
        self.real.setBrush(pg.mkBrush(real))
        self.fake.setBrush(pg.mkBrush(c.queued))
        self.arrows.setPen(pg.mkPen(c.failed, width=1.3))
        self.drawing.setBrush(pg.mkBrush(c.accent))
        self.drawing.setPen(pg.mkPen(c.accent_text, width=0.5))
        self.legend.set_entries([("real", c.text, "dot"), ("generated", c.queued, "dot"),
                                 ("G's gradient", c.failed, "line")])
        self._modes_color = None  # the mode count's colour follows at the next frame

    # -- LessonView ----------------------------------------------------------------------------
    def show_snapshot(self, snapshot: dict[str, Any]) -> None:
        heat = snapshot["heatmap"]
        if self.wasserstein:
            lo, hi = np.percentile(heat, [2, 98])
            levels = (float(lo), float(hi) if hi > lo else float(lo) + 1e-6)
        else:
            levels = (0.0, 1.0)
        self.heat.setImage(heat, autoLevels=False, levels=levels)
        # The rect scales pixels to data units, so it needs the image's size: set it after.
        self.heat.setRect(-EXTENT, -EXTENT, 2 * EXTENT, 2 * EXTENT)
        if snapshot["real"] is not self._real:  # the same data set most frames
            self._real = snapshot["real"]
            self.real.setData(pos=self._real)
        pk.move_points(self.fake, snapshot["fake"])
        start, grad = snapshot["arrows_from"], snapshot["arrows_grad"]
        norm = np.linalg.norm(grad, axis=1)
        scale = ARROW_LENGTH / max(float(norm.max()), 1e-12)
        ends = start + grad * scale
        segments = np.empty((2 * len(start), 2), dtype=np.float32)
        segments[0::2], segments[1::2] = start, ends
        self.arrows.setData(segments[:, 0], segments[:, 1])
        for key, label in self.readouts.items():
            if key in snapshot:
                label.setText(f"{snapshot[key]:.3f}")
        if "modes_covered" in snapshot:
            covered, total = snapshot["modes_covered"], snapshot["modes_total"]
            c = colors()
            color = c.done if covered == total else c.queued if covered >= total / 2 else c.failed
            self.modes_label.setText(f"{covered} / {total} modes")
            if color != self._modes_color:  # a new style sheet re-polishes the label
                self._modes_color = color
                self.modes_label.setStyleSheet(
                    f"font-size: 22px; font-weight: 600; color: {color};")
            self.modes_detail.setText(
                f"{snapshot['on_modes'] * 100:.0f}% of generated points sit on a mode")
        else:
            self.modes_label.setText("–")
            self.modes_detail.setText("Counted on the 8-gaussians data set.")
        self.caption.set_full_text(f"Real and generated points · step {snapshot['step']}")

    def reset(self) -> None:
        self._real = None
        self.fake.setData(pos=np.zeros((0, 2)))
        self.arrows.setData([], [])

    def export_items(self) -> dict[str, QWidget]:
        return {"Points and discriminator": self.plot}

    # -- drawing -------------------------------------------------------------------------------
    @Slot(bool)
    def _on_draw_toggled(self, on: bool) -> None:
        # While drawing, a drag draws instead of panning the plot.
        self.plot.getPlotItem().getViewBox().setMouseEnabled(not on, not on)
        self._update_draw_controls()

    def add_drawn_point(self, x: float, y: float) -> None:
        """Add a point of the user's shape (data units), skipping ones too close to the last."""
        x = float(np.clip(x, -EXTENT, EXTENT))
        y = float(np.clip(y, -EXTENT, EXTENT))
        if self.drawn and np.hypot(x - self.drawn[-1][0], y - self.drawn[-1][1]) < DRAW_SPACING:
            return
        self.drawn.append([x, y])
        self.drawing.setData(pos=np.array(self.drawn))
        self._update_draw_controls()

    @Slot()
    def clear_drawing(self) -> None:
        self.drawn.clear()
        self.drawing.setData(pos=np.zeros((0, 2)))
        self._update_draw_controls()

    @Slot()
    def use_drawing(self) -> None:
        if len(self.drawn) < MIN_POINTS:
            return
        self.draw_button.setChecked(False)
        self.resetRequested.emit({"dataset": "drawn", "points": [list(p) for p in self.drawn]})

    def _update_draw_controls(self) -> None:
        n = len(self.drawn)
        self.use_button.setEnabled(n >= MIN_POINTS)
        self.clear_button.setEnabled(n > 0)
        if self.draw_button.isChecked():
            need = max(0, MIN_POINTS - n)
            self.draw_hint.setText(f"Drag on the plot to draw. {count_of(n, 'point')}"
                                   + (f" — {need} more needed." if need else "."))
        else:
            self.draw_hint.setText("Draw a shape and the GAN learns it (restarts the run)."
                                   if n == 0 else f"{count_of(n, 'point')} drawn.")

    def eventFilter(self, obj: QObject, event: QEvent) -> bool:  # noqa: N802 (Qt override)
        if not self.draw_button.isChecked():
            return False
        kind = event.type()
        if kind in (QEvent.Type.MouseButtonPress, QEvent.Type.MouseMove):
            if event.buttons() & Qt.MouseButton.LeftButton:
                scene = self.plot.mapToScene(event.position().toPoint())
                point = self.plot.getPlotItem().getViewBox().mapSceneToView(QPointF(scene))
                self.add_drawn_point(point.x(), point.y())
                return True
        return False
