"""The Transform workspace's Upscale tab: the upscaler model, the factor and the tile size.

Models are the library's upscalers (:func:`studio.library.upscalers.find_upscalers`), found off
the GUI thread each time the tab is shown; with none the tab says where to put them. The request
is built here (:meth:`UpscaleOptions.request`); the panel submits it like any other mode's.
"""

from __future__ import annotations

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

from studio.core.requests import MAX_UPSCALE, UpscaleRequest
from studio.library.upscalers import find_upscalers, upscaler_folder
from studio.ui.context import AppContext
from studio.ui.widgets.basics import muted_label
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
        col = QVBoxLayout(self)
        col.setContentsMargins(0, 0, 0, 0)
        col.setSpacing(6)
        col.addLayout(row)
        col.addWidget(self.hint)
        form = QFormLayout()
        form.setContentsMargins(0, 0, 0, 0)
        form.addRow("Scale", self.scale)
        form.addRow("Tile size", self.tile)
        col.addLayout(form)

    def refresh(self) -> None:
        """Look for upscaler models off the GUI thread; the picker fills when done."""
        settings, paths = self.ctx.settings, self.ctx.paths
        self.rescan.setEnabled(False)
        self._calls.run(lambda: find_upscalers(settings, paths), self._found,
                        lambda message: self._found([], message))

    def apply(self, request: UpscaleRequest) -> None:
        """Show ``request``'s settings; its model is chosen once the scan lists it."""
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
