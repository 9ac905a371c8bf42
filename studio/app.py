"""Start the desktop app: QApplication, settings, theme, the engine and the main window.

Nothing heavy is imported here (DESIGN rule 7): torch is first imported on a background thread
by the device probe after the window is on screen, and by a service on the GPU worker when the
first job needs it. asyncio runs on Qt's own event loop (qasync), for the I/O lane.
"""

from __future__ import annotations

import os
import signal
import sys

from PySide6.QtCore import QTimer
from PySide6.QtGui import QIcon
from PySide6.QtWidgets import QApplication

from studio.core.config import Paths, Settings, default_paths, load_settings
from studio.core.files import clean_stale_work_files
from studio.core.jobs import Handler
from studio.pipelines.services import build_engine
from studio.ui.context import AppContext
from studio.ui.main_window import MainWindow
from studio.ui.startup_failure import (
    NO_DISPLAY_EXIT,
    display_problem,
    reported_platform_failure,
)
from studio.ui.theme import apply_theme
from studio.ui.welcome import is_first_start, show_welcome
from studio.ui.widgets.input_policy import install_input_policy
from studio.ui.workspaces import Workspace
from studio.workers.job_bridge import JobBridge
from studio.workers.lanes import io_pool, qt_event_loop


def build_main_window(settings: Settings | None = None, base_paths: Paths | None = None, *,
                      workspaces: list[Workspace] | None = None,
                      handlers: dict[str, Handler] | None = None) -> MainWindow:
    """Build the window and everything behind it (a QApplication must exist).

    Without ``settings`` they are loaded from ``base_paths.settings_file``; if that file was
    corrupt (and has been backed up) the window shows the notice in a banner. ``workspaces``
    replaces the registry and ``handlers`` some job kinds' services (tests); device detection
    starts with ``start_device_detection()``.
    """
    app = QApplication.instance()
    if app is None:
        raise RuntimeError("build_main_window needs a QApplication")
    base_paths = base_paths or default_paths()
    notice = ""
    if settings is None:
        loaded = load_settings(base_paths.settings_file)
        settings, notice = loaded.settings, loaded.notice
    apply_theme(app, settings.theme)
    install_input_policy(app)  # wheel, Return on buttons, combo popups, dialogs on screen

    holder: dict[str, AppContext] = {}  # the engine asks the context for the settings in force
    engine = build_engine(lambda: holder["ctx"].settings, lambda: holder["ctx"].paths,
                          io_loop=lambda: qt_event_loop(app), handlers=handlers)
    bridge = JobBridge(engine)
    ctx = AppContext(settings, bridge, base_paths)
    holder["ctx"] = ctx
    bridge.setParent(ctx)
    window = MainWindow(ctx, workspaces)
    ctx.setParent(window)
    if notice:
        window.show_banner(notice, "warning", key="settings")
    # What a crash left (.saving-*.part, .importing-*): removed on the I/O pool, so a large
    # outputs folder never delays the window.
    in_force = settings.resolved_paths(base_paths)
    io_pool().start(lambda: clean_stale_work_files([in_force.outputs_dir, in_force.models_dir]))
    return window


def ensure_std_streams() -> None:
    """Give a windowed start (pythonw, a frozen Windows/macOS app) real stdout/stderr.

    There both are None, and tqdm, logging and print fail on the first write; writers to
    os.devnull keep them working and silent. (Installer builds also do this in a runtime hook.)
    """
    for name in ("stdout", "stderr"):
        if getattr(sys, name) is None:
            setattr(sys, name, open(os.devnull, "w", encoding="utf-8"))  # noqa: SIM115


def app_icon() -> QIcon:
    """Studio's icon (assets/icons/studio.svg) for the window and the task bar."""
    from studio import ASSETS_DIR

    return QIcon(str(ASSETS_DIR / "icons" / "studio.svg"))


def main(argv: list[str] | None = None) -> int:
    """Run the app until its window closes; returns the exit code."""
    ensure_std_streams()
    argv = list(sys.argv if argv is None else argv)
    problem = display_problem()
    if problem:  # no X or Wayland at all: say so, instead of Qt's advice about xcb libraries
        print(problem, file=sys.stderr, flush=True)
        return NO_DISPLAY_EXIT
    with reported_platform_failure():  # no window possible: a dialog without Qt says why
        app = QApplication.instance() or QApplication(argv)
    app.setApplicationName("Studio")
    app.setApplicationDisplayName("Studio")
    app.setDesktopFileName("studio")
    app.setWindowIcon(app_icon())
    base_paths = default_paths()
    first_start = is_first_start(base_paths)  # before anything can write the settings file
    window = build_main_window(base_paths=base_paths)
    window.restore_geometry()
    window.show()
    # The device probe imports torch; start it once the window has been painted. asyncio and
    # qasync (the I/O lane's loop) are imported then too, not before the first paint.
    QTimer.singleShot(0, window.start_device_detection)
    QTimer.singleShot(0, lambda: qt_event_loop(app))
    if first_start:
        QTimer.singleShot(0, lambda: show_welcome(window))

    # Ctrl+C in the terminal closes the window cleanly. Qt's loop never runs Python code on its
    # own, so a timer gives the interpreter a chance to notice the signal.
    signal.signal(signal.SIGINT, lambda *_: window.close())
    tick = QTimer()
    tick.timeout.connect(lambda: None)
    tick.start(250)
    code = app.exec()
    window.shutdown()
    return code
