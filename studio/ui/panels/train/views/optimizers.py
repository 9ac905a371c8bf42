"""The optimizer race: the loss surface as a contour map, one coloured path per optimizer."""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QRectF
from PySide6.QtWidgets import QLabel, QVBoxLayout, QWidget

from studio.ui.panels.train.plotting import SERIES_COLORS, gradient_lut, restyle, styled_plot
from studio.ui.panels.train.views.base import LessonView
from studio.ui.theme import colors

CONTOUR_LEVELS = 14
READOUT_EVERY_S = 0.25


#: The surface's colours, low to high: dark = low in both themes, as the lesson says.
SURFACE_STOPS = {"dark": ("window", "#243a5e", "#3f6fa8", "#9fb9d8"),
                 "light": ("#1d3557", "#3f6fa8", "#9fb9d8", "#eef3fa")}


class OptimizerView(LessonView):
    """Contours of f - f* (log-spaced), the paths so far, a dot where each optimizer is now.
    The readout under the plot names each optimizer in its colour: it is the legend (a legend
    inside the plot covered the paths)."""

    def __init__(self, lesson_key: str, parent: QWidget | None = None) -> None:
        super().__init__(lesson_key, parent)
        self._readout_at = 0.0
        self.plot = styled_plot()
        self.plot.setObjectName("optimizerPlot")
        self.plot.getPlotItem().getViewBox().setDefaultPadding(0.0)
        self.image = pg.ImageItem(axisOrder="row-major")
        self.image.setZValue(-10)
        self.plot.addItem(self.image)
        self.isocurves: list[pg.IsocurveItem] = []
        self.minimum = pg.ScatterPlotItem(size=16, symbol="star", brush=pg.mkBrush("#ffffff"))
        self.minimum.setZValue(5)
        self.plot.addItem(self.minimum)
        self.paths: dict[str, pg.PlotDataItem] = {}
        self.heads: dict[str, pg.ScatterPlotItem] = {}
        self.readout = QLabel()
        self.readout.setObjectName("optimizerReadout")
        self.readout.setWordWrap(True)
        self._grid: dict[str, np.ndarray] | None = None
        col = QVBoxLayout(self)
        col.setContentsMargins(0, 0, 0, 0)
        col.setSpacing(6)
        col.addWidget(self.plot, 1)
        col.addWidget(self.readout)
        self.apply_theme()

    def apply_theme(self) -> None:
        c = colors()
        restyle(self.plot)
        stops = [getattr(c, s, s) for s in SURFACE_STOPS[c.name]]
        self.image.setLookupTable(gradient_lut(stops))
        self.minimum.setPen(pg.mkPen(c.window, width=1.2))
        for head in self.heads.values():
            head.setPen(pg.mkPen(c.window, width=1.5))
        for iso in self.isocurves:
            iso.setPen(pg.mkPen(c.muted, width=0.8))
        self._readout_at = 0.0  # the readout's grey follows at the next frame

    def _ensure_items(self, names: dict[str, str]) -> None:
        if self.paths:
            return
        for i, key in enumerate(names):
            color = SERIES_COLORS[i % len(SERIES_COLORS)]
            path = self.plot.plot([], [], pen=pg.mkPen(color, width=2))
            head = pg.ScatterPlotItem(size=10, brush=pg.mkBrush(color),
                                      pen=pg.mkPen(colors().window, width=1.5))
            head.setZValue(10)
            self.plot.addItem(head)
            self.paths[key], self.heads[key] = path, head

    def _set_grid(self, grid: dict[str, np.ndarray]) -> None:
        """A new surface: redraw the background and its contour lines (once per surface)."""
        self._grid = grid
        x, y = grid["x"], grid["y"]
        logz = np.log10(grid["z"] + 1e-3)
        self.image.setImage(logz, autoLevels=True)
        self.image.setRect(QRectF(x[0], y[0], x[-1] - x[0], y[-1] - y[0]))
        for item in self.isocurves:
            self.plot.removeItem(item)
        self.isocurves = []
        pen = pg.mkPen(colors().muted, width=0.8)
        for level in np.linspace(logz.min(), logz.max(), CONTOUR_LEVELS + 2)[1:-1]:
            iso = pg.IsocurveItem(data=logz.T, level=float(level), pen=pen)
            iso.setParentItem(self.image)  # shares the image's placement and scale
            iso.setZValue(-5)
            self.isocurves.append(iso)
        self.plot.setXRange(x[0], x[-1], padding=0)
        self.plot.setYRange(y[0], y[-1], padding=0)

    def show_snapshot(self, snapshot: dict[str, Any]) -> None:
        self._ensure_items(snapshot["names"])
        if snapshot["grid"] is not self._grid:
            self._set_grid(snapshot["grid"])
            mx, my = snapshot["minimum"]
            self.minimum.setData([mx], [my])
        for key in snapshot["names"]:
            path = snapshot["paths"][key]
            self.paths[key].setData(path[:, 0], path[:, 1])
            self.heads[key].setData([path[-1, 0]], [path[-1, 1]])
        # Laying out the rich-text readout costs more than the plot itself, and nobody reads
        # numbers changing 50 times a second: refresh it a few times a second.
        now = time.monotonic()
        if now - self._readout_at < READOUT_EVERY_S:
            return
        self._readout_at = now
        parts = []
        for i, (key, title) in enumerate(snapshot["names"].items()):
            color = SERIES_COLORS[i % len(SERIES_COLORS)]
            gap = snapshot["gaps"][key]
            lr = snapshot["lrs"][key]
            # One optimizer's numbers never break across lines (&nbsp;): lines break
            # between optimizers.
            parts.append(f"<span style='color:{color}'>●</span>&nbsp;<b>{title}</b>&nbsp;"
                         f"<span style='color:{colors().muted}'>lr&nbsp;{lr:.2g}&nbsp;·&nbsp;"
                         f"gap&nbsp;{gap:.2e}</span>")
        self.readout.setText(" &nbsp; ".join(parts))

    def reset(self) -> None:
        self._grid = None
        self._readout_at = 0.0

    def export_items(self) -> dict[str, QWidget]:
        return {"Race": self.plot}
