"""Qt face of the Qt-free :class:`~studio.pipelines.train.session.TrainingSession`.

The session calls back on its own thread; this object re-emits each call as a signal, which Qt
delivers to the GUI thread (queued), so slots never touch widgets from the training thread.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from PySide6.QtCore import QObject, Signal

from studio.pipelines.train.session import Frame, TrainingSession


class SessionBridge(QObject):
    """Owns one session; ``frame`` and ``stateChanged`` arrive on the GUI thread."""

    frame = Signal(object)  # Frame
    stateChanged = Signal(str, str)  # state, message

    def __init__(self, lesson: str, *, runs_root: Path | None, config: dict[str, Any] | None,
                 seed: int, busy: Callable[[], bool] | None,
                 parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.session = TrainingSession(lesson, self._emit_frame, self.stateChanged.emit,
                                       runs_root=runs_root, config=config, seed=seed, busy=busy)

    def _emit_frame(self, frame: Frame) -> None:  # session thread
        self.frame.emit(frame)

    def stop(self) -> None:
        self.session.stop()
