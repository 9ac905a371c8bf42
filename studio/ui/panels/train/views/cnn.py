"""The view of the CNN lesson: what the model sees, its filters, the feature maps and saliency of
a picked test image, the confusion matrix, the mistakes, and weight/gradient histograms per layer.

Grey images (digits, shapes) are drawn as ink or grey photos as the other lessons draw them; colour
images (photo patches, your folder) as RGB. Filters are weights, positive and negative: drawn on a
diverging scale (blue below 0, orange above) scaled per filter. Items are created once; frames only
call ``setImage``/``setData``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pyqtgraph as pg
from PySide6.QtWidgets import QGridLayout, QHBoxLayout, QLabel, QSpinBox, QWidget

from studio.ui.panels.train import plotting as pk
from studio.ui.panels.train.views.base import LessonView
from studio.ui.panels.train.widgets import ElidedLabel, LegendStrip, caption, plot_grid
from studio.ui.theme import colors

PREVIEW_COLS = 8
MISSED_COLS = 4
MAPS_COLS = 8
FILTERS2_OUT, FILTERS2_IN = 16, 8  # second-layer filters shown, and kernels of each
NEGATIVE, POSITIVE = "#4e79a7", "#f28e2b"  # the diverging scale of the filters
MAGMA = ("#000004", "#51127c", "#b73779", "#fc8961", "#fcfdbf")  # maps and saliency
LAYER_COLORS = pk.SERIES_COLORS[:3]


def tile_images(images: np.ndarray, cols: int, pad: int = 1) -> np.ndarray:
    """(n, h, w) or (n, h, w, 3) images on a grid; gaps NaN (grey) or, for colour, 0.5."""
    if images.ndim == 3:
        return pk.tile(images, cols, pad)
    planes = [pk.tile(images[..., k], cols, pad, fill=0.5) for k in range(images.shape[-1])]
    return np.stack(planes, axis=-1)


def add_histogram_plots(view: Any, prefix: str) -> None:
    """Give ``view`` its weight and gradient histogram plots (``<prefix>WeightHist``,
    ``<prefix>GradHist``) and their ranges, which follow the data with hysteresis: autoranging
    every frame made the axes regenerate their labels each time (most of a frame's drawing)."""
    view.weights_plot = pk.themed_plot()
    view.weights_plot.setObjectName(f"{prefix}WeightHist")
    view.grads_plot = pk.themed_plot()
    view.grads_plot.setObjectName(f"{prefix}GradHist")
    view.weights_range = pk.StickyRange(view.weights_plot, zero_y=True)
    view.grads_range = pk.StickyRange(view.grads_plot, zero_y=True)


def histogram_captions() -> tuple[ElidedLabel, ElidedLabel]:
    """The "Weights" and "Gradients" headings over the plots of :func:`add_histogram_plots`."""
    return (caption("Weights", tip="Histogram of each layer's weights (heights scaled to the "
                                   "tallest bin)"),
            caption("Gradients", tip="Histogram of each layer's weight gradients in the last "
                                     "update"))


def show_tiled(item: pg.ImageItem, images: np.ndarray, cols: int, lut: np.ndarray | None
               ) -> np.ndarray:
    """(n, s, s, C) images in [0, 1] tiled ``cols`` wide on ``item`` (grey ones through
    ``lut``, colour ones as they are); returns the tiled picture."""
    grey = images.shape[-1] == 1
    item.setLookupTable(lut if grey else None)
    tiled = tile_images(images[..., 0] if grey else images, cols)
    item.setImage(tiled, autoLevels=False)
    return tiled


def layer_curve(plot: pg.PlotWidget, color: str) -> pg.PlotDataItem:
    """One layer's histogram line on ``plot``."""
    curve = pg.PlotDataItem(pen=pg.mkPen(color, width=1.5))
    plot.addItem(curve)
    return curve


def show_histograms(view: Any, layers: list[dict[str, Any]]) -> None:
    """Each layer's weight and gradient histogram (heights scaled to the tallest bin) on the
    view's ``weight_curves``/``grad_curves``, in its ``weights_range``/``grads_range``."""
    for curves, key, span in ((view.weight_curves, "weights", view.weights_range),
                              (view.grad_curves, "grads", view.grads_range)):
        lo = hi = 0.0
        for curve, layer in zip(curves, layers, strict=True):
            counts, edges = layer[key]
            top = float(counts.max()) or 1.0
            curve.setData(edges, counts / top, stepMode="center")
            lo, hi = min(lo, float(edges[0])), max(hi, float(edges[-1]))
        span.show(np.array([lo, hi]), np.array([0.0, 1.0]))


def stacked(top: np.ndarray, bottom: np.ndarray, gap: int = 2) -> np.ndarray:
    """Two tiled grids one above the other, ``gap`` blank rows between, the narrower padded
    blank (NaN) on the right."""
    width = max(top.shape[1], bottom.shape[1])

    def padded(a: np.ndarray) -> np.ndarray:
        return np.pad(a, ((0, 0), (0, width - a.shape[1])), constant_values=np.nan)

    return np.concatenate([padded(top), np.full((gap, width), np.nan, np.float32),
                           padded(bottom)])


def _diverging(weights: np.ndarray) -> np.ndarray:
    """Weights scaled per filter (first axis) to [0, 1] with 0 at 0.5."""
    flat = weights.reshape(len(weights), -1)
    top = np.abs(flat).max(axis=1).clip(min=1e-8)
    return 0.5 + 0.5 * weights / top.reshape((-1,) + (1,) * (weights.ndim - 1))


def show_pick(box: QSpinBox, snapshot: dict[str, Any]) -> None:
    """The "Image #" box follows the snapshot's picked test image (``pick`` of ``n_test``)
    without sending it back, and is left alone while the user types in it."""
    box.blockSignals(True)
    box.setMaximum(max(0, int(snapshot["n_test"]) - 1))
    if not box.hasFocus():
        box.setValue(int(snapshot["pick"]))
    box.blockSignals(False)


def image_plot(name: str) -> tuple[pg.PlotWidget, pg.ImageItem]:
    """A themed plot showing one image (levels 0–1), named ``name``."""
    plot = pk.themed_plot(image=True)
    plot.setObjectName(name)
    item = pk.image_item()
    item.setLevels((0.0, 1.0))
    plot.addItem(item)
    return plot, item


class CNNView(LessonView):
    """Pictures of a small CNN learning to classify images."""

    def __init__(self, lesson_key: str, parent: QWidget | None = None) -> None:
        super().__init__(lesson_key, parent)
        self._photo = False
        self._names: tuple[str, ...] = ()
        self._drawn: dict[str, Any] = {}  # what the slow-changing pictures show now
        self.preview_plot, self.preview_image = image_plot("cnnPreview")
        self.data_note = ElidedLabel("")  # the whole description is its tooltip
        self.data_note.setObjectName("cnnDataNote")
        self.data_note.setProperty("muted", True)
        self.filters_plot, self.filters_image = image_plot("cnnFilters")
        self.maps_plot, self.maps_image = image_plot("cnnMaps")
        self.picked_plot, self.picked_image = image_plot("cnnPicked")
        self.saliency_plot, self.saliency_image = image_plot("cnnSaliency")
        self.guess = ElidedLabel("")
        self.guess.setObjectName("cnnGuess")
        self.pick_box = QSpinBox()
        self.pick_box.setObjectName("cnnPick")
        self.pick_box.setRange(0, 0)
        self.pick_box.setToolTip("The test image whose feature maps and saliency are shown")
        self.pick_box.setMaximumWidth(self.pick_box.fontMetrics().horizontalAdvance("000000") + 36)
        self.pick_box.valueChanged.connect(
            lambda v: self.setParamRequested.emit("pick", int(v)))

        self.confusion_plot, self.confusion_image = image_plot("cnnConfusion")
        item = self.confusion_plot.getPlotItem()
        item.showAxis("left")
        item.showAxis("bottom")
        self.missed_plot, self.missed_image = image_plot("cnnMissed")
        self.missed_caption = caption("Mistakes", tip="Test images the network gets wrong; "
                                                      "the caption counts them")
        add_histogram_plots(self, "cnn")
        self.weight_curves = [self._curve(self.weights_plot, c) for c in LAYER_COLORS]
        self.grad_curves = [self._curve(self.grads_plot, c) for c in LAYER_COLORS]
        self.hist_legend = LegendStrip()
        self.hist_legend.setObjectName("cnnHistLegend")

        layout = plot_grid(self)
        layout.addWidget(caption("Input",
                                 tip="What the model sees: prepared training images, as the "
                                     "network gets them"), 0, 0)
        layout.addWidget(self.preview_plot, 1, 0)
        layout.addWidget(caption("Filters",
                                 tip="Top row: the first layer's 3×3 filters. Below: the second "
                                     "layer's filters (columns, the first 16) with their 3×3 "
                                     "kernel for each of the first 8 first-layer maps (rows). "
                                     "Blue is negative, orange positive."), 0, 1)
        layout.addWidget(self.filters_plot, 1, 1)
        layout.addWidget(caption("Picked · saliency",
                                 tip="The picked test image, and how much each pixel moves the "
                                     "score of its true class (|gradient|)"), 0, 2)
        pair = QHBoxLayout()
        pair.setSpacing(4)
        pair.addWidget(self.picked_plot)
        pair.addWidget(self.saliency_plot)
        layout.addLayout(pair, 1, 2)
        layout.addWidget(caption("Feature maps",
                                 tip="What each filter responds to in the picked image: the "
                                     "first layer's maps, then the second's (after ReLU, each "
                                     "map scaled on its own)"), 0, 3)
        layout.addWidget(self.maps_plot, 1, 3)
        # a row of words under the pictures: the data set, and the picked image's guess
        layout.addWidget(self.data_note, 2, 0, 1, 2)
        pick_row = QHBoxLayout()
        pick_row.setSpacing(6)
        pick_label = QLabel("Image #")
        pick_label.setProperty("muted", True)
        pick_row.addWidget(pick_label)
        pick_row.addWidget(self.pick_box)
        pick_row.addWidget(self.guess, 1)
        layout.addLayout(pick_row, 2, 2, 1, 2)

        layout.addWidget(caption("Confusion",
                                 tip="On the test set. Rows: the true class; columns: the "
                                     "network's guess. The diagonal is right."), 3, 0)
        layout.addWidget(self.confusion_plot, 4, 0)
        layout.addWidget(self.missed_caption, 3, 1)
        layout.addWidget(self.missed_plot, 4, 1)
        layout.addWidget(caption("Weights",
                                 tip="Histogram of each layer's weights (heights scaled to "
                                     "the tallest bin)"), 3, 2)
        layout.addWidget(caption("Gradients",
                                 tip="Histogram of each layer's weight gradients in the last "
                                     "step"), 3, 3)
        hist_box = QGridLayout()
        hist_box.setHorizontalSpacing(12)
        hist_box.addWidget(self.weights_plot, 0, 0)
        hist_box.addWidget(self.grads_plot, 0, 1)
        hist_box.addWidget(self.hist_legend, 1, 0, 1, 2)
        layout.addLayout(hist_box, 4, 2, 1, 2)
        layout.setRowStretch(1, 1)
        layout.setRowStretch(4, 1)
        for col in range(4):
            layout.setColumnStretch(col, 1)
        self.hist_legend.set_entries([(name, c, "line") for name, c in
                                      zip(("conv 1", "conv 2", "linear"), LAYER_COLORS,
                                          strict=True)])
        self.apply_theme()

    @staticmethod
    def _curve(plot: pg.PlotWidget, color: str) -> pg.PlotDataItem:
        return layer_curve(plot, color)

    def apply_theme(self) -> None:
        for plot in (self.preview_plot, self.filters_plot, self.maps_plot, self.picked_plot,
                     self.saliency_plot, self.confusion_plot, self.missed_plot,
                     self.weights_plot, self.grads_plot):
            pk.restyle(plot)
        self._set_luts()
        self.filters_image.setLookupTable(pk.gradient_lut([NEGATIVE, colors().surface, POSITIVE]))
        self.maps_image.setLookupTable(pk.gradient_lut(list(MAGMA)))
        self.saliency_image.setLookupTable(pk.gradient_lut(list(MAGMA)))
        self.confusion_image.setLookupTable(pk.heat_lut())

    def _set_luts(self) -> None:
        self._lut = pk.grey_lut() if self._photo else pk.ink_lut()
        for item in (self.preview_image, self.picked_image, self.missed_image):
            item.setLookupTable(self._lut)

    # -- LessonView ----------------------------------------------------------------------------
    def show_snapshot(self, snapshot: dict[str, Any]) -> None:
        photo = bool(snapshot["photo"])
        if photo != self._photo:
            self._photo = photo
            self._set_luts()
        names = tuple(snapshot["class_names"])
        if names != self._names:
            self._names = names
            # digits name themselves; longer names would crowd the axes: numbers, named in the tip
            short = list(names) if all(len(n) <= 2 for n in names) else [
                str(i) for i in range(len(names))]
            pk.label_ticks(self.confusion_plot, short, "bottom")
            pk.label_ticks(self.confusion_plot, short, "left")
            self.confusion_plot.setToolTip("Classes: " + ", ".join(
                f"{i}: {n}" for i, n in enumerate(names)))
        # the input grid changes with the data set only; the test-set pictures every few steps:
        # drawn again only then (each image costs the GUI thread a render)
        if snapshot["data_note"] != self._drawn.get("data"):
            self._drawn["data"] = snapshot["data_note"]
            self._images(self.preview_image, snapshot["preview"], PREVIEW_COLS)
        f1 = snapshot["filters1"]  # (w, 3, 3, C)
        f1 = _diverging(f1[..., 0] if f1.shape[-1] == 1 else f1.mean(axis=-1))
        f2 = _diverging(snapshot["filters2"][:FILTERS2_OUT])  # (out, in, 3, 3), per out filter
        f2 = f2[:, :FILTERS2_IN].transpose(1, 0, 2, 3)  # rows: input maps; columns: filters
        cols = f2.shape[1]
        rows2 = tile_images(f2.reshape(-1, 3, 3), cols)
        row1 = tile_images(f1, max(cols, len(f1)))
        self.filters_image.setImage(stacked(row1, rows2), autoLevels=False)

        m1, m2 = snapshot["maps1"], snapshot["maps2"]
        t1 = tile_images(m1, MAPS_COLS)
        # second-layer maps are half the size: upscale them 2× so the two grids line up
        t2 = tile_images(np.repeat(np.repeat(m2, 2, axis=1), 2, axis=2), MAPS_COLS)
        gap = np.full((3, t1.shape[1]), np.nan, np.float32)
        self.maps_image.setImage(np.concatenate([t1, gap, t2[:, :t1.shape[1]]]),
                                 autoLevels=False)

        self._images(self.picked_image, snapshot["picked"][None], 1)
        self.saliency_image.setImage(snapshot["saliency"], autoLevels=False)
        label = names[snapshot["picked_label"]]
        top = ", ".join(f"{names[i]} ({p:.0%})" for i, p in snapshot["picked_top"])
        self.guess.set_full_text(f"is {label} · guess {top}")
        show_pick(self.pick_box, snapshot)

        test_key = (snapshot["step"] if snapshot["step"] == 0 else snapshot["test_step"],
                    snapshot["data_note"])
        if test_key != self._drawn.get("test"):
            self._drawn["test"] = test_key
            self._show_test_set(snapshot, names)
        show_histograms(self, snapshot["histograms"])

    def _show_test_set(self, snapshot: dict[str, Any], names: tuple[str, ...]) -> None:
        """The confusion matrix, the mistakes and the test accuracy."""
        conf = snapshot["confusion"].astype(np.float64)
        self.confusion_image.setImage(conf / conf.sum(axis=1, keepdims=True).clip(min=1),
                                      autoLevels=False)
        missed = snapshot["missed"]
        self.missed_caption.set_full_text(f"{snapshot['n_missed']} wrong")
        self.missed_caption.setToolTip(
            f"Test accuracy {snapshot['test_acc']:.1%}: {snapshot['n_missed']} of "
            f"{snapshot['n_test']} test images are wrong at step {snapshot['test_step']} (the "
            f"first {len(missed)} shown)")
        if len(missed):
            self._images(self.missed_image, missed, MISSED_COLS)
            pairs = [f"{names[t]}→{names[g]}" for t, g in zip(snapshot["missed_true"],
                                                              snapshot["missed_guess"],
                                                              strict=True)]
            self.missed_plot.setToolTip("True→guessed, row by row: " + ", ".join(pairs))
        else:
            self.missed_image.clear()
            self.missed_plot.setToolTip("No test image is wrong")
        self.data_note.set_full_text(f"{snapshot['data_short']} · {snapshot['test_acc']:.1%} right")
        self.data_note.setToolTip(f"{snapshot['data_note']} Test accuracy "
                                  f"{snapshot['test_acc']:.1%}.")

    def reset(self) -> None:
        self._drawn.clear()
        self.weights_range.reset()
        self.grads_range.reset()

    def _images(self, item: pg.ImageItem, images: np.ndarray, cols: int) -> None:
        """(n, s, s, C) images in [0, 1] tiled ``cols`` wide (grey ones through the LUT)."""
        show_tiled(item, images, cols, self._lut)

    def export_items(self) -> dict[str, QWidget]:
        return {"What the model sees": self.preview_plot, "Filters": self.filters_plot,
                "Feature maps": self.maps_plot, "Saliency": self.saliency_plot,
                "Confusion matrix": self.confusion_plot, "Mistakes": self.missed_plot,
                "Weight histograms": self.weights_plot, "Gradient histograms": self.grads_plot}

