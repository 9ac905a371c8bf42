"""Run a short I/O function on a QThreadPool and get its result back on the GUI thread.

For work that waits on disk rather than the GPU (DESIGN rule 5): scanning model folders, querying
the gallery index, reading image metadata. The function runs on a pool thread; ``on_done(result)``
or ``on_error(message)`` runs later on the thread that called :func:`run_in_background` (the GUI
thread), through a queued signal. If ``owner`` is destroyed first, nothing is called back.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from PySide6.QtCore import QObject, QRunnable, QThreadPool, Signal, Slot

from studio.core.jobs import describe_error

log = logging.getLogger(__name__)

# Relays waiting for their result: held here so Python does not collect them while the pool works.
_live: set[_Relay] = set()


class _Relay(QObject):
    """Lives in the caller's thread; its signal carries the result across threads."""

    done = Signal(object)
    failed = Signal(str)


class _Call(QRunnable):
    def __init__(self, fn: Callable[[], Any], relay: _Relay) -> None:
        super().__init__()
        self._fn = fn
        self._relay = relay

    def run(self) -> None:  # pool thread
        try:
            result = self._fn()
        except Exception as exc:  # noqa: BLE001 - every failure becomes a message (rule 8)
            log.exception("background call failed")
            self._emit(self._relay.failed, describe_error(exc))
        else:
            self._emit(self._relay.done, result)

    @staticmethod
    def _emit(signal: Any, value: Any) -> None:
        try:
            signal.emit(value)
        except RuntimeError:  # the owner (and with it the relay) was destroyed meanwhile
            pass


def run_in_background(pool: QThreadPool, fn: Callable[[], Any],
                      on_done: Callable[[Any], None],
                      on_error: Callable[[str], None] | None = None,
                      owner: QObject | None = None) -> None:
    """Run ``fn()`` on ``pool``; deliver its result to ``on_done`` on the calling thread."""
    relay = _Relay(owner)
    _live.add(relay)

    @Slot(object)
    def _done(value: Any) -> None:
        _live.discard(relay)
        relay.deleteLater()
        on_done(value)

    @Slot(str)
    def _failed(message: str) -> None:
        _live.discard(relay)
        relay.deleteLater()
        if on_error is not None:
            on_error(message)

    relay.destroyed.connect(lambda *_: _live.discard(relay))
    relay.done.connect(_done)
    relay.failed.connect(_failed)
    pool.start(_Call(fn, relay))
