"""The main window: it only assembles — sidebar, workspace panels, banners, queue drawer and
status bar — and routes requests between them. Panels live in ``studio/ui/panels/``."""

from __future__ import annotations

import logging
from pathlib import Path

from PySide6.QtCore import QByteArray, Qt, Slot
from PySide6.QtGui import QCloseEvent, QDragEnterEvent, QDropEvent, QKeySequence, QShortcut
from PySide6.QtWidgets import (
    QApplication,
    QHBoxLayout,
    QMainWindow,
    QStackedWidget,
    QVBoxLayout,
    QWidget,
)

from studio.core.files import atomic_write_bytes
from studio.core.jobs import describe_error
from studio.ui import workspaces as registry
from studio.ui.context import AppContext
from studio.ui.theme import apply_theme
from studio.ui.widgets.banner import Banner, BannerArea
from studio.ui.widgets.queue_drawer import QueueDrawer
from studio.ui.widgets.sidebar import Sidebar
from studio.ui.widgets.status_bar import StatusBar
from studio.ui.workspaces import Workspace
from studio.workers.device_probe import DeviceProbe, DeviceReport

log = logging.getLogger(__name__)

DRAWER_WIDTH = 360
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp")
CPU_NOTICE = ("Running on the CPU: generating an image takes minutes instead of seconds. "
              "A CUDA GPU (NVIDIA) or Apple Silicon makes it fast.")


DEFAULT_SIZE = (1320, 860)


class MainWindow(QMainWindow):
    """One window, many workspaces, one job queue (``ctx.bridge``)."""

    def __init__(self, ctx: AppContext, workspaces: list[Workspace] | None = None,
                 parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.ctx = ctx
        self.workspaces = list(registry.WORKSPACES if workspaces is None else workspaces)
        self._panels: dict[str, QWidget] = {}
        self._shut_down = False
        self._drawer_sized = False
        self._applied_theme = ctx.settings.theme  # build_main_window applied it already
        self.setWindowTitle("Studio")
        self.setMinimumSize(960, 640)
        self.resize(*DEFAULT_SIZE)
        self._remember_geometry = False  # restore_geometry() turns it on (the app, not tests)
        self.setAcceptDrops(True)

        self.banners = BannerArea()
        self.sidebar = Sidebar()
        self.stack = QStackedWidget()
        body = QHBoxLayout()
        body.setContentsMargins(0, 0, 0, 0)
        body.setSpacing(0)
        body.addWidget(self.sidebar)
        body.addWidget(self.stack, 1)
        central = QWidget()
        column = QVBoxLayout(central)
        column.setContentsMargins(0, 0, 0, 0)
        column.setSpacing(0)
        column.addWidget(self.banners)
        column.addLayout(body, 1)
        self.setCentralWidget(central)

        self.status = StatusBar(ctx=ctx)
        self.setStatusBar(self.status)
        self.queue_drawer = QueueDrawer(ctx.bridge, self)
        self.addDockWidget(Qt.DockWidgetArea.RightDockWidgetArea, self.queue_drawer)
        self.queue_drawer.hide()

        for i, ws in enumerate(self.workspaces):
            hint = f"Ctrl+{i + 1}" if i < 9 else ""
            self.sidebar.add_workspace(ws.key, ws.title, ws.icon, hint, ws.tooltip)
        self.sidebar.workspaceChosen.connect(self.show_workspace)
        self.sidebar.queueToggled.connect(self.toggle_queue)
        self.sidebar.settingsRequested.connect(self.open_settings)
        self.status.queueClicked.connect(self.toggle_queue)
        self.queue_drawer.visibilityChanged.connect(self.sidebar.queue_button.setChecked)
        ctx.bridge.jobChanged.connect(self.status.on_job_changed)
        ctx.openInWorkspace.connect(self.open_in_workspace)
        ctx.settingsChanged.connect(self._on_settings_changed)
        ctx.warned.connect(lambda text: self.show_banner(text, "warning", key="settings-save"))

        self.device_probe = DeviceProbe(self)
        self.device_probe.detected.connect(self.on_device_detected)
        self._install_shortcuts()
        if self.workspaces:  # the first panel is built now; the others on first show
            self.show_workspace(self.workspaces[0].key)

    # -- workspaces ------------------------------------------------------------------------
    def panel(self, key: str, create: bool = True) -> QWidget | None:
        """The panel of a workspace, built on first use (None for an unknown key)."""
        if key in self._panels or not create:
            return self._panels.get(key)
        ws = next((w for w in self.workspaces if w.key == key), None)
        if ws is None:
            return None
        try:
            widget = ws.factory(self.ctx)
        except Exception as exc:  # noqa: BLE001 - a broken panel must not take the window down
            log.exception("could not build the %s workspace", key)
            self.show_banner(f"The {ws.title} workspace could not be opened: "
                             f"{describe_error(exc)}", "error", key=f"workspace-{key}")
            return None
        widget.setObjectName(f"panel-{key}")
        self._panels[key] = widget
        self.stack.addWidget(widget)
        return widget

    @Slot(str)
    def show_workspace(self, key: str) -> QWidget | None:
        widget = self.panel(key)
        if widget is None:
            self.sidebar.set_current(self.current_workspace())
            return None
        self.stack.setCurrentWidget(widget)
        self.sidebar.set_current(key)
        title = next(w.title for w in self.workspaces if w.key == key)
        self.setWindowTitle(f"{title} — Studio")
        return widget

    def current_workspace(self) -> str:
        widget = self.stack.currentWidget()
        return next((k for k, w in self._panels.items() if w is widget), "")

    @Slot(str, object)
    def open_in_workspace(self, key: str, payload: object) -> None:
        widget = self.show_workspace(key)
        receive = getattr(widget, "receive", None)
        if widget is not None and payload is not None and callable(receive):
            receive(payload)

    # -- queue, settings, notices -------------------------------------------------------------
    @Slot()
    def toggle_queue(self) -> None:
        show = not self.queue_drawer.isVisible()
        self.queue_drawer.setVisible(show)
        if show and not self._drawer_sized:
            # A dock takes a share of the window by default; the queue needs much less.
            self._drawer_sized = True
            self.resizeDocks([self.queue_drawer], [DRAWER_WIDTH], Qt.Orientation.Horizontal)

    @Slot()
    def open_settings(self):
        from studio.ui.settings_dialog import SettingsDialog

        dialog = SettingsDialog(self.ctx, self, device_report=self.device_report)
        dialog.open()
        return dialog

    def show_banner(self, text: str, kind: str = "info", key: str = "") -> Banner:
        return self.banners.show_banner(text, kind, key)

    @Slot(object)
    def _on_settings_changed(self, settings) -> None:
        app = QApplication.instance()
        # Settings change on every model pick (last_model): restyle only when the theme changed.
        if app is not None and settings.theme != self._applied_theme:
            apply_theme(app, settings.theme)
            self._applied_theme = settings.theme
            self.sidebar.update()
        if self._probed_setting and settings.device != self._probed_setting:
            self.start_device_detection()

    # -- device ------------------------------------------------------------------------------
    _probed_setting = ""
    device_report: DeviceReport | None = None  # the last answer of the probe (Settings uses it)

    def start_device_detection(self) -> None:
        """Detect the device on a background thread (it imports torch); call after show()."""
        self._probed_setting = self.ctx.settings.device
        self.device_probe.start(self._probed_setting)

    @Slot(object)
    def on_device_detected(self, report: DeviceReport) -> None:
        if report.setting and report.setting != self.ctx.settings.device:
            return  # an answer for a device setting the user has changed since
        self.device_report = report
        self.status.set_device(report.info)
        if report.info.kind == "cpu":
            text = CPU_NOTICE + (f" {report.cpu_reason}" if report.cpu_reason else "")
            self.show_banner(text, "warning", key="cpu")
        else:
            self.banners.remove("cpu")

    # -- drop an image to reuse its parameters ------------------------------------------------
    def dragEnterEvent(self, event: QDragEnterEvent) -> None:  # noqa: N802 - Qt override
        if self._dropped_image(event.mimeData()) is not None:
            event.acceptProposedAction()
        else:
            event.ignore()

    def dragMoveEvent(self, event) -> None:  # noqa: N802 - Qt override
        if self._dropped_image(event.mimeData()) is not None:
            event.acceptProposedAction()

    def dropEvent(self, event: QDropEvent) -> None:  # noqa: N802 - Qt override
        path = self._dropped_image(event.mimeData())
        if path is None:
            event.ignore()
            return
        event.acceptProposedAction()
        self.open_image_parameters(path)

    @staticmethod
    def _dropped_image(mime) -> Path | None:
        for url in mime.urls() if mime.hasUrls() else []:
            if url.isLocalFile() and url.toLocalFile().lower().endswith(IMAGE_SUFFIXES):
                return Path(url.toLocalFile())
        return None

    def open_image_parameters(self, path: Path):
        """Show the generation parameters stored in an image, with "Reuse these parameters"."""
        from studio.ui.reuse_dialog import ImageParametersDialog

        dialog = ImageParametersDialog.for_file(Path(path), self.ctx, self)
        dialog.open()
        self._parameters_dialog = dialog  # keep a reference for tests and for the user's view
        return dialog

    # -- shortcuts and shutdown ---------------------------------------------------------------
    def _install_shortcuts(self) -> None:
        for i, ws in enumerate(self.workspaces[:9]):
            sc = QShortcut(QKeySequence(f"Ctrl+{i + 1}"), self)
            sc.activated.connect(lambda k=ws.key: self.show_workspace(k))
        QShortcut(QKeySequence("Ctrl+,"), self).activated.connect(self.open_settings)
        QShortcut(QKeySequence("Ctrl+J"), self).activated.connect(self.toggle_queue)
        QShortcut(QKeySequence("Ctrl+Q"), self).activated.connect(self.close)

    def shutdown(self) -> None:
        """Cancel every job and stop the worker (a running job stops at its next step)."""
        if self._shut_down:
            return
        self._shut_down = True
        self.status.memory_timer.stop()
        self.queue_drawer.stop()
        for panel in self._panels.values():  # panels stop their own timers and I/O workers
            stop = getattr(panel, "shutdown", None)
            if callable(stop):
                try:
                    stop()
                except Exception:  # noqa: BLE001 - one panel must not keep the app from closing
                    log.exception("panel %s failed to shut down", panel.objectName())
        self.ctx.bridge.cancel_all()
        self.ctx.bridge.shutdown(wait=True)
        self.device_probe.wait(5.0)

    def _geometry_file(self) -> Path:
        return self.ctx.base_paths.config_dir / "window-geometry.bin"

    def restore_geometry(self) -> None:
        """Open where the last run closed (Qt moves the window onto a screen that still exists);
        the first time, at the default size made to fit the screen (a 1366×768 laptop too)."""
        self._remember_geometry = True
        try:
            saved = self._geometry_file().read_bytes()
        except OSError:
            saved = b""
        if saved and self.restoreGeometry(QByteArray(saved)):
            return
        screen = self.screen()
        if screen is None:
            return
        room = screen.availableGeometry()
        width = max(self.minimumWidth(), min(DEFAULT_SIZE[0], int(room.width() * 0.94)))
        height = max(self.minimumHeight(), min(DEFAULT_SIZE[1], int(room.height() * 0.92)))
        self.resize(width, height)
        frame = self.frameGeometry()
        frame.moveCenter(room.center())
        self.move(frame.topLeft())

    def _save_geometry(self) -> None:
        if not self._remember_geometry:
            return
        try:
            atomic_write_bytes(self._geometry_file(), bytes(self.saveGeometry().data()))
        except OSError as exc:  # a read-only config folder must not keep the app from closing
            log.warning("could not save the window's size and place: %s", exc)

    def closeEvent(self, event: QCloseEvent) -> None:  # noqa: N802 - Qt override
        self._save_geometry()
        self.statusBar().showMessage("Stopping…")
        QApplication.processEvents()
        self.shutdown()
        super().closeEvent(event)
