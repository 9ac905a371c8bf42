"""From the job queue to an HTTP client: per-request event queues, stop strings, disconnects.

Every request submits its job to the engine with a listener of its own, which hands each partial
result and the end of the job (on the lane's thread) to that request's asyncio queue. While the
request waits on the queue it asks the server whether its client is still there, so a client that
hangs up — even while its job is still queued — cancels the job.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator, Awaitable, Callable
from typing import TYPE_CHECKING, Any, TypeAlias

from studio.core.engine import Engine
from studio.core.jobs import JobSnapshot

if TYPE_CHECKING:
    from starlette.requests import Request

#: app.py's ``job_events(request, job_request, kind)``: :func:`events` for one HTTP request
JobEvents: TypeAlias = "Callable[[Request, object, str], AsyncGenerator[tuple[str, Any], None]]"

POLL_SECONDS = 0.1
SHUTTING_DOWN = "The server is shutting down; the reply was cut short."


class _JobEvents:
    """The listener of one request's job: its partial results and its end, into a queue."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.queue: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()

    def _put(self, item: tuple[str, Any]) -> None:
        with contextlib.suppress(RuntimeError):  # the loop is closed: the server has stopped
            self.loop.call_soon_threadsafe(self.queue.put_nowait, item)

    # JobListener (the lane's thread; never blocks)
    def job_changed(self, job: JobSnapshot) -> None:
        if job.state.finished:
            self._put(("end", job))

    def job_progress(self, job: JobSnapshot, step: int, total: int, preview: Any) -> None:
        pass

    def job_partial(self, job: JobSnapshot, result: Any) -> None:
        self._put(("partial", result))


class ClientGone(Exception):
    """The HTTP client hung up; its job has been cancelled."""


async def events(engine: Engine, request: object, title: str,
                 client_gone: Callable[[], Awaitable[bool]]
                 ) -> AsyncGenerator[tuple[str, Any], None]:
    """Submit a job and yield ``("partial", result)`` … then ``("end", snapshot)``.

    Raises :class:`ClientGone` (after cancelling the job) when ``client_gone()`` says the client
    disconnected. Closing the generator early (the consumer stops, or its task is cancelled)
    cancels the job too.
    """
    listener = _JobEvents(asyncio.get_running_loop())
    job = None
    finished = False
    try:
        job = engine.submit(request, title=title, listener=listener)
        while True:
            try:
                item = await asyncio.wait_for(listener.queue.get(), POLL_SECONDS)
            except asyncio.TimeoutError:
                if await client_gone():
                    raise ClientGone() from None
                continue
            if item[0] == "end":
                finished = True
            yield item
            if finished:
                return
    finally:
        if job is not None and not finished:
            job.cancel()
        # A server runs for weeks: finished jobs (and every chunk they streamed) must not pile
        # up in the lanes. Each request holds its own job, so none is lost to it.
        engine.clear_finished()


class StopMatcher:
    """Cuts a stream at the first stop string, holding back text that could begin one."""

    def __init__(self, stops: list[str]) -> None:
        self.stops = [s for s in stops if s]
        self._held = ""
        self.stopped = False

    def feed(self, text: str) -> str:
        """The text that is safe to send now."""
        if self.stopped:
            return ""
        if not self.stops:
            return text
        buf = self._held + text
        hits = [(buf.find(s), s) for s in self.stops if s in buf]
        if hits:
            self.stopped = True
            self._held = ""
            return buf[:min(hits)[0]]
        keep = 0
        for s in self.stops:  # the longest tail of buf that is a prefix of a stop string
            for n in range(min(len(s) - 1, len(buf)), 0, -1):
                if s.startswith(buf[-n:]):
                    keep = max(keep, n)
                    break
        self._held = buf[len(buf) - keep:] if keep else ""
        return buf[:len(buf) - keep]

    def flush(self) -> str:
        """What is still held back when the stream ends without a stop string."""
        held, self._held = self._held, ""
        return "" if self.stopped else held
