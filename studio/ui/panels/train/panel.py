"""The Train workspace: lessons on the left, the live lesson in the middle, notes and runs right.

One :class:`SessionBridge` at a time trains the chosen lesson in a child process (so drawing and
training run on separate cores; see process_session.py); its frames (a snapshot plus the metrics
since the last one, at most ~60 a second, never more than the window draws) update the lesson
view and the loss plot with ``setData`` on existing items. Knob changes, play/pause, steps and
resets go to the session, which applies them between steps. Training yields to the job queue:
while a Generate or Chat job waits or runs, it does not step (session.py).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from PySide6.QtCore import Qt, Slot
from PySide6.QtGui import QKeySequence, QShortcut
from PySide6.QtWidgets import (
    QFileDialog,
    QFrame,
    QHBoxLayout,
    QInputDialog,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QSplitter,
    QTabWidget,
    QTextBrowser,
    QVBoxLayout,
    QWidget,
)

from studio.core.jobs import describe_error
from studio.pipelines.train.base import InvalidParameter, Trainer
from studio.pipelines.train.runs import export_csv, load_metrics
from studio.pipelines.train.session import Frame
from studio.ui.context import AppContext
from studio.ui.panels.train.bridge import SessionBridge
from studio.ui.panels.train.controls import ControlBar
from studio.ui.panels.train.exports import save_gif, save_widget_png
from studio.ui.panels.train.loss_plot import LossPlot
from studio.ui.panels.train.params_form import ParamsForm
from studio.ui.panels.train.plotting import painted_in_theme, theme_changed
from studio.ui.panels.train.runs_list import RunsList
from studio.ui.panels.train.views import view_class
from studio.ui.panels.train.views.base import LessonView
from studio.ui.theme import colors
from studio.ui.widgets.basics import section_label, vertical_scroll
from studio.ui.widgets.retire import retire

log = logging.getLogger(__name__)

#: (panel width at least, lessons column, notes column): the side columns give way on a laptop
#: screen (a 1366-pixel window leaves the lesson ~750 pixels) and widen on a large one.
SIDE_WIDTHS = ((1700, 300, 340), (1500, 300, 300), (0, 270, 270))
STATUS_TEXT = {"starting": "Starting…", "playing": "Training…", "paused": "Paused",
               "diverged": "Stopped: diverged", "error": "Stopped by an error",
               "finished": "Finished",
               "waiting": "Waiting for the job queue (Generate and Chat go first)"}


def available_lessons() -> list[tuple[str, type[Trainer]]]:
    """Lessons whose trainer and view both import (a lesson that can't run isn't listed)."""
    from studio.pipelines.train.registry import lesson_class, lesson_keys

    out = []
    for key in lesson_keys():
        try:
            cls = lesson_class(key)
            view_class(key)
        except Exception:  # noqa: BLE001 - a broken lesson must not take the workspace down
            log.exception("lesson %s is unavailable", key)
            continue
        out.append((key, cls))
    return out


class TrainPanel(QWidget):
    """The Train workspace (``TrainPanel(ctx)``)."""

    #: train in a child process (False: on a thread of the window's process, sharing its GIL)
    session_in_process = True

    def __init__(self, ctx: AppContext, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("trainPanel")
        self.ctx = ctx
        self.lessons = dict(available_lessons())
        self.bridge: SessionBridge | None = None
        self.view: LessonView | None = None
        self.form: ParamsForm | None = None
        self.lesson = ""
        self.frames_drawn = 0
        self.last_frame: Frame | None = None
        self._run_path: Path | None = None
        self._config: dict[str, Any] = {}

        self.lesson_list = QListWidget()
        self.lesson_list.setObjectName("lessonList")
        for key, cls in self.lessons.items():
            item = QListWidgetItem(cls.info.title)
            item.setData(Qt.ItemDataRole.UserRole, key)
            item.setToolTip(cls.info.summary)
            self.lesson_list.addItem(item)
        # Every lesson shows when there is room; on a laptop screen the list scrolls and the
        # settings below keep a usable height (22 lessons no longer fit 768 px with both).
        rows = max(1, self.lesson_list.count())
        row = self.lesson_list.sizeHintForRow(0) + 8
        self.lesson_list.setMaximumHeight(rows * row + 12)
        self.lesson_list.setMinimumHeight(min(rows, 6) * row + 12)
        self.form_holder = vertical_scroll()
        self.form_holder.setMinimumHeight(200)
        self.left = left = QFrame()
        left.setObjectName("trainSidebar")
        lcol = QVBoxLayout(left)
        lcol.setContentsMargins(16, 16, 12, 16)
        lcol.setSpacing(8)
        lcol.addWidget(section_label("Lessons"))
        lcol.addWidget(self.lesson_list, 3)
        lcol.addSpacing(6)
        lcol.addWidget(section_label("Settings"))
        lcol.addWidget(self.form_holder, 1)

        self.controls = ControlBar()
        self.error = QLabel()
        self.error.setObjectName("trainError")
        self.error.setWordWrap(True)
        self._style_error()
        painted_in_theme(self)
        self.error.hide()
        self.view_holder = QVBoxLayout()
        self.view_holder.setContentsMargins(0, 0, 0, 0)
        view_box = QWidget()
        view_box.setLayout(self.view_holder)
        self.loss_plot = LossPlot()
        self.splitter = QSplitter(Qt.Orientation.Vertical)
        self.splitter.setObjectName("trainSplitter")
        self.splitter.addWidget(view_box)
        self.splitter.addWidget(self.loss_plot)
        self.splitter.setStretchFactor(0, 2)
        self.splitter.setStretchFactor(1, 1)
        self.splitter.setChildrenCollapsible(False)
        self.splitter.setSizes([600, 300])
        self.loss_plot.setMinimumHeight(170)
        center = QWidget()
        ccol = QVBoxLayout(center)
        ccol.setContentsMargins(16, 16, 16, 16)
        ccol.setSpacing(10)
        ccol.addWidget(self.controls)
        ccol.addWidget(self.error)
        ccol.addWidget(self.splitter, 1)

        self.explanation = QTextBrowser()
        self.explanation.setObjectName("lessonExplanation")
        self.explanation.setOpenExternalLinks(False)
        self.runs = RunsList()
        self.tabs = QTabWidget()
        self.tabs.addTab(self.explanation, "About")
        self.tabs.addTab(self.runs, "Runs")
        self.right = right = QFrame()
        rcol = QVBoxLayout(right)
        rcol.setContentsMargins(0, 16, 16, 16)
        rcol.addWidget(self.tabs)

        row = QHBoxLayout(self)
        row.setContentsMargins(0, 0, 0, 0)
        row.setSpacing(0)
        row.addWidget(left)
        row.addWidget(center, 1)
        row.addWidget(right)

        self.lesson_list.currentItemChanged.connect(self._on_lesson_item)
        self.controls.playToggled.connect(self._on_play)
        self.controls.stepRequested.connect(self.step_once)
        self.controls.resetRequested.connect(lambda seed: self.reset(seed=seed))
        self.controls.speedChanged.connect(self._on_speed)
        self.runs.resumeRequested.connect(self.resume_run)
        self.runs.overlayToggled.connect(self._on_overlay)
        self.runs.exportCsvRequested.connect(self._ask_export_csv)
        self.runs.exportPlotRequested.connect(self._ask_export_png)
        self.runs.exportGifRequested.connect(self._ask_export_gif)
        self.runs.exportModelRequested.connect(self._ask_export_model)
        space = QShortcut(QKeySequence(Qt.Key.Key_Space), self)
        space.setContext(Qt.ShortcutContext.WidgetWithChildrenShortcut)
        space.activated.connect(self.controls.play_button.toggle)
        self._fit_columns(self.width())
        if self.lessons:
            self.lesson_list.setCurrentRow(0)

    # -- fitting the window -------------------------------------------------------------------
    def _fit_columns(self, width: int) -> None:
        lessons, notes = next((a, b) for at_least, a, b in SIDE_WIDTHS if width >= at_least)
        if self.left.minimumWidth() != lessons:
            self.left.setFixedWidth(lessons)
        if self.right.minimumWidth() != notes:
            self.right.setFixedWidth(notes)

    def resizeEvent(self, event) -> None:  # noqa: N802 - Qt's name
        self._fit_columns(event.size().width())
        super().resizeEvent(event)

    def changeEvent(self, event) -> None:  # noqa: N802 - Qt's name
        super().changeEvent(event)
        if theme_changed(self, event):
            self._style_error()

    def _style_error(self) -> None:
        self.error.setStyleSheet(f"#trainError {{ background: {colors().error_bg}; "
                                 "border-radius: 7px; padding: 6px 10px; }")

    # -- choosing a lesson --------------------------------------------------------------------
    @property
    def runs_root(self) -> Path:
        return self.ctx.paths.runs_dir

    @Slot(object, object)
    def _on_lesson_item(self, item: QListWidgetItem | None, _previous=None) -> None:
        if item is not None:
            self.open_lesson(item.data(Qt.ItemDataRole.UserRole))

    def open_lesson(self, key: str, resume: Path | None = None) -> None:
        """Show lesson ``key`` with a fresh session (or ``resume`` a saved run of it)."""
        cls = self.lessons[key]
        self._stop_session()
        self.lesson = key
        # Nothing of the previous lesson stays on screen: its step count, state, error, curves
        # and axes go now, not when the new lesson's first frame arrives.
        self.last_frame = None
        self._run_path = None
        self.error.hide()
        self.controls.set_step(0)
        self.controls.set_status(STATUS_TEXT["starting"])
        for i in range(self.lesson_list.count()):
            if self.lesson_list.item(i).data(Qt.ItemDataRole.UserRole) == key:
                self.lesson_list.blockSignals(True)
                self.lesson_list.setCurrentRow(i)
                self.lesson_list.blockSignals(False)
                self.lesson_list.scrollToItem(self.lesson_list.item(i))
        self.explanation.setMarkdown(f"## {cls.info.title}\n\n*{cls.info.summary}*\n\n"
                                     f"{cls.info.explanation}")
        if self.view is not None:  # out of the layout now; deleted once the event loop turns
            retire(self.view)
        self.view = view_class(key)(key)
        self.view.setParamRequested.connect(self.set_param)
        self.view.resetRequested.connect(lambda over: self.reset(overrides=over))
        self.view.stepPartRequested.connect(self.step_once)
        self.view.modelWritten.connect(lambda _path: self.ctx.libraryChanged.emit())
        self.view_holder.addWidget(self.view)
        self._config = cls.validate_config()
        self.form = ParamsForm(cls.params, self._config,
                               unavailable=cls.unavailable_choices())
        self.form.paramChanged.connect(self.set_param)
        self.form.resetRequested.connect(lambda config: self.reset(overrides=config))
        self.form_holder.setWidget(self.form)
        self.controls.set_step_parts(() if self.view.offers_step_parts else cls.step_parts)
        self.loss_plot.log_box.setChecked(cls.info.log_scale)
        self.loss_plot.set_series(cls.info.series,
                                  [cls.info.series_label(name) for name in cls.info.series])
        for path in list(self.loss_plot.overlays):
            self.loss_plot.set_overlay(path, None)
        self._start_session(resume=resume)
        self.runs.refresh(self.runs_root, key)

    def _start_session(self, config: dict[str, Any] | None = None, seed: int | None = None,
                       resume: Path | None = None) -> None:
        engine = self.ctx.bridge.engine
        self.bridge = SessionBridge(
            self.lesson, runs_root=self.runs_root, config=config,
            seed=self.controls.seed_value() if seed is None else seed,
            busy=lambda: engine.gpu_busy, in_process=self.session_in_process,
            parent=self)
        self.bridge.frame.connect(self._on_frame)
        self.bridge.stateChanged.connect(self._on_state)
        self.bridge.session.set_speed(*self._speed())
        self.bridge.session.start(resume=resume)

    def _stop_session(self) -> None:
        if self.bridge is not None:
            self.bridge.frame.disconnect(self._on_frame)
            self.bridge.stateChanged.disconnect(self._on_state)
            self.bridge.stop()
            self.bridge.deleteLater()
            self.bridge = None
        self.controls.set_playing(False)

    # -- controls -----------------------------------------------------------------------------
    @property
    def session(self):
        return self.bridge.session if self.bridge is not None else None

    @Slot(bool)
    def _on_play(self, on: bool) -> None:
        if self.session is None:
            return
        self.error.hide()
        (self.session.play if on else self.session.pause)()

    @Slot(str)
    def step_once(self, part: str = "") -> None:
        if self.session is not None:
            self.error.hide()
            self.controls.set_playing(False)
            self.session.step_once(part or None)

    @Slot(str, object)
    def set_param(self, name: str, value: Any) -> None:
        """A live knob changed in the form or the view: checked now, applied between steps."""
        try:
            self.session.set_param(name, value)
        except InvalidParameter as exc:
            self._show_error(str(exc))

    def reset(self, overrides: dict[str, Any] | None = None, seed: int | None = None) -> None:
        """Start over (a new run) with the form's values plus ``overrides`` and ``seed``."""
        if self.session is None:
            return
        config = dict(self.form.values() if self.form else self._config)
        config.update(overrides or {})
        try:
            self.session.reset(config, seed=seed)
        except InvalidParameter as exc:
            self._show_error(str(exc))
            return
        if seed is not None:
            self.controls.set_seed(seed)
        self.error.hide()
        self.controls.set_playing(False)

    def _speed(self) -> tuple[float, int]:
        from studio.ui.panels.train.controls import SPEEDS

        return SPEEDS[self.controls.speed.currentText()]

    @Slot(float, int)
    def _on_speed(self, delay_s: float, draw_every: int) -> None:
        if self.session is not None:
            self.session.set_speed(delay_s, draw_every)

    # -- what the session reports -------------------------------------------------------------
    @Slot(object)
    def _on_frame(self, frame: Frame) -> None:
        session = self.session
        try:
            if frame.new_run:
                self.loss_plot.clear()
                self.view.reset()
                self.controls.set_seed(session.seed if session else 0)
            if frame.config != self._config:
                self._config = dict(frame.config)
                self.form.set_values(self._config)
            self.loss_plot.append(frame.metrics)
            self.view.show_snapshot(frame.snapshot)
            self.form.set_inapplicable(frame.snapshot.get("inapplicable", {}))
            self.controls.set_step(frame.step)
            if frame.run_path != self._run_path:
                self._run_path = frame.run_path
                self.runs.refresh(self.runs_root, self.lesson, self._run_path)
            self.last_frame = frame
            self.frames_drawn += 1
        except Exception as exc:  # noqa: BLE001 - a view bug shows, it doesn't kill the window
            log.exception("could not draw a training frame")
            self._show_error(describe_error(exc))
        finally:
            if session is not None:
                session.frame_done()

    @Slot(str, str)
    def _on_state(self, state: str, message: str) -> None:
        self.controls.set_playing(state in ("playing", "waiting"))
        self.controls.set_status(STATUS_TEXT.get(state, state))
        if message and state in ("diverged", "error", "paused"):
            self._show_error(message)
        if message and state == "finished":  # a lesson reached its goal (what it wrote)
            self.runs.show_note(message)
        if state in ("paused", "diverged", "finished"):
            self.runs.refresh(self.runs_root, self.lesson, self._run_path)

    def _show_error(self, text: str) -> None:
        self.error.setText(text)
        self.error.show()

    # -- runs and exports ---------------------------------------------------------------------
    @Slot(object)
    def resume_run(self, path: Path) -> None:
        self.open_lesson(self.lesson, resume=Path(path))

    @Slot(object, bool)
    def _on_overlay(self, path: Path, shown: bool) -> None:
        key = Path(path).name
        self.loss_plot.set_overlay(key, load_metrics(Path(path)) if shown else None)

    def export_plot_png(self, path: Path) -> Path:
        """The lesson view and the loss plot, as they are on screen, in one PNG."""
        return save_widget_png(self.splitter, Path(path))

    def export_gif(self, path: Path) -> Path:
        frames = self.view.export_frames() if self.view is not None else []
        if not frames:
            raise InvalidParameter("Train for a while first: there are no frames to animate yet.")
        return save_gif(frames, Path(path))

    def _ask_export_csv(self, run: Path) -> None:
        out, _ = QFileDialog.getSaveFileName(self, "Export metrics", f"{Path(run).name}.csv",
                                             "CSV (*.csv)")
        if out:
            export_csv(Path(run), Path(out))

    def _ask_export_png(self) -> None:
        out, _ = QFileDialog.getSaveFileName(self, "Export plots", f"{self.lesson}.png",
                                             "PNG image (*.png)")
        if out:
            self.export_plot_png(Path(out))

    def _ask_export_gif(self) -> None:
        out, _ = QFileDialog.getSaveFileName(self, "Export evolution", f"{self.lesson}.gif",
                                             "GIF animation (*.gif)")
        if out:
            try:
                self.export_gif(Path(out))
            except InvalidParameter as exc:
                self._show_error(str(exc))

    def _ask_export_model(self, run: Path) -> None:
        from studio.pipelines.train.export import EXPORTS

        workspace = EXPORTS.get(self.lesson, ("", "another workspace"))[1]
        name, ok = QInputDialog.getText(
            self, "Export model", f"Name in the library (then use it in {workspace}):",
            text=Path(run).name)
        if ok:
            self.export_model(Path(run), name)

    def export_model(self, run: Path, name: str) -> str:
        """Export ``run``'s model as ``name`` into the library; the sentence shown (a success
        in the status line, a problem in the error line)."""
        from studio.core.jobs import UserFacingError
        from studio.pipelines.train.export import export_run

        try:
            done = export_run(Path(run), self.ctx.paths.models_dir, name.strip())
        except UserFacingError as exc:
            self._show_error(str(exc))
            return str(exc)
        self.error.hide()
        self.ctx.libraryChanged.emit()
        self.runs.show_note(done.message)
        return done.message

    def shutdown(self) -> None:
        """Stop training (the run is saved) and end the session thread."""
        self._stop_session()
