"""Saving what the Train workspace shows: a widget as PNG, a list of frames as an animated GIF."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QBuffer, QIODevice
from PySide6.QtWidgets import QWidget

from studio.core.files import atomic_write_bytes

GIF_FRAME_MS = 90


def save_widget_png(widget: QWidget, path: Path) -> Path:
    """``widget`` as it is drawn now, written atomically as a PNG."""
    buffer = QBuffer()
    buffer.open(QIODevice.OpenModeFlag.WriteOnly)
    if not widget.grab().save(buffer, "PNG"):
        raise OSError(f"could not encode {path.name}")
    return atomic_write_bytes(path, bytes(buffer.data()))


def save_gif(frames: list, path: Path, frame_ms: int = GIF_FRAME_MS) -> Path:
    """PIL images as a looping GIF (the last frame held a little longer), written atomically."""
    import io

    images = [f.convert("RGB") for f in frames]
    durations = [frame_ms] * (len(images) - 1) + [frame_ms * 10]
    out = io.BytesIO()
    images[0].save(out, format="GIF", save_all=True, append_images=images[1:],
                   duration=durations, loop=0, optimize=False)
    return atomic_write_bytes(path, out.getvalue())
