"""The Generate workspace: parameters on the left, the live preview and the results on the right.

It submits requests through ``ctx.bridge`` and follows each job through its own handle: its status
lines, step previews (at most ~30 frames a second), finished images and its end.
Generate while a job runs queues another one; Esc cancels the one running.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeAlias

from PySide6.QtCore import Qt, Signal, Slot
from PySide6.QtGui import QImage, QKeySequence, QShortcut
from PySide6.QtWidgets import (
    QFrame,
    QHBoxLayout,
    QStackedWidget,
    QVBoxLayout,
    QWidget,
)

from studio.core.jobs import CANCELLING, JobSnapshot, JobState, UserFacingError
from studio.core.requests import GanWalkRequest, GeneratedImage, Txt2ImgRequest
from studio.core.wording import count_of
from studio.library import preprocessor_models
from studio.library.controlnets import find_controlnets
from studio.library.families import FAMILIES
from studio.library.upscalers import find_upscalers
from studio.ui.context import AppContext
from studio.ui.panels.generate.controls import GenerateControls
from studio.ui.panels.generate.empty_state import NoModelsState
from studio.ui.panels.generate.last_request import load_last_request, save_last_request
from studio.ui.panels.generate.results_strip import ResultsStrip
from studio.ui.panels.generate.sidebar import GenerateSidebar
from studio.ui.panels.generate.size_presets import DEFAULT_SIZE, presets_for
from studio.ui.panels.generate.timeline import TimelineScrubber, TimelineStore
from studio.ui.widgets.basics import section_label
from studio.ui.widgets.model_picker import ModelPicker, Scanner
from studio.ui.widgets.model_uses import for_generate
from studio.ui.widgets.open_jobs import OpenJobs
from studio.ui.widgets.preview import (
    FrameThrottle,
    PreviewArea,
    preview_to_qimage,
)
from studio.workers.job_bridge import QtJobHandle
from studio.workers.lanes import Calls
from studio.workers.thumbnails import pil_to_qimage

if TYPE_CHECKING:
    from studio.core.config import Paths, Settings
    from studio.library.entry import LibraryEntry
    from studio.media.timeline import TimelineFrame
    from studio.ui.widgets.download_dialog import DownloadDialog
    from studio.ui.widgets.model_picker import PickedModel

log = logging.getLogger(__name__)

FRAME_INTERVAL_S = 1 / 30  # previews arriving faster than this are dropped (the latest wins)
LORA_RESCAN_S = 10.0  # coming back to the workspace looks for LoRAs again after this long

LoraScanner: TypeAlias = "Callable[[Settings, Paths], list[LibraryEntry]]"


def default_lora_scanner(settings: Settings, paths: Paths) -> list[LibraryEntry]:
    """The library's LoRAs (a disk scan: run it off the GUI thread)."""
    from studio.library.catalog import list_models

    return [e for e in list_models(settings, paths) if e.kind == "lora"]


def job_title(request: Txt2ImgRequest) -> str:
    prompt = " ".join(request.prompt.split())
    if not prompt:
        return "Image (no prompt)"
    return prompt if len(prompt) <= 48 else prompt[:47].rstrip() + "…"


class GeneratePanel(QWidget):
    """Text to image. ``receive(Txt2ImgRequest)`` fills the form ("reuse parameters")."""

    #: A job of this panel ended (its JobSnapshot); handy for tests and the status bar.
    jobFinished = Signal(object)

    def __init__(self, ctx: AppContext, parent: QWidget | None = None, *,
                 scanner: Scanner | None = None, lora_scanner: LoraScanner | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("generatePanel")
        self.ctx = ctx
        self._calls = Calls(self)  # the LoRA scan
        # My jobs not ended yet, in submission order: their handles, and the latest snapshot each
        # handle delivered (what this panel shows, never ahead of the events it has handled).
        self._frames = FrameThrottle(self._draw_frame, FRAME_INTERVAL_S, self)
        self._open = OpenJobs(self._frames)
        self._applying = False
        self._restored = False
        self._scanned_once = False
        self._displayed_path: str | None = None
        self._lora_scanner = lora_scanner or default_lora_scanner
        self._lora_scanning = False
        self._lora_scanned_at = 0.0
        self.lora_scans = 0  # finished LoRA scans (tests wait on it)
        self.download_dialog: DownloadDialog | None = None  # built on first use

        self.picker = ModelPicker(ctx, scanner=scanner)
        self.picker.set_usability(for_generate)  # instruction editors belong to Transform
        self.controls = GenerateControls()
        self.controls.controlnet.set_current_result(lambda: self._displayed_path or "")
        self.controls.controlnet.set_scribble_place(
            lambda: (self.controls.width_box.value(), self.controls.height_box.value()),
            self.ctx.paths.data_dir / "controls")
        self.preview = PreviewArea()
        # The denoising timeline of the image shown, under it (the last few images' are kept)
        self.timeline = TimelineScrubber()
        self._timelines = TimelineStore()
        self._shown_image = QImage()
        self._shown_caption = ""
        self.strip = ResultsStrip()
        self.empty = NoModelsState()
        self._build()
        self._connect()
        self._restore_last_request()
        self.empty.set_models_dir(ctx.paths.models_dir)
        self.controls.loras.set_models_dir(ctx.paths.models_dir)
        self._model_places = self._places(ctx.settings)
        self.picker.refresh()
        self.refresh_loras()

    # -- layout ------------------------------------------------------------------------------
    def _build(self) -> None:
        side = GenerateSidebar(self.picker, self.controls)
        self.error_label = side.error_label
        self.generate_button = side.generate_button
        self.cancel_button = side.cancel_button
        self.queue_label = side.queue_label

        right = QWidget()
        right_col = QVBoxLayout(right)
        right_col.setContentsMargins(16, 16, 16, 12)
        right_col.setSpacing(8)
        right_col.addWidget(self.preview, 1)
        right_col.addWidget(self.timeline)
        self.strip_label = section_label("This session")
        right_col.addWidget(self.strip_label)
        right_col.addWidget(self.strip)
        self._set_strip_visible(False)

        main = QWidget()
        row = QHBoxLayout(main)
        row.setContentsMargins(0, 0, 0, 0)
        row.setSpacing(0)
        row.addWidget(side)
        line = QFrame()
        line.setFrameShape(QFrame.Shape.VLine)
        line.setObjectName("sidebarDivider")
        line.setStyleSheet("#sidebarDivider { color: palette(mid); }")
        row.addWidget(line)
        row.addWidget(right, 1)

        self.stack = QStackedWidget()
        self.stack.addWidget(main)
        self.stack.addWidget(self.empty)
        outer = QVBoxLayout(self)
        outer.setContentsMargins(0, 0, 0, 0)
        outer.addWidget(self.stack)

    def _connect(self) -> None:
        self.generate_button.clicked.connect(self.generate)
        self.controls.walk_button.clicked.connect(self.walk)
        self.cancel_button.clicked.connect(self.cancel_current)
        for keys in ("Ctrl+Return", "Ctrl+Enter"):
            QShortcut(QKeySequence(keys), self, self.generate,
                      context=Qt.ShortcutContext.WidgetWithChildrenShortcut)
        QShortcut(QKeySequence("Esc"), self, self.cancel_current,
                  context=Qt.ShortcutContext.WidgetWithChildrenShortcut)
        self.ctx.settingsChanged.connect(self._on_settings_changed)
        self.ctx.libraryChanged.connect(self.picker.refresh)  # e.g. a GAN exported from Train
        self.picker.scanFinished.connect(self._on_scan_finished)
        self.picker.modelChanged.connect(self._on_model_changed)
        self.picker.combo.activated.connect(lambda _i: self._adapt_size_to_model())
        self.empty.addModelRequested.connect(self.picker.add_button.showMenu)
        self.empty.rescanRequested.connect(self.picker.refresh)
        self.empty.downloadRequested.connect(self.open_download)
        self.strip.resultActivated.connect(self._show_result)
        self.timeline.frameChosen.connect(self._scrub)
        self.timeline.saved.connect(
            lambda path: self.preview.show_status(f"Timeline saved: {path}"))
        self.timeline.failed.connect(self.preview.show_error)
        self.strip.reuseRequested.connect(
            lambda request: self.ctx.openInWorkspace.emit("generate", request))
        self.strip.sendRequested.connect(self.ctx.openInWorkspace.emit)
        self.controls.changed.connect(lambda: self.error_label.hide())
        self.controls.loras.rescanRequested.connect(self.refresh_loras)

    # -- public API --------------------------------------------------------------------------
    def receive(self, payload: object) -> None:
        """Fill the form from a request (or its dict), selecting its model ("reuse parameters")."""
        if isinstance(payload, dict):
            payload = Txt2ImgRequest.from_dict(payload)
        if not isinstance(payload, Txt2ImgRequest):
            log.warning("generate panel cannot use %r", type(payload).__name__)
            return
        self._applying = True
        try:
            self.controls.set_request(payload, seed_mode="fixed")
            if payload.model:
                self.picker.select_model(payload.model)
        finally:
            self._applying = False
        self.error_label.hide()

    def build_request(self) -> Txt2ImgRequest:
        """The request Generate would submit now (with the seed resolved)."""
        return self.controls.request(self.picker.current_model(), self.controls.resolve_seed())

    @Slot()
    def walk(self) -> QtJobHandle | None:
        """A GAN's latent walk from the seed to "Walk to seed" (the CLI's gan-walk job): its
        frames and a GIF, saved and shown in the strip and the gallery."""
        base = self.build_request()
        request = GanWalkRequest(model=base.model, seed=base.seed,
                                 seed_to=self.controls.walk_to.seed(),
                                 frames=self.controls.walk_frames.value(), width=base.width,
                                 height=base.height, gif=True)
        try:
            request.validate()
        except ValueError as exc:
            self._show_error(str(exc))
            return None
        return self._submit(request, f"latent walk {request.seed}→{request.seed_to}")

    @Slot()
    def generate(self) -> QtJobHandle | None:
        """Validate and submit; shows the problem under the button instead when invalid."""
        request = self.build_request()
        try:
            request.validate()
            if self.picker.scanning and not request.model:
                raise ValueError("Still looking for models — try again in a moment.")
            lora_problem = ("" if self.controls.seed_alone or self.controls.pixel_model
                            else self.controls.loras.problem())
            if lora_problem:
                raise ValueError(lora_problem)
        except ValueError as exc:
            self._show_error(str(exc))
            return None
        self._save_last_request(request)
        return self._submit(request, job_title(request))

    def _submit(self, request: Txt2ImgRequest | GanWalkRequest, title: str) -> QtJobHandle | None:
        try:
            job = self.ctx.bridge.submit(request, title=title)
        except (KeyError, TypeError, RuntimeError) as exc:
            self._show_error(f"Cannot start: {exc}")
            return None
        job.changed.connect(self._on_job_changed)
        job.progress.connect(self._on_progress)
        job.partial.connect(self._on_partial)
        job.ended.connect(self._finish)
        self.error_label.hide()
        self.controls.note_seed_used(request.seed)
        self._open.add(job, job.snapshot)
        if self._displayed_job() is None or len(self._open) == 1:
            waiting = self.ctx.bridge.queue_length - 1
            self.preview.show_message("Starting…" if waiting <= 0 else
                                      f"Queued — waiting for {waiting} job(s) to finish")
        self._update_queue()
        return job

    @Slot()
    def cancel_current(self) -> None:
        """Cancel the job running now (or, if none of mine runs or it is stopping already, the
        next queued one). The job says "Cancelling…" at once, until it stops."""
        job = next((j for j in self._open.snapshots() if not j.cancelling), None)
        running = self._displayed_job()
        if running is not None and not running.cancelling:
            job = running
        record = self._open.get(job.id) if job is not None else None
        if record is not None:
            record.handle.cancel()

    def cancel_all(self) -> None:
        self._open.cancel_all()

    def open_jobs(self) -> list[JobSnapshot]:
        return self._open.snapshots()

    def refresh_loras(self) -> None:
        """Look for the library's LoRAs off the GUI thread; the LoRA menu fills when done."""
        if self._lora_scanning:
            return
        self._lora_scanning = True
        self.controls.loras.set_library(None)
        settings, paths, scanner = self.ctx.settings, self.ctx.paths, self._lora_scanner
        self._calls.run(lambda: list(scanner(settings, paths)),
                          lambda entries: self._loras_found(entries, ""),
                          lambda message: self._loras_found([], message))
        # The hires fix's upscaler models, found the same way and at the same moments.
        self._calls.run(lambda: [u.name for u in find_upscalers(settings, paths)],
                        self.controls.hires.set_models, lambda _message: None)
        self._calls.run(lambda: [(c.name, c.family, c.preprocessor,
                                 "T2I-Adapter" if c.adapter else "")
                                for c in find_controlnets(settings, paths)],
                        self.controls.controlnet.set_models, lambda _message: None)
        self._calls.run(preprocessor_models.missing,
                        self.controls.controlnet.set_missing_preprocessors, lambda _message: None)

    def _loras_found(self, entries: list, error: str) -> None:
        self._lora_scanning = False
        self._lora_scanned_at = time.monotonic()
        self.controls.loras.set_library(entries, error)
        self.lora_scans += 1

    def showEvent(self, event) -> None:  # noqa: N802 - Qt override
        super().showEvent(event)
        # A LoRA imported in the Models workspace (or copied into the folder) shows up when the
        # user comes back here, without a button press.
        if self.lora_scans and time.monotonic() - self._lora_scanned_at > LORA_RESCAN_S:
            self.refresh_loras()

    @Slot()
    def open_download(self) -> DownloadDialog:
        """The built-in download dialog, with an image model chosen; the picker looks again
        when a download has arrived."""
        from studio.ui.widgets.download_dialog import DownloadDialog, wants_fp16

        if self.download_dialog is None:
            self.download_dialog = DownloadDialog(self.ctx,
                                                  wants_fp16(self.ctx, self.window()), self)
            self.download_dialog.downloaded.connect(lambda _folder: self.picker.refresh())
        self.download_dialog.fp16 = wants_fp16(self.ctx, self.window())
        self.download_dialog.prefer_kind("image")
        self.download_dialog.show()
        self.download_dialog.raise_()
        return self.download_dialog

    def shutdown(self) -> None:
        """Wait for the background model scan (call before the context goes away); a download
        stops (its partial files stay for a resume)."""
        self._frames.stop()
        self.timeline.wait()
        if self.download_dialog is not None:
            self.download_dialog.shutdown()
        self.picker.shutdown()
        self._calls.wait(10_000)

    # -- job events (each from the handle of a job of mine) -------------------------------------
    def _displayed_job(self) -> JobSnapshot | None:
        running = self._open.running()
        return running[0] if running else None

    @Slot(object)
    def _on_job_changed(self, job: JobSnapshot) -> None:
        if job.finished:  # the end comes through _finish
            return
        record = self._open.update(job)
        if record is None:
            return
        if job.state is JobState.RUNNING and not record.framed:
            self.preview.show_message(job.message or "Starting…")
        elif job.cancelling and job.id == getattr(self._displayed_job(), "id", None):
            self.preview.show_note(CANCELLING)
        self._update_queue()

    @Slot(object, int, int, object)
    def _on_progress(self, job: JobSnapshot, step: int, total: int, preview: Any) -> None:
        record = self._open.update(job)
        if record is None:
            return
        record.clock.tick(step)
        self._frames.offer(job.id, (job, step, total, preview))

    def _draw_frame(self, job_id: int, frame: tuple[JobSnapshot, int, int, Any]) -> None:
        job, step, total, preview = frame
        record = self._open.get(job_id)
        if record is None:
            return
        image = None
        if preview is not None:
            try:
                image = preview_to_qimage(preview, job.request.width, job.request.height)
            except (ValueError, TypeError) as exc:
                log.debug("unusable preview: %s", exc)
        record.framed = True
        self._displayed_path = None
        self.timeline.clear()  # the picture is a live preview now
        self.preview.show_frame(image, step, total, record.clock, job.request.count,
                                note=CANCELLING if record.snapshot.cancelling else "",
                                steps=job.request.steps)

    @Slot(object, object)
    def _on_partial(self, job: JobSnapshot, result: object) -> None:
        if not isinstance(result, GeneratedImage):
            return
        self._frames.drop(job.id)  # a late preview frame must not cover the finished image
        # The timeline stays with this panel only (its last few images), not in the strip or
        # the job's snapshots, so its memory is bounded and goes with it.
        timeline, result.timeline = result.timeline, None
        if timeline is not None and result.path:
            self._timelines.add(result.path, timeline)
        image = QImage()
        if result.image is not None:
            image = pil_to_qimage(result.image)
        elif result.path:
            image = QImage(str(result.path))
        self._set_strip_visible(True)
        self.strip.add_result(result, image)
        self._display_result(result, image)
        record = self._open.get(job.id)
        if record is not None:
            record.framed = False  # the next image of the batch starts from its own frames
        self.ctx.announce_output(result.path)

    @Slot(object)
    def _finish(self, job: JobSnapshot) -> None:
        """The job ended (its handle's last signal: every partial came before it)."""
        self._open.remove(job.id)
        kept = len(job.partials)
        if job.state is JobState.FAILED:
            self.preview.show_error(job.error or job.message or "The job failed.")
        elif job.state is JobState.CANCELLED:
            self.preview.show_status(f"Cancelled — {kept} image{'s' if kept != 1 else ''} kept")
            if not kept and not self._displayed_path:
                self.preview.view.clear()
                self.preview.view.set_placeholder("Cancelled")
        elif job.state is JobState.DONE and kept > 1:
            seconds = max(0.0, job.ended - job.started)
            self.preview.show_status(f"Done · {count_of(kept, 'image')} in {seconds:.1f} s")
        self._update_queue()
        self.jobFinished.emit(job)

    # -- helpers -----------------------------------------------------------------------------
    def _show_result(self, result: GeneratedImage) -> None:
        if result is None or (self._displayed_path and str(result.path) == self._displayed_path):
            return
        self._display_result(result, QImage(str(result.path)) if result.path else QImage())

    def _display_result(self, result: GeneratedImage, image: QImage) -> None:
        r = result.request
        caption = f"Seed {result.seed} · {r.width}×{r.height} · {count_of(r.steps, 'step')}"
        if result.seed_alone:  # a GAN: its own size enlarged, no steps
            caption = f"Seed {result.seed} · {image.width()}×{image.height()} · GAN"
        if r.count > 1:
            caption += f" · image {result.index + 1} of {r.count}"
        if image.isNull():
            self.timeline.clear()
            self.preview.show_error(f"Cannot read {result.path}")
            return
        self._displayed_path = str(result.path) if result.path else None
        self.preview.show_image(image, caption, list(result.warnings))
        self._shown_image, self._shown_caption = image, caption
        self.timeline.set_timeline(self._timelines.get(result.path), result.path)

    def _scrub(self, frame: TimelineFrame, caption: str) -> None:
        """Show a frame of the shown image's timeline in its place, and which it is in the
        status line (the last frame: the image and its own caption again)."""
        if self._shown_image.isNull():
            return
        if frame.final:
            self.preview.view.set_image(self._shown_image, keep_view=True)
            self.preview.show_status(self._shown_caption)
            return
        self.preview.show_status(caption)
        try:
            image = preview_to_qimage(frame.image, self._shown_image.width(),
                                      self._shown_image.height())
        except (ValueError, TypeError) as exc:
            log.debug("unusable timeline frame: %s", exc)
            return
        self.preview.view.set_image(image, keep_view=True)

    def _show_error(self, text: str) -> None:
        self.error_label.setText(text)
        self.error_label.show()

    def _set_strip_visible(self, visible: bool) -> None:
        self.strip.setVisible(visible)
        self.strip_label.setVisible(visible)

    def _update_queue(self) -> None:
        running = self._open.running()
        queued = len(self._open) - len(running)
        parts = []
        if running:
            parts.append("1 cancelling" if running[0].cancelling else "1 running")
        if queued:
            parts.append(f"{queued} queued")
        self.queue_label.setText(" · ".join(parts))
        self.queue_label.setVisible(bool(parts))
        # Enabled while there is something left to cancel (a stopping job is not).
        self.cancel_button.setEnabled(any(not j.cancelling for j in self._open.snapshots()))

    def _places(self, settings: Settings) -> tuple:
        """Where models are looked for; a change means the list must be scanned again."""
        return (str(self.ctx.paths.models_dir), tuple(settings.extra_model_dirs),
                tuple(settings.added_models))

    def _on_settings_changed(self, settings: Settings) -> None:
        places = self._places(settings)
        if places != self._model_places:
            self._model_places = places
            self.empty.set_models_dir(self.ctx.paths.models_dir)
            self.controls.loras.set_models_dir(self.ctx.paths.models_dir)
            self.picker.refresh()
            self.refresh_loras()

    def _on_scan_finished(self, count: int, error: str) -> None:
        if not self._restored and not self._scanned_once:
            self._adapt_size_to_model()  # a fresh form starts at the model's native size
        self._scanned_once = True
        self.empty.set_models_dir(self.ctx.paths.models_dir, error)
        self.stack.setCurrentIndex(0 if self.picker.combo.count() else 1)

    def _on_model_changed(self, entry: PickedModel | None) -> None:
        family = getattr(entry, "family", "unknown") if entry is not None else "unknown"
        self.controls.set_family(family)
        if family != "ddpm":
            self.controls.set_pixel_model(None)
            return
        # a model trained in Train's image diffusion lesson: its classes instead of a prompt
        # (two small JSON files)
        from studio.library.models import ddpm_class_names, ddpm_shape

        try:
            classes = ddpm_class_names(entry.path)
        except UserFacingError as exc:
            self.ctx.warned.emit(str(exc))
            classes = []
        self.controls.set_pixel_model(classes, ddpm_shape(entry.path)[0])

    def _adapt_size_to_model(self) -> None:
        """Called when the user picks a model (not when a request or a scan selects one): its
        family's native size, and its usual CFG/guidance unless the user set their own."""
        entry = self.picker.current()
        if self._applying or entry is None:
            return
        family = getattr(entry, "family", "unknown")
        # A size the model was not trained for gives poor images: move to its native size.
        size = (self.controls.width_box.value(), self.controls.height_box.value())
        native = {(w, h) for w, h, _ in presets_for(family)}
        turbo = "turbo" in str(getattr(entry, "name", "")).lower()
        if family in DEFAULT_SIZE and (size not in native or (
                DEFAULT_SIZE[family][0] >= 1024 and size == (512, 512) and not turbo)):
            self.controls.width_box.setValue(DEFAULT_SIZE[family][0])
            self.controls.height_box.setValue(DEFAULT_SIZE[family][1])
        found = FAMILIES.get(family)
        # the text-to-image families' own values (an editing model's is not picked here)
        usual = {f.default_cfg for f in FAMILIES.values() if not f.edit}
        if found is not None and not turbo and self.controls.cfg.value() in usual:
            self.controls.cfg.setValue(found.default_cfg)  # FLUX's 3.5, SD 3.5's 4.5 …

    def _save_last_request(self, request: Txt2ImgRequest) -> None:
        save_last_request(self.ctx.paths.data_dir, request, self.controls.seed_mode_key)

    def _restore_last_request(self) -> None:
        saved = load_last_request(self.ctx.paths.data_dir)
        if saved is None:
            return
        self._applying = True
        try:
            self.controls.set_request(saved[0], seed_mode=saved[1])
            self._restored = True
        finally:
            self._applying = False
