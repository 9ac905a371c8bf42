"""The layout audit's rules (tests/layout_audit.py) on small hand-made windows: each catches the
defect it is for, and leaves alone what a person would not call broken."""

from __future__ import annotations

import numpy as np
import pytest
from PySide6.QtCore import Qt
from PySide6.QtWidgets import (
    QComboBox,
    QGridLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QScrollArea,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from tests.layout_audit import audit, audit_combo_popups, format_problems

pytestmark = pytest.mark.gui


@pytest.fixture
def window(qtbot):
    from PySide6.QtWidgets import QApplication

    from studio.ui.theme import apply_theme

    apply_theme(QApplication.instance(), "dark")
    w = QWidget()
    w.setWindowTitle("rules")
    qtbot.addWidget(w)
    return w


def shown(qtbot, w, width=600, height=400):
    w.resize(width, height)
    w.show()
    qtbot.waitExposed(w)
    return w


def rules(problems):
    return sorted({p.rule for p in problems})


def test_a_comfortable_form_has_no_problems(qtbot, window):
    col = QVBoxLayout(window)
    edit = QLineEdit("a lighthouse")
    spin = QSpinBox()
    spin.setRange(0, 4_294_967)
    combo = QComboBox()
    combo.addItems(["Normal", "Fast"])
    label = QLabel("A long explanation that wraps over a few lines when the window is narrow.")
    label.setWordWrap(True)
    for w in (edit, spin, combo, label, QPushButton("Generate")):
        col.addWidget(w)
    shown(qtbot, window)
    assert audit(window, "ok") == []
    assert audit_combo_popups(window, "ok") == []


def test_a_one_pixel_field_a_cut_button_and_a_cut_combo_are_found(qtbot, window):
    row = QHBoxLayout(window)
    seed = QSpinBox()
    seed.setRange(0, 2**31 - 1)
    seed.setValue(123456789)
    seed.setFixedWidth(30)
    button = QPushButton("Evolution GIF…")
    button.setFixedWidth(40)
    combo = QComboBox()
    combo.addItems(["Normal", "Fastest"])
    combo.setFixedWidth(50)
    for w in (seed, button, combo):
        row.addWidget(w)
    row.addStretch(1)
    shown(qtbot, window)
    found = audit(window, "cut")
    assert len(found) == 3, format_problems(found)
    assert rules(found) == ["clipped text", "input too narrow"]
    text = format_problems(found)
    assert "QSpinBox" in text and "Evolution GIF" in text and "'Normal'" in text


def test_elided_text_is_fine_with_a_tooltip_and_a_cut_label_is_not(qtbot, window):
    col = QVBoxLayout(window)
    elided = QLabel()
    elided.setToolTip("a/very/long/path/to/somewhere/model.safetensors")
    elided.setText(elided.fontMetrics().elidedText(elided.toolTip(), Qt.TextElideMode.ElideMiddle,
                                                   120))
    cut = QLabel("FORWARD PROCESS: DATA → NOISE")
    cut.setMinimumWidth(1)
    cut.setFixedWidth(60)
    col.addWidget(elided)
    col.addWidget(cut)
    shown(qtbot, window)
    found = audit(window, "labels")
    assert [p.path.split("'")[1] for p in found] == ["FORWARD PROCESS: DATA → NOISE"]


def test_overlap_and_overflow_are_found_but_a_grid_overlay_and_scrolling_are_not(qtbot, window):
    col = QVBoxLayout(window)
    bar = QWidget()
    bar.setFixedWidth(200)  # narrower than what its fixed-size buttons need: they overlap
    row = QHBoxLayout(bar)
    for text in ("Play", "Step", "Reset"):
        b = QPushButton(text)
        b.setFixedWidth(90)
        row.addWidget(b)
    col.addWidget(bar)
    overlay = QWidget()  # a badge over a picture in the same grid cell: on purpose
    grid = QGridLayout(overlay)
    grid.addWidget(QLabel("picture"), 0, 0)
    grid.addWidget(QLabel("100%"), 0, 0, Qt.AlignmentFlag.AlignRight)
    col.addWidget(overlay)
    scroll = QScrollArea()  # contents taller than the viewport scroll: fine
    tall = QWidget()
    tall.setMinimumHeight(900)
    scroll.setWidget(tall)
    scroll.setFixedHeight(100)
    col.addWidget(scroll)
    shown(qtbot, window)
    found = audit(window, "overlap")
    assert "overlap" in rules(found) and "outside parent" in rules(found)
    assert not any("100%" in p.path or "picture" in p.path for p in found)
    assert not any(p.cls == "QWidget" and "900" in p.what for p in found)


def test_a_window_larger_than_the_screen_is_found(qtbot, window):
    room = window.screen().availableGeometry()
    shown(qtbot, window, room.width() + 200, 200)
    assert "off screen" in rules(audit(window, "big"))


def test_a_legend_over_a_curve_is_found_and_one_beside_it_is_not(qtbot, window):
    import pyqtgraph as pg

    plot = pg.PlotWidget()
    QVBoxLayout(window).addWidget(plot)
    plot.addLegend(offset=(10, 10))  # top left
    xs = np.linspace(0, 10, 200)
    plot.plot(xs, 10 - xs, name="falling")  # starts top left: under the legend
    shown(qtbot, window)
    qtbot.wait(50)
    found = audit(window, "legend")
    assert any(p.rule == "legend over data" and "falling" in p.what for p in found)

    plot.setXRange(0, 10, padding=0)
    plot.setYRange(-10, 10, padding=0)
    plot.getPlotItem().legend.setOffset((-10, 10))  # top right: the curve is low by then
    qtbot.wait(50)
    assert not [p for p in audit(window, "legend") if p.rule == "legend over data"]
