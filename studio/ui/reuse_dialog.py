"""The dialog shown when an image is dropped on the window: the generation parameters stored in
it (by Studio, AUTOMATIC1111, ComfyUI or InvokeAI) and a "Reuse these parameters" button, which
opens Generate — or Transform for Studio's CycleGAN, img2img and inpaint results."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from PySide6.QtCore import Qt
from PySide6.QtGui import QImageReader, QPixmap
from PySide6.QtWidgets import (
    QDialog,
    QDialogButtonBox,
    QGridLayout,
    QHBoxLayout,
    QLabel,
    QPlainTextEdit,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from studio.media.metadata import SOURCE_NAMES, describe_value
from studio.ui.context import AppContext

if TYPE_CHECKING:
    from studio.core.requests import Txt2ImgRequest
    from studio.media.metadata import ImageMetadata
    from studio.media.transform_reuse import TransformReuse

NO_PARAMETERS = "This image has no generation parameters"
# The order and names of the parameters the dialog lists (others follow, as they are called).
PARAM_LABELS = {"steps": "Steps", "cfg": "CFG scale", "seed": "Seed", "width": "Width",
                "height": "Height", "sampler": "Sampler", "scheduler": "Schedule",
                "model": "Model", "model_hash": "Model hash", "version": "Made with"}
THUMB = 168


class ImageParametersDialog(QDialog):
    """Shows ``meta`` (an ``ImageMetadata``); "Reuse" sends ``transform`` (a TransformReuse) to
    Transform when there is one, else ``request`` to Generate."""

    def __init__(self, path: Path, meta: ImageMetadata, request: Txt2ImgRequest | None,
                 ctx: AppContext, parent: QWidget | None = None,
                 transform: TransformReuse | None = None) -> None:
        super().__init__(parent)
        self.ctx = ctx
        self.path = Path(path)
        self.meta = meta
        self.request = request
        self.transform = transform
        self.setWindowTitle(f"{self.path.name} — generation parameters")
        self.setMinimumWidth(560)
        col = QVBoxLayout(self)
        col.setContentsMargins(18, 18, 18, 14)
        col.setSpacing(12)

        head = QHBoxLayout()
        head.setSpacing(16)
        thumb = QLabel()
        pm = _thumbnail(self.path)
        if pm is not None:
            thumb.setPixmap(pm)
            thumb.setFixedSize(THUMB, THUMB)
            thumb.setAlignment(Qt.AlignmentFlag.AlignCenter)
            head.addWidget(thumb, 0, Qt.AlignmentFlag.AlignTop)
        side = QVBoxLayout()
        side.setSpacing(6)
        title = QLabel(self.path.name)
        title.setProperty("heading", True)
        title.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        side.addWidget(title)
        self.summary = QLabel()
        self.summary.setWordWrap(True)
        self.summary.setProperty("muted", True)
        side.addWidget(self.summary)
        self.grid = QGridLayout()
        self.grid.setHorizontalSpacing(14)
        self.grid.setVerticalSpacing(4)
        side.addLayout(self.grid)
        side.addStretch(1)
        head.addLayout(side, 1)
        col.addLayout(head)

        found = meta is not None and meta.source != "none"
        if found:
            notes = "".join(f"\n{note}" for note in meta.notes)  # e.g. a seed out of range
            self.summary.setText(f"Made with {SOURCE_NAMES.get(meta.source, meta.source)}{notes}")
            self._fill_params(meta.params)
            self.prompt = self._text_box(col, "Prompt", meta.prompt)
            self.negative = self._text_box(col, "Negative prompt", meta.negative_prompt)
        else:
            self.summary.setText(NO_PARAMETERS + ". It was not made by Studio or another "
                                 "app that records them (or they were removed).")

        buttons = QDialogButtonBox()
        self.reuse_button: QPushButton | None = None
        if found and (request is not None or transform is not None):
            self.reuse_button = QPushButton("Reuse these parameters")
            self.reuse_button.setToolTip("Open the source image and settings in Transform"
                                         if transform is not None else
                                         "Open these settings in Generate")
            self.reuse_button.setProperty("accent", True)
            self.reuse_button.setDefault(True)
            self.reuse_button.clicked.connect(self.reuse)
            buttons.addButton(self.reuse_button, QDialogButtonBox.ButtonRole.AcceptRole)
        self.close_button = buttons.addButton("Close", QDialogButtonBox.ButtonRole.RejectRole)
        self.close_button.clicked.connect(self.reject)
        col.addWidget(buttons)

    @classmethod
    def for_file(cls, path: Path, ctx: AppContext,
                 parent: QWidget | None = None) -> ImageParametersDialog:
        """Read the metadata of ``path`` and build the dialog for it."""
        from studio.media.metadata import read_image_metadata, to_request
        from studio.media.transform_reuse import transform_reuse_from_text

        meta = read_image_metadata(path)
        request = to_request(meta, ctx.settings.last_model) if meta.source != "none" else None
        transform = transform_reuse_from_text(meta.raw, Path(path))
        return cls(path, meta, request, ctx, parent, transform=transform)

    def _fill_params(self, params: dict[str, Any]) -> None:
        keys = [k for k in PARAM_LABELS if k in params]
        keys += sorted(k for k in params if k not in PARAM_LABELS)
        for row, key in enumerate(keys):
            name = QLabel(PARAM_LABELS.get(key, key.replace("_", " ").capitalize()))
            name.setProperty("muted", True)
            value = QLabel(describe_value(params[key]))
            value.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
            value.setWordWrap(True)
            self.grid.addWidget(name, row, 0, Qt.AlignmentFlag.AlignTop)
            self.grid.addWidget(value, row, 1)
        self.grid.setColumnStretch(1, 1)

    @staticmethod
    def _text_box(col: QVBoxLayout, title: str, text: str) -> QPlainTextEdit:
        label = QLabel(title)
        label.setProperty("muted", True)
        box = QPlainTextEdit(text or "")
        box.setReadOnly(True)
        box.setPlaceholderText("(none)")
        box.setFixedHeight(70 if title == "Prompt" else 52)
        col.addWidget(label)
        col.addWidget(box)
        return box

    def reuse(self) -> None:
        """Send the settings to Transform (its results) or Generate, and close."""
        if self.transform is not None:
            self.ctx.openInWorkspace.emit("transform", self.transform)
        elif self.request is not None:
            self.ctx.openInWorkspace.emit("generate", self.request)
        self.accept()


def _thumbnail(path: Path) -> QPixmap | None:
    reader = QImageReader(str(path))
    reader.setAutoTransform(True)
    size = reader.size()
    if size.isValid() and (size.width() > THUMB or size.height() > THUMB):
        reader.setScaledSize(size.scaled(THUMB, THUMB, Qt.AspectRatioMode.KeepAspectRatio))
    image = reader.read()
    return None if image.isNull() else QPixmap.fromImage(image)
