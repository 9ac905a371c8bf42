"""The queue drawer: every job of this session, newest first, with its state, progress and
message, a cancel button each and "Clear finished".

Each card says what tells one job from another (seed, size, steps, model) and, once an image
exists, shows it as a thumbnail (loaded off the GUI thread). Cards fit a drawer 300 px wide.
Progress can arrive 30 times a second; cards are repainted at most every ``REPAINT_MS``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from PySide6.QtCore import QEvent, QSize, Qt, QTimer, Slot
from PySide6.QtGui import QImage, QPainter, QPalette, QPixmap
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

from studio.core.jobs import JobSnapshot, JobState
from studio.core.progress import batch_position
from studio.core.requests import Txt2ImgRequest
from studio.core.wording import count_of
from studio.ui.icons import icon
from studio.ui.theme import colors
from studio.workers.job_bridge import JobBridge
from studio.workers.thumbnails import ThumbnailLoader

REPAINT_MS = 100
THUMB_PX = 48
DRAWER_MIN_WIDTH = 300


def _duration(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(int(seconds), 60)
    return f"{minutes} min {secs:02d} s"


def job_details(job: JobSnapshot) -> str:
    """What tells this job from others with the same title: seed, size, steps, count, input and
    model ("seed 42 · 512×512 · 8 steps · 4 images · sd-turbo")."""
    request = job.request
    parts: list[str] = []
    count = int(getattr(request, "count", 1) or 1)
    seed = getattr(request, "seed", None)
    if isinstance(seed, int):
        parts.append(f"seed {seed}")
    width, height = getattr(request, "width", 0), getattr(request, "height", 0)
    if width and height:
        parts.append(f"{width}×{height}")
    steps = getattr(request, "steps", 0)
    if steps:
        parts.append(count_of(steps, "step"))
    if count > 1:
        parts.append(count_of(count, "image"))
    image = getattr(request, "image", "")
    if image:
        parts.append(Path(str(image)).name)
    inputs = getattr(request, "inputs", None)
    if inputs:
        parts.append(f"{len(inputs)} image{'s' if len(inputs) != 1 else ''}")
    model = str(getattr(request, "model", "") or "")
    if model:
        parts.append(Path(model.rstrip("/\\")).name or model)
    return " · ".join(parts)


def wrap_between_parts(text: str) -> str:
    """``text`` ("a · b c · d") with breaks allowed only after a "·", never inside a part."""
    parts = [part.replace(" ", "\u00a0") for part in text.split(" · ")]
    return "\u00a0· ".join(parts)


def result_image_path(job: JobSnapshot) -> str:
    """The newest image file this job has made ("" before the first one)."""
    for result in reversed(job.partials or []):
        path = getattr(result, "path", None)
        if path:
            return str(path)
    return ""


def progress_text(job: JobSnapshot) -> str:
    """The step counter beside the bar: '4/8' (of the image being made), the duration when
    finished."""
    if job.state.finished and job.started:
        return _duration(max(0.0, job.ended - job.started))
    if not job.total:
        return ""
    count = int(getattr(job.request, "count", 1) or 1)
    # Text to image runs the steps asked for (img2img only a share of them, by strength).
    steps = job.request.steps if isinstance(job.request, Txt2ImgRequest) else 0
    image, image_step, per, count = batch_position(job.step, job.total, count, steps)
    if count > 1:
        return f"{image}/{count} · {image_step}/{per}"
    return f"{image_step}/{per}"


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
        role = self.foregroundRole()
        painter.setPen(self.palette().color(role if role != QPalette.ColorRole.NoRole
                                            else QPalette.ColorRole.WindowText))
        painter.drawText(rect, int(Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignVCenter),
                         text)
        painter.end()


class JobCard(QFrame):
    """One job: thumbnail, title, details, Cancel; state, progress bar, steps; message."""

    def __init__(self, job: JobSnapshot, bridge: JobBridge, parent: QWidget | None = None,
                 thumbnails: ThumbnailLoader | None = None) -> None:
        super().__init__(parent)
        self.job = job
        self._thumbnails = thumbnails
        self._thumb_path = ""
        self.setObjectName("Card")
        self.setAttribute(Qt.WidgetAttribute.WA_StyledBackground, True)
        col = QVBoxLayout(self)
        col.setContentsMargins(10, 8, 8, 8)
        col.setSpacing(6)

        # Thumbnail | title over details | Cancel — the title may be long, so it is elided.
        top = QHBoxLayout()
        top.setSpacing(8)
        self.thumb = QLabel()
        self.thumb.setObjectName("jobThumb")
        self.thumb.setFixedSize(THUMB_PX, THUMB_PX)
        self.thumb.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.thumb.hide()
        top.addWidget(self.thumb, 0, Qt.AlignmentFlag.AlignTop)
        texts = QVBoxLayout()
        texts.setSpacing(2)
        self.title = _ElidedLabel()
        self.title.setStyleSheet("font-weight: 600;")
        self.details = QLabel()  # wraps: every part of it may be what tells two jobs apart
        self.details.setWordWrap(True)
        self.details.setProperty("muted", True)
        self.details.setMinimumWidth(40)
        self.details.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        texts.addWidget(self.title)
        texts.addWidget(self.details)
        top.addLayout(texts, 1)
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setCursor(Qt.CursorShape.PointingHandCursor)
        self.cancel_button.setToolTip("Stop this job (a running job stops after its current step)")
        self.cancel_button.setStyleSheet("padding: 3px 10px;")
        self.cancel_button.setSizePolicy(QSizePolicy.Policy.Fixed, QSizePolicy.Policy.Fixed)
        self.cancel_button.clicked.connect(lambda: bridge.cancel(self.job))
        top.addWidget(self.cancel_button, 0, Qt.AlignmentFlag.AlignTop)
        col.addLayout(top)

        row = QHBoxLayout()
        row.setSpacing(8)
        self.state_label = QLabel()
        self.state_label.setSizePolicy(QSizePolicy.Policy.Fixed, QSizePolicy.Policy.Preferred)
        self.bar = QProgressBar()
        self.bar.setTextVisible(False)
        self.bar.setFixedHeight(6)
        self.bar.setMinimumWidth(24)
        self.steps = QLabel()
        self.steps.setProperty("muted", True)
        self.steps.setSizePolicy(QSizePolicy.Policy.Fixed, QSizePolicy.Policy.Preferred)
        row.addWidget(self.state_label)
        row.addWidget(self.bar, 1)
        row.addStretch(0)  # takes the bar's room while the bar is hidden
        row.addWidget(self.steps)
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

    def state_text(self) -> str:
        """The state pill's word: the job's state, or "cancelling" while a cancel is pending."""
        return "cancelling" if self.job.cancelling else self.job.state.value

    def refresh(self) -> None:
        job, c = self.job, colors()
        self._theme = c.name
        state = job.state.value
        pill = self.state_text()
        pill_colour = c.state("cancelled" if job.cancelling else state)
        self.title.setText(job.title or job.kind)
        details = job_details(job)
        self.details.setText(wrap_between_parts(details))
        self.details.setVisible(bool(details))
        self.title.setToolTip(f"{job.title or job.kind}\n{details}\n(job {job.id} · {job.kind})"
                              .replace("\n\n", "\n"))
        self.details.setToolTip(self.title.toolTip())
        self.state_label.setText(pill)
        self.state_label.setStyleSheet(
            f"color: {pill_colour}; font-weight: 600; padding: 0px 8px;"
            f"border: 1px solid {pill_colour}; border-radius: 9px;")
        self.cancel_button.setEnabled(not job.state.finished and not job.cancelling)
        self.cancel_button.setVisible(not job.state.finished)
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
        self._row.setStretch(2, 0 if bar_shown else 1)
        self.steps.setText(progress_text(job))
        self.steps.setVisible(bool(self.steps.text()))
        # "Done" / "Cancelled" would only repeat the state pill.
        text = "" if job.message.lower() == state else job.message
        self.message.setText(text)
        self.message.setVisible(bool(text))
        self.message.setStyleSheet(f"color: {c.failed};" if job.state is JobState.FAILED
                                   else f"color: {c.muted};")
        self._update_thumbnail()

    def set_thumbnail(self, image: QImage) -> None:
        if image.isNull():
            return
        pixmap = QPixmap.fromImage(image).scaled(
            THUMB_PX * 2, THUMB_PX * 2, Qt.AspectRatioMode.KeepAspectRatio,
            Qt.TransformationMode.SmoothTransformation)
        pixmap.setDevicePixelRatio(2.0)
        self.thumb.setPixmap(pixmap)
        self.thumb.show()

    @property
    def thumbnail_path(self) -> str:
        return self._thumb_path

    def _update_thumbnail(self) -> None:
        path = result_image_path(self.job)
        if not path or path == self._thumb_path or self._thumbnails is None:
            return
        self._thumb_path = path
        image = self._thumbnails.get(path, THUMB_PX * 2)
        if image is not None:
            self.set_thumbnail(image)


class QueueDrawer(QDockWidget):
    """A right-hand drawer that follows ``bridge.jobChanged`` and ``bridge.progress``."""

    def __init__(self, bridge: JobBridge, parent: QWidget | None = None) -> None:
        super().__init__("Queue", parent)
        self.bridge = bridge
        self.setObjectName("QueueDrawer")
        self.setFeatures(QDockWidget.DockWidgetFeature.DockWidgetClosable)
        self.setAllowedAreas(Qt.DockWidgetArea.RightDockWidgetArea)
        self.setMinimumWidth(DRAWER_MIN_WIDTH)
        self.cards: dict[int, JobCard] = {}
        self._dirty: set[int] = set()
        self.thumbnails = ThumbnailLoader(self, threads=1, cache_bytes=8 * 2**20)
        self.thumbnails.thumbnailReady.connect(self._on_thumbnail)

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
        bridge.partial.connect(self.on_partial)
        for job in bridge.jobs():
            self.on_job_changed(job)
        self._update_counts()

    @Slot(object)
    def on_job_changed(self, job: JobSnapshot) -> None:
        card = self.cards.get(job.id)
        if card is None:
            card = JobCard(job, self.bridge, thumbnails=self.thumbnails)
            self.cards[job.id] = card
            self._list.insertWidget(0, card)  # newest first
        else:
            card.job = job
            card.refresh()
        self._dirty.discard(job.id)
        self._update_counts()

    @Slot(object, int, int, object)
    def on_progress(self, job: JobSnapshot, step: int, total: int, preview: object) -> None:
        if job.id in self.cards:
            self.cards[job.id].job = job  # drawn at the next tick, with the latest step
            self._dirty.add(job.id)
            if not self._timer.isActive():
                self._timer.start()

    @Slot(object, object)
    def on_partial(self, job: JobSnapshot, _result: Any) -> None:
        """An image of the job exists: show it on the card."""
        card = self.cards.get(job.id)
        if card is not None:
            card.job = job
            card.refresh()

    @Slot(str, int, QImage)
    def _on_thumbnail(self, path: str, _size: int, image: QImage) -> None:
        for card in self.cards.values():
            if card.thumbnail_path == path:
                card.set_thumbnail(image)

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
        self.thumbnails.shutdown()
