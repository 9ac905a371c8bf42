"""The view of the DDPM lesson: the forward (noising) process and the model's reverse chain side
by side on one timestep scrubber, the latest samples, and the ε-MSE of each range of timesteps.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt, Slot
from PySide6.QtWidgets import QGridLayout, QHBoxLayout, QLabel, QSlider, QVBoxLayout, QWidget

from studio.ui.panels.train import plotting as pk
from studio.ui.panels.train.views.base import LessonView
from studio.ui.theme import colors
from studio.ui.widgets.basics import section_label

RANGE = 3.2  # noise spreads beyond the data square; show a little more than it


class DDPMView(LessonView):
    """Pictures of a diffusion model learning to denoise 2D points."""

    def __init__(self, lesson_key: str, parent: QWidget | None = None) -> None:
        super().__init__(lesson_key, parent)
        c = colors()
        self._snapshot: dict[str, Any] | None = None

        def point_plot() -> tuple[pg.PlotWidget, pg.ScatterPlotItem, pg.ScatterPlotItem]:
            plot = pk.themed_plot()
            plot.setAspectLocked(True)
            plot.setRange(xRange=(-RANGE, RANGE), yRange=(-RANGE, RANGE), padding=0)
            ghost = pg.ScatterPlotItem(size=3, pen=pg.mkPen(None), brush=pg.mkBrush(c.muted + "55"))
            points = pg.ScatterPlotItem(size=4, pen=pg.mkPen(None), brush=pg.mkBrush(c.accent))
            plot.addItem(ghost)
            plot.addItem(points)
            return plot, ghost, points

        self.forward_plot, self.forward_data, self.forward_points = point_plot()
        self.reverse_plot, self.reverse_data, self.reverse_points = point_plot()
        self.reverse_points.setBrush(pg.mkBrush(c.queued))
        self.samples_plot, self.samples_data, self.samples_points = point_plot()
        self.samples_points.setBrush(pg.mkBrush(c.done))

        self.mse_plot = pk.themed_plot()
        self.mse_bars = pk.bars(self.mse_plot, 5, c.running)
        self.mse_plot.getPlotItem().setLabel("left", "ε-MSE", color=c.muted)
        self.mse_plot.getPlotItem().getAxis("left").enableAutoSIPrefix(False)
        self.mse_range = pk.StickyRange(self.mse_plot, zero_y=True)
        self._shown: tuple | None = None  # (level, forward, reverse) the points show

        self.scrubber = QSlider(Qt.Orientation.Horizontal)
        self.scrubber.setRange(0, 100)
        self.scrubber.setValue(100)
        self.scrubber.valueChanged.connect(self._on_scrub)
        self.level_label = QLabel("t = 100")
        self.level_label.setMinimumWidth(170)
        self.level_label.setProperty("muted", True)

        self.forward_caption = section_label("Forward process: data → noise")
        self.reverse_caption = section_label("Reverse chain: noise → data")
        self.samples_caption = section_label("Samples")
        layout = QGridLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setHorizontalSpacing(12)
        layout.setVerticalSpacing(4)
        for col, (caption, plot) in enumerate(((self.forward_caption, self.forward_plot),
                                               (self.reverse_caption, self.reverse_plot))):
            layout.addWidget(caption, 0, col)
            layout.addWidget(plot, 1, col)
        scrub = QHBoxLayout()
        scrub_name = QLabel("Timestep")
        scrub_name.setProperty("muted", True)
        scrub.addWidget(scrub_name)
        scrub.addWidget(self.scrubber, 1)
        scrub.addWidget(self.level_label)
        layout.addLayout(scrub, 2, 0, 1, 2)
        side = QVBoxLayout()
        side.addWidget(self.samples_caption)
        side.addWidget(self.samples_plot, 3)
        side.addWidget(section_label("Noise-prediction error per timestep range"))
        side.addWidget(self.mse_plot, 2)
        layout.addLayout(side, 0, 2, 3, 1)
        for col in range(3):
            layout.setColumnStretch(col, 1)
        layout.setRowStretch(1, 1)

    # -- LessonView ----------------------------------------------------------------------------
    def show_snapshot(self, snapshot: dict[str, Any]) -> None:
        previous = self._snapshot
        self._snapshot = snapshot
        T = int(snapshot["timesteps"])
        if self.scrubber.maximum() != T:
            at_end = self.scrubber.value() == self.scrubber.maximum()
            self.scrubber.blockSignals(True)
            self.scrubber.setMaximum(T)
            if at_end:
                self.scrubber.setValue(T)
            self.scrubber.blockSignals(False)
        if previous is None or previous["data"] is not snapshot["data"]:
            for ghost in (self.forward_data, self.reverse_data, self.samples_data):
                ghost.setData(pos=snapshot["data"])
        if previous is None or previous["reverse"] is not snapshot["reverse"]:
            pk.move_points(self.samples_points, snapshot["samples"])
            self.samples_caption.setText(f"SAMPLES · DRAWN AT STEP {snapshot['samples_step']}")
        self._on_scrub(self.scrubber.value())
        mse = np.nan_to_num(snapshot["bucket_mse"], nan=0.0)
        self.mse_bars.setOpts(height=mse)
        self.mse_range.show(np.array([-0.5, len(mse) - 0.5]), mse)
        pk.label_ticks(self.mse_plot, list(snapshot["bucket_labels"]))

    @Slot(int)
    def _on_scrub(self, level: int) -> None:
        snap = self._snapshot
        if snap is None:
            return
        level = min(level, int(snap["timesteps"]))
        shown = (level, id(snap["forward"]), id(snap["reverse"]))
        if shown == self._shown:  # most frames: the same chains at the same level
            return
        self._shown = shown
        pk.move_points(self.forward_points, snap["forward"][level])
        pk.move_points(self.reverse_points, snap["reverse"][level])
        abar = float(snap["alpha_bar"][level])
        self.level_label.setText(f"t = {level} / {snap['timesteps']}   ·   signal √ᾱ = "
                                 f"{np.sqrt(abar):.2f}")

    def reset(self) -> None:
        self._snapshot = None
        self._shown = None
        self.mse_range.reset()
        for item in (self.forward_points, self.reverse_points, self.samples_points):
            item.setData(pos=np.zeros((0, 2)))

    def export_items(self) -> dict[str, QWidget]:
        return {"Forward process": self.forward_plot, "Reverse chain": self.reverse_plot,
                "Samples": self.samples_plot, "Error per timestep": self.mse_plot}
