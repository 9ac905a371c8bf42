"""The parts of a ComfyUI split diffusion model in the Models workspace's details pane.

:class:`SplitPartsBox` shows, for a FLUX.1 / SD 3.5 / Chroma (or Qwen-Image / Z-Image / FLUX.2)
diffusion-model file, one drop-down per part it needs (clip_l, clip_g, t5xxl or text_encoder,
vae): "Automatic" (the file Studio picks from ComfyUI's folders) or any file of that part found
there; a part an all-in-one file carries itself shows "Automatic (inside this file)", and only
the parts it lacks offer files. ``partChosen(path, role, file or None)`` fires on a change;
the panel keeps the choice in the settings (what ``studio models parts --set`` does), and the next
job with the model uses it.
"""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import QComboBox, QFormLayout, QLabel, QVBoxLayout, QWidget

from studio.ui.widgets.basics import muted_label, section_label

PART_NAMES = {"clip_l": "CLIP-L", "clip_g": "CLIP-G", "t5xxl": "T5-XXL", "vae": "VAE",
              "text_encoder": "Text encoder"}


class SplitPartsBox(QWidget):
    """One drop-down per part of a split diffusion model."""

    partChosen = Signal(object, str, object)  # model Path, role, Path | None (automatic)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("splitParts")
        self._path: Path | None = None
        self.form = QFormLayout()
        self.form.setLabelAlignment(Qt.AlignmentFlag.AlignRight)
        self.form.setVerticalSpacing(6)
        self.boxes: dict[str, QComboBox] = {}
        self.note = muted_label("", wrap=True)
        col = QVBoxLayout(self)
        col.setContentsMargins(0, 0, 0, 0)
        col.setSpacing(8)
        col.addWidget(section_label("Split files"))
        col.addLayout(self.form)
        col.addWidget(self.note)

    def show_parts(self, path: Path, parts, chosen: dict[str, str]) -> None:
        """Show ``parts`` (a ``SplitParts``: the roles, files found, files used) of the model at
        ``path``; ``chosen``: the user's choices (role → file)."""
        self._path = Path(path)
        while self.form.rowCount():
            self.form.removeRow(0)
        self.boxes = {}
        for part in parts.parts:
            box = QComboBox()
            box.setMinimumContentsLength(12)
            box.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
            used = parts.chosen.get(part.role)
            guess = used if part.role not in chosen else None
            inside = part.role in parts.inside  # an all-in-one file carries it
            box.addItem("Automatic (inside this file)" if inside and guess else
                        f"Automatic ({guess.stem})" if guess else
                        ("Automatic" if part.role in chosen else
                         ("Missing" if part.required else "None (optional)")), None)
            files = list(parts.candidates.get(part.role, []))
            if used is not None and used not in files and not inside:
                files.append(used)
            for i, f in enumerate(files, start=1):
                box.addItem(f.stem, str(f))
                box.setItemData(i, str(f), Qt.ItemDataRole.ToolTipRole)
            if part.role in chosen:
                box.setCurrentIndex(max(0, box.findData(chosen[part.role])))
            box.setToolTip(str(used) if used else f"No {PART_NAMES[part.role]} file found in "
                           f"ComfyUI's models/{part.folder}")
            box.currentIndexChanged.connect(lambda _i, r=part.role, b=box: self._emit(r, b))
            label = QLabel(PART_NAMES[part.role])
            label.setProperty("muted", True)
            self.form.addRow(label, box)
            self.boxes[part.role] = box
        missing = [PART_NAMES[p.role] for p in parts.missing]
        self.note.setText(("Missing: " + ", ".join(missing) + ". Put the file in ComfyUI's "
                           "folders or choose one. ") if missing else
                          "Applies from the next job with this model.")

    def _emit(self, role: str, box: QComboBox) -> None:
        if self._path is not None:
            data = box.currentData()
            self.partChosen.emit(self._path, role, Path(data) if data else None)
