"""The 2D classifier: the decision boundary as a live heatmap under the data, and the scores."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QRectF, Qt
from PySide6.QtWidgets import QGridLayout, QLabel, QVBoxLayout, QWidget

from studio.ui.panels.train.plotting import gradient_lut, restyle, styled_plot
from studio.ui.panels.train.views.base import LessonView
from studio.ui.panels.train.widgets import readout_value
from studio.ui.theme import colors

if TYPE_CHECKING:
    from PIL.Image import Image as PILImage

CLASS_COLORS = ("#f28e2b", "#5aa2ff")  # class 0, class 1
HISTORY_EVERY = 10  # keep a boundary picture for the GIF every this many steps…
HISTORY_MAX = 240  # …and at most this many (older ones thinned)
GIF_SCALE = 4


class ClassifierView(LessonView):
    """Background = P(class 1) everywhere; ● training points, ○ test points."""

    def __init__(self, lesson_key: str, parent: QWidget | None = None) -> None:
        super().__init__(lesson_key, parent)
        self.plot = styled_plot(equal_aspect=True)
        self.plot.setObjectName("boundaryPlot")
        self.image = pg.ImageItem(axisOrder="row-major")
        self.image.setLevels((0.0, 1.0))
        self.image.setOpacity(0.75)
        self.plot.addItem(self.image)
        self.train_points = pg.ScatterPlotItem(size=7)
        self.test_points = pg.ScatterPlotItem(size=8, brush=pg.mkBrush(None))
        self.plot.addItem(self.train_points)
        self.plot.addItem(self.test_points)
        self._data_id: int | None = None
        self.history: list[tuple[int, np.ndarray]] = []
        self._points: tuple[np.ndarray, np.ndarray] | None = None
        self._extent = 2.5

        self.values: dict[str, QLabel] = {}
        cards = QGridLayout()
        cards.setHorizontalSpacing(18)
        for i, (key, title) in enumerate((("loss", "Train loss"), ("test_loss", "Test loss"),
                                          ("train_accuracy", "Train accuracy"),
                                          ("test_accuracy", "Test accuracy"))):
            caption = QLabel(title.upper())
            caption.setProperty("section", True)
            value = readout_value(f"readout-{key}")
            cards.addWidget(caption, 0, i, Qt.AlignmentFlag.AlignLeft)
            cards.addWidget(value, 1, i, Qt.AlignmentFlag.AlignLeft)
            self.values[key] = value
        cards.setColumnStretch(4, 1)
        col = QVBoxLayout(self)
        col.setContentsMargins(0, 0, 0, 0)
        col.setSpacing(8)
        col.addWidget(self.plot, 1)
        col.addLayout(cards)
        self.apply_theme()

    def apply_theme(self) -> None:
        c = colors()
        restyle(self.plot)
        # Unsure = the background's colour: the boundary is where the colours fade into it.
        self.lut = gradient_lut([CLASS_COLORS[0], c.surface, CLASS_COLORS[1]])
        self.image.setLookupTable(self.lut)
        self.train_points.setPen(pg.mkPen(c.window, width=0.8))

    def _set_points(self, snapshot: dict[str, Any]) -> None:
        """The data changes only with a reset: set the scatter items then, not every frame."""
        xtr, ytr = snapshot["train"]
        xte, yte = snapshot["test"]
        brushes = [pg.mkBrush(CLASS_COLORS[int(v)]) for v in ytr]
        self.train_points.setData(x=xtr[:, 0], y=xtr[:, 1], brush=brushes)
        pens = [pg.mkPen(CLASS_COLORS[int(v)], width=1.6) for v in yte]
        self.test_points.setData(x=xte[:, 0], y=xte[:, 1], pen=pens)
        e = float(snapshot["grid"]["extent"])
        self._extent = e
        self.image.setRect(QRectF(-e, -e, 2 * e, 2 * e))
        self.plot.setXRange(-e, e, padding=0)
        self.plot.setYRange(-e, e, padding=0)
        self._points = (xtr, ytr)

    def show_snapshot(self, snapshot: dict[str, Any]) -> None:
        probs = snapshot["grid"]["probs"]
        # The image first: setRect scales by the image's size, and before the first image it
        # took it as 1×1, so the boundary was drawn 72 times too large (one flat colour).
        self.image.setImage(probs, autoLevels=False, levels=(0.0, 1.0))
        if id(snapshot["train"][0]) != self._data_id:
            self._data_id = id(snapshot["train"][0])
            self._set_points(snapshot)
        m = snapshot["metrics"]
        for key, label in self.values.items():
            v = m.get(key)
            if v is not None:
                label.setText(f"{v:.1%}" if "accuracy" in key else f"{v:.4g}")
        step = int(snapshot["step"])
        if not self.history or step - self.history[-1][0] >= HISTORY_EVERY:
            self.history.append((step, (probs * 255).astype(np.uint8)))
            if len(self.history) > HISTORY_MAX:
                self.history = self.history[:1] + self.history[2::2]

    def reset(self) -> None:
        self.history = []
        self._data_id = None
        for label in self.values.values():
            label.setText("—")

    def export_items(self) -> dict[str, QWidget]:
        return {"Decision boundary": self.plot}

    def export_frames(self) -> list[PILImage]:
        """The boundary as it moved, with the training points drawn on every frame."""
        from PIL import Image, ImageDraw

        frames = []
        for step, probs in self.history:
            rgb = self.lut[probs[::-1]]  # row 0 is the bottom of the plot: flip for an image
            img = Image.fromarray(rgb).resize((rgb.shape[1] * GIF_SCALE,) * 2, Image.NEAREST)
            draw = ImageDraw.Draw(img)
            if self._points is not None:
                size, e = img.size[0], self._extent
                for (x, y), label in zip(*self._points, strict=True):
                    px, py = (x + e) / (2 * e) * size, (e - y) / (2 * e) * size
                    draw.ellipse((px - 2, py - 2, px + 2, py + 2),
                                 fill=CLASS_COLORS[int(label)], outline="#111216")
            draw.text((6, 4), f"step {step}", fill="#ffffff")
            frames.append(img)
        return frames
