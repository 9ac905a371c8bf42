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


class SpacedAxis(pg.AxisItem):
    """An axis whose tick labels never pile up. pyqtgraph always draws its first level of ticks
    and, on a log axis spanning less than a decade, that level is every 1…9 × 10ⁿ: labels drawn
    on top of each other. Here labels are kept in pyqtgraph's order (major levels first) and one
    that would touch a label already kept is dropped, on any axis, log or linear, automatic or
    fixed ticks (a bar chart's names)."""

    #: free space around a label, as a fraction of its height (pyqtgraph's rects are 0.8 tall)
    GAP = 0.35

    def generateDrawSpecs(self, p):  # noqa: N802 - pyqtgraph's name
        specs = super().generateDrawSpecs(p)
        if specs is None:
            return specs
        axis_spec, tick_specs, text_specs = specs
        return axis_spec, tick_specs, spaced_labels(text_specs, self.orientation, self.GAP)

    def logTickStrings(self, values, scale, spacing):  # noqa: N802 - pyqtgraph's name
        """Plain numbers ("40", "0.07") where they are short; powers of ten beyond."""
        out = []
        for v, default in zip(values, super().logTickStrings(values, scale, spacing),
                              strict=True):
            x = 10.0 ** float(v) * scale
            out.append(f"{x:.3g}" if 1e-3 <= abs(x) < 1e5 else default)
        return out


def spaced_labels(text_specs: list, orientation: str, gap: float) -> list:
    """The labels of ``text_specs`` (pyqtgraph's (rect, flags, text), first = most important)
    that keep clear of every label kept before them."""
    kept: list = []
    for spec in text_specs:
        rect = spec[0]
        pad = rect.height() * gap
        grown = rect.adjusted(-pad, -pad / 2, pad, pad / 2) if orientation in ("bottom", "top") \
            else rect.adjusted(0, -pad, 0, pad)
        if any(grown.intersects(other[0]) for other in kept):
            continue
        kept.append(spec)
    return kept


def styled_plot(title: str = "", *, equal_aspect: bool = False,
                hide_buttons: bool = True) -> pg.PlotWidget:
    """A PlotWidget in the theme's colours, without pyqtgraph's context menu (and, with
    ``hide_buttons``, without its auto-range button), whose axes space their labels
    (:class:`SpacedAxis`). :func:`restyle` repaints it in the current theme's colours."""
    plot = pg.PlotWidget(axisItems={name: SpacedAxis(name) for name in ("left", "bottom")})
    item = plot.getPlotItem()
    plot._studio_title = title
    item.setMenuEnabled(False)
    if hide_buttons:
        item.hideButtons()
    plot.setAspectLocked(equal_aspect)
    restyle(plot)
    return plot


def restyle(plot: pg.PlotWidget) -> None:
    """Paint ``plot``'s background, axes and title in the current theme (at build time, and
    again when the theme changes while it is on screen)."""
    c = colors()
    plot.setBackground(c.surface)
    item = plot.getPlotItem()
    title = getattr(plot, "_studio_title", "")
    if title:
        item.setTitle(title, color=c.muted, size="9pt")
    for name in ("left", "bottom"):
        axis = item.getAxis(name)
        axis.setPen(pg.mkPen(c.border))
        axis.setTextPen(pg.mkPen(c.muted))


def set_title(plot: pg.PlotWidget, title: str) -> None:
    """Show ``title`` over ``plot`` (in the theme's muted colour), or no title for ""."""
    plot._studio_title = title
    if title:
        plot.getPlotItem().setTitle(title, color=colors().muted, size="9pt")
    else:
        plot.getPlotItem().setTitle(None)


def theme_changed(widget, event) -> bool:
    """For a ``changeEvent``: True when ``event`` is the app switching to a theme ``widget`` has
    not painted itself in yet (it keeps the name in ``_theme``, set by :func:`painted_in_theme`
    when it is built). Setting a style sheet sends a StyleChange too, hence the name check."""
    from PySide6.QtCore import QEvent

    if event.type() not in (QEvent.Type.PaletteChange, QEvent.Type.StyleChange):
        return False
    name = colors().name
    if getattr(widget, "_theme", None) == name:
        return False
    widget._theme = name
    return True


def painted_in_theme(widget) -> None:
    """Note that ``widget`` has just taken its colours from the current theme."""
    widget._theme = colors().name


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


def move_points(item: pg.ScatterPlotItem, pos: np.ndarray) -> None:
    """Show the points ``pos`` (n, 2) in a scatter whose points share one style (set on the
    item, not per point). With as many points as before they are moved in place: ``setData``
    rebuilds every point and looks up each one's style, 1.2 ms of the GUI thread for 1,000
    points (most of a GAN frame's drawing); moving them costs ~0.05 ms. Uses pyqtgraph's
    ``data`` record array and does what ``setData`` does after filling it, minus the styles."""
    data = item.data
    if len(pos) == 0 or len(data) != len(pos):
        item.setData(pos=pos)
        return
    data["x"] = pos[:, 0]
    data["y"] = pos[:, 1]
    item.prepareGeometryChange()
    item.informViewBoundsChanged()
    item.bounds = [None, None]
    item.invalidate()
    item.sigPlotChanged.emit(item)


def bars(plot: pg.PlotWidget, n: int, color: str) -> pg.BarGraphItem:
    """``n`` bars at x = 0…n-1 (heights set later with ``setOpts(height=…)``)."""
    item = pg.BarGraphItem(x=np.arange(n), height=np.zeros(n), width=0.7,
                           brush=pg.mkBrush(color), pen=pg.mkPen(None))
    plot.addItem(item)
    return item


def label_ticks(plot: pg.PlotWidget, labels: list[str], axis_name: str = "bottom") -> None:
    """Name the bars at 0…n-1 (on the ``axis_name`` axis); a no-op when the names are the ones
    shown (new ticks make the axis regenerate its text, the costliest part of a frame). Names
    that would overlap are thinned out by :class:`SpacedAxis`, never drawn over each other."""
    axis = plot.getPlotItem().getAxis(axis_name)
    ticks = [list(enumerate(labels))]
    if getattr(axis, "_studio_ticks", None) != ticks:
        axis._studio_ticks = ticks
        axis.setTicks(ticks)


def sticky_span(current: tuple[float, float] | None, lo: float, hi: float,
                margin: float = 0.08, shrink_below: float = 0.5) -> tuple[float, float] | None:
    """A plot range for data spanning ``lo…hi``, or None to keep ``current``: the range grows
    (with ``margin`` on each side) as soon as the data leave it, and shrinks only once the data
    fill less than ``shrink_below`` of it."""
    if not (np.isfinite(lo) and np.isfinite(hi)):
        return None
    pad = max(hi - lo, 1e-9) * margin
    wanted = (lo - pad, hi + pad)
    if current is None:
        return wanted
    a, b = current
    if lo < a or hi > b or (hi - lo) < shrink_below * (b - a):
        return wanted
    return None


class StickyRange:
    """Keeps a plot's view around its data without autoranging it every frame.

    pyqtgraph's auto-range moves the axes with every frame whose data moved, and every move makes
    the axes regenerate and repaint their tick text: most of the paint time of a view like the
    latent scatter. This range follows the data with hysteresis (:func:`sticky_span`), so the
    axes change now and then. ``zero_y`` (``zero_x``) keeps 0 in the y (x) range: bar charts.
    """

    def __init__(self, plot: pg.PlotWidget, *, zero_y: bool = False,
                 zero_x: bool = False) -> None:
        self.plot = plot
        self.zero_y = zero_y
        self.zero_x = zero_x
        self.x: tuple[float, float] | None = None
        self.y: tuple[float, float] | None = None
        plot.getPlotItem().getViewBox().disableAutoRange()

    def reset(self) -> None:
        self.x = self.y = None

    def show(self, xs: np.ndarray | None, ys: np.ndarray) -> None:
        """Make sure points (``xs`` may be None: y only) are in view."""
        ys = np.asarray(ys, dtype=np.float64)
        if ys.size == 0:
            return
        ylo, yhi = float(np.nanmin(ys)), float(np.nanmax(ys))
        if self.zero_y:
            ylo, yhi = min(ylo, 0.0), max(yhi, 0.0)
        new_y = sticky_span(self.y, ylo, yhi)
        new_x = xlo = None
        if xs is not None and len(xs):
            xs = np.asarray(xs, dtype=np.float64)
            xlo, xhi = float(np.nanmin(xs)), float(np.nanmax(xs))
            if self.zero_x:
                xlo, xhi = min(xlo, 0.0), max(xhi, 0.0)
            new_x = sticky_span(self.x, xlo, xhi)
        if new_x is None and new_y is None:
            return
        self.x, self.y = new_x or self.x, new_y or self.y
        if self.zero_y and self.y is not None and self.y[0] < 0 <= ylo:
            self.y = (0.0, self.y[1])  # bars stand on the axis, no margin below 0
        if self.zero_x and self.x is not None and xlo is not None and self.x[0] < 0 <= xlo:
            self.x = (0.0, self.x[1])
        kwargs = {"yRange": self.y, "padding": 0}
        if self.x is not None:
            kwargs["xRange"] = self.x
        self.plot.setRange(**kwargs)


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
