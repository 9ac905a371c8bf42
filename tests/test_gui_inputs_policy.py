"""App-wide input behaviour (studio/ui/widgets/input_policy.py): the wheel, Return on buttons,
combo popups, button-less spin boxes, dialogs on screen, dialog buttons without stock icons."""

from __future__ import annotations

import pytest
from PySide6.QtCore import QPoint, QPointF, Qt
from PySide6.QtGui import QWheelEvent
from PySide6.QtWidgets import (
    QApplication,
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QDoubleSpinBox,
    QPushButton,
    QSpinBox,
    QStyle,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from studio.ui.theme import apply_theme
from studio.ui.widgets.input_policy import install_input_policy, popup_width

pytestmark = pytest.mark.gui


@pytest.fixture
def policy(qapp):
    apply_theme(qapp, "dark")
    return install_input_policy(qapp)


def wheel(widget: QWidget, notches: int = -1) -> QWheelEvent:
    """Turn the wheel over the middle of ``widget`` (negative: towards the user, scrolls down)."""
    local = QPointF(widget.rect().center())
    event = QWheelEvent(local, QPointF(widget.mapToGlobal(local.toPoint())), QPoint(0, 0),
                        QPoint(0, 120 * notches), Qt.MouseButton.NoButton,
                        Qt.KeyboardModifier.NoModifier, Qt.ScrollPhase.NoScrollPhase, False)
    QApplication.sendEvent(widget, event)
    return event


def test_installing_twice_keeps_one_filter(policy, qapp):
    assert install_input_policy(qapp) is policy


def test_the_wheel_scrolls_the_generate_column_unless_an_input_has_focus(main_window, qtbot,
                                                                          policy):
    main_window.resize(1100, 640)  # short: the Generate column scrolls
    main_window.show()
    main_window.activateWindow()
    qtbot.waitActive(main_window)
    panel = main_window.panel("generate")
    controls = panel.controls
    scroll = controls.parentWidget().parentWidget()  # the column's scroll area
    bar = scroll.verticalScrollBar()
    qtbot.waitUntil(lambda: bar.maximum() > 0, timeout=10_000)
    panel.preview.setFocus()
    for box in (controls.steps, controls.width_box, controls.scheduler, controls.steps_slider):
        # Qt would give these focus on a wheel turn (WheelFocus), and with it the wheel.
        assert box.focusPolicy() != Qt.FocusPolicy.WheelFocus
        scroll.ensureWidgetVisible(box)
        before = (box.value() if hasattr(box, "value") else box.currentIndex(), bar.value())
        turned = bar.value() > 0
        event = wheel(box, 1 if turned else -1)
        assert event.isAccepted()
        after = (box.value() if hasattr(box, "value") else box.currentIndex(), bar.value())
        assert after[0] == before[0], f"{type(box).__name__} changed under an unfocused wheel"
        assert after[1] != before[1], "the column did not scroll"

    # With focus, the wheel is the input's own again.
    controls.steps.setValue(20)

    def focus_steps() -> bool:  # other tests' windows may hold the activation for a moment
        main_window.activateWindow()
        controls.steps.setFocus()
        return controls.steps.hasFocus()

    qtbot.waitUntil(focus_steps, timeout=20_000)
    scroll_before = bar.value()
    wheel(controls.steps, 1)
    assert controls.steps.value() == 21
    assert bar.value() == scroll_before


def test_spin_boxes_without_buttons_keep_a_text_field(qtbot, policy):
    """A NoButtons spin box under the app's style sheet had a 1-px field (the seed field)."""
    from studio.ui.widgets.seed import SeedBox

    host = QWidget()
    col = QVBoxLayout(host)
    seed = SeedBox()
    seed.setValue(4_294_967_295)
    plain = QDoubleSpinBox()
    plain.setRange(0, 10**9)
    plain.setDecimals(0)
    plain.setValue(123_456_789)
    plain.setButtonSymbols(QDoubleSpinBox.ButtonSymbols.NoButtons)  # as any future code may
    col.addWidget(seed)
    col.addWidget(plain)
    qtbot.addWidget(host)
    host.resize(260, 120)
    host.show()
    qtbot.waitExposed(host)
    for box in (seed, plain):
        field = box.lineEdit()
        assert field.width() >= box.fontMetrics().horizontalAdvance(box.text()), \
            f"{box.text()!r} does not fit its {field.width()}-px field"
        assert box.property("buttonless") is True
    # The seed box is never narrower than its largest number.
    seed.setFixedWidth(seed.minimumWidth())
    qtbot.waitUntil(lambda: seed.width() == seed.minimumWidth())
    assert seed.lineEdit().width() >= seed.fontMetrics().horizontalAdvance("4294967295")


def test_return_and_enter_press_a_focused_button(qtbot, policy):
    host = QWidget()
    col = QVBoxLayout(host)
    push, tool = QPushButton("Generate"), QToolButton(text="Roll")
    col.addWidget(push)
    col.addWidget(tool)
    qtbot.addWidget(host)
    host.show()
    host.activateWindow()
    qtbot.waitActive(host)
    clicks = []
    push.clicked.connect(lambda: clicks.append("push"))
    tool.clicked.connect(lambda: clicks.append("tool"))
    push.setFocus()
    qtbot.waitUntil(lambda: (host.activateWindow(), push.setFocus(), push.hasFocus())[-1],
                    timeout=20_000)
    qtbot.keyClick(push, Qt.Key.Key_Return)
    qtbot.keyClick(push, Qt.Key.Key_Enter, Qt.KeyboardModifier.KeypadModifier)
    qtbot.keyClick(push, Qt.Key.Key_Space)  # Qt's own
    qtbot.waitUntil(lambda: (host.activateWindow(), tool.setFocus(), tool.hasFocus())[-1],
                    timeout=20_000)
    qtbot.keyClick(tool, Qt.Key.Key_Return)
    # Ctrl+Return is a shortcut (Generate), not a press of whatever button has focus.
    qtbot.keyClick(tool, Qt.Key.Key_Return, Qt.KeyboardModifier.ControlModifier)
    push.setEnabled(False)
    qtbot.keyClick(push, Qt.Key.Key_Return)
    assert clicks == ["push", "push", "push", "tool"]


def test_a_combo_popup_is_as_wide_as_its_items(qtbot, policy):
    combo = QComboBox()
    long_name = "realistic-vision-v6.0-b1-inpainting-hyper-very-long-model-name"
    combo.addItems(["short", long_name])
    combo.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
    combo.setMinimumContentsLength(6)
    combo.setFixedWidth(120)
    qtbot.addWidget(combo)
    combo.show()
    qtbot.waitExposed(combo)
    combo.showPopup()
    popup = combo.view().window()
    qtbot.waitUntil(popup.isVisible)
    text_width = combo.view().fontMetrics().horizontalAdvance(long_name)
    assert popup.width() >= text_width + 8
    assert popup.width() >= popup_width(combo) or \
        popup.width() >= popup.screen().availableGeometry().width()
    assert popup.screen().availableGeometry().contains(popup.geometry())
    combo.hidePopup()


def test_the_model_picker_popup_shows_names_and_secondary_text(main_window, qtbot, policy):
    from pathlib import Path

    from studio.library.models import ModelEntry

    panel = main_window.panel("generate")
    entries = [ModelEntry("dreamshaper-8-very-long-model-name-for-testing", Path("/m/a"),
                          "studio", "diffusers", "sd1"),
               ModelEntry("tiny", Path("/m/b"), "hf-cache", "diffusers", "sdxl")]
    panel.picker._finish_scan(entries, "")
    main_window.show()
    qtbot.waitExposed(main_window)
    combo = panel.picker.combo
    combo.showPopup()
    popup = combo.view().window()
    qtbot.waitUntil(popup.isVisible)
    needed = combo.view().sizeHintForColumn(0)  # the delegate's: name + family · source
    assert needed > combo.width()
    assert popup.width() >= min(needed, popup.screen().availableGeometry().width())
    combo.hidePopup()


def test_no_dialog_opens_larger_than_its_screen(qtbot, policy):
    dialog = QDialog()
    qtbot.addWidget(dialog)
    dialog.resize(5000, 4000)
    dialog.show()
    qtbot.waitExposed(dialog)
    room = dialog.screen().availableGeometry()
    assert dialog.width() <= room.width() and dialog.height() <= room.height()
    assert room.contains(dialog.geometry())
    dialog.close()


def test_dialog_button_boxes_show_no_stock_icons(qtbot, policy):
    box = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok
                           | QDialogButtonBox.StandardButton.Cancel)
    qtbot.addWidget(box)
    hint = box.style().styleHint(QStyle.StyleHint.SH_DialogButtonBox_ButtonsHaveIcons, None, box)
    assert not hint
    for button in box.buttons():
        assert button.icon().isNull()


def test_focus_policies_let_tab_still_reach_every_input(qtbot, policy):
    host = QWidget()
    col = QVBoxLayout(host)
    spin, combo = QSpinBox(), QComboBox()
    col.addWidget(spin)
    col.addWidget(combo)
    qtbot.addWidget(host)
    host.show()
    qtbot.waitExposed(host)
    for widget in (spin, combo):
        assert widget.focusPolicy() == Qt.FocusPolicy.StrongFocus


def test_a_disabled_accent_button_does_not_look_enabled(qtbot, policy):
    """The download dialog's Download button looked ready before a size check had enabled it."""
    host = QWidget()
    col = QVBoxLayout(host)
    enabled, disabled = QPushButton("Download"), QPushButton("Download")
    for button in (enabled, disabled):
        button.setProperty("accent", True)
        col.addWidget(button)
    disabled.setEnabled(False)
    qtbot.addWidget(host)
    host.show()
    qtbot.waitExposed(host)

    def fill(button):  # the colour just inside the rounded corner, away from the text
        return button.grab().toImage().pixelColor(8, button.height() // 2).name()

    assert fill(enabled) != fill(disabled)
