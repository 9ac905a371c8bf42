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
from PySide6.QtWidgets import QGridLayout, QHBoxLayout, QLabel, QSpinBox, QVBoxLayout, QWidget

from studio.ui.panels.train import plotting as pk
from studio.ui.panels.train.views.base import LessonView
from studio.ui.panels.train.widgets import ElidedLabel, LegendStrip, caption
from studio.ui.theme import colors

PREVIEW_COLS = 8
MISSED_COLS = 4
MAPS_COLS = 8
NEGATIVE, POSITIVE = "#4e79a7", "#f28e2b"  # the diverging scale of the filters
MAGMA = ("#000004", "#51127c", "#b73779", "#fc8961", "#fcfdbf")  # maps and saliency
LAYER_COLORS = pk.SERIES_COLORS[:3]


def tile_images(images: np.ndarray, cols: int, pad: int = 1) -> np.ndarray:
    """(n, h, w) or (n, h, w, 3) images on a grid; gaps NaN (grey) or, for colour, 0.5."""
    if images.ndim == 3:
        return pk.tile(images, cols, pad)
    planes = [pk.tile(images[..., k], cols, pad, fill=0.5) for k in range(images.shape[-1])]
    return np.stack(planes, axis=-1)


def _diverging(weights: np.ndarray) -> np.ndarray:
    """Weights scaled per filter (first axis) to [0, 1] with 0 at 0.5."""
    flat = weights.reshape(len(weights), -1)
    top = np.abs(flat).max(axis=1).clip(min=1e-8)
    return 0.5 + 0.5 * weights / top.reshape((-1,) + (1,) * (weights.ndim - 1))


def _image_plot(name: str) -> tuple[pg.PlotWidget, pg.ImageItem]:
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
        self.preview_plot, self.preview_image = _image_plot("cnnPreview")
        self.data_note = ElidedLabel("")  # the whole description is its tooltip
        self.data_note.setObjectName("cnnDataNote")
        self.data_note.setProperty("muted", True)
        self.filters_plot, self.filters_image = _image_plot("cnnFilters")
        self.maps_plot, self.maps_image = _image_plot("cnnMaps")
        self.picked_plot, self.picked_image = _image_plot("cnnPicked")
        self.saliency_plot, self.saliency_image = _image_plot("cnnSaliency")
        self.guess = QLabel("")
        self.guess.setObjectName("cnnGuess")
        self.guess.setWordWrap(True)
        self.pick_box = QSpinBox()
        self.pick_box.setObjectName("cnnPick")
        self.pick_box.setRange(0, 0)
        self.pick_box.setToolTip("The test image whose feature maps and saliency are shown")
        self.pick_box.valueChanged.connect(
            lambda v: self.setParamRequested.emit("pick", int(v)))

        self.confusion_plot, self.confusion_image = _image_plot("cnnConfusion")
        item = self.confusion_plot.getPlotItem()
        item.showAxis("left")
        item.showAxis("bottom")
        self.missed_plot, self.missed_image = _image_plot("cnnMissed")
        self.missed_caption = caption("Mistakes", tip="Test images the network gets wrong")
        self.weights_plot = pk.themed_plot()
        self.weights_plot.setObjectName("cnnWeightHist")
        self.grads_plot = pk.themed_plot()
        self.grads_plot.setObjectName("cnnGradHist")
        self.weight_curves = [self._curve(self.weights_plot, c) for c in LAYER_COLORS]
        self.grad_curves = [self._curve(self.grads_plot, c) for c in LAYER_COLORS]
        self.hist_legend = LegendStrip()
        self.hist_legend.setObjectName("cnnHistLegend")

        layout = QGridLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setHorizontalSpacing(12)
        layout.setVerticalSpacing(4)
        layout.addWidget(caption("What the model sees",
                                 tip="Prepared training images, as the network gets them"), 0, 0)
        preview_box = QVBoxLayout()
        preview_box.setSpacing(2)
        preview_box.addWidget(self.preview_plot, 1)
        preview_box.addWidget(self.data_note)
        layout.addLayout(preview_box, 1, 0)
        layout.addWidget(caption("Filters: conv 1, conv 2",
                                 tip="Top: each first-layer 3×3 filter. Below: one row per "
                                     "second-layer filter, one 3×3 kernel per first-layer map. "
                                     "Blue is negative, orange positive."), 0, 1)
        layout.addWidget(self.filters_plot, 1, 1)
        pick_head = QHBoxLayout()
        pick_head.addWidget(caption("Picked image · saliency",
                                    tip="The picked test image, and how much each pixel moves "
                                        "the score of its true class (|gradient|)"), 1)
        pick_label = QLabel("Image #")
        pick_label.setProperty("muted", True)
        pick_head.addWidget(pick_label)
        pick_head.addWidget(self.pick_box)
        layout.addLayout(pick_head, 0, 2)
        picked_box = QVBoxLayout()
        picked_box.setSpacing(2)
        pair = QHBoxLayout()
        pair.addWidget(self.picked_plot)
        pair.addWidget(self.saliency_plot)
        picked_box.addLayout(pair, 1)
        picked_box.addWidget(self.guess)
        layout.addLayout(picked_box, 1, 2)
        layout.addWidget(caption("Feature maps: conv 1, conv 2",
                                 tip="What each filter responds to in the picked image "
                                     "(after ReLU, each map scaled on its own)"), 0, 3)
        layout.addWidget(self.maps_plot, 1, 3)

        layout.addWidget(caption("Confusion (test)",
                                 tip="Rows: the true class; columns: the network's guess. "
                                     "The diagonal is right."), 2, 0)
        layout.addWidget(self.confusion_plot, 3, 0)
        layout.addWidget(self.missed_caption, 2, 1)
        layout.addWidget(self.missed_plot, 3, 1)
        layout.addWidget(caption("Weights per layer",
                                 tip="Histogram of each layer's weights (heights scaled to "
                                     "the tallest bin)"), 2, 2)
        layout.addWidget(caption("Gradients per layer",
                                 tip="Histogram of each layer's weight gradients in the last "
                                     "step"), 2, 3)
        hist_box = QGridLayout()
        hist_box.setHorizontalSpacing(12)
        hist_box.addWidget(self.weights_plot, 0, 0)
        hist_box.addWidget(self.grads_plot, 0, 1)
        hist_box.addWidget(self.hist_legend, 1, 0, 1, 2)
        layout.addLayout(hist_box, 3, 2, 1, 2)
        layout.setRowStretch(1, 1)
        layout.setRowStretch(3, 1)
        for col in range(4):
            layout.setColumnStretch(col, 1)
        self.hist_legend.set_entries([(name, c, "line") for name, c in
                                      zip(("conv 1", "conv 2", "linear"), LAYER_COLORS,
                                          strict=True)])
        self.apply_theme()

    @staticmethod
    def _curve(plot: pg.PlotWidget, color: str) -> pg.PlotDataItem:
        curve = pg.PlotDataItem(pen=pg.mkPen(color, width=1.5))
        plot.addItem(curve)
        return curve

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
            short = [n if len(n) <= 6 else n[:5] + "…" for n in names]
            pk.label_ticks(self.confusion_plot, short, "bottom")
            pk.label_ticks(self.confusion_plot, short, "left")
            self.confusion_plot.setToolTip("Classes: " + ", ".join(
                f"{i}: {n}" for i, n in enumerate(names)))
        self._images(self.preview_image, snapshot["preview"], PREVIEW_COLS)
        self.data_note.set_full_text(snapshot["data_short"])
        self.data_note.setToolTip(snapshot["data_note"])

        f1 = snapshot["filters1"]  # (w, 3, 3, C)
        f1 = _diverging(f1[..., 0] if f1.shape[-1] == 1 else f1.mean(axis=-1))
        f2 = _diverging(snapshot["filters2"])  # (2w, w, 3, 3)
        rows2 = tile_images(f2.reshape(-1, 3, 3), f2.shape[1])
        row1 = tile_images(f1, f2.shape[1])
        gap = np.full((2, rows2.shape[1]), np.nan, np.float32)
        width = rows2.shape[1]
        row1 = np.pad(row1, ((0, 0), (0, max(0, width - row1.shape[1]))),
                      constant_values=np.nan)[:, :width]
        self.filters_image.setImage(np.concatenate([row1, gap, rows2]), autoLevels=False)

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
        top = ", ".join(f"{names[i]} {p:.0%}" for i, p in snapshot["picked_top"])
        self.guess.setText(f"Is {label}; guess: {top}")
        self.guess.setToolTip(self.guess.text())
        self.pick_box.blockSignals(True)
        self.pick_box.setMaximum(max(0, int(snapshot["n_test"]) - 1))
        if not self.pick_box.hasFocus():
            self.pick_box.setValue(int(snapshot["pick"]))
        self.pick_box.blockSignals(False)

        conf = snapshot["confusion"].astype(np.float64)
        self.confusion_image.setImage(conf / conf.sum(axis=1, keepdims=True).clip(min=1),
                                      autoLevels=False)
        missed = snapshot["missed"]
        self.missed_caption.set_full_text(
            f"Mistakes: {snapshot['n_missed']} · test accuracy {snapshot['test_acc']:.1%}")
        if len(missed):
            self._images(self.missed_image, missed, MISSED_COLS)
            pairs = [f"{names[t]}→{names[g]}" for t, g in zip(snapshot["missed_true"],
                                                              snapshot["missed_guess"],
                                                              strict=True)]
            self.missed_plot.setToolTip("True→guessed, row by row: " + ", ".join(pairs))
        else:
            self.missed_image.clear()
            self.missed_plot.setToolTip("No test image is wrong")
        for curves, key in ((self.weight_curves, "weights"), (self.grad_curves, "grads")):
            for curve, layer in zip(curves, snapshot["histograms"], strict=True):
                counts, edges = layer[key]
                top = float(counts.max()) or 1.0
                curve.setData(edges, counts / top, stepMode="center")

    def _images(self, item: pg.ImageItem, images: np.ndarray, cols: int) -> None:
        """(n, s, s, C) images in [0, 1] tiled ``cols`` wide (grey ones through the LUT)."""
        grey = images.shape[-1] == 1
        item.setLookupTable(self._lut if grey else None)  # colour images are drawn as they are
        item.setImage(tile_images(images[..., 0] if grey else images, cols), autoLevels=False)

    def export_items(self) -> dict[str, QWidget]:
        return {"What the model sees": self.preview_plot, "Filters": self.filters_plot,
                "Feature maps": self.maps_plot, "Saliency": self.saliency_plot,
                "Confusion matrix": self.confusion_plot, "Mistakes": self.missed_plot,
                "Weight histograms": self.weights_plot, "Gradient histograms": self.grads_plot}

