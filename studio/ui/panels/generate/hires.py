"""The Generate form's collapsible "Hires fix" group: enable, upscale ×, upscaler, steps, denoise.

A1111's hires fix: the image is made at the form's size, upscaled and refined by an img2img pass
(:mod:`studio.pipelines.diffusion.hires`). The header's check box turns it on (and opens the
group); the arrow only shows or hides the fields. The line under the fields says the size the
hires pass makes, so the result's size is never a surprise.
"""

from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QComboBox,
    QDoubleSpinBox,
    QGridLayout,
    QLabel,
    QSpinBox,
    QWidget,
)

from studio.core.requests import (
    HIRES_UPSCALERS,
    MAX_HIRES_SCALE,
    MAX_SIDE,
    MAX_STEPS,
    Txt2ImgRequest,
)
from studio.ui.widgets.basics import muted_label
from studio.ui.widgets.check_section import CheckSection

HIRES_TIP = ("Make the image at the size above, upscale it, then refine it with a second pass "
             "(A1111's hires fix): more detail at large sizes without doubled faces")


class HiresSection(CheckSection):
    """The hires fix's fields; :meth:`fields` gives the request's, :meth:`set_request` fills."""

    changed = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__("Hires fix", HIRES_TIP, "Show or hide the hires fix settings", parent)
        self.usable = True  # False for a family without an image-to-image pipeline
        self._size = (512, 512)
        grid = QGridLayout(self.body)
        grid.setContentsMargins(0, 0, 0, 0)
        grid.setHorizontalSpacing(8)
        grid.setVerticalSpacing(6)
        grid.setColumnStretch(1, 1)
        self.scale = QDoubleSpinBox()
        self.scale.setRange(1.05, MAX_HIRES_SCALE)
        self.scale.setSingleStep(0.25)
        self.scale.setDecimals(2)
        self.scale.setSuffix(" ×")
        self.scale.setToolTip("How many times larger the width and height become")
        self.upscaler = QComboBox()
        self.upscaler.setSizeAdjustPolicy(
            QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
        self.upscaler.setMinimumContentsLength(10)
        for name, meaning in HIRES_UPSCALERS.items():
            self.upscaler.addItem(name, name)
            self.upscaler.setItemData(self.upscaler.count() - 1, meaning,
                                      Qt.ItemDataRole.ToolTipRole)
        self.upscaler.setToolTip("Latent: resize the first pass's latents (needs a denoise of "
                                 "about 0.5 or more); Lanczos: resize the first image; below "
                                 "them, the upscaler models in the models folder's 'upscalers' "
                                 "folder")
        self.steps = QSpinBox()
        self.steps.setRange(0, MAX_STEPS)
        self.steps.setSpecialValueText("same")
        self.steps.setToolTip("Steps of the second pass; 'same' uses the Steps above")
        self.denoise = QDoubleSpinBox()
        self.denoise.setRange(0.01, 1.0)
        self.denoise.setSingleStep(0.05)
        self.denoise.setDecimals(2)
        self.denoise.setToolTip("Denoising strength: how much the second pass repaints "
                                "(0.3 keeps the picture, 0.7 adds new detail)")
        for row, (name, box) in enumerate((("Upscale", self.scale),
                                           ("Upscaler", self.upscaler),
                                           ("Steps", self.steps),
                                           ("Denoise", self.denoise))):
            grid.addWidget(QLabel(name), row, 0)
            grid.addWidget(box, row, 1)
        self.target = muted_label()
        self.target.setWordWrap(True)
        grid.addWidget(self.target, 4, 0, 1, 2)

        for signal in (self.enabled.toggled, self.scale.valueChanged,
                       self.upscaler.currentIndexChanged, self.steps.valueChanged,
                       self.denoise.valueChanged):
            signal.connect(self.changed)
        self.scale.valueChanged.connect(self._update_target)
        self.set_request(Txt2ImgRequest(model=""))

    # -- public API --------------------------------------------------------------------------
    def fields(self) -> dict:
        """The request's hires fields as the group shows them."""
        return {"hires": self.enabled.isChecked() and self.usable, "hires_scale": round(self.scale.value(), 2),
                "hires_upscaler": self.upscaler.currentData() or "Latent",
                "hires_steps": self.steps.value(),
                "hires_denoise": round(self.denoise.value(), 2)}

    def set_family(self, family: object = None) -> None:
        """A family without an image-to-image pipeline (FLUX.2) cannot make the second pass:
        the section is greyed out and says why (its settings are kept for the next model)."""
        self.usable = family is None or bool(getattr(family, "img2img", True))
        self.setEnabled(self.usable)
        label = getattr(family, "label", "")
        self.enabled.setText("Hires fix" if self.usable else f"Hires fix (not for {label})")
        self.enabled.setToolTip(HIRES_TIP if self.usable else
                                f"{label} has no image-to-image pipeline, so there is no second "
                                "pass to refine with: generate at the size you want instead")

    def set_models(self, names: list[str]) -> None:
        """Offer these upscaler models after the built-in upscalers (the choice is kept; a
        model that is gone stays listed while chosen, so a reused request is not changed)."""
        chosen = self.upscaler.currentData()
        self.upscaler.blockSignals(True)
        while self.upscaler.count() > len(HIRES_UPSCALERS):
            self.upscaler.removeItem(self.upscaler.count() - 1)
        for name in names:
            self.upscaler.addItem(name, name)
            self.upscaler.setItemData(self.upscaler.count() - 1, "an upscaler model (ESRGAN)",
                                      Qt.ItemDataRole.ToolTipRole)
        self.upscaler.blockSignals(False)
        self._choose_upscaler(chosen)

    def set_request(self, request: Txt2ImgRequest) -> None:
        self.scale.setValue(float(request.hires_scale))
        self._choose_upscaler(request.hires_upscaler)
        self.steps.setValue(int(request.hires_steps))
        self.denoise.setValue(float(request.hires_denoise))
        self.enabled.setChecked(bool(request.hires))
        self._show_body(bool(request.hires))
        self.set_base_size(int(request.width), int(request.height))

    def set_base_size(self, width: int, height: int) -> None:
        """The form's size changed: the line under the fields follows."""
        self._size = (width, height)
        self._update_target()

    # -- internals ---------------------------------------------------------------------------
    def _choose_upscaler(self, name: str | None) -> None:
        if name and self.upscaler.findData(name) < 0:
            self.upscaler.addItem(name, name)  # a model named by a reused request
        self.upscaler.setCurrentIndex(max(0, self.upscaler.findData(name)))

    def _update_target(self) -> None:
        request = Txt2ImgRequest(model="", width=self._size[0], height=self._size[1],
                                 hires_scale=self.scale.value())
        width, height = request.hires_size()
        self.target.setText(f"Makes {self._size[0]}×{self._size[1]}, then {width}×{height}"
                            + (f" — over {MAX_SIDE} px: lower the upscale"
                               if max(width, height) > MAX_SIDE else ""))
