"""The Train workspace fits (pytest-qt, offscreen): every lesson, trained a few steps, at the default
window size in the dark and the light theme (the laptop and large screens are the layout audit's,
in a real X window: tests/test_gui_layout_audit.py): every button shows its whole text, no
input is narrower than what it shows, no label is cut without a tooltip, no widgets overlap, no
legend sits on a plot, no two tick labels touch. Also: plots follow a theme switch live, a lesson
switch leaves nothing of the previous lesson on screen, and settings show readable names.
"""

from __future__ import annotations

import itertools

import numpy as np
import pyqtgraph as pg
import pytest
from PySide6.QtCore import QRect, Qt
from PySide6.QtGui import QImage, QPainter
from PySide6.QtWidgets import (
    QAbstractButton,
    QAbstractScrollArea,
    QAbstractSpinBox,
    QApplication,
    QComboBox,
    QLabel,
    QListWidget,
    QStyle,
    QStyleOptionComboBox,
    QWidget,
)

from studio.pipelines.train.registry import lesson_class, lesson_keys

SIZES = {"laptop": (1366, 710), "default": (1320, 860), "large": (1920, 1050)}


# -- the audit ----------------------------------------------------------------------------------
def _placement(widget: QWidget, root: QWidget) -> str:
    """"shown"; "hidden" (not visible, or scrolled out of a scroll area's view: the area
    scrolls to it); or "cut": wider than a scroll area that cannot scroll sideways, so part of
    it is never seen (a form wider than its sidebar: values under the scroll bar)."""
    if not widget.isVisible() or widget.width() <= 0 or widget.height() <= 0:
        return "hidden"
    parent = widget.parentWidget()
    while parent is not None and parent is not root:
        area = parent.parentWidget()
        if isinstance(area, QAbstractScrollArea) and parent is area.viewport():
            box = QRect(widget.mapTo(parent, widget.rect().topLeft()), widget.size())
            sideways = area.horizontalScrollBarPolicy() != Qt.ScrollBarPolicy.ScrollBarAlwaysOff
            if not sideways and (box.left() < 0 or box.right() > parent.width() - 1):
                return "cut"
            if box.top() < 0 or box.bottom() > parent.height() - 1:
                return "hidden"
        parent = parent.parentWidget()
    return "shown"


def _shown(widget: QWidget, root: QWidget) -> bool:
    return _placement(widget, root) != "hidden"


def _combo_text_room(box: QComboBox) -> int:
    opt = QStyleOptionComboBox()
    box.initStyleOption(opt)
    rect = box.style().subControlRect(QStyle.ComplexControl.CC_ComboBox, opt,
                                      QStyle.SubControl.SC_ComboBoxEditField, box)
    return rect.width()


def layout_problems(root: QWidget) -> list[str]:
    """What a person would see as broken in ``root``: cut text, inputs too narrow for their
    content, squashed widgets, overlapping siblings, legends on plots, colliding tick labels."""
    problems: list[str] = []
    widgets = [w for w in root.findChildren(QWidget) if _shown(w, root)]
    for w in widgets:
        name = f"{type(w).__name__}#{w.objectName() or '?'}"
        if _placement(w, root) == "cut" and isinstance(
                w, (QAbstractButton, QAbstractSpinBox, QComboBox, QLabel)):
            problems.append(f"{name}: runs out of its scroll area's view (cut at the side)")
        fm = w.fontMetrics()
        if isinstance(w, QAbstractSpinBox):
            edit = w.findChild(QWidget, "qt_spinbox_lineedit")
            if fm.horizontalAdvance(w.text()) > edit.width():
                problems.append(f"{name}: {w.text()!r} wider than its box ({edit.width()} px)")
        elif isinstance(w, QComboBox):
            if fm.horizontalAdvance(w.currentText()) > _combo_text_room(w):
                problems.append(f"{name}: {w.currentText()!r} is cut")
        elif isinstance(w, QAbstractButton) and w.text():
            if w.width() < w.sizeHint().width():
                problems.append(f"{name}: {w.text()!r} needs {w.sizeHint().width()} px, has "
                                f"{w.width()}")
        elif isinstance(w, QLabel) and w.text() and w.textFormat() != Qt.TextFormat.RichText \
                and "<" not in w.text():
            if w.wordWrap():
                if w.heightForWidth(w.width()) > w.height() + 1:
                    problems.append(f"{name}: {w.text()!r} wraps taller than it is")
            elif fm.horizontalAdvance(w.text()) > w.contentsRect().width() + 1 \
                    and not w.toolTip():
                problems.append(f"{name}: {w.text()!r} is cut and has no tooltip")
            if w.text().endswith("…") and not w.toolTip():
                problems.append(f"{name}: {w.text()!r} is elided and has no tooltip")
        if isinstance(w, (QAbstractButton, QAbstractSpinBox, QComboBox, QLabel)) and \
                not (isinstance(w, QLabel) and w.wordWrap()):
            if w.height() < min(w.minimumSizeHint().height(), w.sizeHint().height()) - 1:
                problems.append(f"{name}: squashed to {w.height()} px high")
    for view in (w for w in widgets if isinstance(w, QListWidget)):
        if view.horizontalScrollBar().maximum() > 0:
            problems.append(f"list #{view.objectName()}: its items are wider than the list")
    for parent in [root, *widgets]:
        kids = [k for k in parent.children() if isinstance(k, QWidget) and not k.isWindow()
                and _shown(k, root)]
        for a, b in itertools.combinations(kids, 2):
            if a.geometry().intersects(b.geometry()):
                problems.append(f"{type(a).__name__}#{a.objectName()} overlaps "
                                f"{type(b).__name__}#{b.objectName()} in "
                                f"{type(parent).__name__}#{parent.objectName()}")
    for plot in root.findChildren(pg.PlotWidget):
        if not _shown(plot, root):
            continue
        item = plot.getPlotItem()
        if item.legend is not None or any(isinstance(i, pg.LegendItem)
                                           for i in plot.scene().items()):
            problems.append(f"plot #{plot.objectName()} has a legend drawn on it")
        problems += [f"plot #{plot.objectName()}: {p}" for p in tick_label_collisions(item)]
    return problems


def tick_label_collisions(item: pg.PlotItem) -> list[str]:
    out = []
    image = QImage(10, 10, QImage.Format.Format_ARGB32)
    painter = QPainter(image)
    try:
        for name in ("left", "bottom"):
            axis = item.getAxis(name)
            if not axis.isVisible():
                continue
            specs = axis.generateDrawSpecs(painter)
            texts = specs[2] if specs else []
            for (ra, _fa, ta), (rb, _fb, tb) in itertools.combinations(texts, 2):
                if ra.intersects(rb):
                    out.append(f"{name} tick labels {ta!r} and {tb!r} overlap")
    finally:
        painter.end()
    return out


# -- driving the window -------------------------------------------------------------------------
@pytest.fixture
def train(main_window, qtbot, monkeypatch):
    from studio.ui.main_window import CPU_NOTICE
    from studio.ui.panels.train.panel import TrainPanel

    # Lessons train on a thread of this process, not in a child that imports torch each time:
    # layout is the same either way (tests/test_train_a_gui.py drives the child process).
    monkeypatch.setattr(TrainPanel, "session_in_process", False)

    main_window.resize(*SIZES["laptop"])
    main_window.show()
    main_window.show_banner(CPU_NOTICE + " The installed torch is a CPU-only build, so it "
                            "cannot use an NVIDIA GPU even if one is present.", "warning",
                            key="cpu")
    panel = main_window.show_workspace("train")
    qtbot.waitUntil(lambda: panel.frames_drawn >= 1, timeout=60000)
    return panel


def open_and_step(qtbot, panel, key: str, steps: int = 3) -> None:
    """Open lesson ``key``, wait for its first frame, then train ``steps`` steps and pause."""
    keys = set(panel.lessons[key].validate_config())
    if panel.lesson != key:
        panel.open_lesson(key)
    qtbot.waitUntil(lambda: panel.lesson == key and panel.session.state == "paused"
                    and panel.last_frame is not None and set(panel.last_frame.config) == keys,
                    timeout=60000)
    start = panel.last_frame.step
    for i in range(steps):
        qtbot.mouseClick(panel.controls.step_button, Qt.MouseButton.LeftButton)
        qtbot.waitUntil(lambda i=i: panel.last_frame.step >= start + i + 1, timeout=60000)


def settle(qtbot, window) -> None:
    """Let resizes, deferred layouts and the loss plot's throttled redraw happen."""
    for _ in range(3):
        QApplication.processEvents()
        qtbot.wait(120)


def test_every_lesson_fits_the_default_window_in_both_themes(train, qtbot, qapp):
    # The laptop (1366×768 with the banner) and large (1920×1080) screens are the layout audit's:
    # every lesson, both themes, in a real X window (tests/test_gui_layout_audit.py). Here the
    # window's own default size, which neither of those is.
    from studio.ui.theme import LIGHT, apply_theme

    window = train.window()
    found: dict[str, list[str]] = {}
    try:
        window.resize(*SIZES["default"])
        for key in lesson_keys():
            open_and_step(qtbot, train, key)
            for theme in ("dark", "light"):
                apply_theme(qapp, theme)
                settle(qtbot, window)
                assert train.controls.isVisible()
                problems = layout_problems(train)
                if problems:
                    found[f"{key} {theme}"] = problems
                if theme == "light":  # the plots followed the switch
                    for plot in train.findChildren(pg.PlotWidget):
                        assert plot.backgroundBrush().color().name() == LIGHT.surface, key
            apply_theme(qapp, "dark")
    finally:
        apply_theme(qapp, "dark")
    assert not found, "\n".join(f"{where}:\n  " + "\n  ".join(p) for where, p in found.items())


def test_the_control_bar_fits_one_row_on_a_laptop_and_wraps_when_narrower(train, qtbot):
    window = train.window()
    settle(qtbot, window)
    bar = train.controls
    assert not bar.two_rows, "the bar fits one row at 1366×768"
    buttons = [bar.play_button, bar.step_button, bar.reset_button, bar.seed_button]
    for button in buttons:
        assert button.width() >= button.sizeHint().width(), button.text()
    # Play and Step side by side, not on top of each other, in every window size.
    for size in SIZES.values():
        window.resize(*size)
        settle(qtbot, window)
        play, step = bar.play_button.geometry(), bar.step_button.geometry()
        assert play.right() < step.left(), size
    # The narrowest window leaves less than one row: two rows, and still every button whole.
    window.resize(window.minimumWidth(), 700)
    settle(qtbot, window)
    assert bar.width() < bar.one_row_width() and bar.two_rows
    assert layout_problems(bar) == []
    window.resize(*SIZES["laptop"])
    settle(qtbot, window)
    assert not bar.two_rows


def test_the_runs_tab_fits_the_narrow_notes_column(train, qtbot):
    open_and_step(qtbot, train, "classifier-2d", steps=3)
    train.reset(seed=2_147_483_647)  # the longest seed there is
    qtbot.waitUntil(lambda: train.last_frame.new_run and train.session.seed == 2_147_483_647,
                    timeout=20000)
    open_and_step(qtbot, train, "classifier-2d", steps=2)
    train.runs.refresh(train.runs_root, train.lesson)
    train.tabs.setCurrentWidget(train.runs)
    for size in ("laptop", "large"):
        train.window().resize(*SIZES[size])
        settle(qtbot, train.window())
        assert train.runs.list.count() >= 2
        assert layout_problems(train.right) == [], size


def test_plots_follow_a_theme_switch_while_on_screen(train, qtbot, qapp):
    from studio.ui.theme import DARK, LIGHT, apply_theme

    open_and_step(qtbot, train, "gan-2d", steps=2)
    plots = train.findChildren(pg.PlotWidget)
    assert len(plots) >= 2  # the lesson's plot and the loss plot
    for plot in plots:
        assert plot.backgroundBrush().color().name() == DARK.surface
    heat_dark = train.view.heat.lut.copy()
    try:
        apply_theme(qapp, "light")
        settle(qtbot, train.window())
        for plot in plots:
            assert plot.backgroundBrush().color().name() == LIGHT.surface
            axis = plot.getPlotItem().getAxis("bottom")
            assert axis.textPen().color().name() == LIGHT.muted
        assert not np.array_equal(train.view.heat.lut, heat_dark)  # the heatmap's colours too
        # A lesson opened in the light theme is light from the start.
        open_and_step(qtbot, train, "classifier-2d", steps=1)
        for plot in train.findChildren(pg.PlotWidget):
            assert plot.backgroundBrush().color().name() == LIGHT.surface
    finally:
        apply_theme(qapp, "dark")
    settle(qtbot, train.window())
    for plot in train.findChildren(pg.PlotWidget):
        assert plot.backgroundBrush().color().name() == DARK.surface


def test_switching_lessons_shows_nothing_of_the_previous_one(train, qtbot):
    open_and_step(qtbot, train, "optimizers", steps=1)
    train.controls.speed.setCurrentText("Fast")
    qtbot.mouseClick(train.controls.play_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: train.last_frame.step >= 300, timeout=60000)
    qtbot.mouseClick(train.controls.play_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: train.session.state == "paused", timeout=10000)
    qtbot.waitUntil(lambda: train.loss_plot.plot.viewRange()[0][1] > 250, timeout=5000)
    train.lesson_list.setCurrentRow(1)  # as a student does
    # At once, before the new lesson's first frame: no step count, curves or axes of the old.
    assert train.lesson == "classifier-2d"
    assert train.controls.step_label.text() == "step 0"
    assert train.last_frame is None
    assert all(len(c.getData()[0] if c.getData()[0] is not None else []) == 0
               for c in train.loss_plot.curves.values())
    assert train.loss_plot.plot.viewRange()[0][1] < 10
    assert train.loss_plot.legend.names() == ["Train loss", "Test loss"]
    open_and_step(qtbot, train, "classifier-2d", steps=2)
    assert train.controls.step_label.text() == "step 2"
    assert train.loss_plot.plot.viewRange()[0][1] < 10


def test_settings_and_legends_show_readable_names_and_store_the_ids(train, qtbot):
    for key in lesson_keys():
        cls = lesson_class(key)
        for spec in cls.params:
            if spec.kind == "choice":
                assert set(dict(spec.choice_labels)) == set(spec.choices), (key, spec.name)
        assert set(dict(cls.info.series_labels)) == set(cls.info.series), key
    open_and_step(qtbot, train, "optimizers", steps=1)
    box = train.form.editors["surface"]
    assert box.currentText() == "Rosenbrock valley" and box.currentData() == "rosenbrock"
    assert train.form.values()["surface"] == "rosenbrock"
    assert [box.itemText(i) for i in range(box.count())][:2] == ["Rosenbrock valley",
                                                                 "Beale's function"]
    assert train.loss_plot.legend.names()[:2] == ["SGD", "Momentum"]
    box.setCurrentIndex(box.findData("saddle"))  # the id goes to the lesson
    qtbot.waitUntil(lambda: train.last_frame.config["surface"] == "saddle", timeout=20000)
    open_and_step(qtbot, train, "ddpm-2d", steps=1)
    names = train.loss_plot.legend.names()
    assert names[0] == "Loss (all t)" and names[1] == "MSE, t 0–20% of T"
    assert not any(n.startswith("mse_t") for n in names)
    assert train.form.editors["dataset"].currentText() == "8 Gaussians in a ring"


def test_a_log_axis_spanning_less_than_a_decade_keeps_its_labels_apart(qtbot):
    """pyqtgraph labels every 1…9 × 10ⁿ there; they were drawn on top of each other."""
    from studio.ui.panels.train.loss_plot import LossPlot

    plot = LossPlot()
    qtbot.addWidget(plot)
    plot.resize(600, 200)
    plot.show()
    qtbot.waitExposed(plot)
    plot.set_series(("loss", "mse_t0"), ["Loss", "MSE"])
    steps = np.arange(400)
    plot.append([{"step": float(s), "loss": 0.5 + 0.4 * np.sin(s / 30) ** 2,
                  "mse_t0": 0.55 + 0.3 * np.cos(s / 40) ** 2} for s in steps])
    plot.redraw()
    qtbot.wait(100)
    item = plot.plot.getPlotItem()
    image = QImage(10, 10, QImage.Format.Format_ARGB32)
    painter = QPainter(image)
    texts = item.getAxis("left").generateDrawSpecs(painter)[2]
    painter.end()
    assert len(texts) >= 2, "some labels remain"
    assert tick_label_collisions(item) == []
    assert all("·10" not in t for _r, _f, t in texts)  # "0.7", not "7·10⁻¹"
