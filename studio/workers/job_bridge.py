"""The Qt face of the Qt-free engine (:class:`studio.core.engine.Engine`).

``bridge.submit(request)`` returns a :class:`QtJobHandle`: a QObject whose signals carry that one
job's events — its snapshots, previews and results — so a panel connects to the jobs it submitted
and keeps no bookkeeping of its own. The bridge also re-emits every job's events (``jobChanged``,
``progress``, ``partial``) for the views that show all of them: the queue drawer and the status
bar.

Lanes call listeners on their own thread (the GPU worker; the I/O lane's loop, which in the window
is Qt's own). Signals emitted there reach receivers in the GUI thread through queued connections,
so slots never run on a worker thread and never touch widgets from there (DESIGN rule 2). Signals
carry plain data: :class:`~studio.core.jobs.JobSnapshot` s, ints, numpy arrays, result dataclasses.
"""

from __future__ import annotations

from typing import Any

from PySide6.QtCore import QObject, Qt, Signal, SignalInstance, Slot

from studio.core.engine import Engine
from studio.core.jobs import JobHandle, JobRef, JobSnapshot, JobState


def _emit(signal: SignalInstance, *args: Any) -> None:
    try:
        signal.emit(*args)
    except RuntimeError:  # the receiving QObject was destroyed meanwhile (a closed window)
        pass


class QtJobHandle(QObject):
    """One submitted job, as signals, emitted on the GUI thread. Every signal carries the
    snapshot of the moment it is about. ``finished``, ``failed`` and ``cancelled`` each come
    once, after the last ``partial``; ``ended`` follows whichever it was.

    Events pass through one queued hop to the GUI thread before the public signals go out, so
    connecting right after ``bridge.submit()`` returns misses nothing — not even the end of a
    job that finished at once."""

    changed = Signal(object)  # JobSnapshot: queued / running / a new status line
    progress = Signal(object, int, int, object)  # snapshot, step, total, preview or None
    partial = Signal(object, object)  # snapshot, one result (an image, a chat chunk)
    finished = Signal(object)  # snapshot: done
    failed = Signal(object)  # snapshot: failed (snapshot.error says why)
    cancelled = Signal(object)  # snapshot: cancelled
    ended = Signal(object)  # snapshot: any of the three above
    _event = Signal(object)  # (name, args) from the lane's thread, queued to this object

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.job: JobHandle | None = None
        self._event.connect(self._dispatch, Qt.ConnectionType.QueuedConnection)

    # JobListener — called on the lane's thread; emitting is thread-safe.
    def job_changed(self, job: JobSnapshot) -> None:
        _emit(self._event, ("changed", (job,)))

    def job_progress(self, job: JobSnapshot, step: int, total: int, preview: Any) -> None:
        _emit(self._event, ("progress", (job, step, total, preview)))

    def job_partial(self, job: JobSnapshot, result: Any) -> None:
        _emit(self._event, ("partial", (job, result)))

    @Slot(object)
    def _dispatch(self, event: tuple[str, tuple]) -> None:
        name, args = event
        getattr(self, name).emit(*args)
        if name != "changed":
            return
        job = args[0]
        if job.state is JobState.DONE:
            self.finished.emit(job)
        elif job.state is JobState.FAILED:
            self.failed.emit(job)
        elif job.state is JobState.CANCELLED:
            self.cancelled.emit(job)
        if job.finished:
            self.ended.emit(job)

    # Commands (GUI thread)
    @property
    def id(self) -> int:
        return self.job.id if self.job is not None else 0

    def __getattr__(self, name: str) -> Any:  # request, state, result, error, … of now
        if name == "job" or name.startswith("_"):
            raise AttributeError(name)
        job = self.__dict__.get("job")
        if job is None:
            raise AttributeError(name)
        return getattr(job.snapshot, name)

    @property
    def snapshot(self) -> JobSnapshot | None:
        return self.job.snapshot if self.job is not None else None

    def cancel(self) -> None:
        if self.job is not None:
            self.job.cancel()


class JobBridge(QObject):
    """Submit, cancel and observe jobs from the GUI, through the engine."""

    jobChanged = Signal(object)  # JobSnapshot of any job: queued / running / done / …
    progress = Signal(object, int, int, object)  # snapshot, step, total, preview or None
    partial = Signal(object, object)  # snapshot, one result as soon as it exists

    def __init__(self, engine: Engine, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.engine = engine
        engine.add_listener(self)

    # JobListener — every job, on the lane's thread.
    def job_changed(self, job: JobSnapshot) -> None:
        _emit(self.jobChanged, job)

    def job_progress(self, job: JobSnapshot, step: int, total: int, preview: Any) -> None:
        _emit(self.progress, job, step, total, preview)

    def job_partial(self, job: JobSnapshot, result: Any) -> None:
        _emit(self.partial, job, result)

    # Commands — called on the GUI thread.
    def submit(self, request: object, title: str = "") -> QtJobHandle:
        """Queue ``request`` on its lane; connect to the handle's signals right after (they go
        out on this thread's next turn, so none is missed)."""
        handle = QtJobHandle()
        handle.job = self.engine.submit(request, title, listener=handle)
        return handle

    def cancel(self, job: JobRef | QtJobHandle) -> None:
        target = job.job if isinstance(job, QtJobHandle) else job
        if target is not None:  # a handle whose job was never submitted has nothing to cancel
            self.engine.cancel(target)

    def cancel_all(self) -> None:
        self.engine.cancel_all()

    def clear_finished(self) -> list[JobSnapshot]:
        return self.engine.clear_finished()

    def jobs(self) -> list[JobSnapshot]:
        return self.engine.jobs()

    @property
    def queue_length(self) -> int:
        return self.engine.queue_length

    def shutdown(self, wait: bool = True) -> None:
        self.engine.shutdown(wait=wait)
