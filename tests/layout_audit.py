"""A layout audit for Qt widget trees: what a person would call broken in a window.

:func:`audit` walks the visible widgets under a window and returns one :class:`Problem` per
defect it finds. It knows nothing about Studio; ``tests/layout_scenes.py`` shows Studio's
workspaces and dialogs one after the other and calls it for each.

The rules (each written to match what a person sees, not what Qt's size hints wish for):

- **input too narrow** — a QLineEdit, QSpinBox/QDoubleSpinBox or QComboBox whose text area cannot
  show its text (a line edit: its text, or its placeholder when empty, up to 24 characters; a spin
  box: its value and its longest value, up to 18 characters as Qt's own size hint; a combo box: its
  current text, up to 16 characters), or that is lower than a line of text;
- **combo popup too narrow** — an open combo box list whose items do not fit its width;
- **clipped text** — a button whose text (and icon) does not fit between its borders; a label
  whose text is wider than the label (a word-wrapped label: its longest word) or, word-wrapped,
  needs more height than it has; text that is elided on purpose is fine when a tooltip says it
  all (labels whose class name says "Elid…", and labels whose ``text()`` differs from what they
  show);
- **tab cut** — a tab whose title does not fit its tab, or tabs past the end of their bar;
- **list item cut** — a list row (QListView/QListWidget in list mode) wider than the list, with
  no horizontal scroll bar and no tooltip; a tree/table column header narrower than its title;
- **overlap** — two visible widgets laid out side by side by the same layout that overlap (a
  layout given less room than its widgets' minimum sizes; widgets placed in the same grid cell
  on purpose, and widgets the layout does not manage, such as overlays, are left alone);
- **outside parent** — a visible widget that reaches past its parent's edge (the contents of a
  scroll area's viewport excepted: they scroll), or scroll-area contents larger than the viewport
  along an axis whose scroll bar is turned off (cut, unreachable);
- **off screen** — a window larger than the screen's available area, or placed partly off it;
- **legend over data** (pyqtgraph) — a plot legend whose box covers plotted points or curve
  segments of its plot, or that sticks out of the plot;
- **plot text cut** (pyqtgraph) — a plot title wider than its plot, a text item cut at the
  plot's edge, tick labels of an axis that overlap each other.

Nothing here changes a widget, except that :func:`audit_combo_popups` opens and closes popups.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from dataclasses import asdict, dataclass

from PySide6.QtCore import QPoint, QRect, QSize, Qt
from PySide6.QtGui import QFontMetrics, QTextDocument
from PySide6.QtGui import Qt as QtGuiNamespace
from PySide6.QtWidgets import (
    QAbstractButton,
    QAbstractItemView,
    QAbstractScrollArea,
    QAbstractSpinBox,
    QApplication,
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QGridLayout,
    QHeaderView,
    QLabel,
    QLayout,
    QLineEdit,
    QListView,
    QPushButton,
    QRadioButton,
    QScrollArea,
    QSpinBox,
    QStackedLayout,
    QStyle,
    QStyleOptionButton,
    QStyleOptionComboBox,
    QStyleOptionFrame,
    QStyleOptionToolButton,
    QTabBar,
    QToolButton,
    QTreeView,
    QWidget,
)

TOLERANCE = 1  # pixels of rounding a rule forgives
LINE_EDIT_CHARS = 24  # a line edit must show this much of a longer text (it scrolls the rest)
SPIN_CHARS = 18  # Qt's QAbstractSpinBox::sizeHint measures at most 18 characters
COMBO_CHARS = 16  # a combo box must show this much of a longer item (model names elide)
MAX_ROWS = 60  # rows of a list looked at


@dataclass
class Problem:
    """One defect: where (``scene``, widget ``path``, ``cls``, ``geometry`` in window
    coordinates) and what (``rule``, ``what``)."""

    scene: str
    rule: str
    path: str
    cls: str
    geometry: str
    what: str

    def line(self) -> str:
        return f"[{self.scene}] {self.rule}: {self.path} ({self.cls}) at {self.geometry}: {self.what}"

    def to_dict(self) -> dict:
        return asdict(self)


# -- naming widgets ---------------------------------------------------------------------------


def _name(w: QWidget) -> str:
    name = w.objectName()
    cls = type(w).__name__
    if name and not name.startswith("qt_"):
        return f"{cls}#{name}" if name != cls else name
    return cls


def _caption(w: QWidget) -> str:
    """A few words that tell a person which widget this is."""
    text = ""
    if isinstance(w, (QAbstractButton, QLabel)):
        text = w.text()
    elif isinstance(w, QLineEdit):
        text = w.placeholderText()  # what it is for (its text may be anything)
    elif isinstance(w, QComboBox):
        text = w.currentText()
    text = " ".join(str(text).split())
    if "<" in text:  # rich text: the words only
        doc = QTextDocument()
        doc.setHtml(text)
        text = " ".join(doc.toPlainText().split())
    return f" {text[:40]!r}" if text else ""


def widget_path(w: QWidget) -> str:
    """``Window › … › Parent › Widget 'text'``: unnamed plain containers are squeezed into '…'."""
    chain: list[str] = []
    node: QWidget | None = w
    while node is not None:
        chain.append(_name(node))
        if node.isWindow():
            break
        node = node.parentWidget()
    chain.reverse()
    # Keep named widgets and the last four steps; plain QWidget/QFrame runs become "…".
    kept: list[str] = []
    for i, part in enumerate(chain):
        plain = part in ("QWidget", "QFrame") or part.startswith("QAbstractScrollArea")
        if i == 0 or i >= len(chain) - 4 or not plain:
            kept.append(part)
        elif kept and kept[-1] != "…":
            kept.append("…")
    return " › ".join(kept) + _caption(w)


def _geometry(w: QWidget) -> str:
    top = w.window()
    pos = w.mapTo(top, QPoint(0, 0)) if top is not w else QPoint(0, 0)
    return f"({pos.x()},{pos.y()} {w.width()}×{w.height()})"


# -- walking ----------------------------------------------------------------------------------


def visible_widgets(top: QWidget) -> list[QWidget]:
    """``top`` and every descendant that is shown on screen (not hidden, not in a hidden page),
    skipping other windows (dialogs, popups) that happen to be its children."""
    out: list[QWidget] = []

    def walk(w: QWidget) -> None:
        out.append(w)
        for child in w.findChildren(QWidget, options=Qt.FindChildOption.FindDirectChildrenOnly):
            if child.isWindow() or not child.isVisible():
                continue
            if child.width() <= 0 and child.height() <= 0 and not _is_input(child):
                continue
            walk(child)

    if top.isVisible():
        walk(top)
    return out


def _is_input(w: QWidget) -> bool:
    return isinstance(w, (QLineEdit, QAbstractSpinBox, QComboBox))


def _inside_compound(w: QWidget) -> bool:
    """The line edit of a spin box or an editable combo box (checked through its owner)."""
    parent = w.parentWidget()
    return isinstance(parent, (QAbstractSpinBox, QComboBox))


def _scroll_viewport_child(w: QWidget) -> bool:
    """A widget whose parent is the viewport of a scroll area: it may be larger and scroll."""
    parent = w.parentWidget()
    grand = parent.parentWidget() if parent is not None else None
    return isinstance(grand, QAbstractScrollArea) and grand.viewport() is parent


def _layout_widgets(layout: QLayout) -> list[QWidget]:
    out: list[QWidget] = []
    for i in range(layout.count()):
        item = layout.itemAt(i)
        if item is None:
            continue
        if item.widget() is not None:
            out.append(item.widget())
        elif item.layout() is not None:
            out.extend(_layout_widgets(item.layout()))
    return out


def _grid_cells(layout: QLayout, w: QWidget) -> QRect | None:
    """The cells a widget occupies in a grid layout (or a grid nested in ``layout``)."""
    for lay in [layout, *layout.findChildren(QLayout)]:
        if isinstance(lay, QGridLayout):
            index = lay.indexOf(w)
            if index >= 0:
                row, col, rows, cols = lay.getItemPosition(index)
                return QRect(col, row, max(1, cols), max(1, rows))
    return None


def _text_width(fm: QFontMetrics, text: str) -> int:
    lines = text.split("\n") if text else [""]
    return max(fm.horizontalAdvance(line) for line in lines)


def _mnemonic_free(text: str) -> str:
    return text.replace("&&", "\0").replace("&", "").replace("\0", "&")


# -- the rules --------------------------------------------------------------------------------


class _Auditor:
    def __init__(self, scene: str) -> None:
        self.scene = scene
        self.problems: list[Problem] = []

    def report(self, rule: str, w: QWidget, what: str) -> None:
        self.problems.append(Problem(self.scene, rule, widget_path(w), type(w).__name__,
                                     _geometry(w), what))

    # inputs ------------------------------------------------------------------------------------
    def line_edit(self, w: QLineEdit) -> None:
        fm = w.fontMetrics()
        opt = QStyleOptionFrame()
        w.initStyleOption(opt)
        rect = w.style().subElementRect(QStyle.SubElement.SE_LineEditContents, opt, w)
        margins = w.textMargins()
        room = rect.width() - margins.left() - margins.right()  # its 2 px margins may go
        if w.isClearButtonEnabled() and w.text():
            room -= 20
        text = w.displayText()
        what = "text"
        if not text:
            text, what = w.placeholderText(), "placeholder"
        if len(text) > LINE_EDIT_CHARS and what == "text":
            text = text[:LINE_EDIT_CHARS]
        need = fm.horizontalAdvance(text) if text else fm.horizontalAdvance("0000")
        if room + TOLERANCE < need:
            shown = f"its {what} {text!r}" if text else "four digits"
            self.report("input too narrow", w, f"{room} px for {shown}, which needs {need} px")
        self._input_height(w, fm)

    def spin_box(self, w: QAbstractSpinBox) -> None:
        fm = w.fontMetrics()
        edit = w.lineEdit()
        room = edit.width() if edit is not None else w.width()  # its 2 px margins may go
        texts = [w.text()]
        if isinstance(w, (QSpinBox, QDoubleSpinBox)):
            for value in (w.minimum(), w.maximum()):
                t = w.prefix() + w.textFromValue(value) + w.suffix()
                texts.append(t[:SPIN_CHARS])
            if w.specialValueText():
                texts.append(w.specialValueText())
        widest = max(texts, key=fm.horizontalAdvance)
        need = fm.horizontalAdvance(widest)
        if room + TOLERANCE < need:
            self.report("input too narrow", w, f"{room} px for values like {widest!r}, which "
                        f"need {need} px")
        self._input_height(w, fm)

    def combo_box(self, w: QComboBox) -> None:
        fm = w.fontMetrics()
        if w.isEditable() and w.lineEdit() is not None:
            room = w.lineEdit().width()
        else:
            opt = QStyleOptionComboBox()
            w.initStyleOption(opt)
            rect = w.style().subControlRect(QStyle.ComplexControl.CC_ComboBox, opt,
                                            QStyle.SubControl.SC_ComboBoxEditField, w)
            room = rect.width()  # the style draws the text clipped to this rect
            if not opt.currentIcon.isNull():
                room -= w.iconSize().width() + 4
        text = w.currentText()[:COMBO_CHARS]
        if not text:
            text = w.placeholderText()
        need = fm.horizontalAdvance(text) if text else fm.horizontalAdvance("0000")
        if room + TOLERANCE < need:
            self.report("input too narrow", w,
                        f"{max(room, 0)} px for {text!r}, which needs {need} px")
        self._input_height(w, fm)

    def _input_height(self, w: QWidget, fm: QFontMetrics) -> None:
        if w.height() + TOLERANCE < fm.height():
            self.report("input too narrow", w,
                        f"{w.height()} px high, a line of its text needs {fm.height()} px")

    # buttons and labels ------------------------------------------------------------------------
    def button(self, w: QAbstractButton) -> None:
        text = _mnemonic_free(w.text())
        fm = w.fontMetrics()
        if isinstance(w, (QCheckBox, QRadioButton)):
            need = w.sizeHint().width()
            if text and w.width() + TOLERANCE < need:
                self.report("clipped text", w, f"{w.width()} px wide, its text needs {need} px")
            return
        if isinstance(w, QToolButton) and w.toolButtonStyle() == Qt.ToolButtonStyle.ToolButtonIconOnly:
            text = ""
        if not text:
            return
        icon = 0
        shows_icon = not w.icon().isNull()
        if isinstance(w, QToolButton):
            style = w.toolButtonStyle()
            shows_icon = shows_icon and style != Qt.ToolButtonStyle.ToolButtonTextOnly
            side_by_side = style in (Qt.ToolButtonStyle.ToolButtonTextBesideIcon,
                                     Qt.ToolButtonStyle.ToolButtonFollowStyle)
            if shows_icon and side_by_side:
                icon = w.iconSize().width() + 4
        elif shows_icon:
            icon = w.iconSize().width() + 4
        need = _text_width(fm, text) + icon
        if isinstance(w, QToolButton) and (
                w.popupMode() == QToolButton.ToolButtonPopupMode.MenuButtonPopup
                or (w.menu() is not None
                    and w.popupMode() == QToolButton.ToolButtonPopupMode.InstantPopup
                    and not (w.arrowType() != Qt.ArrowType.NoArrow))):
            need += w.style().pixelMetric(QStyle.PixelMetric.PM_MenuButtonIndicator, None, w)
        elif isinstance(w, QPushButton) and w.menu() is not None:
            need += w.style().pixelMetric(QStyle.PixelMetric.PM_MenuButtonIndicator, None, w)
        # The padding may shrink down to 4 px a side before the text is cut.
        room = w.width() - 2 * min(self._button_padding(w) // 2, 4)
        if room + TOLERANCE < need:
            self.report("clipped text", w, f"{w.width()} px wide, its text needs {need} px "
                        "plus its border")
        lines = max(1, text.count("\n") + 1)
        if w.height() + TOLERANCE < fm.height() * lines:
            self.report("clipped text", w,
                        f"{w.height()} px high, its text needs {fm.height() * lines} px")

    @staticmethod
    def _button_padding(w: QAbstractButton) -> int:
        """Border and padding across the button (what the style adds to its contents)."""
        big = QSize(1000, 20)
        if isinstance(w, QToolButton):
            opt = QStyleOptionToolButton()
            w.initStyleOption(opt)
            size = w.style().sizeFromContents(QStyle.ContentsType.CT_ToolButton, opt, big, w)
        else:
            opt = QStyleOptionButton()
            w.initStyleOption(opt)
            size = w.style().sizeFromContents(QStyle.ContentsType.CT_PushButton, opt, big, w)
        return max(0, size.width() - big.width())

    def label(self, w: QLabel) -> None:
        shown = QLabel.text(w)
        full = w.text() if callable(getattr(w, "text", None)) else shown
        if callable(getattr(w, "full_text", None)):
            full = w.full_text()
        if not shown and not full:
            return
        if w.pixmap() is not None and not w.pixmap().isNull():
            return
        tooltip = w.toolTip()
        elides = "elid" in type(w).__name__.lower() or full != shown
        text = full if elides else shown
        fm = w.fontMetrics()
        margins = w.contentsMargins()
        slack = margins.left() + margins.right() + 2 * w.margin() + TOLERANCE
        plain = w.textFormat() == Qt.TextFormat.PlainText or (
            w.textFormat() == Qt.TextFormat.AutoText and not QtGuiNamespace.mightBeRichText(text))
        if elides:
            need = _text_width(fm, text)
            room = w.contentsRect().width()
            if room + TOLERANCE < need and not tooltip.strip():
                self.report("clipped text", w, f"elided to {room} px (the text needs {need} px) "
                            "and no tooltip shows it whole")
            return
        hint = w.minimumSizeHint()
        need = hint.width()
        if not plain and not w.wordWrap():
            doc = QTextDocument()
            doc.setDefaultFont(w.font())
            doc.setDocumentMargin(0)
            doc.setHtml(text)
            need = math.ceil(doc.idealWidth()) + margins.left() + margins.right()
        if w.width() + slack < need:
            kind = "its longest word" if w.wordWrap() else "its text"
            self.report("clipped text", w, f"{w.width()} px wide, {kind} needs {need} px"
                        + (" (a tooltip does not make a cut label readable)" if tooltip else ""))
        if w.wordWrap():
            need_h = w.heightForWidth(w.width())
        else:
            need_h = hint.height() if not plain else fm.height() * (text.count("\n") + 1)
        vslack = margins.top() + margins.bottom() + TOLERANCE + (0 if w.wordWrap() else 2)
        if need_h > 0 and w.height() + vslack < need_h:
            self.report("clipped text", w, f"{w.height()} px high, its text needs {need_h} px: "
                        "lines are cut off")

    # tabs and item views -----------------------------------------------------------------------
    def tab_bar(self, w: QTabBar) -> None:
        fm = w.fontMetrics()
        last_right = 0
        for i in range(w.count()):
            if not w.isTabVisible(i):
                continue
            rect = w.tabRect(i)
            last_right = max(last_right, rect.right())
            text = _mnemonic_free(w.tabText(i))
            need = fm.horizontalAdvance(text)
            if not w.tabIcon(i).isNull():
                need += w.iconSize().width() + 4
            if rect.width() - 8 + TOLERANCE < need and not w.tabToolTip(i):
                self.report("tab cut", w, f"tab {text!r} is {rect.width()} px wide, its title "
                            f"needs {need} px plus padding")
        if last_right > w.width() + TOLERANCE:
            self.report("tab cut", w, f"its tabs need {last_right + 1} px, the bar is "
                        f"{w.width()} px: some are out of sight")

    def item_view(self, w: QAbstractItemView) -> None:
        model = w.model()
        if model is None:
            return
        viewport = w.viewport().width()
        if isinstance(w, QListView) and w.viewMode() == QListView.ViewMode.ListMode:
            if w.horizontalScrollBar().isVisible() or w.isWrapping():
                return
            fm = w.fontMetrics()
            for row in range(min(model.rowCount(), MAX_ROWS)):
                if w.isRowHidden(row):
                    continue
                index = model.index(row, w.modelColumn())
                text = str(index.data(Qt.ItemDataRole.DisplayRole) or "")
                if not text or index.data(Qt.ItemDataRole.ToolTipRole):
                    continue
                rect = w.visualRect(index)
                need = _text_width(fm, text) + 8
                icon = index.data(Qt.ItemDataRole.DecorationRole)
                if icon is not None:
                    need += w.iconSize().width() + 4 if w.iconSize().isValid() else 20
                room = min(rect.width(), viewport - rect.x())
                if "\n" not in text and room + TOLERANCE < need:
                    self.report("list item cut", w, f"row {row} {text[:40]!r} needs {need} px, "
                                f"the list shows {room} px and has no tooltip for it")
        if isinstance(w, QTreeView):
            self.header(w.header())

    def header(self, h: QHeaderView) -> None:
        if not h.isVisible():
            return
        model = h.model()
        fm = h.fontMetrics()
        for section in range(h.count()):
            if h.isSectionHidden(section) or h.sectionSize(section) <= 0:
                continue
            text = str(model.headerData(section, h.orientation(),
                                        Qt.ItemDataRole.DisplayRole) or "")
            if not text:
                continue
            need = fm.horizontalAdvance(text) + 8
            if h.sectionSize(section) + TOLERANCE < need:
                self.report("list item cut", h, f"column {text!r} is {h.sectionSize(section)} "
                            f"px wide, its title needs {need} px")

    # geometry ----------------------------------------------------------------------------------
    def containment(self, w: QWidget) -> None:
        parent = w.parentWidget()
        if parent is None or w.isWindow() or _scroll_viewport_child(w):
            return
        g = w.geometry()
        r = parent.rect()
        out_left, out_top = r.left() - g.left(), r.top() - g.top()
        out_right, out_bottom = g.right() - r.right(), g.bottom() - r.bottom()
        worst = max(out_left, out_top, out_right, out_bottom)
        if worst > TOLERANCE:
            sides = [name for name, v in (("left", out_left), ("top", out_top),
                                          ("right", out_right), ("bottom", out_bottom))
                     if v > TOLERANCE]
            self.report("outside parent", w,
                        f"reaches {worst} px past the {'/'.join(sides)} edge of its parent "
                        f"{_name(parent)} ({parent.width()}×{parent.height()}): cut off")

    def scroll_area(self, w: QScrollArea) -> None:
        inner = w.widget()
        if inner is None or not inner.isVisible():
            return
        vp = w.viewport()
        off = Qt.ScrollBarPolicy.ScrollBarAlwaysOff
        if w.horizontalScrollBarPolicy() == off and inner.width() > vp.width() + TOLERANCE:
            self.report("outside parent", inner, f"{inner.width()} px wide in a "
                        f"{vp.width()} px scroll area without a horizontal scroll bar: its right "
                        "side is cut off")
        if w.verticalScrollBarPolicy() == off and inner.height() > vp.height() + TOLERANCE:
            self.report("outside parent", inner, f"{inner.height()} px high in a "
                        f"{vp.height()} px scroll area without a vertical scroll bar: its "
                        "bottom is cut off")

    def overlaps(self, parent: QWidget) -> None:
        layout = parent.layout()
        if layout is None or isinstance(layout, QStackedLayout):
            return
        kids = [k for k in _layout_widgets(layout)
                if k.parentWidget() is parent and k.isVisible() and not k.isWindow()
                and k.width() > 0 and k.height() > 0]
        for i, a in enumerate(kids):
            for b in kids[i + 1:]:
                inter = a.geometry().intersected(b.geometry())
                if inter.width() <= TOLERANCE or inter.height() <= TOLERANCE:
                    continue
                ca, cb = _grid_cells(layout, a), _grid_cells(layout, b)
                if ca is not None and cb is not None and ca.intersects(cb):
                    continue  # stacked in one grid cell on purpose
                self.report("overlap", a, f"overlaps {widget_path(b)} ({type(b).__name__} at "
                            f"{_geometry(b)}) by {inter.width()}×{inter.height()} px")

    def window(self, w: QWidget) -> None:
        screen = w.screen()
        if screen is None:
            return
        room = screen.availableGeometry()
        frame = w.frameGeometry()
        if frame.width() > room.width() + TOLERANCE or frame.height() > room.height() + TOLERANCE:
            self.report("off screen", w, f"the window is {frame.width()}×{frame.height()} with "
                        f"its frame, the screen has {room.width()}×{room.height()} for it")
        elif not room.adjusted(-TOLERANCE, -TOLERANCE, TOLERANCE, TOLERANCE).contains(frame):
            self.report("off screen", w, f"the window at {frame.x()},{frame.y()} "
                        f"{frame.width()}×{frame.height()} is partly outside the screen's "
                        f"{room.x()},{room.y()} {room.width()}×{room.height()}")


def audit(top: QWidget, scene: str = "", *, windows: bool = True) -> list[Problem]:
    """Every problem in the visible widgets of ``top`` (a window), in tree order."""
    a = _Auditor(scene or top.windowTitle() or _name(top))
    widgets = visible_widgets(top)
    if windows and top.isWindow():
        a.window(top)
    for w in widgets:
        if w is not top:
            a.containment(w)
        a.overlaps(w)
        if isinstance(w, QLineEdit) and not _inside_compound(w):
            a.line_edit(w)
        elif isinstance(w, QAbstractSpinBox):
            a.spin_box(w)
        elif isinstance(w, QComboBox):
            a.combo_box(w)
        elif isinstance(w, QAbstractButton) and not isinstance(w.parentWidget(), QTabBar):
            a.button(w)
        elif isinstance(w, QLabel):
            a.label(w)
        elif isinstance(w, QTabBar):
            a.tab_bar(w)
        if isinstance(w, QScrollArea):
            a.scroll_area(w)
        if isinstance(w, QAbstractItemView) and not isinstance(w, QHeaderView):
            a.item_view(w)
    a.problems.extend(audit_plots(top, a.scene, widgets))
    return a.problems


# -- combo box popups -------------------------------------------------------------------------


def audit_combo_popups(top: QWidget, scene: str = "") -> list[Problem]:
    """Open each visible, enabled combo box's list, check that its items fit, close it."""
    a = _Auditor(scene or top.windowTitle() or _name(top))
    app = QApplication.instance()
    for w in visible_widgets(top):
        if not isinstance(w, QComboBox) or not w.isEnabled() or w.count() == 0:
            continue
        w.showPopup()
        app.processEvents()
        try:
            view = w.view()
            popup = view.window()
            fm = view.fontMetrics()
            room = view.viewport().width()
            # Qt's own delegates size popup rows as menu items, at least 120 px wide whatever
            # their text: only the text counts for them.
            custom = not type(view.itemDelegate()).__module__.startswith("PySide6")
            cut = []
            for row in range(min(w.count(), MAX_ROWS)):
                index = w.model().index(row, w.modelColumn())
                text = str(index.data(Qt.ItemDataRole.DisplayRole) or "")
                if not text or view.isRowHidden(row):
                    continue
                need = fm.horizontalAdvance(text) + 16  # the item's margins
                icon = index.data(Qt.ItemDataRole.DecorationRole)
                if icon is not None:
                    need += w.iconSize().width() + 4
                if custom:  # a delegate of the app's own knows what it draws
                    need = max(need, view.sizeHintForIndex(index).width())
                if room + TOLERANCE < need:
                    cut.append(f"{text[:40]!r} needs {need} px")
            if cut:
                a.report("combo popup too narrow", w, f"its list is {room} px wide: "
                         + "; ".join(cut[:4]) + (f"; and {len(cut) - 4} more" if len(cut) > 4
                                                 else ""))
            screen = popup.screen()
            if screen is not None and not screen.geometry().contains(popup.frameGeometry()):
                a.report("combo popup too narrow", w, "its list reaches past the screen's edge")
        finally:
            w.hidePopup()
            app.processEvents()
    return a.problems


# -- pyqtgraph --------------------------------------------------------------------------------


def _scene_points(item, xs, ys):
    import numpy as np

    t = item.sceneTransform()
    xs = np.asarray(xs, dtype=float)
    ys = np.asarray(ys, dtype=float)
    sx = t.m11() * xs + t.m21() * ys + t.m31()
    sy = t.m12() * xs + t.m22() * ys + t.m32()
    return sx, sy


def _densify(xs, ys, per_segment: int = 8):
    """Points along the straight segments between consecutive points (curves)."""
    import numpy as np

    if len(xs) < 2:
        return xs, ys
    t = np.linspace(0.0, 1.0, per_segment, endpoint=False)
    x0, x1 = xs[:-1, None], xs[1:, None]
    y0, y1 = ys[:-1, None], ys[1:, None]
    dx = (x0 + (x1 - x0) * t).ravel()
    dy = (y0 + (y1 - y0) * t).ravel()
    return np.concatenate([dx, xs[-1:]]), np.concatenate([dy, ys[-1:]])


def _data_of(item):
    """(name, xs, ys, is_curve, symbol radius in px) for a pyqtgraph data item, or None."""
    import pyqtgraph as pg

    if isinstance(item, pg.PlotDataItem):
        xs, ys = item.getData()
        if xs is None or len(xs) == 0:
            return None
        curve = item.opts.get("pen") is not None and item.curve.isVisible()
        size = item.opts.get("symbolSize", 0) if item.opts.get("symbol") else 0
        return item.name() or "", xs, ys, curve, size / 2
    if isinstance(item, pg.PlotCurveItem):
        xs, ys = item.getData()
        if xs is None or len(xs) == 0:
            return None
        return item.name() or "", xs, ys, True, 0
    if isinstance(item, pg.ScatterPlotItem):
        xs, ys = item.getData()
        if xs is None or len(xs) == 0:
            return None
        size = item.opts.get("size", 5)
        return item.name() or "", xs, ys, False, float(size) / 2
    return None


def _in_legend(item) -> bool:
    import pyqtgraph as pg

    parent = item.parentItem()
    while parent is not None:
        if isinstance(parent, pg.LegendItem):
            return True
        parent = parent.parentItem()
    return False


def _plain(html: str) -> str:
    doc = QTextDocument()
    doc.setHtml(str(html))
    return " ".join(doc.toPlainText().split())


def _axis_labels(a: _Auditor, view: QWidget, axis) -> None:
    """Tick labels of one pyqtgraph axis that overlap each other (custom ticks and log axes
    skip pyqtgraph's own crowding check)."""
    from PySide6.QtGui import QImage, QPainter

    if not axis.isVisible() or axis.width() <= 0 or axis.height() <= 0:
        return
    image = QImage(4, 4, QImage.Format.Format_ARGB32)
    painter = QPainter(image)
    try:
        specs = axis.generateDrawSpecs(painter)
    finally:
        painter.end()
    if not specs:
        return
    texts = [(rect, text) for rect, _flags, text in specs[2] if str(text).strip()]
    vertical = axis.orientation in ("left", "right")
    texts.sort(key=lambda t: t[0].top() if vertical else t[0].left())
    clashes = []
    for (r1, t1), (r2, t2) in zip(texts, texts[1:], strict=False):
        inter = r1.intersected(r2)
        if inter.width() > 1 and inter.height() > 1:
            clashes.append(f"{t1!r}/{t2!r}")
    if clashes:
        a.report("plot text cut", view, f"{axis.orientation} axis labels overlap: "
                 + ", ".join(clashes[:4]) + (f" and {len(clashes) - 4} more"
                                             if len(clashes) > 4 else ""))


def audit_plots(top: QWidget, scene: str, widgets: Iterable[QWidget] | None = None
                ) -> list[Problem]:
    """Legends over data, legends outside their plot, text cut at a plot's edge."""
    try:
        import numpy as np
        import pyqtgraph as pg
    except ImportError:
        return []
    a = _Auditor(scene)
    for w in widgets if widgets is not None else visible_widgets(top):
        if not isinstance(w, pg.GraphicsView) or w.scene() is None:
            continue
        view_rect = w.mapToScene(w.viewport().rect()).boundingRect()
        for item in w.scene().items():
            if not item.isVisible():
                continue
            if isinstance(item, pg.LegendItem):
                if not item.items:
                    continue
                legend = item.sceneBoundingRect()
                vb = item.parentItem()
                while vb is not None and not isinstance(vb, pg.ViewBox):
                    vb = vb.parentItem()
                if vb is None:
                    continue
                area = vb.sceneBoundingRect()
                if not area.adjusted(-2, -2, 2, 2).contains(legend):
                    a.report("legend over data", w, f"the legend ({legend.width():.0f}×"
                             f"{legend.height():.0f} px) sticks out of its plot "
                             f"({area.width():.0f}×{area.height():.0f} px)")
                covered = []
                for data_item in vb.addedItems:
                    if not data_item.isVisible():
                        continue
                    data = _data_of(data_item)
                    if data is None:
                        continue
                    name, xs, ys, curve, radius = data
                    xs, ys = np.asarray(xs, dtype=float), np.asarray(ys, dtype=float)
                    if curve:
                        xs, ys = _densify(xs, ys)
                    sx, sy = _scene_points(data_item, xs, ys)
                    ok = np.isfinite(sx) & np.isfinite(sy)
                    ok &= ((sx >= area.left()) & (sx <= area.right())
                           & (sy >= area.top()) & (sy <= area.bottom()))
                    inside = ok & ((sx >= legend.left() - radius) & (sx <= legend.right() + radius)
                                   & (sy >= legend.top() - radius)
                                   & (sy <= legend.bottom() + radius))
                    if inside.any():
                        kind = "curve" if curve else "points"
                        covered.append(f"{kind} {name!r}" if name else f"unnamed {kind}")
                if covered:
                    a.report("legend over data", w, "its legend covers " + ", ".join(covered))
            elif isinstance(item, pg.LabelItem) and item.text and not _in_legend(item):
                text_rect = item.item.sceneBoundingRect()
                own = item.sceneBoundingRect()
                if text_rect.width() > own.width() + 2:
                    a.report("plot text cut", w, f"title {_plain(item.text)[:40]!r} needs "
                             f"{text_rect.width():.0f} px, the plot gives it "
                             f"{own.width():.0f} px")
                elif not view_rect.adjusted(-2, -2, 2, 2).contains(text_rect):
                    a.report("plot text cut", w, f"title {_plain(item.text)[:40]!r} is cut "
                             "at the plot's edge")
            elif isinstance(item, pg.TextItem):
                rect = item.sceneBoundingRect()
                if rect.width() > 0 and not view_rect.adjusted(-2, -2, 2, 2).contains(rect):
                    a.report("plot text cut", w, f"text {item.toPlainText()[:40]!r} is cut at "
                             "the plot's edge")
            elif isinstance(item, pg.AxisItem) and item.style.get("showValues", True):
                _axis_labels(a, w, item)
    return a.problems


# -- reports ----------------------------------------------------------------------------------


def format_problems(problems: list[Problem]) -> str:
    """The problems for an assertion message: one entry per distinct problem (the same widget,
    place and defect), with the scenes it was seen in; in the order first seen."""
    groups: dict[tuple, list[str]] = {}
    for p in problems:
        groups.setdefault((p.rule, p.path, p.cls, p.geometry, p.what), []).append(p.scene)
    lines: list[str] = []
    for (rule, path, cls, geometry, what), scenes in groups.items():
        where = f" at {geometry}" if geometry else ""
        lines.append(f"- {rule}: {path} ({cls}){where}: {what}")
        lines.append(f"    seen in: {_where(scenes)}")
    return "\n".join(lines)


def _where(scenes: list[str]) -> str:
    """'1366x768 light · a', '1366x768 dark · a' -> 'a [1366x768 light, dark]'."""
    by_name: dict[str, list[str]] = {}
    for scene in scenes:
        prefix, _, name = scene.partition(" · ")
        if not name:
            prefix, name = "", scene
        by_name.setdefault(name, []).append(prefix)
    parts = []
    for name, prefixes in by_name.items():
        sizes: dict[str, list[str]] = {}
        for prefix in prefixes:
            size, _, theme = prefix.partition(" ")
            sizes.setdefault(size, []).append(theme)
        tags = "; ".join(f"{size} {', '.join(t for t in themes if t)}".strip()
                         for size, themes in sizes.items() if size)
        parts.append(f"{name} [{tags}]" if tags else name)
    return "; ".join(parts)


def dump(problems: list[Problem], path) -> None:
    with open(path, "w", encoding="utf-8") as f:
        json.dump([p.to_dict() for p in problems], f, indent=1, ensure_ascii=False)


def load(path) -> list[Problem]:
    with open(path, encoding="utf-8") as f:
        return [Problem(**raw) for raw in json.load(f)]
