"""The loss plot: the lesson's series as training goes, log scale, smoothing, other runs overlaid.

Curves are created once per series and updated with ``setData`` on every frame (never
re-created); pyqtgraph downsamples long curves to the plot's width and clips to the view, so a
plot with 100,000 points per series still redraws in a frame.
"""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt, QTimer, Signal, Slot
from PySide6.QtWidgets import QCheckBox, QHBoxLayout, QLabel, QSlider, QVBoxLayout, QWidget

from studio.ui.panels.train.plotting import (
    SERIES_COLORS,
    GrowingArray,
    painted_in_theme,
    restyle,
    styled_plot,
    theme_changed,
)
from studio.ui.panels.train.widgets import LegendStrip

LOG_FLOOR = 1e-12  # zeros (an optimizer exactly at the minimum) still show on a log scale
#: A loss curve needs no 60 fps: redrawing it (axes included) is the costliest thing on screen,
#: and every millisecond the GUI thread spends drawing is one the trainer waits for the GIL.
REDRAW_INTERVAL_MS = 100


def smooth(values: np.ndarray, window: int) -> np.ndarray:
    """Trailing moving average over ``window`` points (vectorised with a cumulative sum)."""
    if window <= 1 or len(values) < 2:
        return values
    finite = np.where(np.isfinite(values), values, 0.0)
    csum = np.cumsum(np.concatenate([[0.0], finite]))
    idx = np.arange(1, len(values) + 1)
    lo = np.maximum(0, idx - window)
    return (csum[idx] - csum[lo]) / (idx - lo)


class LossPlot(QWidget):
    """Series of the current run plus overlaid curves of saved runs."""

    #: the series shown changed (names), for tests and the status line
    seriesChanged = Signal(list)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.plot = styled_plot()
        painted_in_theme(self)
        self.plot.setObjectName("lossPlot")
        self.plot.setLabel("bottom", "step")
        self.plot.getPlotItem().showGrid(x=True, y=True, alpha=0.15)
        # The legend is a row of labels over the plot: inside it, it covered the curves.
        self.legend = LegendStrip()
        self.legend.setObjectName("lossLegend")
        self.plot.getPlotItem().setClipToView(True)
        self.log_box = QCheckBox("Log scale")
        self.log_box.setObjectName("logScale")
        self.log_box.setChecked(True)
        self.log_box.setToolTip("Plot the curves on a log scale (zero and negative values "
                                "cannot be shown on one)")
        self.smoothing = QSlider(Qt.Orientation.Horizontal)
        self.smoothing.setObjectName("smoothing")
        self.smoothing.setRange(0, 100)
        self.smoothing.setValue(0)
        self.smoothing.setFixedWidth(120)
        self.smoothing.setToolTip("Smoothing: a moving average over up to 500 steps")
        bar = QHBoxLayout()
        bar.setContentsMargins(0, 0, 0, 0)
        title = QLabel("LOSS")
        title.setProperty("section", True)
        bar.addWidget(title, 0, Qt.AlignmentFlag.AlignTop)
        bar.addSpacing(12)
        bar.addWidget(self.legend, 1)
        bar.addWidget(self.log_box, 0, Qt.AlignmentFlag.AlignTop)
        bar.addSpacing(12)
        muted = QLabel("Smoothing")
        muted.setProperty("muted", True)
        bar.addWidget(muted, 0, Qt.AlignmentFlag.AlignTop)
        bar.addWidget(self.smoothing, 0, Qt.AlignmentFlag.AlignTop)
        col = QVBoxLayout(self)
        col.setContentsMargins(0, 0, 0, 0)
        col.setSpacing(4)
        col.addLayout(bar)
        col.addWidget(self.plot, 1)

        self.steps = GrowingArray()
        self.series: dict[str, GrowingArray] = {}
        self.curves: dict[str, pg.PlotDataItem] = {}
        self.overlays: dict[str, pg.PlotDataItem] = {}
        self._overlay_data: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        self._names: tuple[str, ...] = ()
        self._labels: dict[str, str] = {}
        self._redraw_timer = QTimer(self, singleShot=True, interval=REDRAW_INTERVAL_MS)
        self._redraw_timer.timeout.connect(self.redraw)
        self.log_box.toggled.connect(self._on_log_toggled)
        self.smoothing.valueChanged.connect(lambda _v: self.redraw())
        self._on_log_toggled(True)

    # -- the current run ----------------------------------------------------------------------
    def set_series(self, names: tuple[str, ...], labels: list[str] | None = None) -> None:
        """Start over with these series (the lesson's ``info.series``, shown in the legend as
        ``labels``); keeps overlays. The axes forget the previous lesson's range."""
        for name in list(self.curves):
            self.plot.removeItem(self.curves.pop(name))
        self._names = tuple(names)
        self._labels = dict(zip(self._names, labels or self._names, strict=True))
        self.steps.clear()
        self.series = {n: GrowingArray() for n in self._names}
        for i, name in enumerate(self._names):
            pen = pg.mkPen(SERIES_COLORS[i % len(SERIES_COLORS)], width=1.6)
            curve = self.plot.plot([], [], pen=pen)
            curve.setDownsampling(auto=True, method="peak")
            self.curves[name] = curve
        self._update_legend()
        self._reset_range()
        self.seriesChanged.emit(list(self._names))

    def clear(self) -> None:
        """A new run: no points, and the axes follow the new run from scratch."""
        self.steps.clear()
        for arr in self.series.values():
            arr.clear()
        self._reset_range()
        self.redraw()

    def _reset_range(self) -> None:
        box = self.plot.getPlotItem().getViewBox()
        box.setRange(xRange=(0, 1), yRange=(-1, 0) if self.log_box.isChecked() else (0, 1),
                     padding=0)
        box.enableAutoRange()

    def _update_legend(self) -> None:
        entries = [(self._labels.get(n, n), SERIES_COLORS[i % len(SERIES_COLORS)], "line")
                   for i, n in enumerate(self._names)]
        for key, curve in self.overlays.items():
            entries.append((f"{key} (loss)", curve.opts["pen"].color().name(), "dash"))
        self.legend.set_entries(entries)

    def changeEvent(self, event) -> None:  # noqa: N802 - Qt's name
        super().changeEvent(event)
        if theme_changed(self, event):
            restyle(self.plot)

    def append(self, rows: list[dict[str, float]]) -> None:
        """Add logged steps (each a metrics dict); the curves redraw within REDRAW_INTERVAL_MS."""
        if not rows:
            return
        self.steps.extend([float(r["step"]) for r in rows])
        for name, arr in self.series.items():
            arr.extend([_num(r.get(name)) for r in rows])
        if not self._redraw_timer.isActive():
            self._redraw_timer.start()

    @property
    def window(self) -> int:
        v = self.smoothing.value()
        return 1 if v == 0 else int(round(500 ** (v / 100)))

    def _ys(self, values: np.ndarray) -> np.ndarray:
        ys = smooth(values, self.window)
        if self.log_box.isChecked():
            ys = np.maximum(ys, LOG_FLOOR)
        return ys

    @Slot()
    def redraw(self) -> None:
        self._redraw_timer.stop()
        xs = self.steps.values
        for name, curve in self.curves.items():
            curve.setData(xs, self._ys(self.series[name].values))
        for key, curve in self.overlays.items():
            x, y = self._overlay_data[key]
            curve.setData(x, self._ys(y))

    # -- other runs ------------------------------------------------------------------------------
    def set_overlay(self, key: str, rows: list[dict[str, float]] | None) -> None:
        """Overlay a saved run's ``loss`` curve (``rows`` = its metrics), or remove it (None)."""
        if rows is None:
            curve = self.overlays.pop(key, None)
            self._overlay_data.pop(key, None)
            if curve is not None:
                self.plot.removeItem(curve)
                self._update_legend()
            return
        x = np.array([float(r["step"]) for r in rows])
        y = np.array([_num(r.get("loss")) for r in rows])
        self._overlay_data[key] = (x, y)
        if key not in self.overlays:
            i = len(self.overlays) + 3
            pen = pg.mkPen(SERIES_COLORS[i % len(SERIES_COLORS)], width=1.2,
                           style=Qt.PenStyle.DashLine)
            curve = self.plot.plot([], [], pen=pen)
            curve.setDownsampling(auto=True, method="peak")
            self.overlays[key] = curve
            self._update_legend()
        self.redraw()

    @Slot(bool)
    def _on_log_toggled(self, on: bool) -> None:
        self.plot.getPlotItem().setLogMode(y=on)
        self.redraw()


def _num(value) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return float("nan")
