"""Small widgets the Train workspace's panels and lesson views share: a label that elides (with the
whole text as its tooltip) instead of being cut, plot captions built on it, a layout that wraps its
items onto more rows when the width runs out, a legend drawn as a row of Qt labels beside a
plot, so no legend ever sits on top of the data, the grid lesson views lay their plots in, the
big value of a readout card, and the slider
back through the pictures a lesson kept while it trained.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from html import escape
from typing import Any

from PySide6.QtCore import QObject, QPoint, QRect, QSize, Qt, Slot
from PySide6.QtWidgets import (
    QGridLayout,
    QLabel,
    QLayout,
    QLayoutItem,
    QSizePolicy,
    QSlider,
    QWidget,
)

from studio.ui.widgets.retire import retire


class ElidedLabel(QLabel):
    """A one-line label that takes the space left over and ends in "…" when that is too little
    (the full text is its tooltip), instead of widening its row and squeezing its neighbours.
    ``min_text`` is the part that must always show (its width is the minimum width)."""

    def __init__(self, text: str = "", parent: QWidget | None = None, *,
                 min_text: str = "", tip: str = "") -> None:
        super().__init__(parent)
        self._full = ""
        self._tip = tip
        self._min_text = min_text
        self.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        self.set_full_text(text)

    def set_full_text(self, text: str) -> None:
        if text == self._full and self.text():
            return
        self._full = text
        self.setToolTip(self._tip or text)
        self._elide()

    def full_text(self) -> str:
        return self._full

    def is_elided(self) -> bool:
        return self.text() != self._full

    def minimumSizeHint(self) -> QSize:  # noqa: N802 - Qt's name
        hint = super().minimumSizeHint()
        margins = self.contentsMargins()
        want = self.fontMetrics().horizontalAdvance(self._min_text or "…") + margins.left() \
            + margins.right() + 2
        return QSize(want, hint.height())

    def sizeHint(self) -> QSize:  # noqa: N802 - Qt's name
        hint = super().sizeHint()
        margins = self.contentsMargins()
        return QSize(self.fontMetrics().horizontalAdvance(self._full) + margins.left()
                     + margins.right() + 2, hint.height())

    def resizeEvent(self, event) -> None:  # noqa: N802 - Qt's name
        super().resizeEvent(event)
        self._elide()

    def changeEvent(self, event) -> None:  # noqa: N802 - Qt's name
        super().changeEvent(event)
        if event.type() == event.Type.FontChange:  # a style sheet's font: measure again
            self._elide()
            self.updateGeometry()

    def _elide(self) -> None:
        room = max(0, self.contentsRect().width() - 2)
        text = self.fontMetrics().elidedText(self._full, Qt.TextElideMode.ElideRight, room)
        if text != self.text():
            self.setText(text)


def caption(text: str = "", tip: str = "") -> ElidedLabel:
    """A small upper-case plot heading (the theme's ``section`` style) that elides rather than
    being cut when its column is narrow; ``tip`` (or the whole text) is its tooltip."""
    label = CaptionLabel(text, tip=tip)
    label.setProperty("section", True)
    return label


def plot_grid(view: QWidget) -> QGridLayout:
    """The grid of a lesson view's plots (captions above them): no margin of its own, 12 px
    between columns and 4 px between a caption and its plot."""
    layout = QGridLayout(view)
    layout.setContentsMargins(0, 0, 0, 0)
    layout.setHorizontalSpacing(12)
    layout.setVerticalSpacing(4)
    return layout


def readout_value(name: str) -> QLabel:
    """The big bold number of a readout card ("—" until the first value), named ``name``."""
    value = QLabel("—")
    value.setObjectName(name)
    font = value.font()
    font.setPointSizeF(font.pointSizeF() * 1.35)
    font.setBold(True)
    value.setFont(font)
    return value


class StepHistory(QObject):
    """The pictures a lesson keeps while it trains (one every ``every`` steps, the newest
    ``keep``) and the slider back through them, with its "step N" label.

    The slider sits on the newest picture and follows training until it is dragged back; then
    the picture stays put (the label says "(history)") until the slider is back at the end.
    ``show(picture)`` draws the picture the slider is on.
    """

    def __init__(self, show: Callable[[Any], None], every: int, keep: int = 200,
                 parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._show = show
        self._every = every
        self.pictures: deque[tuple[int, Any]] = deque(maxlen=keep)
        self.following = True
        self.slider = QSlider(Qt.Orientation.Horizontal)
        self.slider.setRange(0, 0)
        self.slider.valueChanged.connect(self._on_slider)
        self.label = QLabel("step 0")
        self.label.setProperty("muted", True)

    def record(self, step: int, picture: Any) -> None:
        """Keep ``picture`` of ``step`` when it is due, and show it while following."""
        kept = self.pictures
        if not kept or step >= kept[-1][0] + self._every or step == 0:
            if not kept or step != kept[-1][0]:
                kept.append((step, picture))
        if self.following:
            self._show(picture)
            self.label.setText(f"step {step}")
        self.slider.blockSignals(True)
        self.slider.setMaximum(max(0, len(kept) - 1))
        if self.following:
            self.slider.setValue(self.slider.maximum())
        self.slider.blockSignals(False)

    def reset(self) -> None:
        self.pictures.clear()
        self.following = True
        self.slider.setRange(0, 0)
        self.label.setText("step 0")

    @Slot(int)
    def _on_slider(self, index: int) -> None:
        if not self.pictures:
            return
        index = min(index, len(self.pictures) - 1)
        self.following = index == len(self.pictures) - 1
        step, picture = self.pictures[index]
        self._show(picture)
        self.label.setText(f"step {step}" + ("" if self.following else " (history)"))


class CaptionLabel(ElidedLabel):
    """An :class:`ElidedLabel` that shows its text in capitals, as section headings are."""

    def set_full_text(self, text: str) -> None:
        super().set_full_text(text.upper())


class FlowLayout(QLayout):
    """Lays its items out left to right and starts a new row when the width runs out (Qt's
    flow layout example): a legend or a button bar that fits any width without clipping."""

    def __init__(self, parent: QWidget | None = None, spacing: int = 10,
                 row_spacing: int = 2) -> None:
        super().__init__(parent)
        self._items: list[QLayoutItem] = []
        self._hspace = spacing
        self._vspace = row_spacing
        self.setContentsMargins(0, 0, 0, 0)

    def addItem(self, item: QLayoutItem) -> None:  # noqa: N802 - Qt's name
        self._items.append(item)

    def count(self) -> int:
        return len(self._items)

    def itemAt(self, index: int) -> QLayoutItem | None:  # noqa: N802 - Qt's name
        return self._items[index] if 0 <= index < len(self._items) else None

    def takeAt(self, index: int) -> QLayoutItem | None:  # noqa: N802 - Qt's name
        return self._items.pop(index) if 0 <= index < len(self._items) else None

    def expandingDirections(self) -> Qt.Orientation:  # noqa: N802 - Qt's name
        return Qt.Orientation(0)

    def hasHeightForWidth(self) -> bool:  # noqa: N802 - Qt's name
        return True

    def heightForWidth(self, width: int) -> int:  # noqa: N802 - Qt's name
        return self._do_layout(QRect(0, 0, width, 0), test_only=True)

    def setGeometry(self, rect: QRect) -> None:  # noqa: N802 - Qt's name
        super().setGeometry(rect)
        self._do_layout(rect, test_only=False)

    def sizeHint(self) -> QSize:  # noqa: N802 - Qt's name
        """One row of everything."""
        m = self.contentsMargins()
        visible = [i for i in self._items if not i.isEmpty()]
        width = sum(i.sizeHint().width() for i in visible) + self._hspace * max(
            0, len(visible) - 1)
        height = max((i.sizeHint().height() for i in visible), default=0)
        return QSize(width + m.left() + m.right(), height + m.top() + m.bottom())

    def minimumSize(self) -> QSize:  # noqa: N802 - Qt's name
        """As narrow as the widest item (then one item a row)."""
        size = QSize()
        for item in self._items:
            if not item.isEmpty():
                size = size.expandedTo(item.minimumSize())
        m = self.contentsMargins()
        return size + QSize(m.left() + m.right(), m.top() + m.bottom())

    def _do_layout(self, rect: QRect, test_only: bool) -> int:
        m = self.contentsMargins()
        area = rect.adjusted(m.left(), m.top(), -m.right(), -m.bottom())
        x, y, row_height = area.x(), area.y(), 0
        for item in self._items:
            if item.isEmpty():
                continue
            hint = item.sizeHint()
            if x > area.x() and x + hint.width() > area.right() + 1:
                x = area.x()
                y += row_height + self._vspace
                row_height = 0
            if not test_only:
                item.setGeometry(QRect(QPoint(x, y), QSize(min(hint.width(), area.width()),
                                                           hint.height())))
            x += hint.width() + self._hspace
            row_height = max(row_height, hint.height())
        return y + row_height - rect.y() + m.bottom()


#: How an entry's mark is drawn: a dot (points), a line (curves), a dashed line (other runs).
MARKS = {"dot": "●", "line": "━━", "dash": "╍╍", "square": "■"}


class LegendStrip(QWidget):
    """The legend of a plot as a row of labels beside it (wrapping onto more rows if need be):
    it never covers the data, the way a legend drawn inside the plot does."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("legendStrip")
        self.entries: list[tuple[str, str, str]] = []
        self.labels: list[QLabel] = []
        self._flow = FlowLayout(self, spacing=12)
        policy = QSizePolicy(QSizePolicy.Policy.Preferred, QSizePolicy.Policy.Preferred)
        policy.setHeightForWidth(True)
        self.setSizePolicy(policy)

    def set_entries(self, entries: list[tuple[str, str, str]]) -> None:
        """``entries``: (name, colour, mark) with mark one of :data:`MARKS`."""
        entries = list(entries)
        if entries == self.entries:
            return
        self.entries = entries
        while self.labels:
            label = self.labels.pop()
            self._flow.removeWidget(label)
            retire(label)
        for name, color, mark in entries:
            label = QLabel(f"<span style='color:{color}'>{MARKS.get(mark, mark)}</span>"
                           f"&nbsp;{escape(name)}")
            label.setTextFormat(Qt.TextFormat.RichText)
            label.setProperty("muted", True)
            label.setObjectName("legendEntry")
            self._flow.addWidget(label)
            self.labels.append(label)
        self.setVisible(bool(entries))
        self.updateGeometry()

    def names(self) -> list[str]:
        return [name for name, _c, _m in self.entries]

    def hasHeightForWidth(self) -> bool:  # noqa: N802 - Qt's name
        return True

    def heightForWidth(self, width: int) -> int:  # noqa: N802 - Qt's name
        return self._flow.heightForWidth(width)

    def sizeHint(self) -> QSize:  # noqa: N802 - Qt's name
        return self._flow.sizeHint()

    def minimumSizeHint(self) -> QSize:  # noqa: N802 - Qt's name
        return self._flow.minimumSize()
