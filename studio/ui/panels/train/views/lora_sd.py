"""The Train → LoRA page (the ``lora-sd`` lesson's view): your images with their captions
(editable, saved to the ``.txt`` beside each image), the base model picked from the library,
the training's numbers (smoothed loss, learning rate, steps/s, time left), the rows of samples
drawn every N steps at a fixed seed with a slider back through them, and *Keep LoRA now*."""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from PySide6.QtCore import QSize, Qt
from PySide6.QtGui import QIcon, QImage, QPixmap
from PySide6.QtWidgets import (
    QComboBox,
    QFileDialog,
    QGridLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QListWidget,
    QListWidgetItem,
    QPushButton,
    QSlider,
    QVBoxLayout,
    QWidget,
)

from studio.core.jobs import UserFacingError
from studio.ui.panels.train.views.base import LessonView
from studio.ui.panels.train.widgets import ElidedLabel, caption

if TYPE_CHECKING:
    from PIL.Image import Image as PILImage

SAMPLE_SIDE = 150  # px of one sample on the page (they scale down to fit)
ICON_SIDE = 40
TINY = ""  # the model combo's value for Studio's tiny model


def _pixmap(array: np.ndarray) -> QPixmap:
    rgb = np.ascontiguousarray(array[..., :3], dtype=np.uint8)
    h, w = rgb.shape[:2]
    return QPixmap.fromImage(QImage(rgb.data, w, h, 3 * w, QImage.Format.Format_RGB888).copy())


def duration(seconds: float) -> str:
    """"42 s", "3 min 5 s", "2 h 10 min"; "—" when unknown."""
    if not math.isfinite(seconds):
        return "—"
    s = int(round(seconds))
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min {s % 60} s"
    return f"{s // 3600} h {s % 3600 // 60} min"


def _trainable_models() -> list[tuple[str, str]]:
    """(name, spec) of the library's models LoRA training supports (SD 1.x, SDXL, FLUX.1,
    SD 3.5, Qwen-Image), for the base-model picker (I/O pool)."""
    from studio.core.config import default_paths, load_settings
    from studio.library.models import find_txt2img_models
    from studio.pipelines.train.lora_sd import SUPPORTED_FAMILIES

    settings = load_settings().settings
    models = find_txt2img_models(settings, settings.resolved_paths(default_paths()))
    return [(m.name, str(m.path)) for m in models if m.family in SUPPORTED_FAMILIES]


def _captioner_found() -> tuple[str, list[str]]:
    """(the cached captioner's kind, "" when none; the download lines), off the GUI thread."""
    from studio.pipelines.train.captions import captioner_name, download_lines, find_captioner

    folder = find_captioner()
    return (captioner_name(folder) if folder is not None else ""), download_lines()


class LoraSDView(LessonView):
    """The LoRA page: images and captions left, numbers and samples right."""

    def __init__(self, lesson_key: str, parent: QWidget | None = None) -> None:
        super().__init__(lesson_key, parent)
        from studio.workers.lanes import Calls

        self._calls = Calls(self)
        self._snap: dict[str, Any] = {}
        self._rows: list[tuple[int, list[str]]] = []
        self._follow = True  # the slider follows the newest row until moved back
        self._saved = ""
        self._edits: dict[str, str] = {}  # captions saved here since the run was built
        self._model = TINY

        self.stats = ElidedLabel("", tip="Smoothed loss, learning rate, speed and time left")
        self.stats.setObjectName("loraStats")
        self.keep_button = QPushButton("Keep LoRA now")
        self.keep_button.setToolTip("Stop here and write the LoRA as it is into the library "
                                    "(Models, Generate's LoRA list)")
        self.keep_button.setEnabled(False)
        self.keep_button.clicked.connect(self._keep)
        self.info = ElidedLabel("")
        self.info.setProperty("muted", True)
        self.estimate = ElidedLabel("", tip="Memory this run needs (an estimate from the "
                                            "model's size, resolution, rank and the memory "
                                            "options)")
        self.estimate.setObjectName("loraEstimate")
        self.estimate.setProperty("muted", True)

        self.model_box = QComboBox()
        self.model_box.setObjectName("loraBaseModel")
        self.model_box.setToolTip("The SD 1.x, SDXL, FLUX.1, SD 3.5 or Qwen-Image model the "
                                  "LoRA is trained for (from the library)")
        self.model_box.addItem("Tiny model (random weights)", TINY)
        self.model_box.activated.connect(self._model_chosen)
        self.folder_button = QPushButton("Image folder…")
        self.folder_button.setToolTip("Train on a folder of your images (with .txt captions)")
        self.folder_button.clicked.connect(self._choose_folder)

        self.images = QListWidget()
        self.images.setObjectName("loraImages")
        self.images.setIconSize(QSize(ICON_SIDE, ICON_SIDE))
        self.images.setMinimumSize(120, 60)
        self.images.currentItemChanged.connect(self._image_chosen)
        self.caption_edit = QLineEdit()
        self.caption_edit.setObjectName("loraCaption")
        self.caption_edit.setPlaceholderText("Caption of the selected image")
        self.caption_edit.returnPressed.connect(self.save_caption)
        self.save_button = QPushButton("Save")
        self.save_button.setToolTip("Write the caption into the .txt file beside the image")
        self.save_button.clicked.connect(self.save_caption)
        self.caption_note = ElidedLabel("")
        self.caption_note.setProperty("muted", True)
        self.auto_button = QPushButton("Caption missing")
        self.auto_button.setToolTip("Before training, the captioning model writes a .txt for "
                                    "every image that has none (captions you wrote stay)")
        self.auto_button.clicked.connect(lambda: self.resetRequested.emit({"captions": "blip"}))
        self.auto_button.hide()
        self.auto_note = QLabel("")
        self.auto_note.setObjectName("loraAutoCaptions")
        self.auto_note.setWordWrap(True)
        self.auto_note.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.auto_note.setProperty("muted", True)

        self.samples_caption = caption("Samples", tip="The sample prompts drawn at a fixed "
                                                      "seed every 'Sample every' steps")
        self.sample_labels: list[QLabel] = []
        self.samples_row = QHBoxLayout()
        self.samples_row.setSpacing(6)
        self.slider = QSlider(Qt.Orientation.Horizontal)
        self.slider.setObjectName("loraHistory")
        self.slider.setToolTip("Look back through the rows of samples")
        self.slider.setRange(0, 0)
        self.slider.valueChanged.connect(self._show_row)
        self.row_label = QLabel("No samples yet")
        self.saved_label = ElidedLabel("")
        self.saved_label.setObjectName("loraSaved")

        top = QHBoxLayout()
        top.addWidget(self.stats, 1)
        top.addWidget(self.keep_button)
        pick = QHBoxLayout()
        pick.addWidget(QLabel("Base model"))
        pick.addWidget(self.model_box)
        pick.addStretch(1)
        pick.addWidget(self.folder_button)
        left = QVBoxLayout()
        left.addWidget(self.images, 1)
        edit = QHBoxLayout()
        edit.addWidget(self.caption_edit, 1)
        edit.addWidget(self.save_button)
        left.addLayout(edit)
        left.addWidget(self.caption_note)
        left.addWidget(self.auto_note)
        left.addWidget(self.auto_button, 0, Qt.AlignmentFlag.AlignLeft)
        right = QVBoxLayout()
        right.addWidget(self.samples_caption)
        right.addLayout(self.samples_row, 1)
        slide = QHBoxLayout()
        slide.addWidget(self.slider, 1)
        slide.addWidget(self.row_label)
        right.addLayout(slide)
        right.addWidget(self.saved_label)
        body = QGridLayout()
        body.addLayout(left, 0, 0)
        body.addLayout(right, 0, 1)
        body.setColumnStretch(0, 1)
        body.setColumnStretch(1, 1)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(6)
        layout.addLayout(top)
        layout.addLayout(pick)
        layout.addWidget(self.info)
        layout.addWidget(self.estimate)
        layout.addLayout(body, 1)
        self._calls.run(_trainable_models, self._fill_models, lambda _why: None)
        self._calls.run(_captioner_found, self._show_captioner, lambda _why: None)

    # -- what the trainer sends ----------------------------------------------------------------
    def show_snapshot(self, snapshot: dict[str, Any]) -> None:
        previous, self._snap = self._snap, snapshot
        loss = snapshot["smooth_loss"]
        self.stats.set_full_text(
            f"Step {snapshot['step']} / {snapshot['steps']} · loss "
            f"{f'{loss:.4f}' if math.isfinite(loss) else '—'} (smoothed) · "
            f"LR {snapshot['lr']:.2g} · {snapshot['steps_per_s']:.2f} steps/s · "  # plural-ok
            f"ETA {duration(snapshot['eta_s'])}")
        warnings = " ".join(snapshot["warnings"])
        self.info.set_full_text(f"{snapshot['model']} on {snapshot['device']} · "
                                f"{snapshot['data_note']}" + (f" · {warnings}" if warnings
                                                              else ""))
        self.estimate.set_full_text(snapshot.get("estimate", ""))
        self._sync_model()
        self.keep_button.setEnabled(snapshot["step"] > 0
                                    and snapshot["step"] < snapshot["steps"])
        if snapshot["images"] is not previous.get("images"):
            self._fill_images(snapshot["images"])
        rows = [(int(step), list(paths)) for step, paths in snapshot["samples"]]
        if rows != self._rows:
            self._rows = rows
            self.slider.blockSignals(True)
            self.slider.setRange(0, max(0, len(rows) - 1))
            if self._follow:
                self.slider.setValue(len(rows) - 1)
            self.slider.blockSignals(False)
            self._show_row(self.slider.value())
        saved = snapshot["saved"]
        if saved and saved != self._saved:
            self._saved = saved
            self.saved_label.set_full_text(f"Saved {saved} (Models and Generate's LoRA list)")
            self.modelWritten.emit(saved)

    def reset(self) -> None:
        self._snap, self._rows, self._follow, self._saved = {}, [], True, ""
        self._edits.clear()
        self.images.clear()
        self.slider.setRange(0, 0)
        self._show_row(0)
        self.saved_label.set_full_text("")
        self.caption_note.set_full_text("")

    # -- images and captions -------------------------------------------------------------------
    def _fill_images(self, images: list[dict[str, Any]]) -> None:
        self.images.clear()
        for entry in images:
            text = self._edits.get(entry["path"], entry["caption"])
            item = QListWidgetItem(QIcon(_pixmap(entry["thumb"])),
                                   f"{entry['name']} — {text or '(no caption)'}")
            item.setData(Qt.ItemDataRole.UserRole, entry["path"])
            item.setData(Qt.ItemDataRole.UserRole + 1, text)
            item.setData(Qt.ItemDataRole.UserRole + 2, entry["name"])
            self.images.addItem(item)
        if self.images.count():
            self.images.setCurrentRow(0)
        else:
            self._image_chosen(None)

    def _image_chosen(self, item: QListWidgetItem | None, _previous=None) -> None:
        path = item.data(Qt.ItemDataRole.UserRole) if item is not None else ""
        self.caption_edit.setText(item.data(Qt.ItemDataRole.UserRole + 1) if item else "")
        self.caption_edit.setEnabled(bool(path))
        self.save_button.setEnabled(bool(path))
        if item is not None and not path:
            self.caption_note.set_full_text("Studio's shapes: choose your image folder to write "
                                            "captions.")

    def save_caption(self) -> None:
        """Write the edited caption into the selected image's ``.txt`` (kohya's sidecar)."""
        from studio.pipelines.train.lora_data import write_caption

        item = self.images.currentItem()
        path = item.data(Qt.ItemDataRole.UserRole) if item is not None else ""
        if not path:
            return
        text = self.caption_edit.text().strip()
        try:
            sidecar = write_caption(Path(path), text)
        except UserFacingError as exc:
            self.caption_note.set_full_text(str(exc))
            return
        self._edits[path] = text
        item.setData(Qt.ItemDataRole.UserRole + 1, text)
        item.setText(f"{item.data(Qt.ItemDataRole.UserRole + 2)} — {text or '(no caption)'}")
        self.caption_note.set_full_text(f"Saved {sidecar.name}. Captions are read when a run "
                                        "starts: Reset to train with it.")

    def _choose_folder(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Choose a folder of images")
        if folder:
            self.choose_folder(folder)

    def choose_folder(self, folder: str) -> None:
        """Train on ``folder`` (a new run: its images are read and cached)."""
        self.resetRequested.emit({"dataset": "folder", "data_folder": str(folder)})

    def _show_captioner(self, found: tuple[str, list[str]]) -> None:
        name, lines = found
        self.auto_button.setVisible(bool(name))
        if name:
            self.auto_button.setText(f"Caption missing with {name}")
        # one short line on the page (the list above keeps its room); every line in the tip
        self.auto_note.setText(
            f"{name} is in your Hugging Face cache: it can caption the images that have no .txt."
            if name else f"Automatic captions: {lines[0]}"
                         + (" (or BLIP)" if len(lines) > 1 else "") + ", then restart Studio.")
        self.auto_note.setToolTip("" if name else "A captioning model in the Hugging Face cache "
                                  "writes the missing captions; download one with:\n"
                                  + "\n".join(lines))

    # -- the base model ------------------------------------------------------------------------
    def _fill_models(self, models: list[tuple[str, str]]) -> None:
        for name, spec in models:
            self.model_box.addItem(name, spec)
            self.model_box.setItemData(self.model_box.count() - 1, spec,
                                       Qt.ItemDataRole.ToolTipRole)
        self._sync_model()

    def _sync_model(self) -> None:
        """The picker shows the model the run trains (index 0: the tiny one)."""
        from studio.pipelines.train.lora_sd_lesson import TINY_NAME

        name = self._snap.get("model", TINY_NAME)
        index = 0 if name == TINY_NAME else self.model_box.findText(name)
        if index >= 0 and index != self.model_box.currentIndex():
            self.model_box.setCurrentIndex(index)

    def _model_chosen(self, index: int) -> None:
        self.resetRequested.emit({"model": self.model_box.itemData(index) or ""})

    # -- samples -------------------------------------------------------------------------------
    def _show_row(self, index: int) -> None:
        self._follow = index >= len(self._rows) - 1
        paths = self._rows[index][1] if 0 <= index < len(self._rows) else []
        while len(self.sample_labels) < len(paths):
            label = QLabel()
            label.setObjectName("loraSample")
            label.setAlignment(Qt.AlignmentFlag.AlignCenter)
            label.setMinimumSize(48, 48)
            self.sample_labels.append(label)
            self.samples_row.addWidget(label, 1)
        prompts = self._snap.get("prompts", [])
        for i, label in enumerate(self.sample_labels):
            label.setVisible(i < len(paths))
            if i < len(paths):
                pixmap = QPixmap(paths[i])
                label.setPixmap(pixmap.scaled(SAMPLE_SIDE, SAMPLE_SIDE,
                                              Qt.AspectRatioMode.KeepAspectRatio,
                                              Qt.TransformationMode.SmoothTransformation))
                label.setToolTip(prompts[i] if i < len(prompts) else "")
        if paths:
            self.row_label.setText(f"step {self._rows[index][0]} ({index + 1}/{len(self._rows)})")
        else:
            self.row_label.setText("No samples yet")

    def export_frames(self) -> list[PILImage]:
        """Each row of samples side by side, oldest first (the GIF of the style arriving)."""
        from PIL import Image

        frames = []
        for _step, paths in self._rows:
            images = [Image.open(p).convert("RGB") for p in paths if Path(p).is_file()]
            if not images:
                continue
            row = Image.new("RGB", (sum(i.width for i in images), max(i.height for i in images)))
            x = 0
            for image in images:
                row.paste(image, (x, 0))
                x += image.width
            frames.append(row)
        return frames

    # -- actions -------------------------------------------------------------------------------
    def _keep(self) -> None:
        step = int(self._snap.get("step", 0))
        if step > 0:  # the goal becomes now: the trainer writes the LoRA and stops
            self.setParamRequested.emit("steps", step)
