"""Memory controls of the Models workspace: per-model low-memory options and "Unload all".

:class:`MemoryOptionsBox` edits ``Settings.model_options`` for the image model shown in the
details pane (attention slicing, VAE tiling, CPU offload, NF4/int8 weights through bitsandbytes);
the engine reads them when it next loads the model, so a change applies from the next job. :class:`UnloadButton` shows what the GPU
worker keeps in memory and queues the ``unload`` job.
"""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from studio.core.config import MemoryOptions
from studio.pipelines.diffusion.quantize import (
    DENOISER_NEEDS_CUDA,
    LABELS,
    NOT_INSTALLED,
    bnb_installed,
)
from studio.ui.loaded_models import Loaded, loaded_summary, loaded_tooltip
from studio.ui.widgets.basics import muted_label, section_label

OFFLOAD_CHOICES = [  # key, label, what it does
    ("none", "Off", "The whole model stays on the GPU: fastest."),
    ("model", "Model offload", "Moves whole parts (text encoder, UNet, VAE) to the GPU when they "
     "run: much less VRAM, a little slower."),
    ("sequential", "Sequential offload", "Moves the model layer by layer: the least VRAM, "
     "several times slower."),
]
NEEDS_CUDA = "Offload needs an NVIDIA GPU (CUDA); {where}."
WEIGHTS_CHOICES = [("none", "Full precision", "The weights in the precision of Settings.")] + [
    (key, label, "Loads the transformer/UNet and the large text encoder (T5, Qwen) with "
     f"bitsandbytes in {label}: {'about a quarter' if key == 'nf4' else 'about half'} of their "
     "memory, a little quality lost. Diffusers folders only.") for key, label in LABELS.items()]
WEIGHTS_ON_CPU = (f"On {{where}} only the large text encoder (T5, Qwen) is quantized: "
                  f"{DENOISER_NEEDS_CUDA}.")
OFFLOAD_HELP = ("Keeps the weights in RAM and moves them to the GPU when they are needed "
                "(accelerate). " + " ".join(f"{label}: {tip}" for _k, label, tip in OFFLOAD_CHOICES))


class MemoryOptionsBox(QWidget):
    """Attention slicing, VAE tiling and offload for one image model.

    ``optionsChanged(path, MemoryOptions)`` fires on every user change; the owner saves it.
    ``set_device(kind)`` says whether offload can work here (``None``: not known yet).
    """

    optionsChanged = Signal(object, object)  # Path, MemoryOptions

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("memoryOptions")
        self._path: Path | None = None
        self._device: str | None = None
        self._device_label = ""
        self.slicing = QCheckBox("Attention slicing")
        self.slicing.setToolTip("Computes attention in slices: a lower memory peak, a little "
                                "slower. Works on every device.")
        self.tiling = QCheckBox("VAE tiling")
        self.tiling.setToolTip("Decodes the image in tiles: large images fit in less memory. "
                               "Works on every device.")
        self.offload = QComboBox()
        for i, (key, text, tip) in enumerate(OFFLOAD_CHOICES):
            self.offload.addItem(text, key)
            self.offload.setItemData(i, tip, Qt.ItemDataRole.ToolTipRole)
        self.offload_label = QLabel("Offload")
        self.weights = QComboBox()
        self.weights.setObjectName("quantizeWeights")
        for i, (key, text, tip) in enumerate(WEIGHTS_CHOICES):
            self.weights.addItem(text, key)
            self.weights.setItemData(i, tip, Qt.ItemDataRole.ToolTipRole)
        self.weights_label = QLabel("Weights")
        self.note = muted_label("Applies from the next job with this model.", wrap=True)
        for box in (self.slicing, self.tiling):
            box.toggled.connect(self._emit)
        self.offload.currentIndexChanged.connect(self._emit)
        self.weights.currentIndexChanged.connect(self._emit)

        checks = QHBoxLayout()
        checks.setSpacing(16)
        checks.addWidget(self.slicing)
        checks.addWidget(self.tiling)
        checks.addStretch(1)
        offload = QHBoxLayout()
        offload.setSpacing(8)
        offload.addWidget(self.offload_label)
        offload.addWidget(self.offload, 1)
        weights = QHBoxLayout()
        weights.setSpacing(8)
        weights.addWidget(self.weights_label)
        weights.addWidget(self.weights, 1)
        col = QVBoxLayout(self)
        col.setContentsMargins(0, 0, 0, 0)
        col.setSpacing(8)
        col.addWidget(section_label("Memory options"))
        col.addLayout(checks)
        col.addLayout(offload)
        col.addLayout(weights)
        col.addWidget(self.note)
        self.set_device(None)

    @property
    def path(self) -> Path | None:
        return self._path

    def show_for(self, path: Path | None, options: MemoryOptions) -> None:
        """Show ``options`` of the model at ``path`` (without emitting a change)."""
        self._path = Path(path) if path is not None else None
        for widget, value in ((self.slicing, options.attention_slicing),
                              (self.tiling, options.vae_tiling)):
            widget.blockSignals(True)
            widget.setChecked(value)
            widget.blockSignals(False)
        for combo, value in ((self.offload, options.offload), (self.weights, options.quantize)):
            combo.blockSignals(True)
            combo.setCurrentIndex(max(0, combo.findData(value)))
            combo.blockSignals(False)
        self._sync_offload()

    def options(self) -> MemoryOptions:
        return MemoryOptions(attention_slicing=self.slicing.isChecked(),
                             vae_tiling=self.tiling.isChecked(),
                             offload=self.offload.currentData() or "none",
                             quantize=self.weights.currentData() or "none")

    def set_device(self, kind: str | None, label: str = "") -> None:
        """The device jobs run on (cuda | mps | cpu), or None while it is being detected."""
        self._device, self._device_label = kind, label
        self._sync_offload()

    @property
    def offload_usable(self) -> bool:
        return self._device == "cuda"

    def _sync_offload(self) -> None:
        usable = self.offload_usable
        self.offload.setEnabled(usable)
        self.offload_label.setEnabled(usable)
        if usable:
            tip = OFFLOAD_HELP
        elif self._device is None:
            tip = NEEDS_CUDA.format(where="the device is still being detected")
        else:
            where = f"jobs run on {self._device_label or self._device.upper()} here"
            tip = NEEDS_CUDA.format(where=where)
            if self.offload.currentData() != "none":
                tip += " The saved choice is ignored on this device."
        self.offload.setToolTip(tip)
        self.offload_label.setToolTip(tip)
        self._sync_weights()

    def _sync_weights(self) -> None:
        """NF4/int8 need bitsandbytes (greyed with the install line without it); off CUDA only
        the text encoders are quantized, which the tooltip says."""
        installed = bnb_installed()
        self.weights.setEnabled(installed)
        self.weights_label.setEnabled(installed)
        help_text = " ".join(f"{label}: {tip}" for _k, label, tip in WEIGHTS_CHOICES[1:])
        if not installed:
            tip = NOT_INSTALLED
            if self.weights.currentData() != "none":
                tip += " The saved choice is ignored until it is installed."
        elif self._device is not None and self._device != "cuda":
            tip = f"{help_text} " + WEIGHTS_ON_CPU.format(
                where=self._device_label or self._device.upper())
        else:
            tip = help_text
        self.weights.setToolTip(tip)
        self.weights_label.setToolTip(tip)

    def _emit(self, *_args) -> None:
        if self._path is not None:
            self.optionsChanged.emit(self._path, self.options())


class UnloadButton(QPushButton):
    """"Unload all · 3.4 GB" while models are loaded (tooltip: which), disabled otherwise."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__("Nothing loaded", parent)
        self.setObjectName("unloadAllButton")
        self.setCursor(Qt.CursorShape.PointingHandCursor)
        self.models: list[Loaded] = []
        self.unloading = False

    def show_loaded(self, models: list[Loaded], settings, unloading: bool = False) -> None:
        self.models, self.unloading = list(models), unloading
        if unloading:
            self.setText("Unloading…")
        elif models:
            total = loaded_summary(models).split(" · ")[-1]
            self.setText(f"Unload all · {total}")
        else:
            self.setText("Nothing loaded")
        self.setEnabled(bool(models) and not unloading)
        self.setToolTip(loaded_tooltip(models, settings)
                        + ("<br>Click to free them all." if models else ""))
