"""The view of the CycleGAN lesson: A → B → A and B → A → B for four fixed examples of each
domain (one example per row: the input, its translation, the translation back), the four losses
in words, and weight/gradient histograms of a few layers of G_A and both discriminators.

Items are created once; frames only call ``setImage``/``setData``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from PySide6.QtWidgets import QWidget

from studio.ui.panels.train.views.base import LessonView
from studio.ui.panels.train.views.cnn import histogram_captions, image_plot
from studio.ui.panels.train.views.dcgan import ImageRows
from studio.ui.panels.train.widgets import caption, plot_grid


def round_trip_rows(trips: np.ndarray) -> np.ndarray:
    """(3, n, s, s, C) (inputs, translations, back) → (3n, s, s, C), one example per row of 3."""
    return trips.transpose(1, 0, 2, 3, 4).reshape((-1,) + trips.shape[2:])


class CycleGANView(ImageRows, LessonView):
    """Pictures of two generators learning to translate between two domains and back."""

    def __init__(self, lesson_key: str, parent: QWidget | None = None) -> None:
        super().__init__(lesson_key, parent)
        self._photo = True
        self.aba_plot, self.aba_image = image_plot("cycleganABA")
        self.bab_plot, self.bab_image = image_plot("cycleganBAB")
        self.aba_caption = caption("A → B → A", tip="Each row: an image of domain A, G_A's "
                                                    "translation into B, and G_B's back into A")
        self.bab_caption = caption("B → A → B", tip="Each row: an image of domain B, G_B's "
                                                    "translation into A, and G_A's back into B")
        self._build_rows("cyclegan")

        layout = plot_grid(self)
        layout.addWidget(self.aba_caption, 0, 0)
        layout.addWidget(self.bab_caption, 0, 1)
        weights, gradients = histogram_captions()
        layout.addWidget(weights, 0, 2)
        layout.addWidget(gradients, 0, 3)
        layout.addWidget(self.aba_plot, 1, 0)
        layout.addWidget(self.bab_plot, 1, 1)
        layout.addWidget(self.weights_plot, 1, 2)
        layout.addWidget(self.grads_plot, 1, 3)
        layout.addWidget(self.readout, 2, 0, 1, 2)
        layout.addWidget(self.hist_legend, 2, 2, 1, 2)
        layout.addWidget(self.data_note, 3, 0, 1, 4)
        layout.setRowStretch(1, 1)
        for col in range(4):
            layout.setColumnStretch(col, 1)
        self.apply_theme()

    def apply_theme(self) -> None:
        self._restyle(self.aba_plot, self.bab_plot, self.weights_plot, self.grads_plot)

    # -- LessonView ----------------------------------------------------------------------------
    def show_snapshot(self, snapshot: dict[str, Any]) -> None:
        self._follow_photo(snapshot)
        self._images(self.aba_image, round_trip_rows(snapshot["a_to_b"]), 3)
        self._images(self.bab_image, round_trip_rows(snapshot["b_to_a"]), 3)
        a, b = snapshot["domain_names"]
        self.aba_caption.setToolTip(f"Each row: an image of A ({a}), G_A's translation into B "
                                    f"({b}), and G_B's back into A")
        self.bab_caption.setToolTip(f"Each row: an image of B ({b}), G_B's translation into A "
                                    f"({a}), and G_A's back into B")
        losses = (f"loss G {snapshot['loss_g']:.3f} · D {snapshot['loss_d']:.3f} · cycle "
                  f"{snapshot['loss_cycle']:.3f} · identity {snapshot['loss_idt']:.3f}"
                  if "loss_cycle" in snapshot else None)
        self._show_rows(snapshot, losses, "The losses appear after the first step")

    def reset(self) -> None:
        self.weights_range.reset()
        self.grads_range.reset()

    def export_items(self) -> dict[str, QWidget]:
        return {"A to B to A": self.aba_plot, "B to A to B": self.bab_plot,
                "Weight histograms": self.weights_plot, "Gradient histograms": self.grads_plot}
