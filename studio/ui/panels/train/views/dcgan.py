"""The view of the DCGAN lesson: the fixed-noise sample grid with a slider back through training,
the latent walk between two fixed noise vectors, D(x)/D(G(z)), the samples' variety with a
mode-collapse sentence, and weight/gradient histograms of each layer of both networks.

"Step D" / "Step G" (the trainer's ``step_parts``) sit beside the data set: in the control bar
they were clipped on a laptop screen. Items are created once;
frames only call ``setImage``/``setData``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pyqtgraph as pg
from PySide6.QtWidgets import (
    QHBoxLayout,
    QLabel,
    QVBoxLayout,
    QWidget,
)

from studio.ui.panels.train import plotting as pk
from studio.ui.panels.train.views.base import LessonView
from studio.ui.panels.train.views.cnn import (
    add_histogram_plots,
    histogram_captions,
    image_plot,
    layer_curve,
    show_histograms,
    show_tiled,
)
from studio.ui.panels.train.views.gan import step_part_buttons
from studio.ui.panels.train.widgets import ElidedLabel, LegendStrip, StepHistory, caption, plot_grid

SAMPLE_COLS = 8
HISTORY_EVERY = 25  # steps between kept sample grids
HISTORY_MAX = 200  # kept grids (the oldest are dropped)


class ImageRows:
    """What the generating lessons' views share: image grids drawn through the theme's LUT (grey
    images) or as they are (colour), and one weight and one gradient curve per layer, rebuilt
    when the layers change. The view sets ``_lut`` in ``apply_theme`` and has the histogram
    plots of :func:`add_histogram_plots` and a ``hist_legend``."""

    _lut: np.ndarray
    _photo: bool
    readout: ElidedLabel
    data_note: ElidedLabel
    weights_plot: pg.PlotWidget
    grads_plot: pg.PlotWidget
    hist_legend: LegendStrip
    weight_curves: list[pg.PlotDataItem]
    grad_curves: list[pg.PlotDataItem]
    _layer_names: tuple[str, ...]

    def _build_rows(self, prefix: str) -> None:
        """The readout and data-note lines, the histogram plots with their curves and legend
        (object names ``<prefix>Readout``, ``<prefix>DataNote``, ``<prefix>HistLegend``, …)."""
        self.readout = ElidedLabel("")
        self.readout.setObjectName(f"{prefix}Readout")
        self.data_note = ElidedLabel("")
        self.data_note.setObjectName(f"{prefix}DataNote")
        self.data_note.setProperty("muted", True)
        add_histogram_plots(self, prefix)
        self.weight_curves = []
        self.grad_curves = []
        self._layer_names = ()
        self.hist_legend = LegendStrip()
        self.hist_legend.setObjectName(f"{prefix}HistLegend")

    def _restyle(self, *plots: pg.PlotWidget) -> None:
        """Repaint ``plots`` in the theme; grey images through its paper (ink) or photo LUT."""
        for plot in plots:
            pk.restyle(plot)
        self._lut = pk.grey_lut() if self._photo else pk.ink_lut()

    def _follow_photo(self, snapshot: dict[str, Any]) -> None:
        """Photos (0 = black) or ink on paper, as the snapshot's data set is."""
        photo = bool(snapshot["photo"])
        if photo != self._photo:
            self._photo = photo
            self.apply_theme()  # type: ignore[attr-defined]  # the view's (a LessonView)

    def _images(self, item: pg.ImageItem, images: np.ndarray, cols: int) -> np.ndarray:
        return show_tiled(item, images, cols, self._lut)

    def _set_layers(self, names: tuple[str, ...]) -> None:
        for curve in self.weight_curves:
            self.weights_plot.removeItem(curve)
        for curve in self.grad_curves:
            self.grads_plot.removeItem(curve)
        palette = pk.SERIES_COLORS
        self.weight_curves = [self._curve(self.weights_plot, palette[i % len(palette)])
                              for i in range(len(names))]
        self.grad_curves = [self._curve(self.grads_plot, palette[i % len(palette)])
                            for i in range(len(names))]
        self.hist_legend.set_entries([(n, palette[i % len(palette)], "line")
                                      for i, n in enumerate(names)])
        self._layer_names = names

    @staticmethod
    def _curve(plot: pg.PlotWidget, color: str) -> pg.PlotDataItem:
        return layer_curve(plot, color)

    def _show_layers(self, layers: list[dict[str, Any]]) -> None:
        names = tuple(layer["name"] for layer in layers)
        if names != self._layer_names:
            self._set_layers(names)
        show_histograms(self, layers)

    def _show_rows(self, snapshot: dict[str, Any], losses: str | None, waiting: str) -> None:
        """The readout line (``waiting`` until the first step gives ``losses``), the data set's
        note (the whole note as its tooltip) and each layer's weight and gradient histogram."""
        self.readout.set_full_text(losses if losses is not None else waiting)
        self.data_note.set_full_text(snapshot["data_short"])
        self.data_note.setToolTip(snapshot["data_note"])
        self._show_layers(snapshot["histograms"])


class DCGANView(ImageRows, LessonView):
    """Pictures of a DCGAN learning to draw images."""

    offers_step_parts = True

    def __init__(self, lesson_key: str, parent: QWidget | None = None) -> None:
        super().__init__(lesson_key, parent)
        self._photo = False

        self.samples_plot, self.samples_image = image_plot("dcganSamples")
        # the sample grids kept while training (grey ones without their channel axis)
        self.history = StepHistory(
            lambda samples: self._images(
                self.samples_image, samples if samples.ndim == 4 else samples[..., None],
                SAMPLE_COLS),
            HISTORY_EVERY, HISTORY_MAX, self)
        self.history_slider, self.history_label = self.history.slider, self.history.label
        self.history_slider.setObjectName("dcganHistory")
        self.history_slider.setToolTip("Drag back through training: the grid at earlier steps")
        self.history_label.setMinimumWidth(self.history_label.fontMetrics().horizontalAdvance(
            "step 000000 (history)") + 4)
        self.step_d, self.step_g = step_part_buttons(self)
        self.walk_plot, self.walk_image = image_plot("dcganWalk")
        self.walk_plot.setMinimumHeight(40)
        self.hint = QLabel("")
        self.hint.setObjectName("dcganHint")
        self.hint.setWordWrap(True)
        self._build_rows("dcgan")

        layout = plot_grid(self)
        layout.addWidget(caption("Samples", tip="What the generator makes from the same 64 noise "
                                                "vectors all run long"), 0, 0)
        layout.addWidget(self.samples_plot, 1, 0, 4, 1)
        slider_row = QHBoxLayout()
        slider_row.addWidget(self.history_slider, 1)
        slider_row.addWidget(self.history_label)
        layout.addLayout(slider_row, 5, 0)
        layout.addWidget(caption("Latent walk", tip="Ten images on the straight line between two "
                                                    "fixed noise vectors"), 0, 1, 1, 2)
        layout.addWidget(self.walk_plot, 1, 1, 1, 2)
        words = QVBoxLayout()
        words.setSpacing(2)
        words.addWidget(self.readout)
        words.addWidget(self.hint)
        note_row = QHBoxLayout()
        note_row.addWidget(self.data_note, 1)
        note_row.addWidget(self.step_d)
        note_row.addWidget(self.step_g)
        words.addLayout(note_row)
        layout.addLayout(words, 2, 1, 1, 2)
        weights, gradients = histogram_captions()
        layout.addWidget(weights, 3, 1)
        layout.addWidget(gradients, 3, 2)
        layout.addWidget(self.weights_plot, 4, 1)
        layout.addWidget(self.grads_plot, 4, 2)
        layout.addWidget(self.hist_legend, 5, 1, 1, 2)
        layout.setRowStretch(1, 1)
        layout.setRowStretch(4, 2)
        layout.setColumnStretch(0, 2)
        layout.setColumnStretch(1, 1)
        layout.setColumnStretch(2, 1)
        self.apply_theme()

    def apply_theme(self) -> None:
        self._restyle(self.samples_plot, self.walk_plot, self.weights_plot, self.grads_plot)

    # -- LessonView ----------------------------------------------------------------------------
    def show_snapshot(self, snapshot: dict[str, Any]) -> None:
        self._follow_photo(snapshot)
        step = int(snapshot["step"])
        grey = snapshot["samples"].shape[-1] == 1
        samples = snapshot["samples"][..., 0] if grey else snapshot["samples"]
        self.history.record(step, samples)
        self._images(self.walk_image, snapshot["walk"], len(snapshot["walk"]))
        self.hint.setText(snapshot["variety_hint"])
        losses = (f"D(x) {snapshot['d_real']:.2f} · D(G(z)) {snapshot['d_fake']:.2f} · loss D "
                  f"{snapshot['loss_d']:.2f} · loss G {snapshot['loss_g']:.2f}"
                  if "d_real" in snapshot else None)
        self._show_rows(snapshot, losses, "D(x) and D(G(z)) appear after the first step")

    def reset(self) -> None:
        self.history.reset()
        self.weights_range.reset()
        self.grads_range.reset()

    def export_items(self) -> dict[str, QWidget]:
        return {"Samples": self.samples_plot, "Latent walk": self.walk_plot,
                "Weight histograms": self.weights_plot, "Gradient histograms": self.grads_plot}
