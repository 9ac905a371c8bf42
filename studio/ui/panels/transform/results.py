"""What the Transform workspace shows on the right, per mode: the last result, or a job's preview.

Each mode (CycleGAN, img2img, inpaint) keeps its own last result of the open picture, so switching
tabs never leaves one mode's result on screen under another's settings, and a new job of a mode
replaces what that mode showed. While an img2img or inpaint job runs, its denoising previews are
shown over its own input picture; for inpainting only the masked region shows the preview
(:func:`~studio.ui.widgets.mask_canvas.composite_preview`), the rest is the picture as it
will stay. A right-click on a shown result offers the shared image menu (:func:`result_menu`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from PySide6.QtGui import QImage
from PySide6.QtWidgets import QMenu, QWidget

from studio.core.jobs import JobSnapshot
from studio.core.requests import (
    Img2ImgRequest,
    TransformedImage,
    TransformRequest,
    UpscaleRequest,
)
from studio.ui.widgets.mask_canvas import composite_preview
from studio.ui.widgets.preview import preview_to_qimage

if TYPE_CHECKING:
    from studio.ui.context import AppContext


def mode_of(request: TransformRequest | Img2ImgRequest | UpscaleRequest) -> str:
    """The tab a request belongs to: ``cyclegan``, ``img2img``, ``inpaint``, ``upscale`` or
    ``edit``."""
    if isinstance(request, TransformRequest):
        return "cyclegan"
    if getattr(request, "edit", False):
        return "edit"
    if isinstance(request, UpscaleRequest) or getattr(request, "sd_upscale", 0):
        return "upscale"
    return "inpaint" if getattr(request, "inpaint", False) else "img2img"


@dataclass
class ShownResult:
    """A finished result as the compare view shows it."""

    before: QImage
    after: QImage
    caption: str
    result: TransformedImage


@dataclass
class LiveFrame:
    """The latest preview of a running job, over its input picture."""

    job_id: int
    before: QImage
    frame: QImage


def caption_for(result: TransformedImage) -> str:
    what = f"{Path(result.source).name} → {Path(result.path).name}" if result.path else \
        Path(result.source).name
    if result.seed is not None:
        what += f" · seed {result.seed}"
    return what


class ResultBook:
    """The last result and the live preview of each mode, and each open job's input pictures."""

    def __init__(self, read_image: Callable[[Path], QImage]) -> None:
        self._read = read_image
        self.shown: dict[str, ShownResult] = {}
        self.live: dict[str, LiveFrame] = {}
        self._inputs: dict[int, QImage] = {}
        self._masks: dict[int, QImage] = {}

    def forget_results(self) -> None:
        """A new picture was opened: its modes have no results yet."""
        self.shown.clear()
        self.live.clear()

    def start(self, job: JobSnapshot, before: QImage | None, mask: QImage | None) -> None:
        """``job`` was submitted; ``before`` is its input when it is the open picture (saves a
        read), ``mask`` the inpainting mask as painted."""
        mode = mode_of(job.request)
        self.shown.pop(mode, None)  # the new job's results replace the old ones on screen
        self.live.pop(mode, None)
        if before is not None and not before.isNull():
            self._inputs[job.id] = before
        if mask is not None and not mask.isNull():
            self._masks[job.id] = mask.copy()

    def finish(self, job: JobSnapshot) -> None:
        self._inputs.pop(job.id, None)
        self._masks.pop(job.id, None)
        mode = mode_of(job.request)
        live = self.live.get(mode)
        if live is not None and live.job_id == job.id:
            del self.live[mode]

    def frame(self, job: JobSnapshot, preview: Any) -> str | None:
        """Store a denoising preview of ``job``; returns its mode (None if unusable)."""
        before = self._input(job)
        if before is None:
            return None
        try:
            image = preview_to_qimage(preview, before.width(), before.height())
        except (ValueError, TypeError):
            return None
        mask = self._masks.get(job.id)
        if mask is not None:
            image = composite_preview(before, image, mask)
        mode = mode_of(job.request)
        self.live[mode] = LiveFrame(job.id, before, image)
        return mode

    def result(self, result: TransformedImage, after: QImage) -> ShownResult:
        """Store a finished result as its mode's; returns it."""
        mode = mode_of(result.request)
        before = self._read(Path(result.source)) if result.source else QImage()
        shown = ShownResult(before, after, caption_for(result), result)
        self.shown[mode] = shown
        live = self.live.get(mode)
        if live is not None:
            del self.live[mode]  # a late preview must not cover the finished image
        return shown

    def forget_path(self, path: Path) -> None:
        """The file of a result was deleted: stop showing it."""
        for mode, shown in list(self.shown.items()):
            if shown.result.path and Path(shown.result.path) == Path(path):
                del self.shown[mode]

    def _input(self, job: JobSnapshot) -> QImage | None:
        image = self._inputs.get(job.id)
        if image is None:
            source = getattr(job.request, "image", "")
            if not source:
                return None
            image = self._read(Path(source))
            if image.isNull():
                return None
            self._inputs[job.id] = image
        return image


def result_menu(parent: QWidget, shown: ShownResult, ctx: AppContext,
                on_deleted: Callable[[Path], None]) -> QMenu:
    """The right-click menu of a shown result: the same as Generate's and the Gallery's (copy,
    save as, open, show in folder, reuse parameters, send to Transform, delete)."""
    from studio.ui.widgets.image_actions import build_image_menu

    path = Path(shown.result.path)

    def reuse() -> None:
        from studio.media.transform_reuse import read_transform_reuse

        found = read_transform_reuse(path)
        if found is not None:
            ctx.openInWorkspace.emit("transform", found)

    return build_image_menu(parent, path, reuse=reuse, on_deleted=on_deleted,
                            send_to=lambda key, p: ctx.openInWorkspace.emit(key, Path(p)))
