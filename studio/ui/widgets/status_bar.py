"""The bottom bar: which device runs the work, how much memory is in use, how long the queue is.

The memory figure's tooltip lists the models the worker keeps loaded and the memory budget; its
context menu (and the small Unload button shown while a model is loaded) frees them all.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from PySide6.QtCore import QEvent, QPoint, Qt, QTimer, Signal, Slot
from PySide6.QtWidgets import QLabel, QMenu, QPushButton, QStatusBar, QToolButton, QWidget

from studio.core.devices import DeviceInfo, memory_in_use
from studio.core.jobs import JobSnapshot, JobState
from studio.ui.icons import icon
from studio.ui.loaded_models import (
    loaded_models,
    loaded_summary,
    loaded_tooltip,
)
from studio.ui.theme import colors
from studio.ui.widgets.unload_job import UnloadJob

if TYPE_CHECKING:
    from studio.ui.context import AppContext
    from studio.workers.job_bridge import QtJobHandle

MEMORY_INTERVAL_MS = 2000


def format_memory(kind: str | None, used: int) -> str:
    """ "VRAM 3.4 GB" on CUDA, else "RAM 1.2 GB" (MB below one gigabyte)."""
    prefix = "VRAM" if kind == "cuda" else "RAM"
    if used >= 2**30:
        return f"{prefix} {used / 2**30:.1f} GB"
    return f"{prefix} {used / 2**20:.0f} MB"


class StatusBar(QStatusBar):
    """Device, memory and queue length. Clicking the queue count asks to toggle the queue drawer.

    With a context (``ctx``: settings and the job bridge) the memory figure also offers
    "Unload all models"; without one it only shows the figure.
    """

    queueClicked = Signal()
    #: The device became known or changed (DeviceInfo); panels that depend on CUDA listen.
    deviceChanged = Signal(object)

    def __init__(self, parent: QWidget | None = None, ctx: AppContext | None = None) -> None:
        super().__init__(parent)
        self.setSizeGripEnabled(False)
        self.ctx = ctx
        self.device: DeviceInfo | None = None
        self._active: set[int] = set()
        self._theme = ""
        self.unloader = UnloadJob(self)
        self.unloader.changed.connect(self.refresh_memory)
        self.unloader.refused.connect(lambda text: self.showMessage(text, 6000))
        self.unloader.ended.connect(self._on_unloaded)

        self.device_label = QLabel("Detecting device…")
        self.device_label.setToolTip("The device that runs generation jobs")
        self.memory_label = QLabel()
        self.memory_label.setContextMenuPolicy(Qt.ContextMenuPolicy.CustomContextMenu)
        self.memory_label.customContextMenuRequested.connect(self._memory_menu)
        self.unload_button = QToolButton(text="Unload all")
        self.unload_button.setObjectName("UnloadButton")
        self.unload_button.setProperty("flat", True)
        # The link colour of the theme's palette: it reads as an action, not as another figure.
        self.unload_button.setStyleSheet("QToolButton#UnloadButton { color: palette(link); }")
        self.unload_button.setCursor(Qt.CursorShape.PointingHandCursor)
        self.unload_button.setToolTip("Unload all models and give their memory back")
        self.unload_button.clicked.connect(self.unload_all)
        self.unload_button.hide()
        self.addWidget(self.device_label)
        self.addWidget(self.memory_label)
        self.addWidget(self.unload_button)

        self.queue_button = QPushButton("Queue: 0")
        self.queue_button.setObjectName("QueueButton")
        self.queue_button.setProperty("flat", True)
        self.queue_button.setIcon(icon("queue"))
        self.queue_button.setCursor(Qt.CursorShape.PointingHandCursor)
        self.queue_button.setToolTip("Show or hide the job queue (Ctrl+J)")
        self.queue_button.clicked.connect(self.queueClicked)
        self.addPermanentWidget(self.queue_button)

        self.memory_timer = QTimer(self)
        self.memory_timer.setInterval(MEMORY_INTERVAL_MS)
        self.memory_timer.timeout.connect(self.refresh_memory)
        self.memory_timer.start()
        self.refresh_memory()

    def changeEvent(self, event: QEvent) -> None:  # noqa: N802 - Qt override
        super().changeEvent(event)
        if (event.type() in (QEvent.Type.PaletteChange, QEvent.Type.StyleChange)
                and getattr(self, "device", None) is not None
                and self._theme != colors().name):
            self.set_device(self.device)  # the coloured dot follows the theme

    @Slot(object)
    def set_device(self, info: DeviceInfo) -> None:
        self.device = info
        self._theme = colors().name
        dot = {"cuda": colors().done, "mps": colors().done}.get(info.kind, colors().queued)
        self.device_label.setText(f"<span style='color:{dot}'>●</span>&nbsp; {info.label}")
        self.device_label.setToolTip(f"Jobs run on: {info.label}")
        self.refresh_memory()
        self.deviceChanged.emit(info)

    @Slot()
    def refresh_memory(self) -> None:
        kind = self.device.kind if self.device else None
        self.memory_label.setText(format_memory(kind, memory_in_use(kind)))
        models = loaded_models()
        settings = getattr(self.ctx, "settings", None)
        what = "VRAM in use on the GPU" if kind == "cuda" else "Memory used by Studio (RAM)"
        self.memory_label.setToolTip(f"{what}<br><br>{loaded_tooltip(models, settings)}"
                                     + ("<br><br>Right-click to unload all models."
                                        if models and self.ctx is not None else ""))
        unloading = self.unloader.running
        self.unload_button.setVisible(self.ctx is not None and (bool(models) or unloading))
        self.unload_button.setEnabled(not unloading)
        self.unload_button.setText("Unloading…" if unloading else "Unload all")
        if models:
            self.unload_button.setToolTip(f"Unload all models ({loaded_summary(models)}) and "
                                          "give their memory back")

    @Slot()
    def unload_all(self) -> QtJobHandle | None:
        """Queue the job that frees every loaded model (its handle); problems show in the bar."""
        if self.ctx is None:
            return None
        return self.unloader.start(self.ctx.bridge)

    @Slot(object)
    def _on_unloaded(self, job: JobSnapshot) -> None:
        if job.state is JobState.FAILED:
            self.showMessage(job.error or job.message or "Unloading failed.", 8000)

    def _memory_menu(self, pos: QPoint) -> None:
        if self.ctx is None:
            return
        menu = QMenu(self)
        models = loaded_models()
        action = menu.addAction("Unload all models" if models else "No model loaded")
        action.setEnabled(bool(models))
        action.triggered.connect(self.unload_all)
        menu.popup(self.memory_label.mapToGlobal(pos))
        self._menu = menu  # kept for tests; replaced on the next right-click

    @Slot(object)
    def on_job_changed(self, job: JobSnapshot) -> None:
        # Count from the signals themselves: when a job is submitted on the GUI thread the
        # "queued" signal arrives before the lane has put the job in its queue.
        if job.state.finished:
            self._active.discard(job.id)
            self.refresh_memory()  # a job may have loaded a model, or unloaded them all
        else:
            self._active.add(job.id)
        self.queue_button.setText(f"Queue: {len(self._active)}")

    @property
    def queue_length(self) -> int:
        return len(self._active)
