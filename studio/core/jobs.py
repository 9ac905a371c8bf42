"""Jobs: what the user asked for, its state, its progress, and the one worker that runs them.

No Qt here (DESIGN rule 1): the GUI wraps :class:`JobRunner` in ``studio.workers`` to turn its
callbacks into signals; the CLI and the server use it directly.

A job's work is a handler ``handler(request, progress, cancel) -> result`` (DESIGN rule 4).
``progress(step, total, preview)`` reports a step; ``cancel`` is a :class:`CancelToken` the handler
checks at least once per step. Handlers may also report intermediate results (one image of a batch)
through ``progress.partial(result)``. Every exception a handler raises ends the job in ``failed`` with
a message a person can act on (DESIGN rule 8), produced by :func:`describe_error`.
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Protocol

log = logging.getLogger(__name__)


CANCELLING = "Cancelling…"  # a running job's message from the moment cancel is asked


class JobState(str, Enum):
    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def finished(self) -> bool:
        return self in (JobState.DONE, JobState.FAILED, JobState.CANCELLED)


class JobCancelled(Exception):
    """Raised inside a handler when its cancel token is set; ends the job as ``cancelled``."""


class UserFacingError(Exception):
    """An error whose message is already written for a person (no traceback needed)."""


class CancelToken:
    """A thread-safe flag the user sets and the work checks between steps."""

    def __init__(self) -> None:
        self._event = threading.Event()

    def cancel(self) -> None:
        self._event.set()

    @property
    def cancelled(self) -> bool:
        return self._event.is_set()

    def raise_if_cancelled(self) -> None:
        if self._event.is_set():
            raise JobCancelled()


class ProgressSink(Protocol):
    """What a handler reports into."""

    def __call__(self, step: int, total: int, preview: Any = None) -> None: ...

    def partial(self, result: Any) -> None: ...

    def message(self, text: str) -> None: ...


@dataclass
class Job:
    """One unit of work in the queue. Fields are written by the worker thread, except that
    :meth:`JobRunner.cancel` sets ``message`` to :data:`CANCELLING` at once."""

    kind: str
    request: Any
    title: str = ""
    id: int = field(default_factory=itertools.count(1).__next__)
    state: JobState = JobState.QUEUED
    step: int = 0
    total: int = 0
    message: str = ""  # the latest status line ("Loading model…") or, when failed, the error
    error: str = ""
    result: Any = None
    partials: list[Any] = field(default_factory=list)
    created: float = field(default_factory=time.time)
    started: float = 0.0
    ended: float = 0.0
    cancel_token: CancelToken = field(default_factory=CancelToken, repr=False)

    @property
    def fraction(self) -> float:
        return self.step / self.total if self.total else 0.0

    @property
    def cancelling(self) -> bool:
        """Cancel was asked and the job has not stopped yet (it stops at its next step)."""
        return self.cancel_token.cancelled and not self.state.finished


class JobListener(Protocol):
    """Callbacks from the worker thread. Implementations must not block."""

    def job_changed(self, job: Job) -> None: ...

    def job_progress(self, job: Job, step: int, total: int, preview: Any) -> None: ...

    def job_partial(self, job: Job, result: Any) -> None: ...


Handler = Callable[[Any, ProgressSink, CancelToken], Any]


def describe_error(exc: BaseException) -> str:
    """Turn an exception into one or two sentences a person can act on."""
    if isinstance(exc, UserFacingError):
        return str(exc)
    text = str(exc) or exc.__class__.__name__
    name = exc.__class__.__name__
    low = text.lower()
    if name == "OutOfMemoryError" or "out of memory" in low:
        return (
            "Out of memory — try a smaller size or fewer images at once. "
            f"({text.splitlines()[0][:200]})"
        )
    if isinstance(exc, FileNotFoundError):
        return f"File not found: {exc.filename or text}"
    if isinstance(exc, PermissionError):
        return f"Permission denied: {exc.filename or text}"
    if isinstance(exc, MemoryError):
        return "The computer ran out of memory. Close other programs or try a smaller size."
    return f"{name}: {text.splitlines()[0][:300]}"


class _Sink:
    def __init__(self, runner: JobRunner, job: Job) -> None:
        self._runner = runner
        self._job = job

    def __call__(self, step: int, total: int, preview: Any = None) -> None:
        self._job.step, self._job.total = step, total
        self._runner._emit("job_progress", self._job, step, total, preview)

    def partial(self, result: Any) -> None:
        self._job.partials.append(result)
        self._runner._emit("job_partial", self._job, result)

    def message(self, text: str) -> None:
        if self._job.cancel_token.cancelled:
            return  # "Cancelling…" stays until the job has stopped
        self._job.message = text
        self._runner._emit("job_changed", self._job)


class JobRunner:
    """One long-lived worker thread that runs jobs one at a time, in order (DESIGN rule 5).

    It owns nothing but the queue: handlers are bound methods of objects (such as the model cache)
    that live as long as the runner, so models stay loaded between jobs.
    """

    def __init__(self, handlers: dict[str, Handler], listener: JobListener | None = None,
                 name: str = "studio-gpu-worker") -> None:
        self._handlers = dict(handlers)
        self._listeners: list[JobListener] = [listener] if listener else []
        self._jobs: list[Job] = []
        self._pending: deque[Job] = deque()
        self._cond = threading.Condition()
        self._stopping = False
        self._current: Job | None = None
        self._thread = threading.Thread(target=self._loop, name=name, daemon=True)
        self._thread.start()

    # -- public API (any thread) -------------------------------------------------------------
    def add_listener(self, listener: JobListener) -> None:
        self._listeners.append(listener)

    def register(self, kind: str, handler: Handler) -> None:
        with self._cond:
            self._handlers[kind] = handler

    def submit(self, kind: str, request: Any, title: str = "") -> Job:
        if kind not in self._handlers:
            raise KeyError(f"no handler for job kind {kind!r}")
        job = Job(kind=kind, request=request, title=title or kind)
        if self._stopping:
            raise RuntimeError("the worker is shutting down")
        # Announce the job before the worker can see it, so listeners get "queued" before "running".
        self._emit("job_changed", job)
        with self._cond:
            self._jobs.append(job)
            self._pending.append(job)
            self._cond.notify_all()
        return job

    def cancel(self, job: Job | int) -> None:
        """Cancel a queued job at once, or ask a running one to stop at its next step.

        A running job says :data:`CANCELLING` from this moment (listeners are told at once, on
        the caller's thread): a step, or a model still loading, can take many seconds.
        """
        job = self._find(job)
        if job is None or job.state.finished:
            return
        asked_before = job.cancel_token.cancelled
        job.cancel_token.cancel()
        with self._cond:  # the worker finishes jobs under this lock too
            if job in self._pending:
                self._pending.remove(job)
                self._finish(job, JobState.CANCELLED)
                return
            if asked_before or job.state.finished:
                return
            job.message = CANCELLING
        self._emit("job_changed", job)

    def cancel_all(self) -> None:
        for job in self.jobs():
            self.cancel(job)

    def clear_finished(self) -> list[Job]:
        with self._cond:
            gone = [j for j in self._jobs if j.state.finished]
            self._jobs = [j for j in self._jobs if not j.state.finished]
        return gone

    def jobs(self) -> list[Job]:
        with self._cond:
            return list(self._jobs)

    @property
    def queue_length(self) -> int:
        """Jobs waiting or running."""
        with self._cond:
            return len(self._pending) + (1 if self._current is not None else 0)

    def wait(self, job: Job, timeout: float | None = None) -> bool:
        """Block until ``job`` has finished; True if it did within ``timeout``."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while not job.state.finished:
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    return False
                self._cond.wait(left)
        return True

    def shutdown(self, wait: bool = True, timeout: float | None = 30.0) -> None:
        """Cancel everything and stop the thread (the running job stops at its next step)."""
        with self._cond:
            self._stopping = True
        self.cancel_all()
        with self._cond:
            self._cond.notify_all()
        if wait:
            self._thread.join(timeout)

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    # -- worker thread -----------------------------------------------------------------------
    def _find(self, job: Job | int) -> Job | None:
        if isinstance(job, Job):
            return job
        with self._cond:
            return next((j for j in self._jobs if j.id == job), None)

    def _emit(self, what: str, *args: Any) -> None:
        for listener in list(self._listeners):
            try:
                getattr(listener, what)(*args)
            except Exception:  # a broken listener must never kill the worker
                log.exception("job listener %s failed", what)

    def _finish(self, job: Job, state: JobState, error: str = "") -> None:
        with self._cond:
            job.state = state
            job.error = error
            if error:
                job.message = error
            elif state is JobState.CANCELLED:
                job.message = "Cancelled"
            elif state is JobState.DONE:
                job.message = "Done"
            job.ended = time.time()
            self._cond.notify_all()
        self._emit("job_changed", job)

    def _loop(self) -> None:
        while True:
            with self._cond:
                while not self._pending and not self._stopping:
                    self._cond.wait()
                if self._stopping and not self._pending:
                    return
                job = self._pending.popleft()
                self._current = job
                handler = self._handlers[job.kind]
            self._run(job, handler)
            with self._cond:
                self._current = None
                self._cond.notify_all()

    def _run(self, job: Job, handler: Handler) -> None:
        job.state = JobState.RUNNING
        job.started = time.time()
        job.message = CANCELLING if job.cancel_token.cancelled else "Starting…"
        self._emit("job_changed", job)
        try:
            job.cancel_token.raise_if_cancelled()
            job.result = handler(job.request, _Sink(self, job), job.cancel_token)
        except JobCancelled:
            self._finish(job, JobState.CANCELLED)
        except BaseException as exc:  # noqa: BLE001 - every failure becomes data (rule 8)
            if isinstance(exc, UserFacingError):  # expected (bad model, refused key): no trace
                log.info("job %s (%s) failed: %s", job.id, job.kind, exc)
            else:
                log.exception("job %s (%s) failed", job.id, job.kind)
            self._finish(job, JobState.FAILED, describe_error(exc))
        else:
            if job.cancel_token.cancelled and job.result is None:
                self._finish(job, JobState.CANCELLED)
            else:
                self._finish(job, JobState.DONE)
