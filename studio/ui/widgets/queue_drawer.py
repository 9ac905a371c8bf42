"""The queue drawer: every job of this session, newest first, with its state, progress and
message, a cancel button each and "Clear finished".

Progress can arrive 30 times a second; cards are repainted at most every ``REPAINT_MS``.
"""

from __future__ import annotations

from PySide6.QtCore import QEvent, QSize, Qt, QTimer, Slot
from PySide6.QtGui import QPainter, QPalette
from PySide6.QtWidgets import (
    QDockWidget,
    QFrame,
    QHBoxLayout,
    QLabel,
    QProgressBar,
    QPushButton,
    QScrollArea,
    QSizePolicy,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from studio.jobs import Job, JobState
from studio.ui.icons import icon
from studio.ui.theme import colors
from studio.workers.job_bridge import JobBridge

REPAINT_MS = 100


def _duration(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(int(seconds), 60)
    return f"{minutes} min {secs:02d} s"


class _ElidedLabel(QLabel):
    """A one-line label that shortens its text with "…" instead of widening the drawer."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        self.setMinimumWidth(40)

    def paintEvent(self, event) -> None:  # noqa: N802 - Qt override
        painter = QPainter(self)
        rect = self.contentsRect()
        text = self.fontMetrics().elidedText(self.text(), Qt.TextElideMode.ElideRight,
                                             rect.width())
        painter.setPen(self.palette().color(QPalette.ColorRole.WindowText))
        painter.drawText(rect, int(Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignVCenter),
                         text)
        painter.end()


class JobCard(QFrame):
    """One job: title, state, progress bar, message and a cancel button."""

    def __init__(self, job: Job, bridge: JobBridge, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.job = job
        self.setObjectName("Card")
        self.setAttribute(Qt.WidgetAttribute.WA_StyledBackground, True)
        col = QVBoxLayout(self)
        col.setContentsMargins(12, 10, 10, 10)
        col.setSpacing(6)

        # Title on its own line so it can be long; state, progress and Cancel below it.
        self.title = _ElidedLabel()
        self.title.setStyleSheet("font-weight: 600;")
        col.addWidget(self.title)

        row = QHBoxLayout()
        row.setSpacing(8)
        self.state_label = QLabel()
        self.bar = QProgressBar()
        self.bar.setTextVisible(False)
        self.bar.setFixedHeight(6)
        self.steps = QLabel()
        self.steps.setProperty("muted", True)
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setCursor(Qt.CursorShape.PointingHandCursor)
        self.cancel_button.setToolTip("Stop this job (a running job stops after its current step)")
        self.cancel_button.setStyleSheet("padding: 3px 10px;")
        self.cancel_button.clicked.connect(lambda: bridge.cancel(self.job))
        row.addWidget(self.state_label)
        row.addWidget(self.bar, 1)
        row.addWidget(self.steps)
        row.addStretch(0)  # takes the bar's room while the bar is hidden
        row.addWidget(self.cancel_button)
        self._row = row
        col.addLayout(row)

        self.message = QLabel()
        self.message.setWordWrap(True)
        self.message.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.message.setCursor(Qt.CursorShape.IBeamCursor)
        col.addWidget(self.message)
        self._theme = ""
        self.refresh()

    def changeEvent(self, event: QEvent) -> None:  # noqa: N802 - Qt override
        super().changeEvent(event)
        # The state colours are set per card; repaint them when the theme changes.
        if (event.type() in (QEvent.Type.PaletteChange, QEvent.Type.StyleChange)
                and getattr(self, "_theme", None) not in (None, colors().name)):
            self.refresh()

    def refresh(self) -> None:
        job, c = self.job, colors()
        self._theme = c.name
        state = job.state.value
        self.title.setText(job.title or job.kind)
        self.title.setToolTip(f"{job.title or job.kind}\n(job {job.id} · {job.kind})")
        self.state_label.setText(state)
        self.state_label.setStyleSheet(
            f"color: {c.state(state)}; font-weight: 600; padding: 0px 8px;"
            f"border: 1px solid {c.state(state)}; border-radius: 9px;")
        self.cancel_button.setEnabled(not job.state.finished)
        if job.total:
            self.bar.setRange(0, job.total)
            self.bar.setValue(min(job.step, job.total))
        elif job.state is JobState.RUNNING:
            self.bar.setRange(0, 0)  # busy: started, no step reported yet
        else:
            self.bar.setRange(0, 1)
            self.bar.setValue(1 if job.state is JobState.DONE else 0)
        # A bar that never moved says nothing: hide it for queued and never-started jobs.
        bar_shown = bool(job.total) or job.state in (JobState.RUNNING, JobState.DONE)
        self.bar.setVisible(bar_shown)
        self._row.setStretch(3, 0 if bar_shown else 1)
        if job.state.finished and job.started:
            self.steps.setText(_duration(max(0.0, job.ended - job.started)))
        elif job.total:
            self.steps.setText(f"{job.step}/{job.total}")
        else:
            self.steps.setText("")
        self.steps.setVisible(bool(self.steps.text()))
        # "Done" / "Cancelled" would only repeat the state pill.
        text = "" if job.message.lower() == state else job.message
        self.message.setText(text)
        self.message.setVisible(bool(text))
        self.message.setStyleSheet(f"color: {c.failed};" if job.state is JobState.FAILED
                                   else f"color: {c.muted};")


class QueueDrawer(QDockWidget):
    """A right-hand drawer that follows ``bridge.jobChanged`` and ``bridge.progress``."""

    def __init__(self, bridge: JobBridge, parent: QWidget | None = None) -> None:
        super().__init__("Queue", parent)
        self.bridge = bridge
        self.setObjectName("QueueDrawer")
        self.setFeatures(QDockWidget.DockWidgetFeature.DockWidgetClosable)
        self.setAllowedAreas(Qt.DockWidgetArea.RightDockWidgetArea)
        self.setMinimumWidth(300)
        self.cards: dict[int, JobCard] = {}
        self._dirty: set[int] = set()

        title = QFrame()
        title.setObjectName("DrawerTitle")
        title.setAttribute(Qt.WidgetAttribute.WA_StyledBackground, True)
        row = QHBoxLayout(title)
        row.setContentsMargins(14, 8, 8, 8)
        heading = QLabel("Queue")
        heading.setProperty("heading", True)
        self.count_label = QLabel()
        self.count_label.setProperty("muted", True)
        self.clear_button = QPushButton("Clear finished")
        self.clear_button.setCursor(Qt.CursorShape.PointingHandCursor)
        self.clear_button.clicked.connect(self.clear_finished)
        close = QToolButton()
        close.setIcon(icon("close"))
        close.setIconSize(QSize(14, 14))
        close.setProperty("flat", True)
        close.setToolTip("Hide the queue (Ctrl+J)")
        close.clicked.connect(self.hide)
        row.addWidget(heading)
        row.addWidget(self.count_label)
        row.addStretch(1)
        row.addWidget(self.clear_button)
        row.addWidget(close)
        self.setTitleBarWidget(title)

        body = QWidget()
        body.setObjectName("DrawerBody")
        body.setAttribute(Qt.WidgetAttribute.WA_StyledBackground, True)
        self._list = QVBoxLayout(body)
        self._list.setContentsMargins(10, 10, 10, 10)
        self._list.setSpacing(8)
        self.empty_label = QLabel("No jobs yet.\nWhat you generate or train appears here.")
        self.empty_label.setProperty("muted", True)
        self.empty_label.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self._list.addWidget(self.empty_label)
        self._list.addStretch(1)
        scroll = QScrollArea()
        scroll.setWidgetResizable(True)
        scroll.setWidget(body)
        scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.setWidget(scroll)

        self._timer = QTimer(self)
        self._timer.setSingleShot(True)
        self._timer.setInterval(REPAINT_MS)
        self._timer.timeout.connect(self._flush)
        bridge.jobChanged.connect(self.on_job_changed)
        bridge.progress.connect(self.on_progress)
        for job in bridge.jobs():
            self.on_job_changed(job)
        self._update_counts()

    @Slot(object)
    def on_job_changed(self, job: Job) -> None:
        card = self.cards.get(job.id)
        if card is None:
            card = JobCard(job, self.bridge)
            self.cards[job.id] = card
            self._list.insertWidget(0, card)  # newest first
        else:
            card.refresh()
        self._dirty.discard(job.id)
        self._update_counts()

    @Slot(object, int, int, object)
    def on_progress(self, job: Job, step: int, total: int, preview: object) -> None:
        if job.id in self.cards:
            self._dirty.add(job.id)
            if not self._timer.isActive():
                self._timer.start()

    def _flush(self) -> None:
        for job_id in list(self._dirty):
            card = self.cards.get(job_id)
            if card is not None:
                card.refresh()
        self._dirty.clear()

    @Slot()
    def clear_finished(self) -> None:
        self.bridge.clear_finished()
        for job_id, card in list(self.cards.items()):
            if card.job.state.finished:
                del self.cards[job_id]
                self._list.removeWidget(card)
                card.deleteLater()
        self._update_counts()

    def _update_counts(self) -> None:
        active = sum(1 for c in self.cards.values() if not c.job.state.finished)
        finished = len(self.cards) - active
        self.empty_label.setVisible(not self.cards)
        self.clear_button.setEnabled(finished > 0)
        self.count_label.setText(f"{active} active" if self.cards else "")

    def stop(self) -> None:
        self._timer.stop()
