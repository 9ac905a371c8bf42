"""The right-hand pane: model, system prompt (with presets) and sampling settings.

Models come from :func:`studio.library.chat_models.find_chat_models` (scanned off the GUI
thread) plus remote ``openai:BASE_URL#MODEL`` entries from Settings' ``remote_endpoints``
(each may list its ``models``); :func:`remote_model_specs` is the one place that reads them.
"""

from __future__ import annotations

import threading
from typing import Any

from PySide6.QtCore import Qt, Signal, Slot
from PySide6.QtWidgets import (
    QComboBox,
    QDoubleSpinBox,
    QFormLayout,
    QLabel,
    QPlainTextEdit,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from studio.config import Settings

PRESETS: dict[str, str] = {
    "Helpful assistant": "You are a helpful assistant.",
    "Concise": "You are a helpful assistant. Answer briefly and directly, without preamble.",
    "Programmer": "You are an expert programmer. Answer with correct, idiomatic code in "
                  "fenced code blocks and explain only what is not obvious.",
    "Writer": "You are a creative writing partner with a vivid, precise style.",
    "Tutor": "You are a patient tutor. Explain step by step and check understanding.",
    "None": "",
}
SAMPLING_DEFAULTS: dict[str, Any] = {"temperature": 0.7, "top_p": 0.95, "top_k": 50,
                                     "repetition_penalty": 1.0, "max_new_tokens": 512,
                                     "seed": -1}


def remote_model_specs(settings: Settings) -> list[tuple[str, str]]:
    """(label, spec) for every model listed under a configured OpenAI-compatible endpoint."""
    out = []
    for ep in settings.remote_endpoints:
        base = str(ep.get("base_url", "")).rstrip("/")
        for model in ep.get("models") or []:
            out.append((f"{model} — {ep.get('name') or base}", f"openai:{base}#{model}"))
    return out


def _section(text: str) -> QLabel:
    label = QLabel(text.upper())
    label.setProperty("section", True)
    return label


class ChatControls(QWidget):
    """Model picker, system prompt and sampling; ``changed`` when the user edits any of them."""

    changed = Signal()
    modelsFound = Signal(object)  # list of (label, spec, context_length), from the scan thread

    def __init__(self, settings: Settings, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("ChatControls")
        self.settings = settings
        self.contexts: dict[str, int] = {}
        layout = QVBoxLayout(self)
        layout.setContentsMargins(8, 12, 12, 12)
        layout.setSpacing(8)
        layout.addWidget(_section("Model"))
        self.model = QComboBox()
        self.model.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
        self.model.setMinimumContentsLength(12)
        self.model.setPlaceholderText("Scanning for models…")
        self.model.currentIndexChanged.connect(lambda _i: self.changed.emit())
        layout.addWidget(self.model)
        self.model_note = QLabel("")
        self.model_note.setProperty("muted", True)
        self.model_note.setWordWrap(True)
        layout.addWidget(self.model_note)

        layout.addWidget(_section("System prompt"))
        self.preset = QComboBox()
        self.preset.addItems(list(PRESETS) + ["Custom"])
        self.preset.activated.connect(self._preset_picked)
        layout.addWidget(self.preset)
        self.system = QPlainTextEdit()
        self.system.setPlaceholderText("How the assistant should behave…")
        self.system.setFixedHeight(96)
        self.system.textChanged.connect(self._system_edited)
        layout.addWidget(self.system)

        layout.addWidget(_section("Sampling"))
        form = QFormLayout()
        form.setLabelAlignment(Qt.AlignmentFlag.AlignLeft)
        self.temperature = self._dspin(0, 5, 0.05, 2, "0 = greedy: the same answer every time")
        self.top_p = self._dspin(0.01, 1, 0.01, 2, "Sample from the smallest set of tokens "
                                 "whose probability adds up to this")
        self.top_k = self._spin(0, 1000, "Sample from the k likeliest tokens (0 = off)")
        self.repetition = self._dspin(0.5, 2, 0.05, 2, "Above 1 discourages repeating tokens")
        self.max_new = self._spin(1, 32768, "The longest reply, in tokens")
        self.seed = self._spin(-1, 2**31 - 1, "-1 = random; a seed makes sampling repeatable")
        self.seed.setSpecialValueText("random")
        for label, w in (("Temperature", self.temperature), ("Top-p", self.top_p),
                         ("Top-k", self.top_k), ("Repetition penalty", self.repetition),
                         ("Max new tokens", self.max_new), ("Seed", self.seed)):
            form.addRow(label, w)
        layout.addLayout(form)
        layout.addStretch(1)
        self.apply({}, PRESETS["Helpful assistant"])
        self.modelsFound.connect(self._fill_models)

    def _dspin(self, lo: float, hi: float, step: float, decimals: int, tip: str):
        w = QDoubleSpinBox()
        w.setRange(lo, hi)
        w.setSingleStep(step)
        w.setDecimals(decimals)
        w.setToolTip(tip)
        w.valueChanged.connect(lambda _v: self.changed.emit())
        return w

    def _spin(self, lo: int, hi: int, tip: str) -> QSpinBox:
        w = QSpinBox()
        w.setRange(lo, hi)
        w.setToolTip(tip)
        w.valueChanged.connect(lambda _v: self.changed.emit())
        return w

    # -- models ------------------------------------------------------------------------------
    def scan_models(self, settings: Settings, paths: Any) -> None:
        """Find chat models on a background thread (it reads folders and the HF cache)."""
        self.settings = settings

        def work() -> None:
            from studio.library.chat_models import find_chat_models

            try:
                found = [(e.name, e.spec, e.context_length)
                         for e in find_chat_models(settings, paths)]
            except Exception:  # noqa: BLE001 - a scan failure leaves the list empty
                found = []
            found += [(label, spec, 0) for label, spec in remote_model_specs(settings)]
            self.modelsFound.emit(found)

        threading.Thread(target=work, name="studio-chat-scan", daemon=True).start()

    @Slot(object)
    def _fill_models(self, found: list) -> None:
        wanted = self.model_spec() or self.settings.last_chat_model
        self.model.blockSignals(True)
        self.model.clear()
        for label, spec, ctx in found:
            self.model.addItem(label, spec)
            self.model.setItemData(self.model.count() - 1, spec, Qt.ItemDataRole.ToolTipRole)
            self.contexts[spec] = ctx
        self.model.setPlaceholderText("No chat models found")
        self.select_model(wanted)
        self.model.blockSignals(False)
        self.model_note.setText("" if found else
                                "Put a chat model folder (Qwen2.5, SmolLM2, Llama…) into the "
                                "models folder, or download one with 'hf download'.")
        self.changed.emit()

    def select_model(self, spec: str) -> None:
        i = self.model.findData(spec)
        if i < 0 and spec:
            self.model.addItem(spec.rsplit("/", 1)[-1] or spec, spec)
            i = self.model.count() - 1
        self.model.setCurrentIndex(i if i >= 0 else (0 if self.model.count() else -1))

    def model_spec(self) -> str:
        return str(self.model.currentData() or "")

    def model_label(self) -> str:
        return self.model.currentText() or "Assistant"

    # -- system prompt -----------------------------------------------------------------------
    def _preset_picked(self, index: int) -> None:
        name = self.preset.itemText(index)
        if name in PRESETS:
            self.system.setPlainText(PRESETS[name])

    def _system_edited(self) -> None:
        text = self.system.toPlainText()
        name = next((k for k, v in PRESETS.items() if v == text), "Custom")
        self.preset.blockSignals(True)
        self.preset.setCurrentText(name)
        self.preset.blockSignals(False)
        self.changed.emit()

    # -- values ------------------------------------------------------------------------------
    def sampling(self) -> dict[str, Any]:
        return {"temperature": round(self.temperature.value(), 3), "top_p": self.top_p.value(),
                "top_k": self.top_k.value(), "repetition_penalty": self.repetition.value(),
                "max_new_tokens": self.max_new.value(), "seed": self.seed.value()}

    def apply(self, sampling: dict[str, Any], system: str | None = None) -> None:
        """Show a conversation's settings without emitting ``changed``."""
        values = {**SAMPLING_DEFAULTS, **(sampling or {})}
        widgets = [self.temperature, self.top_p, self.top_k, self.repetition, self.max_new,
                   self.seed, self.system]
        for w in widgets:
            w.blockSignals(True)
        self.temperature.setValue(float(values["temperature"]))
        self.top_p.setValue(float(values["top_p"]))
        self.top_k.setValue(int(values["top_k"]))
        self.repetition.setValue(float(values["repetition_penalty"]))
        self.max_new.setValue(int(values["max_new_tokens"]))
        self.seed.setValue(int(values["seed"] if values["seed"] is not None else -1))
        if system is not None:
            self.system.setPlainText(system)
        for w in widgets:
            w.blockSignals(False)
        self._system_edited_quiet()

    def _system_edited_quiet(self) -> None:
        self.blockSignals(True)
        self._system_edited()
        self.blockSignals(False)
