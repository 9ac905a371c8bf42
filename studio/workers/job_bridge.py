"""Qt face of the Qt-free :class:`studio.core.jobs.JobRunner`.

The runner calls its listener on the worker thread; this bridge re-emits each call as a Qt signal.
Signals emitted from another thread reach receivers in the GUI thread through queued connections,
so slots never run on the worker thread and never touch widgets from there (DESIGN rule 2).
Signals carry plain data only: :class:`Job`, ints, numpy arrays, result dataclasses.
"""

from __future__ import annotations

from typing import Any

from PySide6.QtCore import QObject, Signal

from studio.core.jobs import Job, JobRunner


class JobBridge(QObject):
    """Submit, cancel and observe jobs from the GUI."""

    jobChanged = Signal(object)  # Job: queued / running / done / failed / cancelled, new message
    progress = Signal(object, int, int, object)  # Job, step, total, preview (HxWx3 uint8) or None
    partial = Signal(object, object)  # Job, one result (e.g. GeneratedImage) as soon as it exists

    def __init__(self, runner: JobRunner, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.runner = runner
        runner.add_listener(self)

    # JobListener protocol — called on the worker thread; emitting is thread-safe.
    def job_changed(self, job: Job) -> None:
        self.jobChanged.emit(job)

    def job_progress(self, job: Job, step: int, total: int, preview: Any) -> None:
        self.progress.emit(job, step, total, preview)

    def job_partial(self, job: Job, result: Any) -> None:
        self.partial.emit(job, result)

    # Commands — called on the GUI thread.
    def submit(self, kind: str, request: Any, title: str = "") -> Job:
        return self.runner.submit(kind, request, title)

    def cancel(self, job: Job | int) -> None:
        self.runner.cancel(job)

    def cancel_all(self) -> None:
        self.runner.cancel_all()

    def clear_finished(self) -> list[Job]:
        return self.runner.clear_finished()

    def jobs(self) -> list[Job]:
        return self.runner.jobs()

    @property
    def queue_length(self) -> int:
        return self.runner.queue_length

    def shutdown(self, wait: bool = True) -> None:
        self.runner.shutdown(wait=wait)
