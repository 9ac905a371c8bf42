"""Themed pyqtgraph pieces the Train workspace and its lesson views share: plots in the theme's
colours, colour tables, image tiling, an appendable column for live curves.

Everything reads :func:`studio.ui.theme.colors` when a plot is built, so a view made after a theme
change matches it.
"""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6.QtGui import QColor

from studio.ui.theme import colors

#: Series colours that read on both themes (Tableau 10, reordered so neighbours differ).
SERIES_COLORS = ("#5aa2ff", "#f28e2b", "#59a14f", "#e15759", "#b07aa1", "#edc948",
                 "#76b7b2", "#ff9da7", "#9c755f", "#bab0ac")

#: Ten class colours that read on both the dark and the light background (Tableau 10).
CLASS_COLORS = ("#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f",
                "#edc948", "#b07aa1", "#ff9da7", "#9c755f", "#bab0ac")


def styled_plot(title: str = "", *, equal_aspect: bool = False,
                hide_buttons: bool = True) -> pg.PlotWidget:
    """A PlotWidget in the theme's colours, without pyqtgraph's context menu (and, with
    ``hide_buttons``, without its auto-range button)."""
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
    if hide_buttons:
        item.hideButtons()
    plot.setAspectLocked(equal_aspect)
    return plot


def themed_plot(title: str = "", image: bool = False) -> pg.PlotWidget:
    """A lesson view's plot: :func:`styled_plot` at least 120 px square. ``image`` plots hide
    their axes, lock the aspect ratio and put row 0 at the top, as images are read."""
    plot = styled_plot(title, equal_aspect=image, hide_buttons=False)
    plot.setMinimumSize(120, 120)
    if image:
        item = plot.getPlotItem()
        item.hideAxis("left")
        item.hideAxis("bottom")
        item.getViewBox().invertY(True)
        item.getViewBox().setMouseEnabled(False, False)
        item.getViewBox().setDefaultPadding(0.01)
    return plot


def gradient_lut(stops: list[str] | list[QColor], n: int = 256,
                 positions: list[float] | None = None) -> np.ndarray:
    """A (n, 3) uint8 lookup table through the colours ``stops`` (evenly spaced unless
    ``positions`` says where each stop sits in 0…1)."""
    qs = [QColor(s) for s in stops]
    pos = np.linspace(0.0, 1.0, len(qs)) if positions is None else np.array(positions)
    rgb = np.array([[q.red(), q.green(), q.blue()] for q in qs], dtype=np.float64)
    x = np.linspace(0.0, 1.0, n)
    return np.stack([np.interp(x, pos, rgb[:, k]) for k in range(3)], axis=1).astype(np.uint8)


def ink_lut() -> np.ndarray:
    """Digits as ink: 0 = the surface colour, 1 = the text colour (right in both themes)."""
    c = colors()
    return gradient_lut([c.raised, c.text])


def grey_lut() -> np.ndarray:
    """Grey photographs (faces): 0 = black, 1 = white, in both themes."""
    return gradient_lut(["#000000", "#ffffff"])


def heat_lut() -> np.ndarray:
    """The discriminator heatmap: 'fake' fades into the background, 'real' glows blue. The ramp
    is steep at the low end so the shape of a mostly-unsure D still shows."""
    c = colors()
    low, high = QColor(c.window), QColor(c.running)
    return gradient_lut([low, _mix(low, high, 0.45), _mix(low, high, 0.8), high],
                        positions=[0.0, 0.3, 0.6, 1.0])


def _mix(a: QColor, b: QColor, t: float) -> QColor:
    return QColor(round(a.red() + (b.red() - a.red()) * t),
                  round(a.green() + (b.green() - a.green()) * t),
                  round(a.blue() + (b.blue() - a.blue()) * t))


def tile(images: np.ndarray, cols: int, pad: int = 1, fill: float = np.nan) -> np.ndarray:
    """Lay out (n, h, w) images on a grid ``cols`` wide with ``pad`` pixels between them; the gaps
    are ``fill`` (NaN shows as transparent, so the plot's background frames each image)."""
    n, h, w = images.shape
    rows = -(-n // cols)
    out = np.full((rows * (h + pad) - pad, cols * (w + pad) - pad), fill, dtype=np.float32)
    for i in range(n):
        r, c = divmod(i, cols)
        out[r * (h + pad):r * (h + pad) + h, c * (w + pad):c * (w + pad) + w] = images[i]
    return out


def image_item() -> pg.ImageItem:
    """An ImageItem that reads arrays as [row, column] (how numpy and the trainers store them)."""
    return pg.ImageItem(axisOrder="row-major")


def bars(plot: pg.PlotWidget, n: int, color: str) -> pg.BarGraphItem:
    """``n`` bars at x = 0…n-1 (heights set later with ``setOpts(height=…)``)."""
    item = pg.BarGraphItem(x=np.arange(n), height=np.zeros(n), width=0.7,
                           brush=pg.mkBrush(color), pen=pg.mkPen(None))
    plot.addItem(item)
    return item


def label_ticks(plot: pg.PlotWidget, labels: list[str]) -> None:
    plot.getPlotItem().getAxis("bottom").setTicks([list(enumerate(labels))])


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
