"""The hyperparameter form, generated from a lesson's :class:`ParamSpec` list.

Learning rates (``log_scale``) get a slider that moves in powers of ten beside the exact value;
choices get a combo box (a choice this install cannot use, e.g. a data set whose package is
missing, is listed greyed out with what it needs); ints a spin box; other floats a spin box; bools a check box. A change to a
*live* knob is sent (debounced, so dragging a slider sends its last value) as ``paramChanged``;
a change to any other knob starts the run over, as ``resetRequested`` with the whole form.
"""

from __future__ import annotations

import math
import re
from typing import Any

from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QSlider,
    QSpinBox,
    QWidget,
)

from studio.pipelines.train.base import ParamSpec

DEBOUNCE_MS = 120
TICKS_PER_DECADE = 20


def _needs(reason: str) -> str:
    """A short form of why a choice is unavailable, for the combo box: "needs scikit-image" from
    "The faces data set needs scikit-image, which …"."""
    found = re.search(r"\bneeds ([\w.\-]*\w)", reason)
    return found.group(0) if found else "unavailable"


class LogSlider(QWidget):
    """A slider over powers of ten with the value written beside it."""

    valueChanged = Signal(float)

    def __init__(self, spec: ParamSpec, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.lo = math.log10(spec.minimum or 1e-6)
        self.hi = math.log10(spec.maximum or 10.0)
        self.slider = QSlider(Qt.Orientation.Horizontal)
        self.slider.setRange(0, int(round((self.hi - self.lo) * TICKS_PER_DECADE)))
        self.label = QLabel()
        self.label.setMinimumWidth(58)
        self.label.setAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        row = QHBoxLayout(self)
        row.setContentsMargins(0, 0, 0, 0)
        row.addWidget(self.slider, 1)
        row.addWidget(self.label)
        self._value = float(spec.default)
        self.slider.valueChanged.connect(self._on_slider)
        self.set_value(self._value)

    def value(self) -> float:
        return self._value

    def set_value(self, value: float) -> None:
        self._value = float(value)
        self.label.setText(f"{self._value:.3g}")
        self.slider.blockSignals(True)
        self.slider.setValue(int(round((math.log10(max(value, 1e-12)) - self.lo)
                                       * TICKS_PER_DECADE)))
        self.slider.blockSignals(False)

    def _on_slider(self, tick: int) -> None:
        value = float(f"{10 ** (self.lo + tick / TICKS_PER_DECADE):.3g}")
        self._value = value
        self.label.setText(f"{value:.3g}")
        self.valueChanged.emit(value)


class ParamsForm(QWidget):
    """Widgets for every knob of one lesson."""

    paramChanged = Signal(str, object)  # a live knob: name, value
    resetRequested = Signal(dict)  # a knob that needs a restart changed: the whole config

    def __init__(self, specs: tuple[ParamSpec, ...], config: dict[str, Any],
                 parent: QWidget | None = None,
                 unavailable: dict[str, dict[str, str]] | None = None) -> None:
        super().__init__(parent)
        self.specs = {s.name: s for s in specs}
        #: per knob, the choices this install cannot use and why (Trainer.unavailable_choices)
        self.unavailable = {k: dict(v) for k, v in (unavailable or {}).items() if v}
        self.editors: dict[str, QWidget] = {}
        self._pending: dict[str, Any] = {}
        self._debounce = QTimer(self, singleShot=True, interval=DEBOUNCE_MS)
        self._debounce.timeout.connect(self._send_pending)
        form = QFormLayout(self)
        form.setContentsMargins(0, 0, 0, 0)
        form.setHorizontalSpacing(10)
        form.setVerticalSpacing(8)
        form.setLabelAlignment(Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignVCenter)
        # Live knobs first: they are the ones a student plays with while it runs.
        for spec in sorted(specs, key=lambda s: not s.live):
            editor = self._editor(spec)
            editor.setObjectName(f"param-{spec.name}")
            tip = spec.help + ("" if spec.live else " (changing it starts the run over)")
            for choice, why in self.unavailable.get(spec.name, {}).items():
                tip += f"\n{choice}: {why}"
            editor.setToolTip(tip.strip())
            label = QLabel(spec.label or spec.name)
            label.setToolTip(editor.toolTip())
            if not spec.live:
                label.setProperty("muted", True)
            form.addRow(label, editor)
            self.editors[spec.name] = editor
        self.set_values(config)

    def _editor(self, spec: ParamSpec) -> QWidget:
        if spec.kind == "choice":
            box = QComboBox()
            missing = self.unavailable.get(spec.name, {})
            for choice in spec.choices:
                box.addItem(f"{choice} ({_needs(missing[choice])})" if choice in missing
                            else choice, choice)
                if choice in missing:
                    item = box.model().item(box.count() - 1)
                    item.setEnabled(False)
                    item.setToolTip(missing[choice])
            box.currentIndexChanged.connect(
                lambda i, b=box, s=spec: self._changed(s, b.itemData(i)))
            return box
        if spec.kind == "bool":
            check = QCheckBox()
            check.toggled.connect(lambda v, s=spec: self._changed(s, v))
            return check
        if spec.kind == "float" and spec.log_scale:
            slider = LogSlider(spec)
            slider.valueChanged.connect(lambda v, s=spec: self._changed(s, v))
            return slider
        if spec.kind == "int":
            spin = QSpinBox()
            spin.setRange(int(spec.minimum if spec.minimum is not None else -10**9),
                          int(spec.maximum if spec.maximum is not None else 10**9))
            spin.setKeyboardTracking(False)
            spin.valueChanged.connect(lambda v, s=spec: self._changed(s, v))
            return spin
        spin = QDoubleSpinBox()
        spin.setDecimals(4)
        spin.setRange(spec.minimum if spec.minimum is not None else -1e9,
                      spec.maximum if spec.maximum is not None else 1e9)
        span = (spec.maximum or 1.0) - (spec.minimum or 0.0)
        spin.setSingleStep(10 ** math.floor(math.log10(max(span, 1e-6))) / 20)
        spin.setKeyboardTracking(False)
        spin.valueChanged.connect(lambda v, s=spec: self._changed(s, v))
        return spin

    # -- values -------------------------------------------------------------------------------
    def set_values(self, config: dict[str, Any]) -> None:
        """Show ``config`` without sending anything (a reset or a resumed run)."""
        for name, value in config.items():
            editor = self.editors.get(name)
            if editor is None:
                continue
            editor.blockSignals(True)
            if isinstance(editor, QComboBox):
                editor.setCurrentIndex(max(0, editor.findData(str(value))))
            elif isinstance(editor, QCheckBox):
                editor.setChecked(bool(value))
            elif isinstance(editor, LogSlider):
                editor.set_value(float(value))
            else:
                editor.setValue(value)
            editor.blockSignals(False)

    def values(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for name, editor in self.editors.items():
            if isinstance(editor, QComboBox):
                out[name] = editor.currentData()
            elif isinstance(editor, QCheckBox):
                out[name] = editor.isChecked()
            else:
                out[name] = editor.value()
        return out

    def _changed(self, spec: ParamSpec, value: Any) -> None:
        if spec.live:
            self._pending[spec.name] = value
            self._debounce.start()
        else:
            self.resetRequested.emit(self.values())

    def _send_pending(self) -> None:
        pending, self._pending = self._pending, {}
        for name, value in pending.items():
            self.paramChanged.emit(name, value)

    def flush(self) -> None:
        """Send a pending debounced change now (tests, and before a reset)."""
        self._debounce.stop()
        self._send_pending()
