"""The bottom bar: which device runs the work, how much memory is in use, how long the queue is."""

from __future__ import annotations

from PySide6.QtCore import QEvent, Qt, QTimer, Signal, Slot
from PySide6.QtWidgets import QLabel, QPushButton, QStatusBar, QWidget

from studio.devices import DeviceInfo, memory_in_use
from studio.jobs import Job
from studio.ui.icons import icon
from studio.ui.theme import colors

MEMORY_INTERVAL_MS = 2000


def format_memory(kind: str | None, used: int) -> str:
    """ "VRAM 3.4 GB" on CUDA, else "RAM 1.2 GB" (MB below one gigabyte)."""
    prefix = "VRAM" if kind == "cuda" else "RAM"
    if used >= 2**30:
        return f"{prefix} {used / 2**30:.1f} GB"
    return f"{prefix} {used / 2**20:.0f} MB"


class StatusBar(QStatusBar):
    """Device, memory and queue length. Clicking the queue count asks to toggle the queue drawer."""

    queueClicked = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setSizeGripEnabled(False)
        self.device: DeviceInfo | None = None
        self._active: set[int] = set()
        self._theme = ""

        self.device_label = QLabel("Detecting device…")
        self.device_label.setToolTip("The device that runs generation jobs")
        self.memory_label = QLabel()
        self.addWidget(self.device_label)
        self.addWidget(self.memory_label)

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

    @Slot()
    def refresh_memory(self) -> None:
        kind = self.device.kind if self.device else None
        self.memory_label.setText(format_memory(kind, memory_in_use(kind)))

    @Slot(object)
    def on_job_changed(self, job: Job) -> None:
        # Count from the signals themselves: when a job is submitted on the GUI thread the
        # "queued" signal arrives before the runner has put the job in its queue.
        if job.state.finished:
            self._active.discard(job.id)
        else:
            self._active.add(job.id)
        self.queue_button.setText(f"Queue: {len(self._active)}")

    @property
    def queue_length(self) -> int:
        return len(self._active)
