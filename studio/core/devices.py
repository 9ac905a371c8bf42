"""Which accelerator to use and how to describe it. No Qt here.

torch is imported lazily inside the functions: this module is safe to import at start-up.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch


@dataclass(frozen=True)
class DeviceInfo:
    """What the status bar shows: ``kind`` is cuda | mps | cpu."""

    kind: str
    label: str  # "CUDA · RTX 4070 · 12 GB", "Apple MPS", "CPU"
    total_memory: int = 0  # bytes of accelerator memory, 0 when unknown / CPU


def resolve_device(setting: str = "auto") -> str:
    """The torch device string for a setting (auto | cuda | mps | cpu).

    Asking for a device this machine lacks raises a message the user can act on.
    """
    import torch

    setting = (setting or "auto").lower()
    has_cuda = torch.cuda.is_available()
    has_mps = getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()
    if setting == "auto":
        return "cuda" if has_cuda else "mps" if has_mps else "cpu"
    if setting == "cuda" and not has_cuda:
        raise RuntimeError("CUDA was chosen in Settings, but no CUDA GPU is available to torch. "
                           "Choose 'auto' or 'cpu'.")
    if setting == "mps" and not has_mps:
        raise RuntimeError("Apple MPS was chosen in Settings, but it is not available here. "
                           "Choose 'auto' or 'cpu'.")
    if setting not in ("cuda", "mps", "cpu"):
        raise ValueError(f"unknown device {setting!r}: use auto, cuda, mps or cpu")
    return setting


def resolve_dtype(precision: str, device: str) -> torch.dtype:
    """The torch dtype for a precision setting: auto is fp16 on CUDA, fp32 elsewhere."""
    import torch

    precision = (precision or "auto").lower()
    if precision == "auto":
        return torch.float16 if device.startswith("cuda") else torch.float32
    return {"fp16": torch.float16, "bf16": torch.bfloat16, "fp32": torch.float32}[precision]


def describe_device(setting: str = "auto") -> DeviceInfo:
    """A label for the device a setting resolves to (imports torch)."""
    import torch

    try:
        kind = resolve_device(setting)
    except (RuntimeError, ValueError):
        kind = "cpu"
    if kind == "cuda":
        props = torch.cuda.get_device_properties(0)
        name = props.name.replace("NVIDIA ", "").replace("GeForce ", "")
        gb = props.total_memory / 2**30
        return DeviceInfo("cuda", f"CUDA · {name} · {gb:.0f} GB", props.total_memory)
    if kind == "mps":
        return DeviceInfo("mps", "Apple MPS")
    return DeviceInfo("cpu", "CPU")


def memory_in_use(kind: str | None = None) -> int:
    """Bytes in use: allocated VRAM on CUDA, else this process's resident memory."""
    if kind == "cuda" and "torch" in sys.modules:
        import torch

        if torch.cuda.is_available():
            return int(torch.cuda.memory_allocated())
    return process_rss()


def process_rss() -> int:
    """This process's resident set size in bytes (0 when the platform will not say)."""
    try:
        with open("/proc/self/statm") as fh:  # Linux
            import os

            return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        pass
    try:
        import resource

        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return rss if sys.platform == "darwin" else rss * 1024
    except Exception:  # noqa: BLE001 - Windows has no resource module
        return 0
