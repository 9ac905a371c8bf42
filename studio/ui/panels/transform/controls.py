"""The sidebar controls of the Transform workspace: CycleGAN options and diffusion options.

The diffusion controls are Generate's (prompt, negative prompt, steps, CFG, sampler, seed, count)
plus the strength slider, and for inpainting the mask blur; the size is not asked for, it comes
from the image.
"""

from __future__ import annotations

from typing import Any

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QComboBox,
    QDoubleSpinBox,
    QFormLayout,
    QHBoxLayout,
    QPlainTextEdit,
    QSlider,
    QSpinBox,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from studio.core.requests import MAX_MASK_BLUR, OUTPAINT_SIDES, SCHEDULERS, Img2ImgRequest
from studio.ui.widgets.basics import muted_label, section_label
from studio.ui.widgets.seed import SeedBox, new_seed

DEFAULT_MASK_BLUR = 4  # px, AUTOMATIC1111's default
DEFAULT_SEAM = 8  # px, the mask blur of A1111's "Outpainting mk2"


class CycleGANOptions(QWidget):
    """Direction and max side."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.direction = QComboBox()
        self.direction.addItem("A → B", "AtoB")
        self.direction.addItem("B → A", "BtoA")
        self.max_side = QSpinBox()
        self.max_side.setRange(0, 16384)
        self.max_side.setSingleStep(256)
        self.max_side.setSuffix(" px")
        self.max_side.setSpecialValueText("Keep size")
        self.max_side.setToolTip("Downscale images whose longer side is larger before "
                                 "translating (large images are processed in tiles anyway)")
        form = QFormLayout(self)
        form.setContentsMargins(0, 0, 0, 0)
        form.addRow("Direction", self.direction)
        form.addRow("Max side", self.max_side)
        self.hint = muted_label(wrap=True)
        form.addRow(self.hint)

    _pending = ""  # a direction asked for before the model offering it was chosen

    def set_directions(self, directions: list[str]) -> None:
        """Enable only the directions the model offers."""
        for i in range(self.direction.count()):
            item = self.direction.model().item(i)
            item.setEnabled(self.direction.itemData(i) in directions)
        if self._pending in directions:
            self.direction.setCurrentIndex(self.direction.findData(self._pending))
        if directions:
            self._pending = ""
        if self.direction.currentData() not in directions and directions:
            self.direction.setCurrentIndex(self.direction.findData(directions[0]))
        self.direction.setEnabled(len(directions) > 1)
        self.hint.setText("" if len(directions) > 1 or not directions else
                          "This model translates one way; a G_A/G_B pair offers both.")

    def select_direction(self, direction: str, wait_for_model: bool = False) -> None:
        """Choose ``direction`` if the current model offers it; with ``wait_for_model``, choose
        it when the next model is set instead (the model list is still being read)."""
        if wait_for_model:
            self._pending = direction
            return
        index = self.direction.findData(direction)
        if index >= 0 and self.direction.model().item(index).isEnabled():
            self.direction.setCurrentIndex(index)


class DiffusionOptions(QWidget):
    """Prompt, strength and sampling settings of an img2img / inpaint request."""

    changed = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.prompt = QPlainTextEdit()
        self.prompt.setPlaceholderText("What the result should show…")
        self.prompt.setFixedHeight(84)
        self.negative = QPlainTextEdit()
        self.negative.setPlaceholderText("What to avoid (optional)")
        self.negative.setFixedHeight(48)
        self.strength_slider = QSlider(Qt.Orientation.Horizontal)
        self.strength_slider.setRange(1, 100)
        self.strength = QDoubleSpinBox()
        self.strength.setRange(0.01, 1.0)
        self.strength.setSingleStep(0.05)
        self.strength.setDecimals(2)
        self.strength.setToolTip("How much to change: low keeps the image, 1 repaints it fully")
        self.strength_slider.valueChanged.connect(lambda v: self.strength.setValue(v / 100))
        self.strength.valueChanged.connect(
            lambda v: self.strength_slider.setValue(round(v * 100)))
        self.strength.setValue(0.6)
        self.steps = QSpinBox()
        self.steps.setRange(1, 150)
        self.steps.setValue(25)
        self.cfg = QDoubleSpinBox()
        self.cfg.setRange(0.0, 30.0)
        self.cfg.setSingleStep(0.5)
        self.cfg.setValue(7.0)
        self.scheduler = QComboBox()
        for key, label in SCHEDULERS.items():
            self.scheduler.addItem(label, key)
        self.seed_mode = QComboBox()
        self.seed_mode.addItem("Random", "random")
        self.seed_mode.addItem("Fixed", "fixed")
        self.seed = SeedBox()
        self.seed.setEnabled(False)
        self.seed_mode.currentIndexChanged.connect(
            lambda: self.seed.setEnabled(self.seed_mode.currentData() == "fixed"))
        self.dice = QToolButton(text="⚄")
        self.dice.setToolTip("A new random seed")
        self.dice.clicked.connect(lambda: self.seed.setValue(new_seed()))
        self.count = QSpinBox()
        self.count.setRange(1, 16)
        self.mask_blur = QSpinBox()
        self.mask_blur.setRange(0, MAX_MASK_BLUR)
        self.mask_blur.setValue(DEFAULT_MASK_BLUR)
        self.mask_blur.setSuffix(" px")
        self.mask_blur.setToolTip("Soften the mask's edge by this many pixels, so the repainted "
                                  "part blends into the picture (0: a hard edge)")

        col = QVBoxLayout(self)
        col.setContentsMargins(0, 0, 0, 0)
        col.setSpacing(6)
        col.addWidget(section_label("Prompt"))
        col.addWidget(self.prompt)
        col.addWidget(self.negative)
        col.addWidget(section_label("Strength"))
        row = QHBoxLayout()
        row.addWidget(self.strength_slider, 1)
        row.addWidget(self.strength)
        col.addLayout(row)
        form = QFormLayout()
        # A row too long for the sidebar beside its label (the seed's mode, number and dice)
        # goes under the label instead of pushing the sidebar wider than its scroll area.
        form.setRowWrapPolicy(QFormLayout.RowWrapPolicy.WrapLongRows)
        form.addRow("Steps", self.steps)
        form.addRow("CFG scale", self.cfg)
        form.addRow("Sampler", self.scheduler)
        seed_row = QHBoxLayout()
        seed_row.addWidget(self.seed_mode)
        seed_row.addWidget(self.seed, 1)
        seed_row.addWidget(self.dice)
        form.addRow("Seed", seed_row)
        form.addRow("Images", self.count)
        form.addRow("Mask blur", self.mask_blur)
        self._form = form
        col.addLayout(form)
        self.outpaint = OutpaintOptions()
        col.addWidget(self.outpaint)
        for w in (self.prompt, self.negative):
            w.textChanged.connect(self.changed)

    def set_inpaint(self, inpaint: bool) -> None:
        """Show the settings that only inpainting has (the mask blur) or only img2img has
        (outpainting), hiding the others."""
        self._form.setRowVisible(self.mask_blur, inpaint)
        self.outpaint.setVisible(not inpaint)

    def resolve_seed(self) -> int:
        if self.seed_mode.currentData() == "random":
            self.seed.setValue(new_seed())
        return self.seed.seed()

    def apply(self, request: Img2ImgRequest) -> None:
        """Show a request's settings ("reuse parameters"): its seed fixed, one image."""
        self.prompt.setPlainText(request.prompt)
        self.negative.setPlainText(request.negative_prompt)
        self.strength.setValue(float(request.strength))
        self.steps.setValue(int(request.steps))
        self.cfg.setValue(float(request.cfg))
        index = self.scheduler.findData(request.scheduler)
        self.scheduler.setCurrentIndex(max(0, index))
        self.seed_mode.setCurrentIndex(self.seed_mode.findData("fixed"))
        self.seed.setValue(int(request.seed))
        self.count.setValue(max(1, int(request.count)))
        if request.inpaint:
            self.mask_blur.setValue(int(request.mask_blur))
        self.outpaint.apply(request)

    def request(self, model: str, image: str, mask: str = "") -> Img2ImgRequest:
        """The img2img / inpaint request of these settings (img2img: outpainting included)."""
        outpaint = {} if mask else self.outpaint.fields()
        blur = self.mask_blur.value() if mask else int(outpaint.pop("mask_blur", 0))
        return Img2ImgRequest(
            model=model, image=image, mask=mask, prompt=self.prompt.toPlainText().strip(),
            negative_prompt=self.negative.toPlainText().strip(),
            strength=round(self.strength.value(), 2), steps=self.steps.value(),
            cfg=self.cfg.value(), seed=self.resolve_seed(), count=self.count.value(),
            scheduler=self.scheduler.currentData(), mask_blur=blur, **outpaint)


class OutpaintOptions(QWidget):
    """img2img's outpainting: pixels to add on each side, the new area's fill and the seam."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.sides: dict[str, QSpinBox] = {}
        for side in OUTPAINT_SIDES:
            spin = QSpinBox()
            spin.setRange(0, 2048)
            spin.setSingleStep(64)
            spin.setSuffix(" px")
            spin.setToolTip(f"Pixels to add on the {side} (multiples of 8; 0: none)")
            self.sides[side] = spin
            spin.valueChanged.connect(self._update_hint)
        self.fill = QComboBox()
        self.fill.addItem("Edge colours", "edge")
        self.fill.addItem("Noise", "noise")
        self.fill.setToolTip("What the new area starts from: the picture's edge colours "
                             "stretched outwards, or random noise")
        self.seam = QSpinBox()
        self.seam.setRange(0, MAX_MASK_BLUR)
        self.seam.setValue(DEFAULT_SEAM)
        self.seam.setSuffix(" px")
        self.seam.setToolTip("How far into the picture the new paint fades in, so no hard "
                             "seam shows (0: a hard edge)")
        self.hint = muted_label(wrap=True)
        col = QVBoxLayout(self)
        col.setContentsMargins(0, 6, 0, 0)
        col.setSpacing(6)
        col.addWidget(section_label("Outpaint"))
        form = QFormLayout()
        form.setContentsMargins(0, 0, 0, 0)
        for side, spin in self.sides.items():
            form.addRow(side.capitalize(), spin)
        form.addRow("Fill", self.fill)
        form.addRow("Seam", self.seam)
        col.addLayout(form)
        col.addWidget(self.hint)
        self._update_hint()

    def amounts(self) -> tuple[int, ...]:
        return tuple(self.sides[side].value() for side in OUTPAINT_SIDES)

    def fields(self) -> dict[str, Any]:
        """The request's outpaint fields (with ``mask_blur``, the seam); {} when none is set."""
        if not any(self.amounts()):
            return {}
        out: dict[str, Any] = {f"outpaint_{side}": self.sides[side].value()
                               for side in OUTPAINT_SIDES}
        out.update(outpaint_fill=self.fill.currentData(), mask_blur=self.seam.value())
        return out

    def apply(self, request: Img2ImgRequest) -> None:
        for side, amount in zip(OUTPAINT_SIDES, request.outpaint_amounts(), strict=True):
            self.sides[side].setValue(int(amount))
        if request.outpaint:
            self.fill.setCurrentIndex(max(0, self.fill.findData(request.outpaint_fill)))
            self.seam.setValue(int(request.mask_blur))

    def _update_hint(self) -> None:
        self.hint.setText("Extends the picture: the new area is painted from the prompt "
                          "(a strength near 1 paints it fully)." if any(self.amounts()) else
                          "Add pixels on any side to extend the picture.")
