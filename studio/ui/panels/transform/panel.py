"""The Transform workspace: CycleGAN translation, img2img (with outpainting), inpainting,
upscaling (an upscaler model, or SD upscale) and Edit with instructions (FLUX.1 Kontext,
Qwen-Image-Edit: the prompt says what to change) of an image or a folder.

Open or drop an image (or "Send to Transform" from Generate and Gallery: :meth:`receive`), pick a
mode tab, run. Results appear in a before/after compare (split line or side by side, zoom and pan
in sync; right-click for the image menu) and go into the outputs folder with their metadata; each
mode keeps its own last result (:mod:`studio.ui.panels.transform.results`). Inpainting paints the
mask on the picture (undo Ctrl+Z, redo Ctrl+Shift+Z / Ctrl+Y, brush size ``[`` / ``]``), shows the
job's preview inside the mask, then the result; "Edit mask" goes back to painting. img2img and
inpaint jobs report "Step n/N · it/s · ETA" as Generate does. A batch runs a folder: CycleGAN as
one job (progress per image), img2img as one job per image; cancel keeps what is done.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from PySide6.QtCore import QPoint, Qt, Signal, Slot
from PySide6.QtGui import QDragEnterEvent, QDropEvent, QImage, QImageReader, QKeySequence, QShortcut
from PySide6.QtWidgets import (
    QButtonGroup,
    QFileDialog,
    QFrame,
    QHBoxLayout,
    QLabel,
    QStackedWidget,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from studio.core.jobs import JobSnapshot, JobState
from studio.core.requests import TransformedImage, TransformRequest
from studio.core.wording import count_of
from studio.ui.context import AppContext
from studio.ui.panels.transform.compare_view import CompareView
from studio.ui.panels.transform.controls import CycleGANOptions, DiffusionOptions
from studio.ui.panels.transform.cyclegan_picker import CycleGANPicker
from studio.ui.panels.transform.results import ResultBook, ShownResult, mode_of, result_menu
from studio.ui.panels.transform.sidebar import TransformSidebar
from studio.ui.panels.transform.upscale_options import UpscaleOptions
from studio.ui.widgets.mask_canvas import BrushTools, MaskCanvas, brush_step
from studio.ui.widgets.model_picker import ModelPicker
from studio.ui.widgets.model_uses import for_edit, for_img2img
from studio.ui.widgets.open_jobs import OpenJobs
from studio.ui.widgets.preview import FrameThrottle, step_text
from studio.workers.job_bridge import QtJobHandle
from studio.workers.thumbnails import pil_to_qimage

if TYPE_CHECKING:
    from PySide6.QtWidgets import QMenu

    from studio.library.cyclegan_models import CycleGANModel
    from studio.media.transform_reuse import TransformReuse

log = logging.getLogger(__name__)

MODES = ("cyclegan", "img2img", "inpaint", "upscale", "edit")
PAGES = {"cyclegan": 0, "img2img": 1, "inpaint": 1, "upscale": 2, "edit": 1}
IMAGE_FILTER = "Images (*.png *.jpg *.jpeg *.webp *.bmp *.tif *.tiff)"
EMPTY_TEXT = "Drop an image or a folder here, or use Open image…"
# Checked segment buttons (Split / Side by side, Brush / Eraser) read as selected.
SEGMENT_STYLE = ("QToolButton:checked { background: rgba(124, 108, 255, 60);"
                 " border: 1px solid palette(highlight); }"
                 "QToolButton { padding: 5px 12px; }")


def read_qimage(path: str | Path) -> QImage:
    """The picture upright (EXIF orientation applied), as the pipelines see it."""
    reader = QImageReader(str(path))
    reader.setAutoTransform(True)
    return reader.read()


class TransformPanel(QWidget):
    """Image to image. ``receive(path)`` opens an image."""

    jobFinished = Signal(object)  # JobSnapshot of a job of this panel that ended

    def __init__(self, ctx: AppContext, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("transformPanel")
        self.setAcceptDrops(True)
        self.ctx = ctx
        self.image_path: Path | None = None
        self.batch: list[Path] = []
        self._frames = FrameThrottle(self._draw_frame, 1 / 30, self)
        self._open = OpenJobs(self._frames)  # my jobs not ended: handle, snapshot, step clock
        self._done_in_batch = 0
        self._batch_total = 0
        self._book = ResultBook(read_qimage)
        self._displayed: ShownResult | None = None  # the result on screen (its menu's file)
        self._inpaint_result = False  # inpaint mode shows the result / preview, not the canvas

        self.cyclegan = CycleGANPicker(ctx)
        self.cyclegan_options = CycleGANOptions()
        self.sd_picker = ModelPicker(ctx)
        # The sidebar is narrow: a shorter combo and button keep the row inside it.
        self.sd_picker.combo.setMinimumContentsLength(8)
        self.sd_picker.add_button.setText("Add…")
        self.sd_picker.add_button.setToolTip("Add a model folder or a .safetensors file")
        self.diffusion = DiffusionOptions()
        self.upscale = UpscaleOptions(ctx)
        self.compare = CompareView()
        self.canvas = MaskCanvas()
        self.brush = BrushTools()
        self._build()
        self._connect()
        self.set_mode("cyclegan")
        self.cyclegan.refresh()
        self.sd_picker.refresh()

    # -- layout ------------------------------------------------------------------------------
    def _build(self) -> None:
        sidebar = TransformSidebar(self.cyclegan, self.cyclegan_options, self.sd_picker,
                                   self.diffusion, self.upscale)
        for name in ("open_button", "folder_button", "source_label", "tabs", "pages",
                     "run_button", "cancel_button", "status", "error_label", "bar",
                     "sd_picker_home"):
            setattr(self, name, getattr(sidebar, name))

        self.split_button = QToolButton(text="Split")
        self.side_button = QToolButton(text="Side by side")
        group = QButtonGroup(self)
        for b in (self.split_button, self.side_button):
            b.setCheckable(True)
            group.addButton(b)
        self.split_button.setChecked(True)
        self.caption = QLabel()
        self.caption.setProperty("muted", True)
        self.edit_mask_button = QToolButton(text="Edit mask")
        self.edit_mask_button.setToolTip("Back to painting the mask")
        toolbar = QHBoxLayout()
        toolbar.setSpacing(6)
        toolbar.addWidget(self.split_button)
        toolbar.addWidget(self.side_button)
        toolbar.addSpacing(12)
        toolbar.addWidget(self.caption, 1)
        toolbar.addWidget(self.edit_mask_button)
        for b in (self.split_button, self.side_button, self.brush.brush, self.brush.eraser):
            b.setStyleSheet(SEGMENT_STYLE)
        self.compare_tools = QWidget()
        self.compare_tools.setLayout(toolbar)
        self.compare_tools.layout().setContentsMargins(0, 0, 0, 0)

        self.empty = QLabel(EMPTY_TEXT)
        self.empty.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.empty.setObjectName("dropZone")
        self.empty.setStyleSheet(
            "#dropZone { border: 2px dashed palette(mid); border-radius: 14px;"
            " color: palette(placeholder-text); font-size: 15px; }")
        self.view_stack = QStackedWidget()
        self.view_stack.addWidget(self.empty)
        self.view_stack.addWidget(self.compare)
        self.view_stack.addWidget(self.canvas)
        right = QWidget()
        right_col = QVBoxLayout(right)
        right_col.setContentsMargins(16, 16, 16, 12)
        right_col.setSpacing(8)
        right_col.addWidget(self.compare_tools)
        right_col.addWidget(self.brush)
        right_col.addWidget(self.view_stack, 1)

        line = QFrame()
        line.setFrameShape(QFrame.Shape.VLine)
        line.setObjectName("sidebarDivider")
        line.setStyleSheet("#sidebarDivider { color: palette(mid); }")
        outer = QHBoxLayout(self)
        outer.setContentsMargins(0, 0, 0, 0)
        outer.setSpacing(0)
        outer.addWidget(sidebar)
        outer.addWidget(line)
        outer.addWidget(right, 1)

    def _connect(self) -> None:
        self.ctx.libraryChanged.connect(lambda: self.cyclegan.refresh())  # a CycleGAN from Train
        self.open_button.clicked.connect(self.open_dialog)
        self.folder_button.clicked.connect(self.folder_dialog)
        self.tabs.currentChanged.connect(lambda i: self.set_mode(MODES[i]))
        self.tabs.currentChanged.connect(lambda _i: self.error_label.hide())
        self.run_button.clicked.connect(self.run)
        self.cancel_button.clicked.connect(self.cancel)
        self.split_button.toggled.connect(
            lambda on: self.compare.set_mode("split" if on else "side"))
        self.cyclegan.modelChanged.connect(self._cyclegan_changed)
        self.brush.connect_canvas(self.canvas)
        self.brush.undo.clicked.connect(self.undo_mask)
        self.brush.redo.clicked.connect(self.redo_mask)
        self.brush.show_result.clicked.connect(lambda: self.show_inpaint_result(True))
        self.edit_mask_button.clicked.connect(lambda: self.show_inpaint_result(False))
        self.canvas.maskChanged.connect(self._mask_changed)
        self.compare.contextMenuRequested.connect(self._result_context_menu)
        shortcuts = [(("Ctrl+Return", "Ctrl+Enter"), self.run), (("Esc",), self.cancel),
                     ((QKeySequence.StandardKey.Undo,), self.undo_mask),
                     (("Ctrl+Shift+Z", "Ctrl+Y"), self.redo_mask),
                     (("[",), lambda: self.step_brush(False)),
                     (("]",), lambda: self.step_brush(True))]
        for keys, slot in shortcuts:
            for key in keys:
                QShortcut(QKeySequence(key), self, slot,
                          context=Qt.ShortcutContext.WidgetWithChildrenShortcut)

    # -- public API --------------------------------------------------------------------------
    @property
    def mode(self) -> str:
        return MODES[self.tabs.currentIndex()]

    def set_mode(self, mode: str) -> None:
        if self.tabs.currentIndex() != MODES.index(mode):
            self.tabs.setCurrentIndex(MODES.index(mode))  # calls back here
            return
        self.pages.setCurrentIndex(PAGES[mode])
        self.diffusion.set_inpaint(mode == "inpaint", edit=mode == "edit")
        if mode != "cyclegan":  # the models that cannot do this mode's job are greyed out
            self.sd_picker.set_usability(for_edit if mode == "edit" else for_img2img)
        # One model picker: on the img2img page, or in the Upscale tab (SD upscale refines with
        # it); moving it keeps its scan, its choice and the model loaded for both.
        if mode == "upscale":
            self.upscale.sd.model_slot.addWidget(self.sd_picker)
        elif mode in ("img2img", "inpaint", "edit"):
            self.sd_picker_home.insertWidget(1, self.sd_picker)
        if mode == "upscale":
            self.upscale.refresh()  # a model copied into the folder shows up on coming back
        if not self._open:
            self.status.setText("")  # "Done · …" spoke of another mode's job
        self.run_button.setText({"cyclegan": "Transform", "img2img": "Generate",
                                 "inpaint": "Inpaint", "upscale": "Upscale",
                                 "edit": "Edit"}[mode])
        self._update_view()

    def show_inpaint_result(self, show: bool) -> None:
        """Inpaint mode: show the last result (or the running job's preview), or the mask."""
        self._inpaint_result = show
        self._update_view()

    # -- painting the mask -------------------------------------------------------------------
    def _painting_mode(self) -> bool:
        if self.mode != "inpaint" or self.image_path is None:
            return False
        if self.view_stack.currentWidget() is not self.canvas:
            self.show_inpaint_result(False)  # undo / brush keys act on the mask: show it
        return True

    @Slot()
    def undo_mask(self) -> bool:
        return self._painting_mode() and self.canvas.undo()

    @Slot()
    def redo_mask(self) -> bool:
        return self._painting_mode() and self.canvas.redo()

    def step_brush(self, bigger: bool) -> None:
        """``]`` makes the brush larger, ``[`` smaller."""
        if self._painting_mode():
            self.brush.size.setValue(brush_step(self.brush.size.value(), bigger))

    def receive(self, payload: object) -> None:
        """Open an image sent from another workspace (a path, or an
        :class:`~studio.ui.widgets.image_actions.OpenInMode` from "Upscale…": in that mode), or
        repeat a result's settings (a :class:`~studio.media.transform_reuse.TransformReuse`,
        from "Reuse parameters")."""
        from studio.media.transform_reuse import TransformReuse
        from studio.ui.widgets.image_actions import OpenInMode

        if isinstance(payload, TransformReuse):
            self.apply_reuse(payload)
        elif isinstance(payload, OpenInMode):
            if self.open_image(Path(payload.path)):
                self.set_mode(payload.mode)
        elif isinstance(payload, (str, Path)):
            self.open_image(Path(payload))

    def apply_reuse(self, reuse: TransformReuse) -> bool:
        """Open the recorded picture (and mask) in the recorded mode with every setting of the
        request (:func:`studio.ui.panels.transform.reuse.restore`); what could not be restored
        is said in the status line."""
        from studio.ui.panels.transform.reuse import restore

        return restore(self, reuse)

    def open_image(self, path: Path) -> bool:
        image = read_qimage(path)
        if image.isNull():
            self._show_error(f"{Path(path).name} is not an image Studio can open.")
            return False
        self.image_path = Path(path)
        self.batch = []
        self._before = image
        self._book.forget_results()  # the results shown so far were of another picture
        self._inpaint_result = False
        self.compare.set_images(image, None)
        self.canvas.set_picture(image)
        self.source_label.setText(f"{self.image_path.name} · {image.width()}×{image.height()}")
        self.caption.setText("")
        self.error_label.hide()
        self._update_view()
        return True

    def open_folder(self, folder: Path) -> int:
        """Choose every image in ``folder`` as a batch; returns how many there are."""
        from studio.core.jobs import UserFacingError
        from studio.media.images_in import list_images

        try:
            files = list_images(folder)
        except UserFacingError as exc:
            self._show_error(str(exc))
            return 0
        if not files:
            self._show_error(f"{folder} holds no PNG, JPEG, WebP, BMP or TIFF images.")
            return 0
        self.open_image(files[0])
        self.batch = files
        self.source_label.setText(f"Batch: {count_of(len(files), 'image')} in {folder.name}")
        return len(files)

    def open_dialog(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Open image", str(Path.home()), IMAGE_FILTER)
        if path:
            self.open_image(Path(path))

    def folder_dialog(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Choose a folder of images",
                                                  str(Path.home()))
        if folder:
            self.open_folder(Path(folder))

    @Slot()
    def run(self) -> list[QtJobHandle]:
        """Submit the job(s) for the current mode; returns them (empty on bad input)."""
        self.error_label.hide()
        inputs = self.batch or ([self.image_path] if self.image_path else [])
        if not inputs:
            self._show_error("Open an image first.")
            return []
        try:
            jobs = self._submit(inputs)
        except (ValueError, KeyError, RuntimeError) as exc:
            self._show_error(str(exc))
            return []
        self._done_in_batch, self._batch_total = 0, len(inputs)
        mask = self.canvas.mask() if self.mode == "inpaint" else None
        for job in jobs:
            job.changed.connect(self._on_job_changed)
            job.progress.connect(self._on_progress)
            job.partial.connect(self._on_partial)
            job.ended.connect(self._finish)
            snapshot = job.snapshot
            self._open.add(job, snapshot)
            own = getattr(snapshot.request, "image", "") == str(self.image_path)
            self._book.start(snapshot, self._before if own else None, mask)
        if self.mode == "inpaint":
            self._inpaint_result = True  # watch the job: its preview, then its result
        self._update_view()
        self.cancel_button.setEnabled(True)
        self.bar.setRange(0, 0)
        self.bar.show()
        self.status.setText("Queued…")
        return jobs

    @Slot()
    def cancel(self) -> None:
        self._open.cancel_all()

    def open_jobs(self) -> list[JobSnapshot]:
        return self._open.snapshots()

    def shutdown(self) -> None:
        self._frames.stop()
        self.cyclegan.cancel_download()
        self.cyclegan.shutdown()
        self.sd_picker.shutdown()
        self.upscale.shutdown()

    # -- submitting --------------------------------------------------------------------------
    def _submit(self, inputs: list[Path]) -> list[QtJobHandle]:
        if self.mode == "cyclegan":
            model = self.cyclegan.current()
            if model is None:
                raise ValueError("Choose a CycleGAN model (or download one from the list).")
            request = TransformRequest(model=str(model.path), inputs=[str(p) for p in inputs],
                                       direction=self.cyclegan_options.direction.currentData(),
                                       max_side=self.cyclegan_options.max_side.value())
            request.validate()
            title = f"{model.name}: {inputs[0].name}" + (f" +{len(inputs) - 1}"
                                                         if len(inputs) > 1 else "")
            return [self.ctx.bridge.submit(request, title=title)]
        if self.mode == "upscale" and not self.upscale.sd_mode:
            request = self.upscale.request([str(p) for p in inputs])
            title = f"{self.upscale.model.currentText()}: {inputs[0].name}" + (
                f" +{len(inputs) - 1}" if len(inputs) > 1 else "")
            return [self.ctx.bridge.submit(request, title=title)]
        model = self.sd_picker.current_model()
        if not model:
            raise ValueError("Choose the text-to-image model SD upscale refines with."
                             if self.mode == "upscale" else "Choose a text-to-image model.")
        mask = ""
        if self.mode == "inpaint":
            if not self.canvas.has_mask():
                raise ValueError("Paint over the area to repaint first.")
            # The mask is kept with the job (and named in the output's metadata).
            folder = self.ctx.paths.data_dir / "masks"
            mask = str(self.canvas.save_mask(folder / f"mask-{time.strftime('%Y%m%d-%H%M%S')}-"
                                             f"{int(time.time() * 1000) % 1000:03d}.png"))
        jobs = []
        for path in inputs:
            request = self.diffusion.request(model, str(path), mask, edit=self.mode == "edit")
            if self.mode == "upscale":  # SD upscale: the img2img settings, refined in tiles
                request = self.upscale.sd.request(request)
            request.validate()
            title = (request.prompt[:40] or "(no prompt)") + f" · {path.name}"
            jobs.append(self.ctx.bridge.submit(request, title=title))
        return jobs

    # -- job events --------------------------------------------------------------------------
    @Slot(object)
    def _on_job_changed(self, job: JobSnapshot) -> None:
        if job.finished or self._open.update(job) is None:  # the end comes through _finish
            return
        if job.state is JobState.RUNNING and job.message:
            self.status.setText(job.message)

    @Slot(object, int, int, object)
    def _on_progress(self, job: JobSnapshot, step: int, total: int, preview: Any) -> None:
        record = self._open.update(job)
        if record is None:
            return
        if total > 0:
            self.bar.setRange(0, total)
            self.bar.setValue(step)
        if job.kind == "img2img" and total > 0:
            # The same step line as Generate's: "Step 12/20 · 3.4 it/s · ETA 00:02".
            record.clock.tick(step)
            text = step_text(step, total, record.clock)
            if self._batch_total > 1:
                text = f"Image {min(self._done_in_batch + 1, self._batch_total)} of " \
                       f"{self._batch_total} · {text}"
            self.status.setText(text)
        if preview is not None:
            self._frames.offer(job.id, (job, preview))

    def _draw_frame(self, job_id: int, frame: tuple[JobSnapshot, Any]) -> None:
        job, preview = frame
        if job_id not in self._open:
            return
        mode = self._book.frame(job, preview)
        if mode is not None and mode == self.mode:
            self._update_view()

    @Slot(object, object)
    def _on_partial(self, job: JobSnapshot, result: object) -> None:
        if job.id not in self._open or not isinstance(result, TransformedImage):
            return
        self._frames.drop(job.id)
        result.timeline = None  # Transform shows no timeline (Generate does): memory back
        self._done_in_batch += 1
        after = pil_to_qimage(result.image) if result.image is not None else \
            QImage(str(result.path))
        self.last_result = result
        self._book.result(result, after)
        if mode_of(result.request) == "inpaint":
            self._inpaint_result = True
        self._update_view()
        if self._batch_total > 1 or len(self._open) > 1:
            self.status.setText(f"{self._done_in_batch} of {self._batch_total} done")
        if result.warnings:
            self.status.setText(" ".join(result.warnings))
        self.ctx.announce_output(result.path)

    @Slot(object)
    def _finish(self, job: JobSnapshot) -> None:
        """The job ended (its handle's last signal: every partial came before it)."""
        self._open.remove(job.id)
        self._book.finish(job)
        if job.state is JobState.FAILED:
            self._show_error(job.error or "The job failed.")
        if not self._open:
            self.bar.hide()
            self.cancel_button.setEnabled(False)
            kept = count_of(self._done_in_batch, "image")
            if job.state is JobState.CANCELLED:
                self.status.setText(f"Cancelled — {kept} kept")
            elif job.state is JobState.DONE:
                seconds = max(0.0, job.ended - job.started)
                self.status.setText(f"Done · {kept} in {seconds:.1f} s")
        self._update_view()
        self.jobFinished.emit(job)

    # -- the result's menu -------------------------------------------------------------------
    def result_menu(self) -> QMenu | None:
        """The right-click menu of the result on screen (built, not shown); None when the view
        shows no finished result (only the picture, or a preview)."""
        shown = self._displayed
        if shown is None or not shown.result.path:
            return None
        return result_menu(self, shown, self.ctx, self._result_deleted)

    @Slot(QPoint)
    def _result_context_menu(self, pos: QPoint) -> None:
        menu = self.result_menu()
        if menu is not None:
            self.context_menu = menu  # kept while it is open (popup returns at once)
            menu.popup(pos)

    def _result_deleted(self, path: Path) -> None:
        self._book.forget_path(path)
        self._update_view()

    # -- helpers -----------------------------------------------------------------------------
    _before: QImage | None = None
    last_result: TransformedImage | None = None
    context_menu: QMenu | None = None  # the result menu last opened by a right-click

    def _update_view(self) -> None:
        """Show what the current mode has: the mask canvas (inpaint, painting), else the compare
        with the mode's running preview, its last result or the picture alone."""
        mode = self.mode
        inpaint = mode == "inpaint"
        has_result = "inpaint" in self._book.shown or "inpaint" in self._book.live or any(
            mode_of(j.request) == "inpaint" for j in self._open.snapshots())
        painting = inpaint and not (self._inpaint_result and has_result)
        has_image = self.image_path is not None
        self.brush.setVisible(painting)
        self.brush.show_result.setVisible("inpaint" in self._book.shown)
        self.compare_tools.setVisible(not painting)
        self.edit_mask_button.setVisible(inpaint and not painting and has_image)
        self._displayed = None
        if not has_image:
            self.view_stack.setCurrentWidget(self.empty)
            return
        if painting:
            self.view_stack.setCurrentWidget(self.canvas)
            return
        self.view_stack.setCurrentWidget(self.compare)
        live, shown = self._book.live.get(mode), self._book.shown.get(mode)
        if live is not None:
            self.compare.set_images(live.before, live.frame, keep_view=True)
            self.caption.setText("Preview of the image being made…")
        elif shown is not None:
            self.compare.set_images(shown.before, shown.after, keep_view=True)
            self.caption.setText(shown.caption)
            self._displayed = shown
        else:
            self.compare.set_images(self._before, None, keep_view=True)
            self.caption.setText("")

    def _cyclegan_changed(self, model: CycleGANModel | None) -> None:
        self.cyclegan_options.set_directions(list(model.directions) if model else [])

    def _mask_changed(self) -> None:
        self.error_label.hide()
        self.brush.coverage.setText(f"{self.canvas.coverage():.0%} of the image masked")

    def _show_error(self, text: str) -> None:
        self.error_label.setText(text)
        self.error_label.show()

    # -- drag and drop -----------------------------------------------------------------------
    def dragEnterEvent(self, event: QDragEnterEvent) -> None:  # noqa: N802 - Qt
        if any(u.isLocalFile() for u in event.mimeData().urls()):
            event.acceptProposedAction()

    def dropEvent(self, event: QDropEvent) -> None:  # noqa: N802 - Qt
        paths = [Path(u.toLocalFile()) for u in event.mimeData().urls() if u.isLocalFile()]
        if not paths:
            return
        if paths[0].is_dir():
            self.open_folder(paths[0])
        else:
            self.open_image(paths[0])
        event.acceptProposedAction()
