"""The window's side of the lanes (DESIGN rule 5): asyncio on Qt's event loop, and short calls
whose result comes back on the GUI thread.

- :func:`qt_event_loop`: asyncio runs on Qt's own loop through qasync, so the I/O lane's tasks —
  remote chat streams, downloads, Hub queries — need no thread of their own and their callbacks
  run on the GUI thread. Created once per QApplication. Blocking library calls inside them
  (``asyncio.to_thread``) run on the I/O pool, a small QThreadPool.
- :class:`Calls`: a widget's short blocking calls (a folder scan, a gallery query, a Hub query)
  on the I/O pool, or on the small CPU pool for work that computes (hashing, thumbnails); the
  results come back on the GUI thread.

Nobody else starts threads in the UI; model work is a job on the GPU lane (``ctx.bridge``).
"""

from __future__ import annotations

import concurrent.futures
import logging
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, ParamSpec, TypeVar

from PySide6.QtCore import QObject, QThreadPool, Signal, Slot
from PySide6.QtWidgets import QApplication

from studio.core.jobs import UserFacingError, describe_error

if TYPE_CHECKING:  # imported with qasync when the loop is first made, after the first paint
    import asyncio

log = logging.getLogger(__name__)

_P = ParamSpec("_P")
_T = TypeVar("_T")

CPU_THREADS = 2  # thumbnails and hashing; model work never runs here
IO_THREADS = 4  # blocking I/O: scans, queries, the transfers of downloads

_loops: dict[int, asyncio.AbstractEventLoop] = {}
_pools: dict[str, QThreadPool] = {}
_deliveries: dict[int, _Delivery] = {}


class PoolExecutor(concurrent.futures.Executor):
    """An executor over a QThreadPool, so asyncio's blocking calls run on Qt's pooled threads
    (which Qt winds down itself) rather than on a ThreadPoolExecutor of their own."""

    def __init__(self, pool: QThreadPool) -> None:
        self._pool = pool

    def submit(self, fn: Callable[_P, _T], /, *args: _P.args, **kwargs: _P.kwargs
               ) -> concurrent.futures.Future[_T]:
        future: concurrent.futures.Future[_T] = concurrent.futures.Future()

        def run() -> None:
            if not future.set_running_or_notify_cancel():
                return
            try:
                result = fn(*args, **kwargs)
            except BaseException as exc:  # noqa: BLE001 - handed to the awaiting task
                future.set_exception(exc)
            else:
                future.set_result(result)

        self._pool.start(run)
        return future

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        if wait:
            self._pool.waitForDone()


def _pool(name: str, threads: int) -> QThreadPool:
    pool = _pools.get(name)
    if pool is None:
        pool = _pools[name] = QThreadPool(QApplication.instance())
        pool.setMaxThreadCount(threads)
    return pool


def io_pool() -> QThreadPool:
    """The I/O lane's threads for blocking calls (downloads' transfers, scans, queries)."""
    return _pool("io", IO_THREADS)


def cpu_pool() -> QThreadPool:
    """The small pool for CPU chores (thumbnails, hashing)."""
    return _pool("cpu", CPU_THREADS)


def wait_for_pools(timeout_ms: int = 30_000) -> bool:
    """Wait for the I/O and CPU pools' work in flight (at shutdown); True if all finished."""
    return all(pool.waitForDone(timeout_ms) for pool in _pools.values())


def qt_event_loop(app: QApplication | None = None) -> asyncio.AbstractEventLoop:
    """The asyncio event loop that runs on Qt's (one per QApplication, made on first use).

    qasync's loop with ``already_running``: Qt's own loop (``app.exec()``, a dialog's, a test's
    wait) turns it, so nothing has to call ``run_forever``."""
    import asyncio

    import qasync

    current = app or QApplication.instance()
    if current is None:
        raise RuntimeError("the I/O lane needs a QApplication")
    loop = _loops.get(id(current))
    if loop is None or loop.is_closed():
        loop = qasync.QEventLoop(current, already_running=True)
        loop.set_default_executor(PoolExecutor(io_pool()))
        asyncio.set_event_loop(loop)
        _loops[id(current)] = loop
    return loop


class _Delivery(QObject):
    """Runs functions on the GUI thread: ``post`` from any thread queues one (Qt's queued
    connection; no asyncio needed, so the window's first paint does not wait for it)."""

    _posted = Signal(object)

    def __init__(self, parent: QObject) -> None:
        super().__init__(parent)
        self._posted.connect(self._run)

    def post(self, fn: Callable[[], None]) -> None:
        try:
            self._posted.emit(fn)
        except RuntimeError:  # the application is gone (shutdown): nobody left to tell
            pass

    @Slot(object)
    def _run(self, fn: Callable[[], None]) -> None:
        fn()


def _gui_delivery() -> _Delivery:
    """The application's :class:`_Delivery` (made on the GUI thread, on first use)."""
    app = QApplication.instance()
    if app is None:
        raise RuntimeError("background calls need a QApplication")
    delivery = _deliveries.get(id(app))
    if delivery is None:
        delivery = _deliveries[id(app)] = _Delivery(app)
    return delivery


class Calls:
    """Short blocking calls a widget makes off the GUI thread — a folder scan, a gallery query,
    a Hub query (the I/O pool), a hash (``pool=cpu_pool``) — with their results delivered back
    on the GUI thread, unless the widget was destroyed meanwhile.

    ``serial``: the calls run one at a time, in the order made (a gallery index has one SQLite
    writer). :meth:`wait` is for the owner's shutdown: it waits for this owner's calls only."""

    def __init__(self, owner: QObject, pool: Callable[[], QThreadPool] = io_pool,
                 serial: bool = False) -> None:
        self._owner = owner
        self._pool = pool
        self._serial = serial
        self._queue: deque[tuple[concurrent.futures.Future, Callable[[], None]]] = deque()
        self._pending: set[concurrent.futures.Future] = set()
        self._running = False

    @property
    def busy(self) -> bool:
        return bool(self._pending)

    def run(self, fn: Callable[[], _T], on_done: Callable[[_T], None],
            on_error: Callable[[str], None] | None = None) -> concurrent.futures.Future[_T]:
        """Run ``fn()`` off the GUI thread; then ``on_done(result)`` or ``on_error(sentence)``
        on the GUI thread. The future can be waited on (``result(timeout)``) or cancelled
        before it starts."""
        deliver = _gui_delivery()
        future: concurrent.futures.Future[_T] = concurrent.futures.Future()
        self._pending.add(future)

        def work() -> None:  # a pool thread
            if not future.set_running_or_notify_cancel():
                deliver.post(finish)
                return
            try:
                future.set_result(fn())
            except BaseException as exc:  # noqa: BLE001 - delivered as a sentence (rule 8)
                future.set_exception(exc)
            deliver.post(finish)

        def finish() -> None:  # the GUI thread
            self._pending.discard(future)
            if self._serial:
                self._running = False
                self._next()
            if future.cancelled() or not _alive(self._owner):
                return
            error = future.exception()
            if error is None:
                on_done(future.result())
                return
            if not isinstance(error, UserFacingError):
                log.error("a background call failed", exc_info=error)
            if on_error is not None:
                on_error(describe_error(error))

        if self._serial:
            self._queue.append((future, work))
            self._next()
        else:
            self._pool().start(work)
        return future

    def _next(self) -> None:
        if self._running or not self._queue:
            return
        self._running = True
        _future, work = self._queue.popleft()
        self._pool().start(work)

    def wait(self, timeout_ms: int = 30_000) -> bool:
        """Wait for this owner's calls to finish (those not started are cancelled); True if
        they did in time."""
        for future, _work in self._queue:
            future.cancel()
        self._queue.clear()
        running = [f for f in self._pending if not f.cancelled()]
        done, not_done = concurrent.futures.wait(running, timeout=timeout_ms / 1000)
        return not not_done


def _alive(owner: QObject) -> bool:
    try:
        owner.objectName()  # raises once the owner's C++ object is gone
    except RuntimeError:
        return False
    return True
