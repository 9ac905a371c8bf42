"""From the job queue to an HTTP client: per-request event queues, stop strings, disconnects.

Every request thread submits its job to the one :class:`~studio.core.jobs.JobRunner` and then waits on
its own queue. :class:`JobRouter`, the runner's listener, drops each partial result and the end of
the job into the queue of the request that owns it. While it waits, the request thread watches its
socket, so a client that hangs up — even while its job is still queued — cancels the job.
"""

from __future__ import annotations

import queue
import select
import socket
import threading
from collections.abc import Iterator
from typing import Any

from studio.core.jobs import Job, JobRunner

POLL_SECONDS = 0.1


class JobRouter:
    """A :class:`~studio.core.jobs.JobListener` that routes events to per-request queues."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._queues: dict[int, queue.SimpleQueue] = {}  # id(request) → queue

    def open(self, request: Any) -> queue.SimpleQueue:
        """Register before submitting: the worker may start the job before submit() returns."""
        q: queue.SimpleQueue = queue.SimpleQueue()
        with self._lock:
            self._queues[id(request)] = q
        return q

    def close(self, request: Any) -> None:
        with self._lock:
            self._queues.pop(id(request), None)

    def _queue(self, job: Job) -> queue.SimpleQueue | None:
        with self._lock:
            return self._queues.get(id(job.request))

    # JobListener (worker thread; never blocks)
    def job_changed(self, job: Job) -> None:
        if job.state.finished:
            q = self._queue(job)
            if q is not None:
                q.put(("end", job))

    def job_progress(self, job: Job, step: int, total: int, preview: Any) -> None:
        pass

    def job_partial(self, job: Job, result: Any) -> None:
        q = self._queue(job)
        if q is not None:
            q.put(("partial", result))


def client_gone(sock: socket.socket) -> bool:
    """True when the peer has closed its end (readable, and a peek reads nothing)."""
    try:
        readable, _, _ = select.select([sock], [], [], 0)
        if not readable:
            return False
        return sock.recv(1, socket.MSG_PEEK) == b""
    except (OSError, ValueError):
        return True


class ClientGone(Exception):
    """The HTTP client hung up; its job has been cancelled."""


def events(runner: JobRunner, router: JobRouter, kind: str, request: Any, title: str,
           sock: socket.socket) -> Iterator[tuple[str, Any]]:
    """Submit a job and yield ``("partial", result)`` … then ``("end", job)``.

    Raises :class:`ClientGone` (after cancelling the job) when the client disconnects. Closing
    the generator early (the consumer stops) cancels the job too.
    """
    q = router.open(request)
    job = None
    finished = False
    try:
        job = runner.submit(kind, request, title=title)
        while True:
            try:
                item = q.get(timeout=POLL_SECONDS)
            except queue.Empty:
                if client_gone(sock):
                    raise ClientGone() from None
                continue
            if item[0] == "end":
                finished = True
            yield item
            if finished:
                return
    finally:
        if job is not None and not finished:
            runner.cancel(job)
        router.close(request)
        # A server runs for weeks: finished jobs (and every chunk they streamed) must not pile
        # up in the runner. Each request thread holds its own job, so none is lost to it.
        runner.clear_finished()


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
