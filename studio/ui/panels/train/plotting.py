"""Themed pyqtgraph pieces the Train workspace and its views share."""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6.QtGui import QColor

from studio.ui.theme import colors

#: Series colours that read on both themes (Tableau 10, reordered so neighbours differ).
SERIES_COLORS = ("#5aa2ff", "#f28e2b", "#59a14f", "#e15759", "#b07aa1", "#edc948",
                 "#76b7b2", "#ff9da7", "#9c755f", "#bab0ac")


def styled_plot(title: str = "", *, equal_aspect: bool = False) -> pg.PlotWidget:
    """A PlotWidget in the theme's colours, without pyqtgraph's context menu."""
    c = colors()
    plot = pg.PlotWidget(background=c.surface)
    item = plot.getPlotItem()
    if title:
        item.setTitle(title, color=c.muted, size="9pt")
    for name in ("left", "bottom"):
        axis = item.getAxis(name)
        axis.setPen(pg.mkPen(c.border))
        axis.setTextPen(pg.mkPen(c.muted))
    item.setMenuEnabled(False)
    item.hideButtons()
    plot.setAspectLocked(equal_aspect)
    return plot


def gradient_lut(stops: list[str], n: int = 256) -> np.ndarray:
    """A (n, 3) uint8 lookup table through the colours ``stops``."""
    qs = [QColor(s) for s in stops]
    pos = np.linspace(0.0, 1.0, len(qs))
    rgb = np.array([[q.red(), q.green(), q.blue()] for q in qs], dtype=np.float64)
    x = np.linspace(0.0, 1.0, n)
    return np.stack([np.interp(x, pos, rgb[:, k]) for k in range(3)], axis=1).astype(np.uint8)


class GrowingArray:
    """Appendable float column (amortised doubling), so plots get views instead of copies."""

    def __init__(self, capacity: int = 1024) -> None:
        self._data = np.empty(capacity, dtype=np.float64)
        self._n = 0

    def extend(self, values: list[float]) -> None:
        need = self._n + len(values)
        if need > len(self._data):
            grown = np.empty(max(need, 2 * len(self._data)), dtype=np.float64)
            grown[:self._n] = self._data[:self._n]
            self._data = grown
        self._data[self._n:need] = values
        self._n = need

    def clear(self) -> None:
        self._n = 0

    @property
    def values(self) -> np.ndarray:
        return self._data[:self._n]

    def __len__(self) -> int:
        return self._n
