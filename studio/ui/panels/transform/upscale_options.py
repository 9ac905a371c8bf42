"""The Transform workspace's Upscale tab: the upscaler model, the factor and the tile size — or
SD upscale: an enlargement refined in tiles by the img2img tab's Stable Diffusion model.

Models are the library's upscalers (:func:`studio.library.upscalers.find_upscalers`), found off
the GUI thread each time the tab is shown; with none the tab says where to put them. The request
is built here (:meth:`UpscaleOptions.request`); the panel submits it like any other mode's.
"""

from __future__ import annotations

import dataclasses

from PySide6.QtCore import Signal
from PySide6.QtWidgets import (
    QComboBox,
    QDoubleSpinBox,
    QFormLayout,
    QHBoxLayout,
    QSpinBox,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from studio.core.requests import MAX_UPSCALE, OUTPAINT_SIDES, Img2ImgRequest, UpscaleRequest
from studio.library.upscalers import find_upscalers, upscaler_folder
from studio.ui.context import AppContext
from studio.ui.widgets.basics import muted_label, section_label
from studio.workers.lanes import Calls


class UpscaleOptions(QWidget):
    """Upscaler model picker (with a rescan button), factor and tile size."""

    scanned = Signal()

    def __init__(self, ctx: AppContext, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.ctx = ctx
        self.scans = 0  # finished scans (tests wait on it)
        self._wanted = ""  # a model asked for (reuse) before the scan that lists it ended
        self._calls = Calls(self)
        self.model = QComboBox()
        self.model.setSizeAdjustPolicy(
            QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
        self.model.setMinimumContentsLength(12)
        self.model.setToolTip("ESRGAN / Real-ESRGAN models from the models folder's "
                              "'upscalers' folder")
        self.rescan = QToolButton(text="↻")
        self.rescan.setToolTip("Look for upscaler models again")
        self.rescan.setFixedWidth(38)
        self.rescan.clicked.connect(self.refresh)
        row = QHBoxLayout()
        row.setSpacing(6)
        row.addWidget(self.model, 1)
        row.addWidget(self.rescan)
        self.hint = muted_label(wrap=True)
        self.scale = QDoubleSpinBox()
        self.scale.setRange(0.0, MAX_UPSCALE)
        self.scale.setSingleStep(0.5)
        self.scale.setDecimals(1)
        self.scale.setSuffix(" ×")
        self.scale.setSpecialValueText("Model's own")
        self.scale.setToolTip("Times larger; 'Model's own' keeps the model's factor (a 4× "
                              "model gives 4×), another value resizes its output with Lanczos")
        self.tile = QSpinBox()
        self.tile.setRange(0, 4096)
        self.tile.setSingleStep(64)
        self.tile.setValue(UpscaleRequest(model="").tile)
        self.tile.setSuffix(" px")
        self.tile.setSpecialValueText("No tiles")
        self.tile.setToolTip("Large images are upscaled in tiles of this many pixels, their "
                             "overlaps blended; smaller tiles need less memory")
        self.method = QComboBox()
        self.method.addItem("Upscaler model", "model")
        self.method.addItem("SD upscale", "sd")
        self.method.setToolTip("Upscaler model: an ESRGAN-type network enlarges the image. "
                               "SD upscale: enlarge (Lanczos or a model), then let a Stable "
                               "Diffusion model redraw the details in tiles")
        col = QVBoxLayout(self)
        col.setContentsMargins(0, 0, 0, 0)
        col.setSpacing(6)
        mode = QFormLayout()
        mode.setContentsMargins(0, 0, 0, 0)
        mode.addRow("Mode", self.method)
        col.addLayout(mode)
        self.model_box = QWidget()
        model_col = QVBoxLayout(self.model_box)
        model_col.setContentsMargins(0, 0, 0, 0)
        model_col.setSpacing(6)
        model_col.addWidget(section_label("Upscaler model"))
        model_col.addLayout(row)
        model_col.addWidget(self.hint)
        form = QFormLayout()
        form.setContentsMargins(0, 0, 0, 0)
        form.addRow("Scale", self.scale)
        form.addRow("Tile size", self.tile)
        model_col.addLayout(form)
        col.addWidget(self.model_box)
        self.sd = SdUpscaleOptions()
        col.addWidget(self.sd)
        self.method.currentIndexChanged.connect(self._method_changed)
        self._method_changed()

    @property
    def sd_mode(self) -> bool:
        return self.method.currentData() == "sd"

    def _method_changed(self) -> None:
        self.model_box.setVisible(not self.sd_mode)
        self.sd.setVisible(self.sd_mode)

    def refresh(self) -> None:
        """Look for upscaler models off the GUI thread; the picker fills when done."""
        settings, paths = self.ctx.settings, self.ctx.paths
        self.rescan.setEnabled(False)
        self._calls.run(lambda: find_upscalers(settings, paths), self._found,
                        lambda message: self._found([], message))

    def apply(self, request: UpscaleRequest | Img2ImgRequest) -> None:
        """Show ``request``'s settings (an SD upscale's too); its model is chosen once the scan
        lists it."""
        if isinstance(request, Img2ImgRequest):
            self.method.setCurrentIndex(self.method.findData("sd"))
            self.sd.apply(request)
            return
        self.method.setCurrentIndex(self.method.findData("model"))
        self.scale.setValue(float(request.scale))
        self.tile.setValue(int(request.tile))
        self._wanted = request.model
        self._choose(request.model)

    def _choose(self, model: str) -> bool:
        for i in range(self.model.count()):
            if model in (self.model.itemData(i), self.model.itemText(i)):
                self.model.setCurrentIndex(i)
                return True
        return False

    def _found(self, models: list, error: str = "") -> None:
        chosen = self._wanted or self.model.currentData()
        self.model.clear()
        for m in models:
            self.model.addItem(m.name, str(m.path))
            self.model.setItemData(self.model.count() - 1, str(m.path))
        if not (chosen and self._choose(chosen)):
            self.model.setCurrentIndex(0)
        self.sd.set_upscalers([m.name for m in models])
        self._wanted = ""
        folder = upscaler_folder(self.ctx.paths)
        self.hint.setText(error or ("" if models else
                                    f"No upscaler models yet. Put ESRGAN / Real-ESRGAN .pth or "
                                    f".safetensors files (4x-UltraSharp, RealESRGAN_x4plus…) "
                                    f"in {folder}, then press ↻."))
        self.hint.setVisible(bool(self.hint.text()))
        self.rescan.setEnabled(True)
        self.scans += 1
        self.scanned.emit()

    def request(self, inputs: list[str]) -> UpscaleRequest:
        """The request for ``inputs``; ValueError with the reason when it cannot be made."""
        model = self.model.currentData()
        if not model:
            raise ValueError("Choose an upscaler model: put ESRGAN / Real-ESRGAN files in "
                             f"{upscaler_folder(self.ctx.paths)} first.")
        tile = self.tile.value()
        request = UpscaleRequest(model=model, inputs=inputs, scale=round(self.scale.value(), 2),
                                 tile=tile, overlap=min(32, tile // 2))
        request.validate()
        return request

    def shutdown(self) -> None:
        self._calls.wait(5_000)


class SdUpscaleOptions(QWidget):
    """SD upscale's own settings: the model (the panel's picker, shown here in this mode), the
    enlarging upscaler, factor, strength, tiles. Prompt, steps, CFG, sampler and seed are the
    img2img tab's (as in A1111, where SD upscale is a script of img2img)."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        defaults = Img2ImgRequest(model="")
        self._wanted = ""  # an upscaler asked for (reuse) before the scan listed it
        self.upscaler = QComboBox()
        self.upscaler.setSizeAdjustPolicy(
            QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
        self.upscaler.setMinimumContentsLength(12)
        self.upscaler.setToolTip("How the image is enlarged before it is refined: Lanczos, or "
                                 "an upscaler model from the models folder")
        self.set_upscalers([])
        self.scale = QDoubleSpinBox()
        self.scale.setRange(1.0, MAX_UPSCALE)
        self.scale.setSingleStep(0.5)
        self.scale.setDecimals(1)
        self.scale.setSuffix(" ×")
        self.scale.setValue(2.0)
        self.strength = QDoubleSpinBox()
        self.strength.setRange(0.01, 1.0)
        self.strength.setSingleStep(0.05)
        self.strength.setDecimals(2)
        self.strength.setValue(0.3)
        self.strength.setToolTip("How much each tile is redrawn: 0.2-0.4 adds detail and keeps "
                                 "the picture; higher invents new things in every tile")
        self.tile = QSpinBox()
        self.tile.setRange(64, 2048)
        self.tile.setSingleStep(64)
        self.tile.setSuffix(" px")
        self.tile.setValue(defaults.sd_upscale_tile)
        self.tile.setToolTip("The enlarged image is refined in tiles of this size (multiples "
                             "of 8): the model's own size (512 for SD 1.x, 1024 for SDXL) "
                             "works best")
        self.overlap = QSpinBox()
        self.overlap.setRange(0, 1024)
        self.overlap.setSingleStep(8)
        self.overlap.setSuffix(" px")
        self.overlap.setValue(defaults.sd_upscale_overlap)
        self.overlap.setToolTip("Pixels neighbouring tiles share; their overlap is blended so "
                                "no seam shows")
        col = QVBoxLayout(self)
        col.setContentsMargins(0, 0, 0, 0)
        col.setSpacing(6)
        col.addWidget(section_label("Model"))
        self.model_slot = QVBoxLayout()  # the panel puts its text-to-image model picker here
        self.model_slot.setContentsMargins(0, 0, 0, 0)
        col.addLayout(self.model_slot)
        form = QFormLayout()
        form.setContentsMargins(0, 0, 0, 0)
        form.setRowWrapPolicy(QFormLayout.RowWrapPolicy.WrapLongRows)
        col.addLayout(form)
        form.addRow("Upscaler", self.upscaler)
        form.addRow("Scale", self.scale)
        form.addRow("Strength", self.strength)
        form.addRow("Tile size", self.tile)
        form.addRow("Overlap", self.overlap)
        form.addRow(muted_label("Prompt, steps, CFG, sampler and seed are the img2img tab's.",
                                wrap=True))

    def set_upscalers(self, names: list[str]) -> None:
        """Lanczos and the library's upscaler models (``names``), keeping the choice."""
        chosen = self._wanted or self.upscaler.currentData() or "Lanczos"
        self.upscaler.clear()
        self.upscaler.addItem("Lanczos", "Lanczos")
        for name in names:
            self.upscaler.addItem(name, name)
        index = self.upscaler.findData(chosen)
        if index < 0 and chosen != "Lanczos":  # not (yet) found: kept, so the job says why
            self.upscaler.addItem(chosen, chosen)
            index = self.upscaler.count() - 1
        self.upscaler.setCurrentIndex(max(0, index))
        if names:
            self._wanted = ""

    def apply(self, request: Img2ImgRequest) -> None:
        self._wanted = str(request.sd_upscaler)
        self.set_upscalers([self.upscaler.itemData(i) for i in range(1, self.upscaler.count())])
        self.scale.setValue(float(request.sd_upscale))
        self.strength.setValue(float(request.strength))
        self.tile.setValue(int(request.sd_upscale_tile))
        self.overlap.setValue(int(request.sd_upscale_overlap))

    def request(self, base: Img2ImgRequest) -> Img2ImgRequest:
        """``base`` (the img2img tab's request for one image) as an SD upscale; ValueError with
        the reason when it cannot be made."""
        request = dataclasses.replace(
            base, strength=round(self.strength.value(), 2),
            sd_upscale=round(self.scale.value(), 2), sd_upscaler=self.upscaler.currentData(),
            sd_upscale_tile=self.tile.value(), sd_upscale_overlap=self.overlap.value(),
            **{f"outpaint_{side}": 0 for side in OUTPAINT_SIDES}, mask_blur=0)
        request.validate()
        return request
