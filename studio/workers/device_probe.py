"""Find out which accelerator this machine has, off the GUI thread.

:func:`studio.core.devices.describe_device` imports torch, which takes seconds; the window must be on
screen before that happens (DESIGN rule 7). :class:`DeviceProbe` runs it on a short-lived daemon
thread and delivers the answer to the GUI thread through a queued signal.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from PySide6.QtCore import QObject, Signal

from studio.core.devices import DeviceInfo, describe_device
from studio.workers.lanes import Calls

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DeviceReport:
    """What the probe found: the device, and why it is the CPU when it is (else "")."""

    info: DeviceInfo
    cpu_reason: str = ""
    setting: str = ""  # the Settings device it answers for ("" when not from a probe)


def cpu_reason(setting: str) -> str:
    """Why torch will not use a GPU here, in words a person can act on (imports torch)."""
    import torch

    if setting == "cpu":
        return "The CPU was chosen in Settings."
    if torch.version.cuda is None and not _has_mps(torch):
        return (f"The installed torch ({torch.__version__}) is a CPU-only build, so it cannot use "
                "an NVIDIA GPU even if one is present. Install a CUDA build of torch to use it.")
    if torch.version.cuda is not None and not torch.cuda.is_available():
        return (f"torch is built for CUDA {torch.version.cuda}, but it found no usable NVIDIA GPU "
                "(is the driver installed and recent enough?).")
    if setting in ("cuda", "mps"):
        return f"{setting.upper()} was chosen in Settings, but it is not available here."
    return ""


def _has_mps(torch) -> bool:
    mps = getattr(torch.backends, "mps", None)
    return bool(mps is not None and mps.is_built())


def probe(setting: str) -> DeviceReport:
    """Describe the device a setting resolves to (blocking; imports torch)."""
    try:
        info = describe_device(setting)
    except Exception as exc:  # noqa: BLE001 - a broken torch install still gets a usable window
        log.exception("device detection failed")
        return DeviceReport(DeviceInfo("cpu", "CPU"), f"torch could not be loaded ({exc}).",
                            setting)
    reason = cpu_reason(setting) if info.kind == "cpu" else ""
    return DeviceReport(info, reason, setting)


class DeviceProbe(QObject):
    """Runs :func:`probe` on the I/O pool (it imports torch); ``detected`` carries the
    :class:`DeviceReport`, on the GUI thread."""

    detected = Signal(object)

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._calls = Calls(self)

    def start(self, setting: str = "auto") -> None:
        """Start probing (a probe already running is left to finish; both answers arrive)."""
        self._calls.run(lambda: probe(setting), self.detected.emit)

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the probes in flight finished; True if they did within ``timeout``."""
        return self._calls.wait(int(1000 * (3600 if timeout is None else timeout)))
