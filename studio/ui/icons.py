"""Vector icons drawn with QPainterPath: no binary assets, crisp at any size, theme-coloured.

Each icon is a function that fills a :class:`QPainterPath` in a 24×24 box. ``icon(name)`` wraps it
in a :class:`QIconEngine` that paints with the current theme's colours at paint time, so icons
follow a theme switch without being rebuilt: idle icons are muted, hovered/checked ones use the
text or accent colour.
"""

from __future__ import annotations

import math
from collections.abc import Callable

from PySide6.QtCore import QPointF, QRect, QRectF, QSize, Qt
from PySide6.QtGui import QColor, QIcon, QIconEngine, QPainter, QPainterPath, QPen, QPixmap

from studio.ui.theme import colors

# (stroke path, fill path) in a 24×24 box; either may be empty.
Drawing = tuple[QPainterPath, QPainterPath]


def _star(path: QPainterPath, cx: float, cy: float, r: float) -> None:
    """A four-pointed sparkle with concave sides."""
    path.moveTo(cx, cy - r)
    path.quadTo(cx, cy, cx + r, cy)
    path.quadTo(cx, cy, cx, cy + r)
    path.quadTo(cx, cy, cx - r, cy)
    path.quadTo(cx, cy, cx, cy - r)
    path.closeSubpath()


def _generate() -> Drawing:
    fill = QPainterPath()
    _star(fill, 10, 13.5, 8)
    _star(fill, 18.5, 5.5, 3.6)
    return QPainterPath(), fill


def _gallery() -> Drawing:
    stroke = QPainterPath()
    stroke.addRoundedRect(QRectF(3, 4.5, 18, 15), 3, 3)
    stroke.moveTo(3.5, 17)
    stroke.lineTo(9, 11.5)
    stroke.lineTo(13, 15.5)
    stroke.lineTo(15.5, 13)
    stroke.lineTo(20.5, 18)
    fill = QPainterPath()
    fill.addEllipse(QPointF(15.5, 9), 1.8, 1.8)
    return stroke, fill


def _settings() -> Drawing:
    fill = QPainterPath()
    teeth, outer, inner = 8, 9.6, 7.0
    for i in range(teeth * 4):
        a = (i / (teeth * 4)) * 2 * math.pi
        r = outer if (i % 4) in (1, 2) else inner
        p = QPointF(12 + r * math.cos(a), 12 + r * math.sin(a))
        fill.moveTo(p) if i == 0 else fill.lineTo(p)
    fill.closeSubpath()
    fill.addEllipse(QPointF(12, 12), 3.2, 3.2)  # odd-even fill makes this a hole
    return QPainterPath(), fill


def _queue() -> Drawing:
    stroke = QPainterPath()
    fill = QPainterPath()
    for y in (6.5, 12, 17.5):
        stroke.moveTo(9, y)
        stroke.lineTo(20.5, y)
        fill.addEllipse(QPointF(4.8, y), 1.6, 1.6)
    return stroke, fill


def _close() -> Drawing:
    stroke = QPainterPath()
    stroke.moveTo(6.5, 6.5)
    stroke.lineTo(17.5, 17.5)
    stroke.moveTo(17.5, 6.5)
    stroke.lineTo(6.5, 17.5)
    return stroke, QPainterPath()


def _info() -> Drawing:
    stroke = QPainterPath()
    stroke.addEllipse(QPointF(12, 12), 9, 9)
    stroke.moveTo(12, 11)
    stroke.lineTo(12, 16.5)
    fill = QPainterPath()
    fill.addEllipse(QPointF(12, 7.6), 1.3, 1.3)
    return stroke, fill


def _warning() -> Drawing:
    stroke = QPainterPath()
    stroke.moveTo(12, 3.5)
    stroke.lineTo(21.5, 20)
    stroke.lineTo(2.5, 20)
    stroke.closeSubpath()
    stroke.moveTo(12, 9.5)
    stroke.lineTo(12, 14)
    fill = QPainterPath()
    fill.addEllipse(QPointF(12, 17), 1.2, 1.2)
    return stroke, fill


def _folder() -> Drawing:
    stroke = QPainterPath()
    stroke.moveTo(3, 7)
    stroke.quadTo(3, 5, 5, 5)
    stroke.lineTo(9.5, 5)
    stroke.lineTo(11.5, 7.5)
    stroke.lineTo(19, 7.5)
    stroke.quadTo(21, 7.5, 21, 9.5)
    stroke.lineTo(21, 17)
    stroke.quadTo(21, 19, 19, 19)
    stroke.lineTo(5, 19)
    stroke.quadTo(3, 19, 3, 17)
    stroke.closeSubpath()
    return stroke, QPainterPath()


def _chat() -> Drawing:
    stroke = QPainterPath()
    stroke.moveTo(5, 4.5)
    stroke.lineTo(19, 4.5)
    stroke.quadTo(21, 4.5, 21, 6.5)
    stroke.lineTo(21, 14.5)
    stroke.quadTo(21, 16.5, 19, 16.5)
    stroke.lineTo(10, 16.5)
    stroke.lineTo(5.5, 20.5)
    stroke.lineTo(6, 16.5)
    stroke.lineTo(5, 16.5)
    stroke.quadTo(3, 16.5, 3, 14.5)
    stroke.lineTo(3, 6.5)
    stroke.quadTo(3, 4.5, 5, 4.5)
    return stroke, QPainterPath()


def _transform() -> Drawing:
    stroke = QPainterPath()
    stroke.addRoundedRect(QRectF(2.5, 6.5, 8, 8), 2, 2)
    stroke.addEllipse(QPointF(17.5, 14), 4, 4)
    stroke.moveTo(7, 19.5)
    stroke.quadTo(10, 21.5, 13.5, 19.5)
    stroke.moveTo(12, 5)
    stroke.quadTo(15, 3.5, 17.5, 6.5)
    stroke.moveTo(17.5, 6.5)
    stroke.lineTo(17.8, 3.5)
    stroke.moveTo(17.5, 6.5)
    stroke.lineTo(14.6, 6.3)
    return stroke, QPainterPath()


def _train() -> Drawing:
    stroke = QPainterPath()
    stroke.moveTo(3.5, 3.5)
    stroke.lineTo(3.5, 20.5)
    stroke.lineTo(20.5, 20.5)
    stroke.moveTo(6.5, 7)
    stroke.quadTo(9, 15.5, 13, 16)
    stroke.quadTo(17, 16.5, 20.5, 17)
    return stroke, QPainterPath()


def _models() -> Drawing:
    stroke = QPainterPath()
    stroke.moveTo(12, 2.8)
    stroke.lineTo(20.5, 7.4)
    stroke.lineTo(20.5, 16.6)
    stroke.lineTo(12, 21.2)
    stroke.lineTo(3.5, 16.6)
    stroke.lineTo(3.5, 7.4)
    stroke.closeSubpath()
    stroke.moveTo(3.5, 7.4)
    stroke.lineTo(12, 12)
    stroke.lineTo(20.5, 7.4)
    stroke.moveTo(12, 12)
    stroke.lineTo(12, 21.2)
    return stroke, QPainterPath()


DRAWINGS: dict[str, Callable[[], Drawing]] = {
    "generate": _generate, "gallery": _gallery, "settings": _settings, "queue": _queue,
    "close": _close, "info": _info, "warning": _warning, "folder": _folder, "chat": _chat,
    "transform": _transform, "train": _train, "models": _models,
}


def paint_drawing(painter: QPainter, rect: QRectF, drawing: Drawing, color: QColor,
                  stroke_width: float = 1.8) -> None:
    """Paint a 24×24 drawing scaled into ``rect``."""
    stroke, fill = drawing
    side = min(rect.width(), rect.height())
    painter.save()
    painter.setRenderHint(QPainter.RenderHint.Antialiasing)
    painter.translate(rect.center().x() - side / 2, rect.center().y() - side / 2)
    painter.scale(side / 24, side / 24)
    if not stroke.isEmpty():
        painter.setPen(QPen(color, stroke_width, Qt.PenStyle.SolidLine, Qt.PenCapStyle.RoundCap,
                            Qt.PenJoinStyle.RoundJoin))
        painter.setBrush(Qt.BrushStyle.NoBrush)
        painter.drawPath(stroke)
    if not fill.isEmpty():
        painter.setPen(Qt.PenStyle.NoPen)
        painter.setBrush(color)
        painter.drawPath(fill)
    painter.restore()


class _VectorIconEngine(QIconEngine):
    def __init__(self, name: str, role: str | None = None) -> None:
        super().__init__()
        self._name = name
        self._role = role  # a ThemeColors field to always paint with, e.g. "failed"

    def _color(self, mode: QIcon.Mode, state: QIcon.State) -> QColor:
        c = colors()
        if self._role:
            color = QColor(getattr(c, self._role))
        elif state == QIcon.State.On:
            color = QColor(c.accent)
        elif mode in (QIcon.Mode.Active, QIcon.Mode.Selected):
            color = QColor(c.text)
        else:
            color = QColor(c.muted)
        if mode == QIcon.Mode.Disabled:
            color.setAlpha(110)
        return color

    def paint(self, painter: QPainter, rect: QRect, mode: QIcon.Mode,
              state: QIcon.State) -> None:
        paint_drawing(painter, QRectF(rect), DRAWINGS[self._name](), self._color(mode, state))

    def pixmap(self, size: QSize, mode: QIcon.Mode, state: QIcon.State) -> QPixmap:
        pm = QPixmap(size)
        pm.fill(Qt.GlobalColor.transparent)
        painter = QPainter(pm)
        self.paint(painter, QRect(0, 0, size.width(), size.height()), mode, state)
        painter.end()
        return pm

    def clone(self) -> QIconEngine:
        return _VectorIconEngine(self._name, self._role)


def icon(name: str, role: str | None = None) -> QIcon:
    """A theme-following icon by name (see ``DRAWINGS``); ``role`` pins one theme colour."""
    if name not in DRAWINGS:
        raise KeyError(f"no icon named {name!r}; known: {', '.join(sorted(DRAWINGS))}")
    return QIcon(_VectorIconEngine(name, role))
