"""App-wide input behaviour, installed once on the QApplication (:func:`install_input_policy`), so
every panel, dialog and widget written later gets it without opting in:

- **The wheel scrolls the column.** A spin box, combo box or slider changes its value with the
  mouse wheel only while it has keyboard focus; otherwise the wheel goes on to the scroll area it
  sits in. (Qt gives these widgets the wheel, and even focus on a wheel turn, so scrolling down the
  Generate column changed sizes and steps under the pointer.)
- **Return and Enter press a focused button**, as Space does. Qt does this only for push buttons in
  dialogs, so Return on the focused Generate button did nothing.
- **A combo box's popup is as wide as its widest item** (up to the screen's width), not as narrow
  as the combo box, so long model names are never cut.
- **A spin box without arrow buttons keeps its text field.** With a style sheet, Qt gives a
  ``NoButtons`` spin box a 1-px-wide field; :func:`hide_spin_buttons` hides the arrows through the
  theme instead, and the policy applies it to any ``NoButtons`` spin box it meets.
- **No dialog opens larger than the screen** it is on (a 1000×800 viewer on a 768-px screen).
"""

from __future__ import annotations

from PySide6.QtCore import QEvent, QObject, QRect, Qt
from PySide6.QtGui import QKeyEvent, QWheelEvent
from PySide6.QtWidgets import (
    QAbstractButton,
    QAbstractSlider,
    QAbstractSpinBox,
    QApplication,
    QComboBox,
    QDialog,
    QScrollBar,
    QStyle,
    QToolButton,
    QWidget,
)

#: Room left for the window manager's title bar and frame when a window is fitted to a screen.
FRAME_ALLOWANCE = (16, 48)
_ACTIVATE_KEYS = (Qt.Key.Key_Return, Qt.Key.Key_Enter)
_VALUE_WIDGETS = (QAbstractSpinBox, QComboBox, QAbstractSlider)


def takes_wheel_only_with_focus(widget: QObject) -> bool:
    """Whether ``widget`` is a value input the policy keeps from taking unfocused wheel turns."""
    return isinstance(widget, _VALUE_WIDGETS) and not isinstance(widget, QScrollBar)


def hide_spin_buttons(box: QAbstractSpinBox) -> None:
    """Hide a spin box's arrow buttons without losing its text field.

    ``setButtonSymbols(NoButtons)`` leaves the field 1 px wide under any style sheet with a box
    model (Qt's style sheet engine); the theme hides the arrows of ``[buttonless="true"]`` boxes.
    """
    box.setButtonSymbols(QAbstractSpinBox.ButtonSymbols.UpDownArrows)
    if box.property("buttonless") is not True:
        box.setProperty("buttonless", True)
        box.style().unpolish(box)
        box.style().polish(box)
        box.updateGeometry()


def available_geometry(widget: QWidget) -> QRect | None:
    """The usable area of the screen ``widget`` is (or will be) on, or None without screens."""
    parent = widget.parentWidget()
    screen = widget.screen() or (parent.screen() if parent is not None else None) \
        or QApplication.primaryScreen()
    return screen.availableGeometry() if screen is not None else None


def fit_size_to_screen(widget: QWidget, width: int, height: int, fraction: float = 0.92) -> None:
    """Resize ``widget`` to ``width``×``height``, or less where its screen is smaller."""
    room = available_geometry(widget)
    if room is not None:
        width = min(width, int(room.width() * fraction))
        height = min(height, int(room.height() * fraction))
    widget.resize(max(width, widget.minimumWidth()), max(height, widget.minimumHeight()))


def fit_window_to_screen(window: QWidget) -> bool:
    """Shrink a top-level ``window`` that is larger than its screen's free area (less room for
    the window frame); True when it had to.

    It only resizes: a dialog places itself (centred on its parent, kept on the screen) in its
    own show event, after the policy has seen the show, and a move here would stop that.
    """
    room = available_geometry(window)
    if room is None:
        return False
    frame_w, frame_h = FRAME_ALLOWANCE
    max_w, max_h = room.width() - frame_w, room.height() - frame_h
    if window.width() <= max_w and window.height() <= max_h:
        return False
    window.resize(min(window.width(), max_w), min(window.height(), max_h))
    return True


def popup_width(combo: QComboBox) -> int:
    """How wide ``combo``'s popup must be to show its widest item whole."""
    view = combo.view()
    items = view.sizeHintForColumn(0) if combo.count() else 0
    extra = 2 * view.frameWidth() + 8
    container = view.parentWidget()
    if container is not None and container.layout() is not None:
        margins = container.layout().contentsMargins()
        extra += margins.left() + margins.right()
        if hasattr(container, "frameWidth"):
            extra += 2 * container.frameWidth()
    if combo.count() > combo.maxVisibleItems():
        extra += combo.style().pixelMetric(QStyle.PixelMetric.PM_ScrollBarExtent, None, view)
    return max(combo.width(), items + extra)


def widen_combo_popup(combo: QComboBox) -> None:
    """Make the open popup of ``combo`` wide enough for its items, and keep it on the screen."""
    view = combo.view()
    popup = view.window()
    if popup is None or popup is combo.window():
        return
    room = available_geometry(combo)
    width = popup_width(combo)
    if room is not None:
        width = min(width, room.width())
    if width <= popup.width():
        return
    geo = popup.geometry()
    geo.setWidth(width)
    if room is not None and geo.right() > room.right():
        geo.moveRight(room.right())
    if room is not None and geo.left() < room.left():
        geo.moveLeft(room.left())
    popup.setGeometry(geo)


def _forward_wheel(source: QWidget, event: QWheelEvent) -> None:
    """Deliver ``event`` to ``source``'s ancestors, nearest first, until one takes it."""
    where = event.globalPosition()
    parent = source.parentWidget()
    while parent is not None:
        copy = QWheelEvent(parent.mapFromGlobal(where), where, event.pixelDelta(),
                           event.angleDelta(), event.buttons(), event.modifiers(),
                           event.phase(), event.inverted(), event.source(),
                           event.pointingDevice())
        QApplication.sendEvent(parent, copy)
        if copy.isAccepted() or parent.isWindow():
            return
        parent = parent.parentWidget()


class InputPolicy(QObject):
    """The event filter behind :func:`install_input_policy` (see the module's docstring)."""

    def eventFilter(self, obj: QObject, event: QEvent) -> bool:  # noqa: N802 - Qt override
        kind = event.type()
        if kind == QEvent.Type.Wheel:
            if takes_wheel_only_with_focus(obj) and not obj.hasFocus():
                _forward_wheel(obj, event)
                event.accept()  # taken here: Qt must not hand the original up the tree as well
                return True
        elif kind == QEvent.Type.KeyPress:
            if isinstance(obj, QAbstractButton) and self._activate(obj, event):
                return True
        elif kind == QEvent.Type.Polish:
            if isinstance(obj, QWidget):
                self._polish(obj)
        elif kind == QEvent.Type.Show:
            if isinstance(obj, QWidget) and obj.isWindow():
                self._shown(obj)
        return False

    @staticmethod
    def _polish(widget: QWidget) -> None:
        if not takes_wheel_only_with_focus(widget):
            return
        # WheelFocus would hand the widget focus on a wheel turn, and with it the wheel.
        if widget.focusPolicy() == Qt.FocusPolicy.WheelFocus:
            widget.setFocusPolicy(Qt.FocusPolicy.StrongFocus)
        if isinstance(widget, QAbstractSpinBox) \
                and widget.buttonSymbols() == QAbstractSpinBox.ButtonSymbols.NoButtons:
            hide_spin_buttons(widget)

    @staticmethod
    def _activate(button: QAbstractButton, event: QKeyEvent) -> bool:
        if event.key() not in _ACTIVATE_KEYS or event.isAutoRepeat():
            return False
        if event.modifiers() & ~Qt.KeyboardModifier.KeypadModifier:
            return False  # Ctrl+Return and friends are shortcuts, not presses
        if not (button.hasFocus() and button.isEnabled() and button.isVisible()):
            return False
        if isinstance(button, QToolButton) and button.menu() is not None \
                and button.popupMode() == QToolButton.ToolButtonPopupMode.InstantPopup:
            button.showMenu()
        else:
            button.click()
        return True

    @staticmethod
    def _shown(window: QWidget) -> None:
        parent = window.parentWidget()
        if isinstance(parent, QComboBox) and parent.view().window() is window:
            widen_combo_popup(parent)
        elif isinstance(window, QDialog):
            fit_window_to_screen(window)


def install_input_policy(app: QApplication) -> InputPolicy:
    """Install the policy on ``app`` once (later calls return the same filter)."""
    policy = app.findChild(InputPolicy, "studioInputPolicy")
    if policy is None:
        policy = InputPolicy(app)
        policy.setObjectName("studioInputPolicy")
        app.installEventFilter(policy)
    return policy
