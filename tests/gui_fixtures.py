"""GUI test fixtures (pytest-qt, offscreen), imported by ``tests/conftest.py``.

- ``no_thread_leaks`` (autouse): fails any test that leaves a non-daemon thread, a ``studio-*``
  thread or a busy global QThreadPool behind (after a short grace period), like napari's.
- ``main_window``: the real window from :func:`studio.app.build_main_window`, in the test's own
  ``STUDIO_HOME``, shut down (jobs cancelled, worker joined) at teardown.
- ``shell_window``: the same, with two plain recording panels, for tests of the shell alone.
- ``screenshot``: ``screenshot(widget, "name")`` saves a PNG when ``STUDIO_SCREENSHOTS`` names a
  folder, so a run can refresh the pictures in docs/.

Every ``qtbot.waitUntil`` / ``waitSignal(s)`` / ``waitCallback`` / ``waitExposed`` /
``waitActive`` waits at least :data:`PATIENCE_MS`, whatever timeout its call names: a passing run
returns as soon as the condition holds, so this costs it nothing, while the suite must also pass on
a loaded 2-core machine where a few seconds of starvation are normal. Speed is measured in bench/.
"""

from __future__ import annotations

import functools
import os
import sys
import threading
import time
from pathlib import Path

import pytest
from pytestqt.qtbot import QtBot

#: How long a worker may take to wind down after its test, and the least time a qtbot wait waits
#: for its condition (see the module docstring). Generous: both end early in a passing run.
THREAD_GRACE_S = 60.0
PATIENCE_MS = 120_000


def _patient(wait):
    """``wait`` with its timeout raised to at least PATIENCE_MS (when it raises on a timeout)."""

    @functools.wraps(wait)
    def patient_wait(self, *args, timeout: int = 5000, **kwargs):
        if kwargs.get("raising") is not False and timeout is not None and timeout > 0:
            timeout = max(int(timeout), PATIENCE_MS)
        return wait(self, *args, timeout=timeout, **kwargs)

    patient_wait.__wrapped_by_studio__ = True
    return patient_wait


for _name in ("waitUntil", "waitSignal", "waitSignals", "waitCallback", "waitExposed",
              "waitActive"):
    if not getattr(getattr(QtBot, _name), "__wrapped_by_studio__", False):
        setattr(QtBot, _name, _patient(getattr(QtBot, _name)))


def _leaked(before: set[threading.Thread]) -> list[threading.Thread]:
    return [t for t in threading.enumerate()
            if t not in before and t.is_alive()
            and (not t.daemon or t.name.startswith("studio"))]


@pytest.fixture(autouse=True)
def no_thread_leaks(request):
    """Fail the test if it leaves threads running: every worker must be shut down by its owner."""
    before = set(threading.enumerate())
    yield
    deadline = time.monotonic() + THREAD_GRACE_S
    leaked = _leaked(before)
    while leaked and time.monotonic() < deadline:
        time.sleep(0.02)
        leaked = _leaked(before)
    problems = [f"{t.name} (daemon={t.daemon})" for t in leaked]
    if "PySide6.QtCore" in sys.modules:
        from PySide6.QtCore import QThreadPool

        pool = QThreadPool.globalInstance()
        if not pool.waitForDone(int(THREAD_GRACE_S * 1000)):
            problems.append(f"QThreadPool.globalInstance(): {pool.activeThreadCount()} busy")
    if problems:
        pytest.fail(f"{request.node.nodeid} left threads running: {', '.join(problems)}",
                    pytrace=False)


@pytest.fixture
def main_window(qtbot, studio_home):
    """The real main window (all registered workspaces), not yet shown."""
    from studio.app import build_main_window

    window = build_main_window()
    qtbot.addWidget(window)
    yield window
    window.shutdown()


class RecordingPanel:
    """Builds a plain panel that records what ``receive`` was given (shell tests need no ML)."""

    def __init__(self, title: str) -> None:
        self.title = title

    def __call__(self, ctx):
        from PySide6.QtCore import Qt
        from PySide6.QtWidgets import QLabel

        panel = QLabel(f"{self.title} panel")
        panel.setAlignment(Qt.AlignmentFlag.AlignCenter)
        panel.received = []
        panel.receive = panel.received.append
        return panel


@pytest.fixture
def shell_window(qtbot, studio_home):
    """The main window with two recording panels instead of the real ones."""
    from studio.app import build_main_window
    from studio.ui.workspaces import Workspace

    workspaces = [Workspace("generate", "Generate", "generate", RecordingPanel("Generate")),
                  Workspace("gallery", "Gallery", "gallery", RecordingPanel("Gallery"))]
    window = build_main_window(workspaces=workspaces)
    qtbot.addWidget(window)
    yield window
    window.shutdown()


def press(window, key, modifier=None) -> None:
    """Type a shortcut into a window (Ctrl by default) the way the window system delivers it:
    QTest sends key events to a QWidget past the shortcut map, so go through its QWindow."""
    from PySide6.QtCore import Qt
    from PySide6.QtTest import QTest

    modifier = Qt.KeyboardModifier.ControlModifier if modifier is None else modifier
    QTest.keyClick(window.windowHandle(), key, modifier)


@pytest.fixture
def screenshot():
    """``screenshot(widget, name)``: save ``name``.png into $STUDIO_SCREENSHOTS when it is set."""
    folder = os.environ.get("STUDIO_SCREENSHOTS")

    def save(widget, name: str) -> Path | None:
        if not folder:
            return None
        path = Path(folder) / f"{name}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        assert widget.grab().save(str(path)), f"could not save {path}"
        return path

    return save


def app_context(settings, base_paths=None, handlers=None):
    """An ``AppContext`` over a real engine whose services follow the context's settings and
    folders (``handlers`` replaces some kinds' services). Shut it down with
    ``ctx.bridge.shutdown()``."""
    from studio.core.config import default_paths
    from studio.pipelines.services import build_engine
    from studio.ui.context import AppContext
    from studio.workers.job_bridge import JobBridge
    from studio.workers.lanes import qt_event_loop

    holder = {}
    engine = build_engine(lambda: holder["ctx"].settings, lambda: holder["ctx"].paths,
                          io_loop=qt_event_loop(), handlers=handlers)
    holder["ctx"] = AppContext(settings, JobBridge(engine), base_paths or default_paths())
    return holder["ctx"]
