"""The engine: the one registry that maps each request type to the service that runs it, and the
lanes it runs on. The window, every command, ``studio serve`` and the self-test build it the same
way (:func:`studio.pipelines.services.build_engine`) and submit requests to it. No Qt here.

``engine.submit(request)`` finds the request's :class:`ServiceSpec` by its type, picks the lane
(the GPU worker, or the I/O event loop for work that only waits), and returns a
:class:`~studio.core.jobs.JobHandle`. A service is built once, the first time a job needs it, on
the lane that runs the job — so torch and the model libraries are imported on the worker, never at
start-up (DESIGN rule 7) — and it lives as long as the engine, so its model cache keeps models
loaded between jobs. A service has ``run(request, progress, cancel)`` for the GPU lane and
``arun(request, progress, cancel)`` (a coroutine) for the I/O lane.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from studio.core.config import Paths, Settings
from studio.core.jobs import (
    CancelToken,
    Handler,
    JobHandle,
    JobListener,
    JobRef,
    JobSnapshot,
    Lane,
    ProgressSink,
)
from studio.core.lanes import AsyncHandler, AsyncLane, JobRunner, LoopSource

GPU = "gpu"
IO = "io"


@dataclass(frozen=True)
class ServiceSpec:
    """One kind of job: the request type that asks for it, how its service is built, and where it
    runs (``lane``: ``"gpu"``, ``"io"``, or a function of the request that says which).

    A service is ``Any``: each kind's is its own class (``run`` for the GPU lane, ``arun`` for
    the I/O lane), and the engine only calls the method its lane needs. ``lane``'s function takes
    ``Any`` because each takes its own ``request_type``."""

    kind: str
    request_type: type
    build: Callable[[Engine], Any]
    loading: str = "Starting…"  # the status line while the service is being built
    lane: str | Callable[[Any], str] = GPU

    def lane_for(self, request: object) -> str:
        return self.lane(request) if callable(self.lane) else self.lane


class Engine:
    """Submit any request; the engine knows who runs it.

    ``settings`` and ``paths`` are getters (the window's settings change while it runs).
    ``io_loop``: the asyncio loop of the I/O lane, or a function making it on first use (the
    window passes one for Qt's, through qasync);
    without one the lane runs its own loop on a thread. ``handlers`` replaces the services of
    some kinds by plain handlers (tests; a fake txt2img)."""

    def __init__(self, specs: Iterable[ServiceSpec], settings: Callable[[], Settings],
                 paths: Callable[[], Paths], *, io_loop: LoopSource = None,
                 handlers: dict[str, Handler] | None = None,
                 listener: JobListener | None = None, name: str = "studio") -> None:
        self.settings = settings
        self.paths = paths
        self.specs: dict[str, ServiceSpec] = {}
        self._by_type: dict[type, ServiceSpec] = {}
        for spec in specs:
            self.specs[spec.kind] = spec
            self._by_type[spec.request_type] = spec
        self._overrides = dict(handlers or {})
        self._services: dict[str, Any] = {}
        self._lock = threading.RLock()
        self.gpu = JobRunner(self._gpu_handler, listener, name=f"{name}-gpu-worker")
        self.io = AsyncLane(self._io_handler, io_loop, listener, name=f"{name}-io-lane")
        self.lanes = {GPU: self.gpu, IO: self.io}

    # -- what runs what ------------------------------------------------------------------------
    def register(self, kind: str, handler: Handler) -> None:
        """Run ``kind`` with a plain handler instead of its service (tests, stand-ins)."""
        with self._lock:
            self._overrides[kind] = handler

    def spec_for(self, request: object) -> ServiceSpec:
        for cls in type(request).__mro__:
            spec = self._by_type.get(cls)
            if spec is not None:
                return spec
        raise TypeError(f"no service runs a {type(request).__name__}")

    def kind_of(self, request: object) -> str:
        return self.spec_for(request).kind

    def service(self, kind: str) -> Any:
        """The service of ``kind``, built now if needed (call it on the lane that runs it)."""
        with self._lock:
            service = self._services.get(kind)
            if service is None:
                service = self._services[kind] = self.specs[kind].build(self)
            return service

    def built(self, kind: str) -> Any | None:
        """The service of ``kind`` if it was built already (no building)."""
        return self._services.get(kind)

    def _gpu_handler(self, kind: str) -> Handler:
        override = self._overrides.get(kind)
        if override is not None:
            return override
        if kind not in self.specs:
            raise KeyError(f"no service for job kind {kind!r}")

        def run(request: object, progress: ProgressSink, cancel: CancelToken) -> Any:
            if kind not in self._services:
                progress.message(self.specs[kind].loading)
            return self.service(kind).run(request, progress, cancel)

        return run

    def _io_handler(self, kind: str) -> AsyncHandler:
        override = self._overrides.get(kind)
        if override is not None:
            import asyncio
            import inspect

            if inspect.iscoroutinefunction(override):
                return override

            async def blocking(request: object, progress: ProgressSink,
                               cancel: CancelToken) -> Any:
                return await asyncio.to_thread(override, request, progress, cancel)

            return blocking
        if kind not in self.specs:
            raise KeyError(f"no service for job kind {kind!r}")

        async def arun(request: object, progress: ProgressSink, cancel: CancelToken) -> Any:
            return await self.service(kind).arun(request, progress, cancel)

        return arun

    # -- jobs ----------------------------------------------------------------------------------
    def submit(self, request: object, title: str = "",
               listener: JobListener | None = None) -> JobHandle:
        """Queue ``request`` on its lane; ``listener`` hears its events from "queued" on."""
        spec = self.spec_for(request)
        lane = self.lanes[spec.lane_for(request)]
        return lane.submit(spec.kind, request, title or spec.kind, listener)

    def add_listener(self, listener: JobListener) -> None:
        """Events of every job on every lane (the queue view, the status bar)."""
        for lane in self.lanes.values():
            lane.add_listener(listener)

    def remove_listener(self, listener: JobListener) -> None:
        for lane in self.lanes.values():
            lane.remove_listener(listener)

    def jobs(self) -> list[JobSnapshot]:
        """Every job of every lane, oldest first."""
        return sorted((j for lane in self.lanes.values() for j in lane.jobs()),
                      key=lambda j: j.id)

    def _lane_of(self, job: JobRef) -> Lane[Any] | None:
        if isinstance(job, JobHandle):
            return self.lanes[job.snapshot.lane]
        if isinstance(job, JobSnapshot):
            return self.lanes[job.lane]
        for lane in self.lanes.values():
            if lane._find(job) is not None:
                return lane
        return None

    def cancel(self, job: JobRef) -> None:
        lane = self._lane_of(job)
        if lane is not None:
            lane.cancel(job)

    def cancel_all(self) -> None:
        for lane in self.lanes.values():
            lane.cancel_all()

    def wait(self, job: JobRef, timeout: float | None = None) -> bool:
        lane = self._lane_of(job)
        return True if lane is None else lane.wait(job, timeout)

    def clear_finished(self) -> list[JobSnapshot]:
        return [j for lane in self.lanes.values() for j in lane.clear_finished()]

    @property
    def queue_length(self) -> int:
        """Jobs waiting or running on any lane."""
        return sum(lane.queue_length for lane in self.lanes.values())

    @property
    def gpu_busy(self) -> bool:
        """Whether the GPU worker has work (lessons yield the CPU to it)."""
        return self.gpu.queue_length > 0

    def shutdown(self, wait: bool = True, timeout: float | None = 30.0) -> None:
        """Cancel every job and stop both lanes (a running job stops at its next step)."""
        self.io.shutdown(wait=wait, timeout=timeout)
        self.gpu.shutdown(wait=wait, timeout=timeout)
