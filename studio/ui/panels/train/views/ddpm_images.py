"""The view of the image diffusion lesson (``ddpm``): real images under the noise of any level
(a slider over t), the reverse chain as a film strip (fixed noise → samples), the ε-MSE per range
of noise levels, and weight/gradient histograms of a few UNet layers. The model goes to Generate
through the Runs tab's "Export model to Generate…" (as every lesson's model goes to its workspace).

The scrubber's images are computed here from the snapshot's fixed x₀, ε and ᾱ
(``x_t = √ᾱ_t·x₀ + √(1−ᾱ_t)·ε``): moving the slider costs no trip to the trainer. Items are
created once; frames only call ``setImage``/``setData``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt, Slot
from PySide6.QtWidgets import (
    QGridLayout,
    QHBoxLayout,
    QLabel,
    QSlider,
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
from studio.ui.panels.train.views.ddpm import error_bars, show_error_bars, style_error_bars
from studio.ui.panels.train.widgets import ElidedLabel, LegendStrip, caption, plot_grid

SCRUB_COLS = 8
LAYERS = ("in", "down", "middle", "up", "out")


class DDPMImageView(LessonView):
    """Pictures of a small UNet learning to turn noise into images."""

    def __init__(self, lesson_key: str, parent: QWidget | None = None) -> None:
        super().__init__(lesson_key, parent)
        self._photo = False
        self._snapshot: dict[str, Any] | None = None
        self._shown_strip = -1

        self.scrub_plot, self.scrub_image = image_plot("ddpmScrub")
        self.scrub_plot.setMinimumHeight(40)
        self.scrubber = QSlider(Qt.Orientation.Horizontal)
        self.scrubber.setObjectName("ddpmNoiseLevel")
        self.scrubber.setRange(0, 999)
        self.scrubber.setValue(300)
        self.scrubber.setToolTip("The noise level t: 0 is the clean image, 999 pure noise")
        self.scrubber.valueChanged.connect(self._on_scrub)
        self.level_label = QLabel("")
        self.level_label.setProperty("muted", True)
        self.level_label.setMinimumWidth(self.level_label.fontMetrics().horizontalAdvance(
            self._level_text(999, 0.0)) + 6)
        self.strip_plot, self.strip_image = image_plot("ddpmStrip")
        self.strip_caption = caption("Reverse chain", tip="Eight fixed noise images walked "
                                     "back by the model (DDIM): noise on the left, the sample "
                                     "on the right")
        self.mse_plot, self.mse_bars, self.mse_range = error_bars("ddpmErrorBars")
        self.mse_plot.setMinimumHeight(140)  # room for the five ranges' names
        add_histogram_plots(self, "ddpm")
        palette = pk.SERIES_COLORS
        self.weight_curves = [layer_curve(self.weights_plot, palette[i]) for i in
                              range(len(LAYERS))]
        self.grad_curves = [layer_curve(self.grads_plot, palette[i]) for i in range(len(LAYERS))]
        self.hist_legend = LegendStrip()
        self.hist_legend.setObjectName("ddpmHistLegend")
        self.hist_legend.set_entries([(n, palette[i], "line") for i, n in enumerate(LAYERS)])
        self.data_note = ElidedLabel("")
        self.data_note.setObjectName("ddpmDataNote")
        self.data_note.setProperty("muted", True)

        layout = plot_grid(self)
        layout.addWidget(caption("Noise level", tip="Real images with the noise of level t "
                                                    "added: what the model learns to undo"),
                         0, 0)
        layout.addWidget(self.scrub_plot, 1, 0)
        scrub_row = QHBoxLayout()
        scrub_row.addWidget(self.scrubber, 1)
        scrub_row.addWidget(self.level_label)
        layout.addLayout(scrub_row, 2, 0)
        layout.addWidget(self.strip_caption, 3, 0)
        layout.addWidget(self.strip_plot, 4, 0, 2, 1)
        layout.addWidget(self.data_note, 6, 0)
        side = QVBoxLayout()
        side.setSpacing(4)
        side.addWidget(caption("Error by noise level", tip="The noise-prediction error "
                                                            "(ε-MSE) per range of t, least "
                                                            "noise at the top"))
        side.addWidget(self.mse_plot, 2)
        hist = QGridLayout()
        weights, gradients = histogram_captions()
        hist.addWidget(weights, 0, 0)
        hist.addWidget(gradients, 0, 1)
        hist.addWidget(self.weights_plot, 1, 0)
        hist.addWidget(self.grads_plot, 1, 1)
        hist.addWidget(self.hist_legend, 2, 0, 1, 2)
        side.addLayout(hist, 3)
        layout.addLayout(side, 0, 1, 7, 1)
        layout.setRowStretch(1, 1)
        layout.setRowStretch(4, 3)
        layout.setColumnStretch(0, 3)
        layout.setColumnStretch(1, 2)
        self.apply_theme()

    @staticmethod
    def _level_text(t: int, abar: float) -> str:
        return f"t = {t}  ·  √ᾱ = {np.sqrt(abar):.2f}"

    def apply_theme(self) -> None:
        for plot in (self.scrub_plot, self.strip_plot, self.mse_plot, self.weights_plot,
                     self.grads_plot):
            pk.restyle(plot)
        style_error_bars(self.mse_plot, self.mse_bars)
        self._lut = pk.grey_lut() if self._photo else pk.ink_lut()

    def _images(self, item: pg.ImageItem, images: np.ndarray, cols: int) -> None:
        show_tiled(item, images, cols, self._lut)

    # -- LessonView ----------------------------------------------------------------------------
    def show_snapshot(self, snapshot: dict[str, Any]) -> None:
        photo = bool(snapshot["photo"])
        if photo != self._photo:
            self._photo = photo
            self.apply_theme()
            self._shown_strip = -1
        self._snapshot = snapshot
        self._on_scrub(self.scrubber.value())
        if snapshot["strip_step"] != self._shown_strip:
            strip = snapshot["strip"]  # (rows, frames, s, s, C)
            rows, frames = strip.shape[:2]
            self._images(self.strip_image, strip.reshape(rows * frames, *strip.shape[2:]),
                         frames)
            self._shown_strip = int(snapshot["strip_step"])
            labels = snapshot["strip_labels"]
            rows_text = f" · rows: {', '.join(labels)}" if labels else ""
            self.strip_caption.set_full_text(
                f"Reverse chain · step {self._shown_strip} · {snapshot['preview_steps']} DDIM "
                f"steps{rows_text}")
        show_error_bars(self.mse_plot, self.mse_bars, self.mse_range, snapshot)
        show_histograms(self, snapshot["histograms"])
        self.data_note.set_full_text(snapshot["data_short"])
        self.data_note.setToolTip(snapshot["data_note"])

    @Slot(int)
    def _on_scrub(self, t: int) -> None:
        snap = self._snapshot
        if snap is None:
            return
        abar = float(snap["alphas_cumprod"][t])
        noisy = np.sqrt(abar) * snap["scrub_x0"] + np.sqrt(1 - abar) * snap["scrub_eps"]
        self._images(self.scrub_image, np.clip((noisy + 1) / 2, 0, 1), SCRUB_COLS)
        self.level_label.setText(self._level_text(t, abar))

    def reset(self) -> None:
        self._snapshot = None
        self._shown_strip = -1
        self.mse_range.reset()
        self.weights_range.reset()
        self.grads_range.reset()

    def export_items(self) -> dict[str, QWidget]:
        return {"Noise level": self.scrub_plot, "Reverse chain": self.strip_plot,
                "Error per noise level": self.mse_plot, "Weight histograms": self.weights_plot,
                "Gradient histograms": self.grads_plot}
