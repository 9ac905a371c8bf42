"""The Generate workspace's big picture: live preview while denoising, then the finished image.

Shows a step line ("Step 12/20 · 3.4 it/s · ETA 00:02") with a progress bar under the image, a
notice line for warnings about the shown image, and failures in a readable error card.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np
from PySide6.QtCore import QObject, Qt, QTimer
from PySide6.QtGui import QImage
from PySide6.QtWidgets import QHBoxLayout, QLabel, QProgressBar, QVBoxLayout, QWidget

from studio.core.progress import batch_progress_text
from studio.ui.widgets.image_view import ImageView

IDLE_TEXT = "Your image appears here.\nWrite a prompt and press Generate (Ctrl+Enter)."


def preview_to_qimage(array: Any, width: int = 0, height: int = 0) -> QImage:
    """A HxWx3 uint8 array as a QImage that owns its pixels, smoothly scaled to width×height."""
    arr = np.asarray(array)
    if arr.ndim != 3 or arr.shape[2] not in (3, 4):
        raise ValueError(f"a preview must be HxWx3, got shape {arr.shape}")
    if arr.dtype != np.uint8:
        arr = np.clip(arr, 0, 255).astype(np.uint8)
    arr = np.ascontiguousarray(arr)
    h, w, c = arr.shape
    fmt = QImage.Format.Format_RGB888 if c == 3 else QImage.Format.Format_RGBA8888
    # QImage borrows the numpy buffer; copy() gives it pixels of its own before arr is freed.
    image = QImage(arr.data, w, h, w * c, fmt).copy()
    if width > 0 and height > 0 and (width, height) != (w, h):
        image = image.scaled(width, height, Qt.AspectRatioMode.IgnoreAspectRatio,
                             Qt.TransformationMode.SmoothTransformation)
    return image


def format_eta(seconds: float) -> str:
    seconds = max(0, int(round(seconds)))
    if seconds >= 3600:
        return f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"
    return f"{seconds // 60:02d}:{seconds % 60:02d}"


class StepClock:
    """Steps per second of one job, smoothed (exponential moving average of step times)."""

    def __init__(self, smoothing: float = 0.3) -> None:
        self._alpha = smoothing
        self._last: tuple[int, float] | None = None
        self._seconds_per_step: float | None = None

    def tick(self, step: int, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        if self._last is not None and step > self._last[0]:
            per = (now - self._last[1]) / (step - self._last[0])
            self._seconds_per_step = per if self._seconds_per_step is None else \
                self._alpha * per + (1 - self._alpha) * self._seconds_per_step
        if self._last is None or step != self._last[0]:
            self._last = (step, now)

    @property
    def rate(self) -> float | None:
        """Iterations per second, or None before two steps were seen."""
        if not self._seconds_per_step:
            return None
        return 1.0 / self._seconds_per_step

    def eta(self, step: int, total: int) -> float | None:
        if self._seconds_per_step is None:
            return None
        return max(0, total - step) * self._seconds_per_step


def step_text(step: int, total: int, clock: StepClock, count: int = 1, steps: int = 0) -> str:
    """'Step 4/8 · 3.4 it/s · ETA 00:02', or 'Image 2/4 · step 4/8 · …' in a batch of four
    (``step``/``total`` count the whole batch; the ETA is for the whole batch too; ``steps`` is
    the request's, see :func:`batch_position`)."""
    where = batch_progress_text(step, total, count, steps)
    parts = [where[:1].upper() + where[1:]]
    rate = clock.rate
    if rate is not None:
        parts.append(f"{rate:.1f} it/s" if rate >= 1 else f"{1 / rate:.1f} s/it")
        eta = clock.eta(step, total)
        if eta is not None:
            parts.append(f"ETA {format_eta(eta)}")
    return " · ".join(parts)


class PreviewArea(QWidget):
    """Image view + status footer + notice line + error card."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.view = ImageView(placeholder=IDLE_TEXT)
        self.error_card = QLabel()
        self.error_card.setObjectName("errorCard")
        self.error_card.setWordWrap(True)
        self.error_card.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.error_card.setAlignment(Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignVCenter)
        self.error_card.setStyleSheet(
            "#errorCard { background: rgba(220, 60, 60, 38); border: 1px solid rgba(230, 80, 80, 150);"
            " border-radius: 8px; padding: 12px 14px; color: #ff8a80; }")
        self.error_card.hide()
        self.notice = QLabel()
        self.notice.setObjectName("imageNotice")
        self.notice.setWordWrap(True)
        self.notice.setStyleSheet("#imageNotice { color: #f0a030; }")
        self.notice.hide()
        self.status = QLabel()
        self.status.setObjectName("stepStatus")
        self.status.setProperty("muted", True)
        self.bar = QProgressBar()
        self.bar.setTextVisible(False)
        self.bar.setFixedHeight(6)
        self.bar.setMaximumWidth(260)
        self.bar.hide()

        col = QVBoxLayout(self)
        col.setContentsMargins(0, 0, 0, 0)
        col.setSpacing(6)
        col.addWidget(self.view, 1)
        col.addWidget(self.error_card)
        col.addWidget(self.notice)
        footer = QHBoxLayout()
        footer.setContentsMargins(2, 0, 2, 0)
        footer.addWidget(self.status, 1)
        footer.addWidget(self.bar)
        col.addLayout(footer)
        self.show_idle()

    def show_idle(self) -> None:
        self.view.clear()
        self.view.set_placeholder(IDLE_TEXT)
        self._set_footer("", None)
        self._set_error("")
        self.set_notice([])

    def show_message(self, text: str) -> None:
        """A status line while nothing can be drawn yet ("Loading model…", "Queued…")."""
        if not self.view.has_image():
            self.view.set_placeholder(text)
        self._set_footer(text, 0, busy=True)
        self._set_error("")

    def show_frame(self, image: QImage | None, step: int, total: int, clock: StepClock,
                   count: int = 1, note: str = "", steps: int = 0) -> None:
        """One denoising step of a batch of ``count``; ``image`` None (previews off) updates
        only the step line; ``note`` ("Cancelling…") replaces the step line."""
        self._set_error("")
        self.set_notice([])
        if image is not None and not image.isNull():
            self.view.set_image(image, keep_view=True)
        self._set_footer(note or step_text(step, total, clock, count, steps),
                         step / total if total else 0)

    def show_note(self, text: str) -> None:
        """Replace the status line only ("Cancelling…"), keeping the picture and the bar."""
        self.status.setText(text)

    def show_image(self, image: QImage, caption: str = "", warnings: list[str] | None = None
                   ) -> None:
        self._set_error("")
        self.view.set_image(image, keep_view=False)
        self._set_footer(caption, None)
        self.set_notice(warnings or [])

    def show_error(self, text: str) -> None:
        self._set_footer("", None)
        self._set_error(text)
        if not self.view.has_image():
            self.view.set_placeholder("")

    def show_status(self, text: str) -> None:
        """A final status line (e.g. "Cancelled — 2 images kept"), with no progress bar."""
        self._set_footer(text, None)

    def set_notice(self, warnings: list[str]) -> None:
        self.notice.setText("⚠ " + "\n⚠ ".join(warnings) if warnings else "")
        self.notice.setVisible(bool(warnings))

    # -- internals ---------------------------------------------------------------------------
    def _set_footer(self, text: str, fraction: float | None, busy: bool = False) -> None:
        self.status.setText(text)
        if fraction is None:
            self.bar.hide()
            return
        self.bar.show()
        if busy:
            self.bar.setRange(0, 0)  # indeterminate while loading
        else:
            self.bar.setRange(0, 1000)
            self.bar.setValue(int(fraction * 1000))

    def _set_error(self, text: str) -> None:
        self.error_card.setText(text)
        self.error_card.setVisible(bool(text))


class FrameThrottle(QObject):
    """Passes on at most one frame per ``interval_s``; the latest frame always wins.

    ``offer(key, frame)`` keeps the newest frame and calls ``draw(key, frame)`` at once or when
    the interval has passed, so a fast model never floods the GUI thread with repaints and the
    newest step is never lost. ``drop(key)`` forgets a waiting frame of that key.
    """

    def __init__(self, draw: Callable[[int, Any], None], interval_s: float = 1 / 30,
                 parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._draw = draw
        self._interval = interval_s
        self._waiting: tuple[int, Any] | None = None  # (job id, the panel's frame)
        self._last = 0.0
        self._timer = QTimer(self, singleShot=True)
        self._timer.timeout.connect(self._flush)

    def offer(self, key: int, frame: Any) -> None:
        self._waiting = (key, frame)
        wait = self._interval - (time.monotonic() - self._last)
        if wait <= 0:
            self._flush()
        elif not self._timer.isActive():
            self._timer.start(max(1, int(wait * 1000)))

    def drop(self, key: int) -> None:
        if self._waiting is not None and self._waiting[0] == key:
            self._waiting = None

    def stop(self) -> None:
        self._timer.stop()
        self._waiting = None

    def _flush(self) -> None:
        if self._waiting is None:
            return
        key, frame = self._waiting
        self._waiting = None
        self._last = time.monotonic()
        self._draw(key, frame)
