"""The lanes work runs on (DESIGN rule 5). No Qt here.

- :class:`JobRunner`, the **GPU lane**: one long-lived worker thread that runs model jobs one at a
  time, in order. The services it calls own the model caches, so models stay loaded between jobs.
- :class:`AsyncLane`, the **I/O lane**: jobs that wait rather than compute — a remote chat reply,
  a download — run concurrently as tasks of an asyncio event loop, and never wait for the GPU.
  In the window the loop is Qt's own (qasync); in the CLI and the server the lane starts a loop
  on a thread of its own. A job's handler here is a coroutine function; blocking library calls
  inside it go through ``asyncio.to_thread``.

Both are :class:`~studio.core.jobs.Lane` s: the same jobs, snapshots, events, cancel and wait.
"""

from __future__ import annotations

import concurrent.futures
import logging
import threading
import weakref
from collections import deque
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, TypeVar, Union

from studio.core.jobs import (
    CancelToken,
    Handler,
    Job,
    JobCancelled,
    JobListener,
    JobState,
    Lane,
    ProgressSink,
    _Sink,
    running_job,
)

if TYPE_CHECKING:  # asyncio is imported when the I/O lane first runs something (start-up time)
    import asyncio

log = logging.getLogger(__name__)

_T = TypeVar("_T")

#: ``await handler(request, progress, cancel) -> result``, the I/O lane's :data:`Handler`
AsyncHandler = Callable[[Any, ProgressSink, CancelToken], Awaitable[Any]]
LoopSource = Union["asyncio.AbstractEventLoop", Callable[[], "asyncio.AbstractEventLoop"], None]


#: Every live GPU lane, so the command line can tell whether a job outlived its shutdown wait.
RUNNERS: weakref.WeakSet[JobRunner] = weakref.WeakSet()


class JobRunner(Lane[Handler]):
    """The GPU lane: one worker thread, jobs in order (DESIGN rule 5).

    ``handlers`` is a mapping of kind → handler, or a function kind → handler (the engine's)."""

    name = "gpu"

    def __init__(self, handlers: dict[str, Handler] | Callable[[str], Handler],
                 listener: JobListener | None = None, name: str = "studio-gpu-worker") -> None:
        self._table: dict[str, Handler] = dict(handlers) if isinstance(handlers, dict) else {}
        fallback = None if isinstance(handlers, dict) else handlers

        def handler_for(kind: str) -> Handler:
            if kind in self._table:
                return self._table[kind]
            if fallback is None:
                raise KeyError(f"no handler for job kind {kind!r}")
            return fallback(kind)

        super().__init__(handler_for, listener)
        self._pending: deque[tuple[Job, Handler]] = deque()
        self._current: Job | None = None
        self._thread = threading.Thread(target=self._loop, name=name, daemon=True)
        self._thread.start()
        RUNNERS.add(self)

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    @property
    def busy(self) -> bool:
        """A job is running on the worker right now."""
        return self._thread.is_alive() and self._current is not None

    @property
    def stuck(self) -> bool:
        """Shut down, yet a job is still running on the worker (it did not stop in time)."""
        return self._stopping and self.busy

    def register(self, kind: str, handler: Handler) -> None:
        """Run jobs of ``kind`` with ``handler`` from now on."""
        with self._cond:
            self._table[kind] = handler

    def _start(self, job: Job, handler: Handler) -> None:
        with self._cond:
            self._pending.append((job, handler))
            self._cond.notify_all()

    def _unqueue(self, job: Job) -> bool:
        for item in self._pending:
            if item[0] is job:
                self._pending.remove(item)
                return True
        return False

    def _stop(self, wait: bool, timeout: float | None) -> None:
        with self._cond:
            self._cond.notify_all()
        if wait:
            self._thread.join(timeout)

    def _loop(self) -> None:
        while True:
            with self._cond:
                while not self._pending and not self._stopping:
                    self._cond.wait()
                if self._stopping and not self._pending:
                    return
                job, handler = self._pending.popleft()
                self._current = job
            self._run(job, handler)
            with self._cond:
                self._current = None
                self._cond.notify_all()

    def _run(self, job: Job, handler: Handler) -> None:
        self._begin(job)
        try:
            job.cancel_token.raise_if_cancelled()
            with running_job(job.cancel_token):
                result = handler(job.request, _Sink(self, job), job.cancel_token)
        except BaseException as exc:  # noqa: BLE001 - every failure becomes data (rule 8)
            self._conclude(job, exc=exc)
        else:
            self._conclude(job, result)


class AsyncLane(Lane[AsyncHandler]):
    """The I/O lane: each job a task on an asyncio event loop, all running at once.

    ``loop``: the loop to use, or a function that makes it (the window passes one for Qt's, through
    qasync); without one the lane runs a loop of its own on a daemon thread. Either way the loop is
    made when the lane first needs it, so a window or a command that never uses the lane pays
    nothing for asyncio. Submitting and cancelling work from any thread.
    A cancel sets the job's token and cancels its task, so a read blocked on a quiet server ends
    at once; a handler that wants to keep what it has (a reply cut short) catches
    ``asyncio.CancelledError`` and returns it."""

    name = "io"

    def __init__(self, handlers: dict[str, AsyncHandler] | Callable[[str], AsyncHandler],
                 loop: LoopSource = None,
                 listener: JobListener | None = None, name: str = "studio-io-lane") -> None:
        handler_for: Callable[[str], AsyncHandler]
        if isinstance(handlers, dict):
            table = dict(handlers)

            def from_table(kind: str) -> AsyncHandler:
                if kind not in table:
                    raise KeyError(f"no handler for job kind {kind!r}")
                return table[kind]

            handler_for = from_table
        else:
            handler_for = handlers
        super().__init__(handler_for, listener)
        self._tasks: dict[int, asyncio.Task] = {}
        self._thread: threading.Thread | None = None
        self._thread_name = name
        self._loop_source = loop
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_lock = threading.Lock()

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        """The lane's event loop, made on first use."""
        with self._loop_lock:
            if self._loop is None:
                self._loop = self._make_loop()
            return self._loop

    def _make_loop(self) -> asyncio.AbstractEventLoop:
        import asyncio

        source = self._loop_source
        if isinstance(source, asyncio.AbstractEventLoop):
            return source
        if source is not None:
            return source()
        loop = asyncio.new_event_loop()
        ready = threading.Event()

        def serve() -> None:
            asyncio.set_event_loop(loop)
            loop.call_soon(ready.set)
            loop.run_forever()
            loop.run_until_complete(loop.shutdown_default_executor())
            loop.close()

        self._thread = threading.Thread(target=serve, name=self._thread_name, daemon=True)
        self._thread.start()
        ready.wait()
        return loop

    def call(self, fn: Callable[[], _T]) -> concurrent.futures.Future[_T]:
        """Run a blocking I/O function on the loop's executor; a future of its result (for
        short waits that are not jobs: a folder scan, a Hub query)."""
        import asyncio

        return asyncio.run_coroutine_threadsafe(asyncio.to_thread(fn), self.loop)

    def _start(self, job: Job, handler: AsyncHandler) -> None:
        def create() -> None:
            if job.state.finished:  # cancelled before the loop got to it
                return
            self._tasks[job.id] = self.loop.create_task(self._run(job, handler))

        self._on_loop(create)

    def _interrupt(self, job: Job) -> None:
        def cancel_task() -> None:
            task = self._tasks.get(job.id)
            if task is not None and not task.done():
                task.cancel()

        self._on_loop(cancel_task)

    def _unqueue(self, job: Job) -> bool:
        # A job not yet started as a task is as good as queued: it ends cancelled at once.
        return job.state is JobState.QUEUED and job.id not in self._tasks

    def _stop(self, wait: bool, timeout: float | None) -> None:
        if self._thread is None:  # Qt's loop, or none was ever made
            return
        self.loop.call_soon_threadsafe(self.loop.stop)
        if wait:
            self._thread.join(timeout)

    def _on_loop(self, fn: Callable[[], None]) -> None:
        """Run ``fn`` on the loop's thread, at its next turn (safe from any thread)."""
        self.loop.call_soon_threadsafe(fn)

    async def _run(self, job: Job, handler: AsyncHandler) -> None:
        import asyncio

        self._begin(job)
        try:
            job.cancel_token.raise_if_cancelled()
            result = await handler(job.request, _Sink(self, job), job.cancel_token)
        except asyncio.CancelledError:  # Stop, or the loop closing: either way, cancelled
            self._conclude(job, exc=JobCancelled())
        except BaseException as exc:  # noqa: BLE001 - every failure becomes data (rule 8)
            self._conclude(job, exc=exc)
        else:
            self._conclude(job, result)
        finally:
            self._tasks.pop(job.id, None)
