"""Make smaller… : a chat model's copy with int8, int4 or fp8 weights, or an image model's with
its denoiser in int8 or fp8, with the numbers both ways.

The method's plan (layers quantized, estimated size, and any refusal: a model already quantized,
a layer the method cannot take, a taken name, too little disk) is worked out on the I/O pool;
the work itself is a ``shrink`` job of the GPU lane (it shows in the queue), followed through its
handle. When it ends the dialog shows size, perplexity on the shipped text and tokens/s before
and after (an image model: size, the denoiser's bytes, seconds per step, and the two sample images
side by side with their difference), and the Models list shows the new entry.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from PySide6.QtCore import Qt, QTimer, Signal, Slot
from PySide6.QtWidgets import (
    QButtonGroup,
    QDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QProgressBar,
    QPushButton,
    QRadioButton,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from studio.core.shrink_requests import (
    IMAGE_SHRINK_METHODS,
    SHRINK_METHODS,
    ImageShrinkRequest,
    ShrinkRequest,
)
from studio.core.wording import count_of
from studio.library.catalog import LibraryEntry
from studio.ui.context import AppContext
from studio.ui.widgets.input_policy import fit_size_to_screen
from studio.workers.lanes import Calls

if TYPE_CHECKING:
    from studio.pipelines.chat.shrink import ShrinkPlan, ShrinkReport
    from studio.pipelines.diffusion.shrink import ImageShrinkPlan, ImageShrinkReport
    from studio.workers.job_bridge import QtJobHandle

ERROR_COLOR = "#e5484d"
SAMPLE_SIDE = 200  # pixels each sample image takes in the dialog
INT4_NOTE = ("int4 values are stored one per byte (torchao's packed int4 needs a CUDA GPU with "
             "its mslk kernels), so the file is about int8's size, with int4's rounding.")


def shrinkable(entry: LibraryEntry) -> bool:
    """A chat or image generation model (the dialog says why one cannot be shrunk: already
    quantized, …)."""
    return entry.kind in ("chat", "image")


class ShrinkDialog(QDialog):
    """Pick a method and a name, see the estimate, run it; emits ``made(Path)`` when the copy is
    saved."""

    made = Signal(object)

    def __init__(self, ctx: AppContext, entry: LibraryEntry, names: set[str],
                 parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.ctx, self.entry, self.names = ctx, entry, set(names)
        self._calls = Calls(self)
        self.job: QtJobHandle | None = None  # the shrink job while it runs
        self.plan: ShrinkPlan | ImageShrinkPlan | None = None
        self.report: ShrinkReport | ImageShrinkReport | None = None
        self.plans = 0  # finished estimates (tests wait on it)
        self._asked = 0  # the estimate the dialog waits for (older answers are dropped)
        self._named_by_hand = False
        self.image = entry.kind == "image"
        self.setWindowTitle(f"Make {entry.name} smaller")
        fit_size_to_screen(self, 640, 660 if self.image else 520)

        intro = QLabel("Save a copy whose linear layers keep their weights in fewer bits "
                       "(torchao, weight-only). The original stays as it is; the copy appears "
                       "next to it and loads in Chat and studio serve like any model."
                       if not self.image else
                       "Save a copy whose denoiser (the UNet or transformer, most of the model "
                       "and all of each step's work) keeps its weights in 8 bits. The original "
                       "stays as it is; the copy appears next to it and loads in Generate and "
                       "studio serve like any model. One sample image is drawn with each at "
                       "the same seed and prompt, so you can compare them.")
        intro.setWordWrap(True)
        self.methods = QButtonGroup(self)
        method_rows = QVBoxLayout()
        choices = IMAGE_SHRINK_METHODS if self.image else SHRINK_METHODS
        for index, (key, words) in enumerate(choices.items()):
            button = QRadioButton(words)
            button.setProperty("method", key)
            button.setChecked(index == 0)
            self.methods.addButton(button, index)
            method_rows.addWidget(button)
        self.methods.idToggled.connect(self._on_method)
        self.name = QLineEdit(self._default_name())
        self.name.textEdited.connect(self._on_name_edited)
        self._retime = QTimer(self, singleShot=True, interval=400)
        self._retime.timeout.connect(self.estimate)
        self.name.textChanged.connect(lambda _t: self._retime.start())
        form = QFormLayout()
        form.addRow("Method", method_rows)
        form.addRow("New name", self.name)
        self.plan_label = QLabel("Estimating…")
        self.plan_label.setWordWrap(True)
        self.progress = QProgressBar()
        self.progress.setRange(0, 4)
        self.progress.setTextVisible(False)
        self.progress.hide()
        self.status = QLabel("")
        self.status.setWordWrap(True)
        self.table = QTableWidget(0, 4)
        self.table.setHorizontalHeaderLabels(["", "Before", "After", "Change"])
        self.table.verticalHeader().hide()
        self.table.setEditTriggers(QTableWidget.EditTrigger.NoEditTriggers)
        self.table.horizontalHeader().setStretchLastSection(True)
        self.table.hide()
        self.samples = QHBoxLayout()  # an image model's two sample images, side by side
        self.sample_labels: list[QLabel] = []
        self.sample_captions: list[QLabel] = []
        for _side in ("before", "after"):
            side = QVBoxLayout()
            caption, label = QLabel(), QLabel()
            caption.setAlignment(Qt.AlignmentFlag.AlignCenter)
            caption.setWordWrap(True)
            label.setAlignment(Qt.AlignmentFlag.AlignCenter)
            caption.hide()
            label.hide()
            self.sample_captions.append(caption)
            self.sample_labels.append(label)
            side.addWidget(caption)
            side.addWidget(label)
            self.samples.addLayout(side, 1)
        self.start_button = QPushButton("Make smaller")
        self.start_button.setProperty("accent", True)
        self.start_button.setEnabled(False)
        self.start_button.clicked.connect(self.start)
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.hide()
        self.cancel_button.clicked.connect(self.cancel)
        close = QPushButton("Close")
        close.clicked.connect(self.reject)
        buttons = QHBoxLayout()
        buttons.addWidget(self.cancel_button)
        buttons.addStretch(1)
        buttons.addWidget(close)
        buttons.addWidget(self.start_button)
        column = QVBoxLayout(self)
        column.addWidget(intro)
        column.addLayout(form)
        column.addWidget(self.plan_label)
        column.addWidget(self.progress)
        column.addWidget(self.status)
        column.addWidget(self.table, 1)
        column.addLayout(self.samples)
        column.addStretch(0)
        column.addLayout(buttons)
        self.estimate()

    # -- choosing ----------------------------------------------------------------------------
    def method(self) -> str:
        button = self.methods.checkedButton()
        return str(button.property("method")) if button is not None else "int8"

    def set_method(self, key: str) -> None:
        for button in self.methods.buttons():
            if button.property("method") == key:
                button.setChecked(True)

    def _default_name(self) -> str:
        base = self.entry.path.name if self.entry.source != "hf-cache" or not self.entry.repo_id \
            else self.entry.repo_id.split("/")[-1]
        name = f"{base}-{self.method() if hasattr(self, 'methods') else 'int8'}"
        taken = {n.casefold() for n in self.names}
        suffix = 2
        found = name
        while found.casefold() in taken:  # a copy made before (in this dialog, or earlier)
            found, suffix = f"{name}-{suffix}", suffix + 1
        return found

    def _on_name_edited(self, _text: str) -> None:
        self._named_by_hand = True

    def _on_method(self, _id: int, checked: bool) -> None:
        if not checked:
            return
        if not self._named_by_hand:
            self.name.setText(self._default_name())  # re-estimates through textChanged
        else:
            self.estimate()

    def request(self) -> ShrinkRequest | ImageShrinkRequest:
        spec = self.entry.repo_id if self.entry.source == "hf-cache" and self.entry.repo_id \
            else str(self.entry.path)
        kind = ImageShrinkRequest if self.image else ShrinkRequest
        return kind(model=spec, method=self.method(), out_name=self.name.text().strip())

    @Slot()
    def estimate(self) -> None:
        """Work out the plan (or the refusal) off the GUI thread."""
        from studio.pipelines.chat.shrink import plan_shrink
        from studio.pipelines.diffusion.shrink import plan_image_shrink

        if self.job is not None:
            return
        self._asked += 1
        asked, request = self._asked, self.request()
        settings, paths, names = self.ctx.settings, self.ctx.paths, set(self.names)
        self.plan = None
        self.start_button.setEnabled(False)
        self._say_plan("Estimating…")
        planner: Any = plan_image_shrink if self.image else plan_shrink
        self._calls.run(lambda: planner(request, settings, paths, names.__contains__),
                        lambda plan: self._on_plan(asked, plan),
                        lambda message: self._on_refused(asked, message))

    def _say_plan(self, text: str, error: bool = False) -> None:
        self.plan_label.setStyleSheet(f"color: {ERROR_COLOR};" if error else "")
        self.plan_label.setText(text)

    def _on_plan(self, asked: int, plan: ShrinkPlan | ImageShrinkPlan) -> None:
        if asked != self._asked:
            return
        self.plan = plan
        self.plans += 1
        notes = []
        if plan.method == "int4":
            notes.append(INT4_NOTE)
        if not self.image:
            notes.insert(0, "The output head stays as it is.")
        self._say_plan(" ".join([plan.describe(), *notes]))
        self.start_button.setEnabled(self.job is None)

    def _on_refused(self, asked: int, message: str) -> None:
        if asked != self._asked:
            return
        self.plans += 1
        self._say_plan(message, error=True)

    # -- running -----------------------------------------------------------------------------
    @Slot()
    def start(self) -> QtJobHandle | None:
        if self.plan is None or self.job is not None:
            return None
        self.table.hide()
        for label in (*self.sample_labels, *self.sample_captions):
            label.hide()
        self.progress.setValue(0)
        self.progress.show()
        self.cancel_button.show()
        self.start_button.setEnabled(False)
        for button in self.methods.buttons():
            button.setEnabled(False)
        self.name.setEnabled(False)
        self.status.setText("Waiting for the model worker…")
        self.job = self.ctx.bridge.submit(self.request(),
                                          title=f"Make {self.entry.name} smaller")
        self.job.changed.connect(lambda job: job.message and self.status.setText(job.message))
        self.job.progress.connect(lambda _job, step, total, _p: self._on_progress(step, total))
        self.job.finished.connect(lambda job: self.show_report(job.result))
        self.job.failed.connect(lambda job: self._finish(job.error or "It failed.", True))
        self.job.cancelled.connect(lambda _job: self._finish("Cancelled; nothing was saved."))
        return self.job

    def _on_progress(self, step: int, total: int) -> None:
        self.progress.setRange(0, max(total, 1))
        self.progress.setValue(step)

    @Slot()
    def cancel(self) -> None:
        if self.job is not None:
            self.job.cancel()
            self.status.setText("Cancelling… (after the step that is running)")

    def _finish(self, text: str, error: bool = False) -> None:
        self.job = None
        self.progress.hide()
        self.cancel_button.hide()
        for button in self.methods.buttons():
            button.setEnabled(True)
        self.name.setEnabled(True)
        self.status.setStyleSheet(f"color: {ERROR_COLOR};" if error else "")
        self.status.setText(text)

    def show_report(self, report: ShrinkReport | ImageShrinkReport) -> None:
        """The before/after table of a finished job (``ShrinkReport``)."""
        self.report = report
        rows = report.rows()
        self.table.setRowCount(len(rows))
        for r, row in enumerate(rows):
            for c, text in enumerate(row):
                item = QTableWidgetItem(text)
                if c:
                    item.setTextAlignment(Qt.AlignmentFlag.AlignRight
                                          | Qt.AlignmentFlag.AlignVCenter)
                self.table.setItem(r, c, item)
        self.table.resizeColumnsToContents()
        self.table.show()
        if self.image:
            self._show_samples(report)
        where = "Generate" if self.image else "Chat"
        self._finish(" ".join([f"Saved {report.name} in {report.path.parent}; pick it in "
                               f"{where}.", *report.warnings]))
        self.names.add(report.name)
        self._named_by_hand = False
        self.made.emit(report.path)
        # The name just made is taken now: suggest the next free one and plan for it (the
        # button then offers another copy under that name, or stays off with the reason).
        self.name.setText(self._default_name())
        self.estimate()

    def _show_samples(self, report: ImageShrinkReport) -> None:
        """The two sample images side by side, each with what it is."""
        from PySide6.QtGui import QPixmap

        from studio.workers.thumbnails import pil_to_qimage

        request = report.request
        sides = zip(self.sample_labels, self.sample_captions, (report.before, report.after),
                    (f"Before: {report.source}", f"After: {report.name}"), strict=True)
        for label, caption, measure, what in sides:
            pixmap = QPixmap.fromImage(pil_to_qimage(measure.image)).scaled(
                SAMPLE_SIDE, SAMPLE_SIDE, Qt.AspectRatioMode.KeepAspectRatio,
                Qt.TransformationMode.SmoothTransformation)
            label.setPixmap(pixmap)
            label.setToolTip(f"{what} — seed {request.seed}, {count_of(request.steps, 'step')}, "
                             f"“{request.prompt}”")
            caption.setText(what)
            caption.show()
            label.show()

    def shutdown(self) -> None:
        self._calls.wait(10_000)

    def reject(self) -> None:
        # Closing does not stop a running job: it goes on in the queue and lands in Models.
        self._calls.wait(2_000)
        super().reject()
