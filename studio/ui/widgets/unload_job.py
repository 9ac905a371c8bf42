"""The "Unload all models" job as the status bar and the Models workspace both run it: at most one
at a time per place, its handle kept while it runs so the button can say "Unloading…".

Each place words the outcome its own way (a notice in the workspace, a timed message in the
status bar); what they share is here: queueing the job, keeping its handle, and saying when to
show the loaded models again.
"""

from __future__ import annotations

from typing import Any

from PySide6.QtCore import QObject, Signal, Slot

from studio.core.jobs import JobSnapshot
from studio.ui.loaded_models import submit_unload


class UnloadJob(QObject):
    """One place's "Unload all" job.

    ``start(bridge)`` queues it and returns its handle, or None after ``refused`` carried the
    sentence saying why it could not be queued. ``ended`` carries the job's last snapshot; then
    ``changed`` fires, as it does when the job starts: show the loaded models again.
    """

    changed = Signal()
    ended = Signal(object)
    refused = Signal(str)

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._handle: Any = None  # the job's handle while it runs

    @property
    def running(self) -> bool:
        return self._handle is not None

    def start(self, bridge: Any) -> Any:
        """Queue the job that frees every loaded model; its handle, or None when refused."""
        try:
            handle = submit_unload(bridge)
        except (KeyError, TypeError, RuntimeError) as exc:
            self.refused.emit(f"Cannot unload the models: {exc}")
            return None
        handle.ended.connect(self._on_ended)
        self._handle = handle
        self.changed.emit()
        return handle

    @Slot(object)
    def _on_ended(self, job: JobSnapshot) -> None:
        self._handle = None
        self.ended.emit(job)
        self.changed.emit()
