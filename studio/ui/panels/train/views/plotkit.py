"""Small pieces the neural-lesson views share: themed pyqtgraph plots, image tiling, colour tables.

Everything reads :func:`studio.ui.theme.colors` when a plot is built, so a view made after a theme
change matches it.
"""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6.QtGui import QColor
from PySide6.QtWidgets import QLabel, QWidget

from studio.ui.theme import colors

#: Ten class colours that read on both the dark and the light background (Tableau 10).
CLASS_COLORS = ("#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f",
                "#edc948", "#b07aa1", "#ff9da7", "#9c755f", "#bab0ac")


def section(text: str, parent: QWidget | None = None) -> QLabel:
    """A small upper-case caption above a plot, as the other panels use."""
    label = QLabel(text.upper(), parent)
    label.setProperty("section", True)
    return label


def themed_plot(title: str = "", image: bool = False) -> pg.PlotWidget:
    """A PlotWidget in the theme's colours. ``image`` plots hide their axes, lock the aspect
    ratio and put row 0 at the top, as images are read."""
    c = colors()
    plot = pg.PlotWidget(background=c.surface)
    plot.setMinimumSize(120, 120)
    item = plot.getPlotItem()
    if title:
        item.setTitle(title, color=c.muted, size="9pt")
    for name in ("left", "bottom"):
        axis = item.getAxis(name)
        axis.setPen(pg.mkPen(c.border))
        axis.setTextPen(pg.mkPen(c.muted))
    item.setMenuEnabled(False)
    plot.setAspectLocked(image)
    if image:
        item.hideAxis("left")
        item.hideAxis("bottom")
        item.getViewBox().invertY(True)
        item.getViewBox().setMouseEnabled(False, False)
        item.getViewBox().setDefaultPadding(0.01)
    return plot


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


def ink_lut() -> np.ndarray:
    """Digits as ink: 0 = the surface colour, 1 = the text colour (right in both themes)."""
    c = colors()
    return _gradient([QColor(c.raised), QColor(c.text)])


def heat_lut() -> np.ndarray:
    """The discriminator heatmap: 'fake' fades into the background, 'real' glows blue. The ramp
    is steep at the low end so the shape of a mostly-unsure D still shows."""
    c = colors()
    low, high = QColor(c.window), QColor(c.running)
    return _gradient([low, _mix(low, high, 0.45), _mix(low, high, 0.8), high],
                     positions=[0.0, 0.3, 0.6, 1.0])


def _mix(a: QColor, b: QColor, t: float) -> QColor:
    return QColor(round(a.red() + (b.red() - a.red()) * t),
                  round(a.green() + (b.green() - a.green()) * t),
                  round(a.blue() + (b.blue() - a.blue()) * t))


def _gradient(stops: list[QColor], n: int = 256, positions: list[float] | None = None
              ) -> np.ndarray:
    pos = np.linspace(0.0, 1.0, len(stops)) if positions is None else np.array(positions)
    rgb = np.array([[s.red(), s.green(), s.blue()] for s in stops], dtype=np.float64)
    x = np.linspace(0.0, 1.0, n)
    lut = np.stack([np.interp(x, pos, rgb[:, k]) for k in range(3)], axis=1)
    return lut.astype(np.uint8)


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
