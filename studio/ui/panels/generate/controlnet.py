"""The Generate form's collapsible "ControlNet" group: up to three ControlNets, each with its
control image, preprocessor, weight and the part of the steps it acts on.

The header's check box turns ControlNet on (and opens the group); the arrow only shows or hides
the units. A unit's image comes from a file or from the result on screen ("Use result"). The model
list is the library's ControlNets (:mod:`studio.library.controlnets`: folders and single files),
found off the GUI thread with the LoRAs; a ControlNet made for another family than the model's is
marked so, and the job says why it is refused. Picking a ControlNet whose name says what it was
trained on (``…_canny``, ``…_scribble``) preselects the preprocessor that makes that map. The work is
:mod:`studio.pipelines.diffusion.controlnet`.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QStandardItemModel
from PySide6.QtWidgets import (
    QComboBox,
    QDoubleSpinBox,
    QFileDialog,
    QFrame,
    QGridLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from studio.core.control import MAX_CONTROLNETS, PREPROCESSORS
from studio.core.requests import Txt2ImgRequest
from studio.library.preprocessor_models import MODELS as PREPROCESSOR_MODELS
from studio.ui.panels.generate.scribble import ScribbleDialog
from studio.ui.widgets.basics import muted_label
from studio.ui.widgets.check_section import CheckSection
from studio.ui.widgets.retire import retire

FAMILY_NAMES = {"sd1": "SD 1.x", "sd2": "SD 2.x", "sdxl": "SDXL"}
SUPPORTED_FAMILIES = tuple(FAMILY_NAMES)
IMAGE_FILTER = "Images (*.png *.jpg *.jpeg *.webp *.bmp)"


def _spin(low: float, high: float, step: float, tip: str) -> QDoubleSpinBox:
    box = QDoubleSpinBox()
    box.setRange(low, high)
    box.setSingleStep(step)
    box.setDecimals(2)
    box.setToolTip(tip)
    return box


class ControlUnitRow(QFrame):
    """One ControlNet: model, image, preprocessor, weight, start and end."""

    changed = Signal()
    remove_requested = Signal(object)
    draw_requested = Signal(object)

    def __init__(self, current_result: Callable[[], str], parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._current_result = current_result
        self.setFrameShape(QFrame.Shape.StyledPanel)
        grid = QGridLayout(self)
        grid.setContentsMargins(6, 6, 6, 6)
        grid.setHorizontalSpacing(6)
        grid.setVerticalSpacing(4)
        grid.setColumnStretch(1, 1)
        self.model = QComboBox()
        self.model.setSizeAdjustPolicy(
            QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
        self.model.setMinimumContentsLength(10)
        self.model.setToolTip("A ControlNet from the library (a diffusers folder or an A1111 / "
                              "ComfyUI single file in the models folder's 'controlnet' folder, "
                              "an extra folder's models/ControlNet, or the Hugging Face cache)")
        self._preprocessors: dict[str, str] = {}
        self._missing: dict[str, str] = {}  # preprocessors whose model is not cached
        self.remove = QToolButton()
        self.remove.setText("✕")
        self.remove.setAutoRaise(True)
        self.remove.setToolTip("Remove this ControlNet")
        self.image = QLineEdit()
        self.image.setPlaceholderText("control image…")
        self.image.setToolTip("The picture whose composition guides the image (an edge map, a "
                              "drawing, a photo to preprocess)")
        self.browse = QPushButton("Browse…")
        self.use_result = QPushButton("Use result")
        self.use_result.setToolTip("Use the image on screen as the control image")
        self.draw = QPushButton("Draw…")
        self.draw.setToolTip("Draw a scribble at the image's size (white lines on black, for "
                             "scribble ControlNets)")
        self.preprocess = QComboBox()
        for key, meaning in PREPROCESSORS.items():
            self.preprocess.addItem(key, key)
            self.preprocess.setItemData(self.preprocess.count() - 1, meaning,
                                        Qt.ItemDataRole.ToolTipRole)
        self.preprocess.setToolTip("Turn the image into a control map first (none: it is one)")
        self.weight = _spin(0.0, 2.0, 0.05, "How strongly it guides (1 = as trained)")
        self.start = _spin(0.0, 0.99, 0.05, "Where in the steps it starts (0 = the first)")
        self.end = _spin(0.01, 1.0, 0.05, "Where in the steps it stops (1 = the last)")
        model_row = QHBoxLayout()
        model_row.setSpacing(4)
        model_row.addWidget(self.model, 1)
        model_row.addWidget(self.remove)
        grid.addWidget(QLabel("Model"), 0, 0)
        grid.addLayout(model_row, 0, 1)
        grid.addWidget(QLabel("Image"), 1, 0)
        grid.addWidget(self.image, 1, 1)
        buttons = QHBoxLayout()
        buttons.setSpacing(4)
        buttons.addWidget(self.browse)
        buttons.addWidget(self.use_result)
        buttons.addWidget(self.draw)
        buttons.addStretch(1)
        grid.addLayout(buttons, 2, 0, 1, 2)  # under the label too: three buttons fit the sidebar
        grid.addWidget(QLabel("Preprocess"), 3, 0)
        grid.addWidget(self.preprocess, 3, 1)
        grid.addWidget(QLabel("Weight"), 4, 0)
        grid.addWidget(self.weight, 4, 1)
        span = QHBoxLayout()
        span.setSpacing(4)
        span.addWidget(self.start, 1)
        span.addWidget(QLabel("to"))
        span.addWidget(self.end, 1)
        grid.addWidget(QLabel("Steps"), 5, 0)
        grid.addLayout(span, 5, 1)
        self.set_unit({})
        self.browse.clicked.connect(self._browse)
        self.use_result.clicked.connect(self._use_result)
        self.draw.clicked.connect(lambda: self.draw_requested.emit(self))
        self.remove.clicked.connect(lambda: self.remove_requested.emit(self))
        self.model.activated.connect(lambda _index: self.preselect())
        for signal in (self.model.currentIndexChanged, self.image.textChanged,
                       self.preprocess.currentIndexChanged, self.weight.valueChanged,
                       self.start.valueChanged, self.end.valueChanged):
            signal.connect(self.changed)

    def set_models(self, models: list[tuple[str, ...]]) -> None:
        """(name, family[, preprocessor[, note]]) of every ControlNet (a note: "T2I-Adapter");
        the choice is kept (a name no longer there stays listed while chosen, so a reused
        request is not changed)."""
        chosen = self.model.currentData()
        self.model.blockSignals(True)
        self.model.clear()
        self._preprocessors = {}
        for name, family, *more in models:
            notes = [n for n in (FAMILY_NAMES.get(family, ""), *more[1:2]) if n]
            self.model.addItem(f"{name} ({', '.join(notes)})" if notes else name, name)
            self._preprocessors[name] = more[0] if more else "none"
        self.model.blockSignals(False)
        self._choose(chosen)

    def set_missing(self, missing: dict[str, str]) -> None:
        """Grey out the preprocessors whose model is not in the cache (``missing``: name → the
        sentence saying what to download), which their tooltip then says."""
        self._missing = dict(missing)
        items = self.preprocess.model()
        for index in range(self.preprocess.count()):
            key = self.preprocess.itemData(index)
            item = items.item(index) if isinstance(items, QStandardItemModel) else None
            if item is not None:
                item.setEnabled(key not in missing)
            self.preprocess.setItemData(index, missing.get(key, PREPROCESSORS[key]),
                                        Qt.ItemDataRole.ToolTipRole)

    def unit(self) -> dict:
        return {"model": self.model.currentData() or "", "image": self.image.text().strip(),
                "preprocess": self.preprocess.currentData() or "none",
                "weight": round(self.weight.value(), 2), "start": round(self.start.value(), 2),
                "end": round(self.end.value(), 2)}

    def set_unit(self, unit: dict) -> None:
        self._choose(unit.get("model") or self.model.currentData())
        self.image.setText(str(unit.get("image", "")))
        self.preprocess.setCurrentIndex(max(0, self.preprocess.findData(
            unit.get("preprocess", "none"))))
        self.weight.setValue(float(unit.get("weight", 1.0)))
        self.start.setValue(float(unit.get("start", 0.0)))
        self.end.setValue(float(unit.get("end", 1.0)))

    def preselect(self) -> None:
        """The preprocessor the chosen ControlNet's name asks for (a picked model, a new row)."""
        wanted = self._preprocessors.get(self.model.currentData() or "", "none")
        if wanted in self._missing:  # its model is not cached: a map made elsewhere
            wanted = "none"
        self.preprocess.setCurrentIndex(max(0, self.preprocess.findData(wanted)))

    def _choose(self, name: str | None) -> None:
        if name and self.model.findData(name) < 0:
            self.model.addItem(name, name)
        self.model.setCurrentIndex(max(0, self.model.findData(name)) if name else 0)

    def _browse(self) -> None:
        start = str(Path(self.image.text()).parent) if self.image.text() else ""
        path, _ = QFileDialog.getOpenFileName(self, "Control image", start, IMAGE_FILTER)
        if path:
            self.image.setText(path)

    def _use_result(self) -> None:
        path = self._current_result()
        if path:
            self.image.setText(path)


class ControlNetSection(CheckSection):
    """The ControlNet group; :meth:`fields` gives the request's ``controlnets``."""

    changed = Signal()

    def __init__(self, current_result: Callable[[], str] = lambda: "",
                 parent: QWidget | None = None) -> None:
        super().__init__("ControlNet", "Guide the composition with a control image (edges, a "
                         "drawing, a pose or depth map) — SD 1.x, SD 2.x and SDXL models",
                         "Show or hide the ControlNet settings", parent)
        self._current_result = current_result
        self._models: list[tuple[str, ...]] = []
        # until the cache is looked at (off the GUI thread), the model-based ones are greyed out
        self._missing: dict[str, str] = {name: "Looking for its model in the Hugging Face "
                                         "cache…" for name in PREPROCESSOR_MODELS}
        self._canvas_size: Callable[[], tuple[int, int]] = lambda: (512, 512)
        self._scribble_folder: Path | None = None
        self.rows_box = QVBoxLayout(self.body)
        self.rows_box.setContentsMargins(0, 0, 0, 0)
        self.rows_box.setSpacing(6)
        self.empty = muted_label()
        self.empty.setWordWrap(True)
        self.rows_box.addWidget(self.empty)
        self.add = QPushButton("Add ControlNet")
        self.add.setToolTip(f"Up to {MAX_CONTROLNETS} ControlNets guide one image together")
        self.rows_box.addWidget(self.add, 0, Qt.AlignmentFlag.AlignLeft)
        self.rows: list[ControlUnitRow] = []
        self.enabled.toggled.connect(self.changed)
        self.add.clicked.connect(lambda: self._add_row({}))
        self.set_models([])
        self._show_body(False)

    # -- public API --------------------------------------------------------------------------
    def fields(self) -> list[dict]:
        """The request's ``controlnets`` (none while the group is off)."""
        return [row.unit() for row in self.rows] if self.enabled.isChecked() else []

    def set_current_result(self, current_result: Callable[[], str]) -> None:
        """Where "Use result" finds the image on screen (a path; "" when there is none)."""
        self._current_result = current_result

    def set_models(self, models: list[tuple[str, ...]]) -> None:
        """The library's ControlNets as (name, family[, preprocessor its name asks for])."""
        self._models = list(models)
        for row in self.rows:
            row.set_models(self._models)
        self.empty.setText(
            "" if self._models else
            "No ControlNet in the library. Put a diffusers ControlNet folder or an A1111 / "
            "ComfyUI file (control_v11p_sd15_canny.pth) in the models folder's 'controlnet' "
            "folder, or download one: 'hf download "
            "lllyasviel/control_v11p_sd15_canny' (SD 1.x) or 'hf download "
            "diffusers/controlnet-canny-sdxl-1.0' (SDXL).")
        self.empty.setVisible(not self._models)
        self._update_add()

    def set_scribble_place(self, size: Callable[[], tuple[int, int]], folder: Path) -> None:
        """Where *Draw…* gets the canvas size (the request's) and writes the drawing."""
        self._canvas_size, self._scribble_folder = size, Path(folder)

    def set_missing_preprocessors(self, missing: dict[str, str]) -> None:
        """The model-based preprocessors whose model is not cached (name → what to download)."""
        self._missing = dict(missing)
        for row in self.rows:
            row.set_missing(self._missing)

    def set_family(self, key: str, family: object = None) -> None:
        """The model's family: ControlNet is greyed out (its units kept for the next model) for
        a GAN, and for families whose ControlNets Studio does not run, with the reason."""
        usable = key not in ("gan",) and (family is None or key in SUPPORTED_FAMILIES)
        self.setEnabled(usable)
        label = getattr(family, "label", key)
        # the theme greys a disabled check box's text only faintly: the title says why too
        self.enabled.setText("ControlNet" if usable else
                             "ControlNet (not for GANs)" if key == "gan" else
                             f"ControlNet (not for {label})")
        self.enabled.setToolTip(
            "Guide the composition with a control image (edges, a drawing, a pose or depth "
            "map) — SD 1.x, SD 2.x and SDXL models" if usable else
            "A GAN draws from its seed alone" if key == "gan" else
            f"{label} models need their own ControlNets, which Studio does not run yet: "  # plural-ok
            "ControlNet works with SD 1.x, SD 2.x and SDXL models")

    def set_request(self, request: Txt2ImgRequest) -> None:
        for row in list(self.rows):
            self._remove_row(row)
        for unit in request.controlnets or []:
            self._add_row(unit)
        on = bool(request.controlnets)
        self.enabled.setChecked(on)
        self._show_body(on)

    # -- internals ---------------------------------------------------------------------------
    def _add_row(self, unit: dict) -> None:
        if len(self.rows) >= MAX_CONTROLNETS:
            return
        row = ControlUnitRow(lambda: self._current_result())
        row.set_models(self._models)
        row.set_missing(self._missing)
        row.set_unit(unit)
        if not unit:
            row.preselect()
        row.changed.connect(self.changed)
        row.remove_requested.connect(self._remove_row)
        row.draw_requested.connect(self._draw)
        self.rows.append(row)
        self.rows_box.insertWidget(self.rows_box.indexOf(self.add), row)
        self._update_add()
        self.changed.emit()

    def _draw(self, row: ControlUnitRow) -> None:
        """Open the scribble dialog; the drawing becomes the unit's image (preprocessor none)."""
        if self._scribble_folder is None:
            from studio.core.config import default_paths

            self._scribble_folder = default_paths().data_dir / "controls"
        dialog = ScribbleDialog(self._canvas_size(), self._scribble_folder,
                                self._current_result(), self.window())
        if dialog.exec() and dialog.saved is not None:
            row.image.setText(str(dialog.saved))
            row.preprocess.setCurrentIndex(max(0, row.preprocess.findData("none")))

    def _remove_row(self, row: ControlUnitRow) -> None:
        self.rows.remove(row)
        retire(row)
        self._update_add()
        self.changed.emit()

    def _update_add(self) -> None:
        self.add.setEnabled(len(self.rows) < MAX_CONTROLNETS and bool(self._models))

    def _enabled_toggled(self, on: bool) -> None:
        super()._enabled_toggled(on)
        if on and not self.rows and self._models:
            self._add_row({})
