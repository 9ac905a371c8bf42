"""Jobs: what the user asked for, its state, its progress, and what every lane does with them.

No Qt here (DESIGN rule 1): the GUI turns job events into signals in ``studio.workers``; the CLI
and the server listen to them directly. The lanes themselves (the GPU worker and the I/O event
loop) are in :mod:`studio.core.lanes`; :mod:`studio.core.engine` decides which lane runs what.

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
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Generic, Protocol, TypeAlias, TypeVar

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


class Checkable(Protocol):
    """A request that checks itself: ``validate()`` raises ValueError with the reason."""

    def validate(self) -> None: ...


_Request = TypeVar("_Request", bound=Checkable)


def checked(request: _Request) -> _Request:
    """``request`` once its own ``validate()`` passes; its ValueError becomes the
    :class:`UserFacingError` the person who made it reads (every service's first check)."""
    try:
        request.validate()
    except ValueError as exc:
        raise UserFacingError(str(exc)) from exc
    return request


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


_running = threading.local()


def running_cancel_token() -> CancelToken | None:
    """The token of the job this thread is running (set by the worker lane), or None. Code deep
    inside a library call (a forward hook in a UNet block) checks it where no token is passed."""
    return getattr(_running, "token", None)


class running_job:  # noqa: N801 - used as a context manager, named for how it reads
    """``with running_job(token):`` makes ``token`` this thread's :func:`running_cancel_token`."""

    def __init__(self, token: CancelToken) -> None:
        self._token = token

    def __enter__(self) -> CancelToken:
        self._before = getattr(_running, "token", None)
        _running.token = self._token
        return self._token

    def __exit__(self, *exc: object) -> None:
        _running.token = self._before


class ProgressSink(Protocol):
    """What a handler reports into. ``preview`` and ``result`` are ``Any``: each kind shows its
    own (an image's pixels, a download's TransferStatus; a GeneratedImage, a chat chunk…)."""

    def __call__(self, step: int, total: int, preview: Any = None) -> None: ...

    def partial(self, result: Any) -> None: ...

    def message(self, text: str) -> None: ...


@dataclass(frozen=True, eq=False)
class JobSnapshot:
    """A job as it was at one moment. Every event carries one, so a listener never sees a later
    state than the event it handles (the job itself keeps changing on its lane's thread).

    ``eq=False``: two snapshots of one job are different objects; compare ``id``.

    ``request``, ``result`` and ``partials`` stay ``Any``: a lane runs every request type the
    engine registers, and each listener reads the fields of the kinds it submitted."""

    id: int
    kind: str
    title: str
    request: Any
    lane: str
    state: JobState
    step: int
    total: int
    message: str  # the latest status line ("Loading model…") or, when failed, the error
    error: str
    result: Any
    partials: tuple[Any, ...]
    created: float
    started: float
    ended: float
    cancelling: bool  # cancel was asked and the job has not stopped yet

    @property
    def fraction(self) -> float:
        return self.step / self.total if self.total else 0.0

    @property
    def finished(self) -> bool:
        return self.state.finished


@dataclass(eq=False)
class Job:
    """One unit of work on a lane. Its fields are written by the lane (the worker) only, except
    that :meth:`Lane.cancel` sets ``message`` to :data:`CANCELLING` at once. Everyone else sees
    :class:`JobSnapshot` s."""

    kind: str
    request: Any
    title: str = ""
    lane: str = "gpu"
    id: int = field(default_factory=itertools.count(1).__next__)
    state: JobState = JobState.QUEUED
    step: int = 0
    total: int = 0
    message: str = ""
    error: str = ""
    result: Any = None
    partials: list[Any] = field(default_factory=list)
    created: float = field(default_factory=time.time)
    started: float = 0.0
    ended: float = 0.0
    cancel_token: CancelToken = field(default_factory=CancelToken, repr=False)
    listeners: list[JobListener] = field(default_factory=list, repr=False)

    @property
    def cancelling(self) -> bool:
        """Cancel was asked and the job has not stopped yet (it stops at its next step)."""
        return self.cancel_token.cancelled and not self.state.finished

    def snapshot(self) -> JobSnapshot:
        return JobSnapshot(self.id, self.kind, self.title, self.request, self.lane, self.state,
                           self.step, self.total, self.message, self.error, self.result,
                           tuple(self.partials), self.created, self.started, self.ended,
                           self.cancelling)


class JobListener(Protocol):
    """Events of jobs, each with the snapshot it is about. Called on the lane's thread (the GPU
    worker, or the I/O lane's event loop): implementations must not block."""

    def job_changed(self, job: JobSnapshot) -> None: ...

    def job_progress(self, job: JobSnapshot, step: int, total: int, preview: Any) -> None: ...

    def job_partial(self, job: JobSnapshot, result: Any) -> None: ...


#: ``handler(request, progress, cancel) -> result`` (request and result: any registered kind's)
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
    """The :class:`ProgressSink` a handler reports into: updates the job, tells listeners."""

    def __init__(self, lane: Lane, job: Job) -> None:
        self._lane = lane
        self._job = job

    def __call__(self, step: int, total: int, preview: Any = None) -> None:
        self._job.step, self._job.total = step, total
        self._lane._emit("job_progress", self._job, step, total, preview)

    def partial(self, result: Any) -> None:
        self._job.partials.append(result)
        self._lane._emit("job_partial", self._job, result)

    def message(self, text: str) -> None:
        if self._job.cancel_token.cancelled:
            return  # "Cancelling…" stays until the job has stopped
        self._job.message = text
        self._lane._emit("job_changed", self._job)


class JobHandle:
    """What submitting a job gives back: that one job's snapshot, its cancel, a wait, and its
    events (:meth:`add_listener`, or a listener passed to ``submit`` so not even "queued" is
    missed). Attributes read the latest snapshot."""

    def __init__(self, lane: Lane, job: Job) -> None:
        self._lane = lane
        self._job = job

    @property
    def id(self) -> int:
        return self._job.id

    @property
    def snapshot(self) -> JobSnapshot:
        return self._job.snapshot()

    def __getattr__(self, name: str) -> Any:  # state, result, error, message, step, …
        if name.startswith("_"):
            raise AttributeError(name)
        return getattr(self._job.snapshot(), name)

    def add_listener(self, listener: JobListener) -> None:
        self._job.listeners.append(listener)

    def cancel(self) -> None:
        self._lane.cancel(self._job.id)

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the job has finished; True if it did within ``timeout``."""
        return self._lane.wait(self._job.id, timeout)

    def __repr__(self) -> str:
        return f"<JobHandle {self._job.id} {self._job.kind} {self._job.state.value}>"


#: Anything that names a job: its handle, a snapshot of it, the job, or its id.
JobRef: TypeAlias = "JobHandle | JobSnapshot | Job | int"


#: What a lane's ``handler_for(kind)`` gives: a :data:`Handler` on the GPU lane, a coroutine
#: function on the I/O lane (:data:`studio.core.lanes.AsyncHandler`).
_LaneHandler = TypeVar("_LaneHandler")


class Lane(Generic[_LaneHandler]):
    """What every lane shares: its jobs, their events, cancel, wait and the end of a job.

    A lane runs jobs of the kinds its ``handler_for(kind)`` knows; subclasses decide when and
    where (:class:`studio.core.lanes.JobRunner`: one worker thread, in order;
    :class:`studio.core.lanes.AsyncLane`: concurrently, on an asyncio event loop)."""

    name = "lane"

    def __init__(self, handler_for: Callable[[str], _LaneHandler],
                 listener: JobListener | None = None
                 ) -> None:
        self._handler_for = handler_for
        self._listeners: list[JobListener] = [listener] if listener else []
        self._jobs: list[Job] = []
        self._cond = threading.Condition()
        self._stopping = False

    # -- public API (any thread) -------------------------------------------------------------
    def add_listener(self, listener: JobListener) -> None:
        self._listeners.append(listener)

    def remove_listener(self, listener: JobListener) -> None:
        if listener in self._listeners:
            self._listeners.remove(listener)

    def submit(self, kind: str, request: object, title: str = "",
               listener: JobListener | None = None) -> JobHandle:
        """Queue a job; ``listener`` hears its events from the first ("queued") on."""
        handler = self._handler_for(kind)  # unknown kinds fail here, in the caller
        if self._stopping:
            raise RuntimeError(f"the {self.name} lane is shutting down")
        job = Job(kind=kind, request=request, title=title or kind, lane=self.name,
                  listeners=[listener] if listener else [])
        # Announce the job before it can start, so listeners get "queued" before "running".
        self._emit("job_changed", job)
        with self._cond:
            self._jobs.append(job)
        self._start(job, handler)
        return JobHandle(self, job)

    def cancel(self, job: JobRef) -> None:
        """Cancel a queued job at once, or ask a running one to stop at its next step.

        A running job says :data:`CANCELLING` from this moment (listeners are told at once, on
        the caller's thread): a step, or a model still loading, can take many seconds."""
        found = self._find(job)
        if found is None or found.state.finished:
            return
        asked_before = found.cancel_token.cancelled
        found.cancel_token.cancel()
        with self._cond:  # jobs are finished under this lock too
            if self._unqueue(found):
                self._finish(found, JobState.CANCELLED)
                return
            if asked_before or found.state.finished:
                return
            found.message = CANCELLING
        self._emit("job_changed", found)
        self._interrupt(found)

    def cancel_all(self) -> None:
        for job in self.jobs():
            self.cancel(job.id)

    def clear_finished(self) -> list[JobSnapshot]:
        with self._cond:
            gone = [j for j in self._jobs if j.state.finished]
            self._jobs = [j for j in self._jobs if not j.state.finished]
        return [j.snapshot() for j in gone]

    def jobs(self) -> list[JobSnapshot]:
        with self._cond:
            return [j.snapshot() for j in self._jobs]

    @property
    def queue_length(self) -> int:
        """Jobs waiting or running."""
        with self._cond:
            return sum(1 for j in self._jobs if not j.state.finished)

    def wait(self, job: JobRef, timeout: float | None = None) -> bool:
        """Block until ``job`` has finished; True if it did within ``timeout``."""
        found = self._find(job)
        if found is None:
            return True
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while not found.state.finished:
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    return False
                self._cond.wait(left)
        return True

    def shutdown(self, wait: bool = True, timeout: float | None = 30.0) -> None:
        """Cancel everything and stop (a running job stops at its next step)."""
        with self._cond:
            self._stopping = True
        self.cancel_all()
        self._stop(wait, timeout)

    # -- for subclasses ----------------------------------------------------------------------
    def _start(self, job: Job, handler: _LaneHandler) -> None:
        raise NotImplementedError

    def _unqueue(self, job: Job) -> bool:
        """Take a job that has not started off the queue (under the lock); True if it was."""
        return False

    def _interrupt(self, job: Job) -> None:
        """Stop a running job sooner than its next check of the cancel token, if possible."""

    def _stop(self, wait: bool, timeout: float | None) -> None:
        """Let the lane's thread or loop end once its jobs are cancelled."""

    def _begin(self, job: Job) -> None:
        job.state = JobState.RUNNING
        job.started = time.time()
        job.message = CANCELLING if job.cancel_token.cancelled else "Starting…"
        self._emit("job_changed", job)

    def _conclude(self, job: Job, result: Any = None, exc: BaseException | None = None) -> None:
        """End a job that ran: its result, or what its exception means (DESIGN rule 8)."""
        if exc is None:
            job.result = result
            cancelled = job.cancel_token.cancelled and result is None
            self._finish(job, JobState.CANCELLED if cancelled else JobState.DONE)
        elif isinstance(exc, JobCancelled):
            self._finish(job, JobState.CANCELLED)
        else:
            if isinstance(exc, UserFacingError):  # expected (bad model, refused key): no trace
                log.info("job %s (%s) failed: %s", job.id, job.kind, exc)
            else:
                log.error("job %s (%s) failed", job.id, job.kind, exc_info=exc)
            self._finish(job, JobState.FAILED, describe_error(exc))

    def _find(self, job: JobRef) -> Job | None:
        if isinstance(job, Job):
            return job
        if isinstance(job, JobHandle):
            return job._job
        wanted = job if isinstance(job, int) else job.id
        with self._cond:
            return next((j for j in self._jobs if j.id == wanted), None)

    def _emit(self, what: str, job: Job, *args: Any) -> None:
        snapshot = job.snapshot()
        for listener in list(self._listeners) + list(job.listeners):
            try:
                getattr(listener, what)(snapshot, *args)
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
