"""Drawing a ControlNet's control image (issue 14): a scribble at the image's size.

The dialog is the mask canvas Transform paints inpainting masks with: white strokes on black,
which is what scribble ControlNets take (so the unit's preprocessor becomes ``none``). The
strokes show in the canvas's tint over a white sheet, or over the image on screen, faded, to
trace it. *Use drawing* writes a PNG into the data folder's ``controls`` folder (kept, so the
request and the image's metadata can name it) and gives its path to the unit.
"""

from __future__ import annotations

import time
from pathlib import Path

from PySide6.QtGui import QColor, QImage, QPainter
from PySide6.QtWidgets import (
    QCheckBox,
    QDialog,
    QDialogButtonBox,
    QVBoxLayout,
    QWidget,
)

from studio.ui.widgets.mask_canvas import BrushTools, MaskCanvas

#: the image on screen shows through at this opacity when traced
TRACE_OPACITY = 0.35
DEFAULT_BRUSH = 8


def sheet(size: tuple[int, int], trace: str = "") -> QImage:
    """A white sheet of ``size``, with the image at ``trace`` faded onto it (scaled to cover)."""
    out = QImage(size[0], size[1], QImage.Format.Format_RGB32)
    out.fill(QColor("white"))
    picture = QImage(trace) if trace else QImage()
    if not picture.isNull():
        painter = QPainter(out)
        painter.setOpacity(TRACE_OPACITY)
        painter.drawImage(out.rect(), picture)
        painter.end()
    return out


class ScribbleDialog(QDialog):
    """Draw a control image; :attr:`saved` is the PNG written when the drawing is used."""

    def __init__(self, size: tuple[int, int], folder: Path, trace: str = "",
                 parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Draw a control image")
        self.folder = Path(folder)
        self.saved: Path | None = None
        self._size, self._trace = size, trace
        self.canvas = MaskCanvas()
        self.canvas.tint = QColor("black")  # the strokes look like pencil on paper
        self.canvas.set_picture(sheet(size))
        self.canvas.setMinimumSize(320, 240)
        self.tools = BrushTools()
        self.tools.size.setValue(DEFAULT_BRUSH)
        self.canvas.set_brush_size(DEFAULT_BRUSH)
        self.tools.invert.hide()  # an inverted scribble is a white sheet: no use here
        self.tools.show_result.hide()
        self.tools.coverage.setText("Draw the lines the image should follow")
        self.tools.connect_canvas(self.canvas)
        self.tools.undo.clicked.connect(self.canvas.undo)
        self.tools.redo.clicked.connect(self.canvas.redo)
        self.trace = QCheckBox("Trace over the image on screen")
        self.trace.setToolTip("Show the image on screen faded under the drawing (it is not "
                              "part of the control image)")
        self.trace.setEnabled(bool(trace))
        self.trace.toggled.connect(self._show_trace)
        self.buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Cancel)
        self.use = self.buttons.addButton("Use drawing", QDialogButtonBox.ButtonRole.AcceptRole)
        self.use.setEnabled(False)
        self.buttons.accepted.connect(self._use)
        self.buttons.rejected.connect(self.reject)
        self.canvas.maskChanged.connect(lambda: self.use.setEnabled(self.canvas.has_mask()))
        box = QVBoxLayout(self)
        box.addWidget(self.tools)
        box.addWidget(self.canvas, 1)
        box.addWidget(self.trace)
        box.addWidget(self.buttons)
        self.resize(720, 640)

    def _show_trace(self, on: bool) -> None:
        """Swap the sheet under the strokes (the drawing and its history stay)."""
        self.canvas.set_backdrop(sheet(self._size, self._trace if on else ""))

    def _use(self) -> None:
        stamp = f"{time.strftime('%Y%m%d-%H%M%S')}-{int(time.time() * 1000) % 1000:03d}"
        self.saved = self.canvas.save_mask(self.folder / f"scribble-{stamp}.png")
        self.accept()
