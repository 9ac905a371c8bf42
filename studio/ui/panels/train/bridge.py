"""Qt face of the Qt-free training sessions.

The window trains in a child process (:class:`ProcessTrainingSession`): the trainer and the
painting then run on separate cores instead of taking turns on one GIL. ``in_process=False``
uses the thread-based :class:`TrainingSession` instead (same API). Either calls back on a thread
of its own; this object re-emits each call as a signal on the GUI thread, so slots never touch
widgets from another thread.

Frames and states hop to the GUI thread through private signals queued to this object, and only
then go out as ``frame``/``stateChanged``: once :meth:`stop` has run, what the old session had
already sent is dropped here. (Qt still delivers a queued call after its connection is cut, so
without this a frame of the previous lesson could reach the next lesson's view.)
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from PySide6.QtCore import QObject, Signal, Slot

from studio.pipelines.train.process_session import ProcessTrainingSession
from studio.pipelines.train.session import Frame, TrainingSession


class SessionBridge(QObject):
    """Owns one session; ``frame`` and ``stateChanged`` arrive on the GUI thread."""

    frame = Signal(object)  # Frame
    stateChanged = Signal(str, str)  # state, message
    _frameIn = Signal(object)  # from the session's thread, queued to this object
    _stateIn = Signal(str, str)

    def __init__(self, lesson: str, *, runs_root: Path | None, config: dict[str, Any] | None,
                 seed: int, busy: Callable[[], bool] | None, in_process: bool = True,
                 parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._stopped = False
        self._frameIn.connect(self._deliver_frame)
        self._stateIn.connect(self._deliver_state)
        kind = ProcessTrainingSession if in_process else TrainingSession
        self.session: ProcessTrainingSession | TrainingSession = kind(
            lesson, self._frameIn.emit, self._stateIn.emit, runs_root=runs_root,
            config=config, seed=seed, busy=busy)

    @Slot(object)
    def _deliver_frame(self, frame: Frame) -> None:
        if not self._stopped:
            self.frame.emit(frame)

    @Slot(str, str)
    def _deliver_state(self, state: str, message: str) -> None:
        if not self._stopped:
            self.stateChanged.emit(state, message)

    def stop(self) -> None:
        self._stopped = True
        self.session.stop()
