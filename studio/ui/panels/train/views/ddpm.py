"""The view of the DDPM lesson: the forward (noising) process and the model's reverse chain side
by side on one timestep scrubber, the latest samples, and the ε-MSE of each range of timesteps
(horizontal bars, so their names stack down the axis instead of crowding along it).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt, Slot
from PySide6.QtWidgets import QHBoxLayout, QLabel, QSlider, QVBoxLayout, QWidget

from studio.ui.panels.train import plotting as pk
from studio.ui.panels.train.views.base import LessonView
from studio.ui.panels.train.widgets import caption, plot_grid
from studio.ui.theme import colors

RANGE = 3.2  # noise spreads beyond the data square; show a little more than it


def error_bars(name: str) -> tuple[pg.PlotWidget, pg.BarGraphItem, pk.StickyRange]:
    """The ε-MSE per range of timesteps: one horizontal bar each, least noise at the top (the
    2D and the image diffusion lessons)."""
    plot = pk.themed_plot()
    plot.setObjectName(name)
    plot.setMinimumHeight(100)
    bars = pg.BarGraphItem(x0=0, y=np.arange(5), height=0.7, width=np.zeros(5),
                           pen=pg.mkPen(None))
    plot.addItem(bars)
    item = plot.getPlotItem()
    item.getViewBox().invertY(True)
    item.getViewBox().setMouseEnabled(False, False)
    item.getAxis("bottom").enableAutoSIPrefix(False)
    return plot, bars, pk.StickyRange(plot, zero_x=True)


def style_error_bars(plot: pg.PlotWidget, bars: pg.BarGraphItem) -> None:
    c = colors()
    bars.setOpts(brush=pg.mkBrush(c.running))
    plot.getPlotItem().setLabel("bottom", "ε-MSE", color=c.muted)


def show_error_bars(plot: pg.PlotWidget, bars: pg.BarGraphItem, span: pk.StickyRange,
                    snapshot: dict[str, Any]) -> None:
    """The snapshot's ``bucket_mse`` (NaN: not measured yet) with its ``bucket_labels``."""
    mse = np.nan_to_num(snapshot["bucket_mse"], nan=0.0)
    bars.setOpts(y=np.arange(len(mse)), width=mse)
    span.show(mse, np.array([-0.5, len(mse) - 0.5]))
    pk.label_ticks(plot, list(snapshot["bucket_labels"]), axis_name="left")


class DDPMView(LessonView):
    """Pictures of a diffusion model learning to denoise 2D points."""

    def __init__(self, lesson_key: str, parent: QWidget | None = None) -> None:
        super().__init__(lesson_key, parent)
        self._snapshot: dict[str, Any] | None = None

        def point_plot() -> tuple[pg.PlotWidget, pg.ScatterPlotItem, pg.ScatterPlotItem]:
            plot = pk.themed_plot()
            plot.setAspectLocked(True)
            plot.setRange(xRange=(-RANGE, RANGE), yRange=(-RANGE, RANGE), padding=0)
            ghost = pg.ScatterPlotItem(size=3, pen=pg.mkPen(None))
            points = pg.ScatterPlotItem(size=4, pen=pg.mkPen(None))
            plot.addItem(ghost)
            plot.addItem(points)
            return plot, ghost, points

        self.forward_plot, self.forward_data, self.forward_points = point_plot()
        self.reverse_plot, self.reverse_data, self.reverse_points = point_plot()
        self.samples_plot, self.samples_data, self.samples_points = point_plot()

        self.mse_plot, self.mse_bars, self.mse_range = error_bars("mseBars")
        self._shown: tuple | None = None  # (level, forward, reverse) the points show

        self.scrubber = QSlider(Qt.Orientation.Horizontal)
        self.scrubber.setRange(0, 100)
        self.scrubber.setValue(100)
        self.scrubber.valueChanged.connect(self._on_scrub)
        self.level_label = QLabel("t = 100")
        self.level_label.setObjectName("levelLabel")
        self.level_label.setProperty("muted", True)
        self.level_label.setToolTip("The timestep shown, and √ᾱ: how much of the data is left "
                                    "in the points at it (1 = all of it, 0 = pure noise)")

        self.forward_caption = caption("Forward: data → noise",
                                       tip="The forward process: noise added to the data, "
                                           "step by step (the scrubber picks the step)")
        self.reverse_caption = caption("Reverse: noise → data",
                                       tip="The model's reverse chain: pure noise denoised "
                                           "step by step into data")
        self.samples_caption = caption("Samples")
        self.mse_caption = caption("Error by noise level",
                                   tip="The noise-prediction error (ε-MSE) for each range of "
                                       "timesteps, least noise at the top")
        layout = plot_grid(self)
        for col, (title, plot) in enumerate(((self.forward_caption, self.forward_plot),
                                             (self.reverse_caption, self.reverse_plot))):
            layout.addWidget(title, 0, col)
            layout.addWidget(plot, 1, col)
        scrub = QHBoxLayout()
        scrub_name = QLabel("Timestep")
        scrub_name.setProperty("muted", True)
        scrub.addWidget(scrub_name)
        scrub.addWidget(self.scrubber, 1)
        scrub.addWidget(self.level_label)
        layout.addLayout(scrub, 2, 0, 1, 2)
        side = QVBoxLayout()
        side.setSpacing(4)
        side.addWidget(self.samples_caption)
        side.addWidget(self.samples_plot, 3)
        side.addWidget(self.mse_caption)
        side.addWidget(self.mse_plot, 2)
        layout.addLayout(side, 0, 2, 3, 1)
        for col in range(3):
            layout.setColumnStretch(col, 1)
        layout.setRowStretch(1, 1)
        self._fit_level_label()
        self.apply_theme()

    def apply_theme(self) -> None:
        c = colors()
        for plot in (self.forward_plot, self.reverse_plot, self.samples_plot, self.mse_plot):
            pk.restyle(plot)
        for ghost in (self.forward_data, self.reverse_data, self.samples_data):
            ghost.setBrush(pg.mkBrush(c.muted + "55"))
        self.forward_points.setBrush(pg.mkBrush(c.accent))
        self.reverse_points.setBrush(pg.mkBrush(c.queued))
        self.samples_points.setBrush(pg.mkBrush(c.done))
        style_error_bars(self.mse_plot, self.mse_bars)

    def _fit_level_label(self) -> None:
        """Wide enough for the longest text it shows (T up to 1000), so it never clips."""
        self.level_label.setMinimumWidth(self.level_label.fontMetrics().horizontalAdvance(
            self._level_text(1000, 1000, 0.0)) + 6)

    @staticmethod
    def _level_text(level: int, timesteps: int, abar: float) -> str:
        return f"t = {level} / {timesteps}  ·  √ᾱ = {np.sqrt(abar):.2f}"

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
            self.samples_caption.set_full_text(f"Samples · step {snapshot['samples_step']}")
            self.samples_caption.setToolTip(
                f"Points the model generated from pure noise, drawn at step "
                f"{snapshot['samples_step']} (every 'Sample every N steps')")
        self._on_scrub(self.scrubber.value())
        show_error_bars(self.mse_plot, self.mse_bars, self.mse_range, snapshot)

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
        self.level_label.setText(self._level_text(level, int(snap["timesteps"]), abar))

    def reset(self) -> None:
        self._snapshot = None
        self._shown = None
        self.mse_range.reset()
        for item in (self.forward_points, self.reverse_points, self.samples_points):
            item.setData(pos=np.zeros((0, 2)))

    def export_items(self) -> dict[str, QWidget]:
        return {"Forward process": self.forward_plot, "Reverse chain": self.reverse_plot,
                "Samples": self.samples_plot, "Error per timestep": self.mse_plot}
