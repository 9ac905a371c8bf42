"""The hyperparameter form, generated from a lesson's :class:`ParamSpec` list.

Learning rates (``log_scale``) get a slider that moves in powers of ten, its exact value written
beside the knob's name; choices get a combo box listing readable names (the code id stays the
stored value; a choice this install cannot use, e.g. a data set whose package is missing, is
listed greyed out with what it needs); ints a spin box; other floats a spin box; bools a check
box; folders a path field with a Browse… button. A change to a *live* knob is sent (debounced, so dragging a slider sends its last value) as
``paramChanged``; a change to any other knob starts the run over, as ``resetRequested`` with the
whole form.

Each knob's name sits above its editor, which takes the column's whole width: the sidebar is
narrow on a laptop, and side by side either the names or the values (long data-set names, a
learning rate) were cut.
"""

from __future__ import annotations

import math
import re
from typing import Any

from PySide6.QtCore import QSize, Qt, QTimer, Signal
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFileDialog,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QSlider,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from studio.pipelines.train.base import ParamSpec

DEBOUNCE_MS = 120
TICKS_PER_DECADE = 20
FLOAT_DECIMALS = 6
#: A spin box is never narrower than this text (plus its buttons), so "0.0001" typed in shows.
MIN_SPIN_TEXT = "0.00001"


def _needs(reason: str) -> str:
    """A short form of why a choice is unavailable, for the combo box: "needs scikit-image" from
    "The faces data set needs scikit-image, which …"."""
    found = re.search(r"\bneeds ([\w.\-]*\w)", reason)
    return found.group(0) if found else "unavailable"


def _fitted(box, hint: QSize) -> QSize:
    """``hint`` (Qt's, sized for the range's end values) widened for the value shown now and
    :data:`MIN_SPIN_TEXT`: a box never hides the number in it."""
    metrics = box.fontMetrics()
    ends = [box.textFromValue(box.minimum()), box.textFromValue(box.maximum())]
    chrome = hint.width() - max(metrics.horizontalAdvance(t[:18] + " ") for t in ends) - 2
    shown = ends + [box.textFromValue(box.value()), MIN_SPIN_TEXT]
    return QSize(chrome + 2 + max(metrics.horizontalAdvance(t + " ") for t in shown),
                 hint.height())


class IntBox(QSpinBox):
    """A spin box as wide as its numbers need."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.valueChanged.connect(lambda _v: self.updateGeometry())

    def sizeHint(self) -> QSize:  # noqa: N802 - Qt's name
        return _fitted(self, super().sizeHint())

    def minimumSizeHint(self) -> QSize:  # noqa: N802 - Qt's name
        return _fitted(self, super().minimumSizeHint())


class FloatBox(QDoubleSpinBox):
    """A spin box for a float that shows only the digits the value has ("0.15", not "0.1500")
    while keeping :data:`FLOAT_DECIMALS` of precision for what is typed."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setDecimals(FLOAT_DECIMALS)
        self.valueChanged.connect(lambda _v: self.updateGeometry())

    def textFromValue(self, value: float) -> str:  # noqa: N802 - Qt's name
        text = f"{value:.{self.decimals()}f}".rstrip("0")
        return text + "0" if text.endswith(".") else text

    def sizeHint(self) -> QSize:  # noqa: N802 - Qt's name
        return _fitted(self, super().sizeHint())

    def minimumSizeHint(self) -> QSize:  # noqa: N802 - Qt's name
        return _fitted(self, super().minimumSizeHint())


class LogSlider(QWidget):
    """A slider over powers of ten; its value is written in ``label`` (the form puts that
    beside the knob's name), which is wide enough for every value the slider can reach."""

    valueChanged = Signal(float)

    def __init__(self, spec: ParamSpec, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.lo = math.log10(spec.minimum or 1e-6)
        self.hi = math.log10(spec.maximum or 10.0)
        self.slider = QSlider(Qt.Orientation.Horizontal)
        self.slider.setRange(0, int(round((self.hi - self.lo) * TICKS_PER_DECADE)))
        self.label = QLabel()
        self.label.setObjectName(f"value-{spec.name}")
        self.label.setAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        self.label.setStyleSheet("font-family: monospace;")
        self._texts = [self._text(self._tick_value(t)) for t in range(self.slider.maximum() + 1)]
        self._texts.append(self._text(float(spec.default)))
        row = QHBoxLayout(self)
        row.setContentsMargins(0, 0, 0, 0)
        row.addWidget(self.slider, 1)
        self._value = float(spec.default)
        self.slider.valueChanged.connect(self._on_slider)
        self.set_value(self._value)

    @staticmethod
    def _text(value: float) -> str:
        return f"{value:.3g}"

    def _tick_value(self, tick: int) -> float:
        return float(f"{10 ** (self.lo + tick / TICKS_PER_DECADE):.3g}")

    def fit_label(self) -> None:
        """Give the value label the width of the widest value (in the font it has now)."""
        metrics = self.label.fontMetrics()
        self.label.setMinimumWidth(max(metrics.horizontalAdvance(t) for t in self._texts) + 4)

    def value(self) -> float:
        return self._value

    def set_value(self, value: float) -> None:
        self._value = float(value)
        self.label.setText(self._text(self._value))
        self.slider.blockSignals(True)
        self.slider.setValue(int(round((math.log10(max(value, 1e-12)) - self.lo)
                                       * TICKS_PER_DECADE)))
        self.slider.blockSignals(False)

    def _on_slider(self, tick: int) -> None:
        value = self._tick_value(tick)
        self._value = value
        self.label.setText(self._text(value))
        self.valueChanged.emit(value)


class FolderEdit(QWidget):
    """A folder's path (or, with ``file_filter``, a file's): typed (sent when editing ends) or
    chosen with Browse…; with ``browse=False`` a plain line of text."""

    valueChanged = Signal(str)

    def __init__(self, parent: QWidget | None = None, file_filter: str = "",
                 browse: bool = True) -> None:
        super().__init__(parent)
        self.file_filter = file_filter
        self.line = QLineEdit()
        self.line.setPlaceholderText(("No file chosen" if file_filter else "No folder chosen")
                                     if browse else "Type here")
        # (a typed sentence keeps its text: its clear button would be squashed in the form)
        self.line.setClearButtonEnabled(browse)
        self.line.editingFinished.connect(self._edited)
        self.browse = QPushButton("Browse…")
        self.browse.setToolTip("Choose a text file" if file_filter else "Choose a folder of images")
        self.browse.clicked.connect(self._choose)
        # The path takes the column's whole width, Browse… under it: side by side a chosen
        # path showed a dozen characters in the narrow sidebar.
        column = QVBoxLayout(self)
        column.setContentsMargins(0, 0, 0, 0)
        column.setSpacing(4)
        column.addWidget(self.line)
        column.addWidget(self.browse, 0, Qt.AlignmentFlag.AlignRight)
        self.browse.setVisible(browse)
        self._value = ""

    def value(self) -> str:
        return self._value

    def setValue(self, value: str) -> None:  # noqa: N802 - as the spin boxes name it
        self._value = str(value or "")
        self.line.setText(self._value)
        self.line.setCursorPosition(0)
        self.line.setToolTip(self._value)

    def _edited(self) -> None:
        text = self.line.text().strip()
        if text != self._value:
            self.setValue(text)
            self.valueChanged.emit(text)

    def _choose(self) -> None:
        if self.file_filter:
            path = QFileDialog.getOpenFileName(self, "Choose a text file", self._value or "",
                                               self.file_filter)[0]
        else:
            path = QFileDialog.getExistingDirectory(self, "Choose a folder of images",
                                                    self._value or "")
        if path and path != self._value:
            self.setValue(path)
            self.valueChanged.emit(path)


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
        self.labels: dict[str, QLabel] = {}
        self._pending: dict[str, Any] = {}
        self._debounce = QTimer(self, singleShot=True, interval=DEBOUNCE_MS)
        self._debounce.timeout.connect(self._send_pending)
        column = QVBoxLayout(self)
        # Room on the right for the scroll bar, so it never sits on a value.
        column.setContentsMargins(0, 0, 12, 0)
        column.setSpacing(10)
        # Live knobs first: they are the ones a student plays with while it runs.
        restart_note_shown = False
        for spec in sorted(specs, key=lambda s: not s.live):
            if not spec.live and not restart_note_shown:
                restart_note_shown = True
                note = QLabel("Changing these starts the run over:")
                note.setObjectName("restartNote")
                note.setProperty("muted", True)
                note.setWordWrap(True)
                column.addSpacing(4)
                column.addWidget(note)
            editor = self._editor(spec)
            editor.setObjectName(f"param-{spec.name}")
            tip = spec.help + ("" if spec.live else " (changing it starts the run over)")
            for choice, why in self.unavailable.get(spec.name, {}).items():
                tip += f"\n{spec.choice_label(choice)}: {why}"
            editor.setToolTip(tip.strip())
            column.addLayout(self._row(spec, editor))
            self.editors[spec.name] = editor
        column.addStretch(1)
        self.set_values(config)

    def _row(self, spec: ParamSpec, editor: QWidget) -> QVBoxLayout:
        """The knob's name (and a slider's value) over its editor; a check box is its own
        label."""
        row = QVBoxLayout()
        row.setSpacing(3)
        if isinstance(editor, QCheckBox):
            editor.setText(spec.label or spec.name)
            row.addWidget(editor)
            return row
        label = QLabel(spec.label or spec.name)
        label.setObjectName(f"label-{spec.name}")
        label.setWordWrap(True)
        label.setToolTip(editor.toolTip())
        label.setBuddy(editor)
        self.labels[spec.name] = label
        head = QHBoxLayout()
        head.setSpacing(8)
        head.addWidget(label, 1)
        if isinstance(editor, LogSlider):
            editor.label.setToolTip(editor.toolTip())
            head.addWidget(editor.label)
        row.addLayout(head)
        row.addWidget(editor)
        return row

    def _editor(self, spec: ParamSpec) -> QWidget:
        if spec.kind == "choice":
            box = QComboBox()
            # The box takes the column's width; its longest name does not set the sidebar's.
            box.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
            box.setMinimumContentsLength(8)
            missing = self.unavailable.get(spec.name, {})
            for choice in spec.choices:
                name = spec.choice_label(choice)
                box.addItem(f"{name} ({_needs(missing[choice])})" if choice in missing
                            else name, choice)
                if choice in missing:
                    item = box.model().item(box.count() - 1)
                    item.setEnabled(False)
                    item.setToolTip(missing[choice])
            box.currentIndexChanged.connect(
                lambda i, b=box, s=spec: self._changed(s, b.itemData(i)))
            return box
        if spec.kind in ("folder", "file", "text"):
            folder = FolderEdit(file_filter="Text (*.txt);;All files (*)"
                                if spec.kind == "file" else "", browse=spec.kind != "text")
            folder.valueChanged.connect(lambda v, s=spec: self._changed(s, v))
            return folder
        if spec.kind == "bool":
            check = QCheckBox()
            check.toggled.connect(lambda v, s=spec: self._changed(s, v))
            return check
        if spec.kind == "float" and spec.log_scale:
            slider = LogSlider(spec)
            slider.valueChanged.connect(lambda v, s=spec: self._changed(s, v))
            return slider
        if spec.kind == "int":
            spin = IntBox()
            spin.setRange(int(spec.minimum if spec.minimum is not None else -10**9),
                          int(spec.maximum if spec.maximum is not None else 10**9))
            spin.setKeyboardTracking(False)
            spin.valueChanged.connect(lambda v, s=spec: self._changed(s, v))
            return spin
        spin = FloatBox()
        spin.setRange(spec.minimum if spec.minimum is not None else -1e9,
                      spec.maximum if spec.maximum is not None else 1e9)
        span = (spec.maximum or 1.0) - (spec.minimum or 0.0)
        spin.setSingleStep(10 ** math.floor(math.log10(max(span, 1e-6))) / 20)
        spin.setKeyboardTracking(False)
        spin.valueChanged.connect(lambda v, s=spec: self._changed(s, v))
        return spin

    def changeEvent(self, event) -> None:  # noqa: N802 - Qt's name
        super().changeEvent(event)
        if event.type() in (event.Type.StyleChange, event.Type.FontChange, event.Type.Polish):
            for editor in self.editors.values():
                if isinstance(editor, LogSlider):
                    editor.fit_label()

    def showEvent(self, event) -> None:  # noqa: N802 - Qt's name
        super().showEvent(event)
        for editor in self.editors.values():
            if isinstance(editor, LogSlider):
                editor.fit_label()

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
                editor.updateGeometry()  # its valueChanged is blocked
            editor.blockSignals(False)

    def set_inapplicable(self, reasons: dict[str, str]) -> None:
        """Grey the knobs that do not apply to what the run trains (a FLUX.1 LoRA has no
        text-encoder training), each with its reason as the tooltip; the others come back."""
        for name, editor in self.editors.items():
            why = reasons.get(name, "")
            if editor.isEnabled() == (not why):
                continue
            editor.setEnabled(not why)
            spec = self.specs[name]
            tip = why or (spec.help + ("" if spec.live else " (changing it starts the run over)"))
            editor.setToolTip(tip.strip())
            if name in self.labels:
                self.labels[name].setEnabled(not why)
                self.labels[name].setToolTip(tip.strip())

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
