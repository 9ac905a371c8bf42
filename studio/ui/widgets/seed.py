"""The seed field Generate and Transform share, and a fresh random seed."""

from __future__ import annotations

import random

from PySide6.QtWidgets import QDoubleSpinBox, QStyle, QWidget

from studio.core.requests import SEED_MAX
from studio.ui.widgets.input_policy import hide_spin_buttons


def new_seed() -> int:
    """A fresh random seed; SystemRandom so two windows started together never collide."""
    return random.SystemRandom().randrange(SEED_MAX + 1)


class SeedBox(QDoubleSpinBox):
    """A seed from 0 to 2**32-1 (beyond QSpinBox's int32), shown without decimals.

    Wide enough for the largest seed: the number is what tells the user which image a fixed seed
    repeats, so it must never be cut (or, as once, squeezed into a 1-px field).
    """

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setDecimals(0)
        self.setRange(0, SEED_MAX)
        hide_spin_buttons(self)  # not NoButtons: that leaves a 1-px field under the style sheet
        self.setGroupSeparatorShown(False)
        self.setMinimumWidth(self.text_width())

    def text_width(self) -> int:
        """The width that shows the largest seed whole (text, padding and frame)."""
        digits = self.fontMetrics().horizontalAdvance(str(SEED_MAX))
        return digits + 2 * self.style().pixelMetric(QStyle.PixelMetric.PM_DefaultFrameWidth) + 24

    def seed(self) -> int:
        return int(self.value())
