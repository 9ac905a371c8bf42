"""The gallery's right-hand pane: the selected image and how it was made.

Metadata is read with :func:`studio.media.metadata.read_image_metadata` off the GUI thread;
"Reuse parameters" is enabled only when a request can be rebuilt from it: a Transform request
(:func:`studio.media.transform_reuse.read_transform_reuse`: CycleGAN, img2img and inpaint
results, reused in Transform) or a text-to-image one (:func:`studio.media.metadata.to_request`,
reused in Generate).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from PySide6.QtCore import QRectF, QSize, Qt, Signal
from PySide6.QtGui import QColor, QImage, QPainter, QPaintEvent
from PySide6.QtWidgets import (
    QFormLayout,
    QFrame,
    QGridLayout,
    QLabel,
    QPushButton,
    QSizePolicy,
    QVBoxLayout,
    QWidget,
)

from studio.core.requests import SCHEDULERS
from studio.media.metadata import SOURCE_NAMES
from studio.ui.widgets.basics import section_label, vertical_scroll

if TYPE_CHECKING:
    from studio.core.requests import Txt2ImgRequest
    from studio.media.gallery import GalleryItem
    from studio.media.metadata import ImageMetadata
    from studio.media.transform_reuse import TransformReuse


class AspectImage(QWidget):
    """Paints one QImage scaled to fit, centered; a muted text when there is none."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._image = QImage()
        self._text = ""
        self.setMinimumHeight(180)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Preferred)

    def set_image(self, image: QImage | None, text: str = "") -> None:
        self._image = image if image is not None else QImage()
        self._text = text
        self.updateGeometry()
        self.update()

    def image(self) -> QImage:
        return self._image

    def hasHeightForWidth(self) -> bool:  # noqa: N802 - Qt override
        return True

    def heightForWidth(self, width: int) -> int:  # noqa: N802 - Qt override
        if self._image.isNull() or not self._image.width():
            return width
        return max(120, min(int(width * self._image.height() / self._image.width()), 420))

    def sizeHint(self) -> QSize:  # noqa: N802 - Qt override
        return QSize(300, self.heightForWidth(300))

    def paintEvent(self, event: QPaintEvent) -> None:  # noqa: N802 - Qt override
        painter = QPainter(self)
        painter.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform)
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        area = QRectF(self.rect())
        if self._image.isNull():
            painter.setPen(Qt.PenStyle.NoPen)
            painter.setBrush(self.palette().color(self.palette().ColorRole.Base))
            painter.drawRoundedRect(area, 8, 8)
            color = QColor(self.palette().color(self.palette().ColorRole.PlaceholderText))
            painter.setPen(color)
            painter.drawText(area, Qt.AlignmentFlag.AlignCenter | Qt.TextFlag.TextWordWrap,
                             self._text)
            return
        scale = min(area.width() / self._image.width(), area.height() / self._image.height())
        w, h = self._image.width() * scale, self._image.height() * scale
        target = QRectF(area.center().x() - w / 2, area.center().y() - h / 2, w, h)
        painter.drawImage(target, self._image)


def _value_label() -> QLabel:
    label = QLabel()
    label.setWordWrap(True)
    label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
    label.setAlignment(Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignTop)
    return label


class DetailsPane(QFrame):
    """Shows one gallery item; emits what the user asked for with it."""

    reuseRequested = Signal()
    openRequested = Signal()
    showInFolderRequested = Signal()
    deleteRequested = Signal()
    imageDoubleClicked = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("galleryDetails")
        self.setFixedWidth(340)
        self._path: Path | None = None
        self.meta: ImageMetadata | None = None
        self.request: Txt2ImgRequest | None = None  # rebuilt from the metadata, when possible
        self.transform_reuse: TransformReuse | None = None  # for Transform results

        self.image = AspectImage()
        self.image.mouseDoubleClickEvent = lambda _e: self.imageDoubleClicked.emit()
        self.title = QLabel()
        self.title.setProperty("heading", True)
        self.title.setWordWrap(True)
        self.prompt = _value_label()
        self.negative = _value_label()
        self.negative.setProperty("muted", True)
        self.fields: dict[str, QLabel] = {}
        form = QFormLayout()
        form.setContentsMargins(0, 0, 0, 0)
        form.setHorizontalSpacing(12)
        form.setVerticalSpacing(4)
        form.setLabelAlignment(Qt.AlignmentFlag.AlignLeft)
        for key, name in (("size", "Size"), ("steps", "Steps"), ("sampler", "Sampler"),
                          ("cfg", "CFG scale"), ("seed", "Seed"), ("model", "Model"),
                          ("source", "Made with"), ("file", "File")):
            label = QLabel(name)
            label.setProperty("muted", True)
            value = _value_label()
            self.fields[key] = value
            form.addRow(label, value)

        self.reuse_button = QPushButton("Reuse parameters")
        self.reuse_button.setProperty("accent", True)
        self.reuse_button.setToolTip("Open these settings in Generate")
        self.reuse_button.clicked.connect(self.reuseRequested)
        self.open_button = QPushButton("Open")
        self.open_button.clicked.connect(self.openRequested)
        self.folder_button = QPushButton("Show in folder")
        self.folder_button.clicked.connect(self.showInFolderRequested)
        self.delete_button = QPushButton("Delete…")
        self.delete_button.clicked.connect(self.deleteRequested)

        body = QWidget()
        col = QVBoxLayout(body)
        col.setContentsMargins(16, 16, 16, 16)
        col.setSpacing(8)
        col.addWidget(self.image)
        col.addSpacing(4)
        col.addWidget(self.title)
        col.addWidget(section_label("Prompt"))
        col.addWidget(self.prompt)
        self.negative_section = section_label("Negative prompt")
        col.addWidget(self.negative_section)
        col.addWidget(self.negative)
        col.addWidget(section_label("Parameters"))
        col.addLayout(form)
        col.addStretch(1)
        scroll = vertical_scroll(body)

        buttons = QGridLayout()
        buttons.setContentsMargins(16, 8, 16, 16)
        buttons.setSpacing(8)
        buttons.addWidget(self.reuse_button, 0, 0, 1, 3)
        buttons.addWidget(self.open_button, 1, 0)
        buttons.addWidget(self.folder_button, 1, 1)
        buttons.addWidget(self.delete_button, 1, 2)
        outer = QVBoxLayout(self)
        outer.setContentsMargins(0, 0, 0, 0)
        outer.setSpacing(0)
        outer.addWidget(scroll, 1)
        outer.addLayout(buttons)
        self.show_item(None)

    @property
    def path(self) -> Path | None:
        return self._path

    def show_item(self, item: GalleryItem | None) -> None:
        """Show a gallery item at once from what the index knows; metadata follows."""
        self._path = Path(item.path) if item is not None else None
        self.meta = None
        self.request = None
        self.transform_reuse = None
        for button in (self.open_button, self.folder_button, self.delete_button):
            button.setEnabled(item is not None)
        self.reuse_button.setEnabled(False)
        if item is None:
            self.image.set_image(None, "Select an image to see how it was made")
            self.title.setText("")
            self.prompt.setText("")
            self.negative.setText("")
            self.negative_section.hide()
            self.negative.hide()
            for value in self.fields.values():
                value.setText("—")
            return
        self.image.set_image(None, "Loading…")
        self.title.setText(Path(item.path).name)
        self._set_prompts(item.prompt, getattr(item, "negative_prompt", ""))
        self.fields["size"].setText(f"{item.width} × {item.height}" if item.width else "—")
        self.fields["file"].setText(str(Path(item.path).parent))
        self.fields["file"].setToolTip(str(item.path))
        params = getattr(item, "params", {}) or {}
        self._set_params(params, item.source)

    def set_thumbnail(self, image: QImage) -> None:
        self.image.set_image(image, "" if not image.isNull() else "Cannot read this image")

    def set_metadata(self, meta: ImageMetadata, request: Txt2ImgRequest | None,
                     transform: TransformReuse | None = None) -> None:
        """The file's metadata arrived (read off the GUI thread); ``request`` (for Generate) and
        ``transform`` (a TransformReuse, for Transform; it wins) may be None."""
        self.meta = meta
        self.request = request
        self.transform_reuse = transform
        self._set_prompts(meta.prompt, meta.negative_prompt)
        self._set_params(meta.params, meta.source)
        if transform is not None:
            self._set_transform(transform)
            tip = "Open this image's source and settings in Transform"
        elif request is not None:
            tip = "Open these settings in Generate"
        else:
            tip = "This image carries no parameters to reuse"
        self.reuse_button.setEnabled(transform is not None or request is not None)
        self.reuse_button.setToolTip(tip)

    # -- internals ---------------------------------------------------------------------------
    def _set_transform(self, reuse: TransformReuse) -> None:
        request = reuse.request
        if reuse.mode == "cyclegan":
            direction = "A → B" if request.direction == "AtoB" else "B → A"
            # The model's name as the library and Transform show it, not its file's name.
            name = reuse.model_name or Path(request.model).name
            self.fields["model"].setText(f"{name} · {direction}")
            self.fields["model"].setToolTip(str(request.model))
            self.fields["source"].setText("Studio · CycleGAN")
            self.prompt.setText("(CycleGAN translation: no prompt)")
        else:
            mode = "inpaint" if reuse.mode == "inpaint" else "img2img"
            self.fields["source"].setText(f"Studio · {mode}, strength {request.strength:g}")

    def _set_prompts(self, prompt: str, negative: str) -> None:
        self.prompt.setText(prompt or "(no prompt recorded)")
        self.negative.setText(negative)
        self.negative_section.setVisible(bool(negative))
        self.negative.setVisible(bool(negative))

    def _set_params(self, params: dict, source: str) -> None:
        def show(key: str, value: Any) -> None:
            self.fields[key].setText(str(value) if value not in (None, "") else "—")

        show("steps", params.get("steps"))
        sampler = params.get("sampler") or ""
        scheduler = params.get("scheduler") or ""
        if str(scheduler).lower() == "automatic":
            scheduler = ""  # A1111's "let the sampler decide": nothing worth showing
        if sampler in SCHEDULERS:
            sampler = SCHEDULERS[sampler]
        show("sampler", " · ".join(s for s in (str(sampler), str(scheduler)) if s))
        show("cfg", params.get("cfg"))
        show("seed", params.get("seed"))
        model = str(params.get("model") or "")
        show("model", Path(model).name if model else "")
        self.fields["model"].setToolTip(model)
        show("source", SOURCE_NAMES.get(source, source))
        if params.get("width") and params.get("height"):
            show("size", f"{params['width']} × {params['height']}")
