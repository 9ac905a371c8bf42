"""The right-hand pane: model, system prompt (with presets) and sampling settings.

Models come from :func:`studio.library.chat_models.find_chat_models` (scanned off the GUI
thread) plus remote ``openai:BASE_URL#MODEL`` entries from Settings' ``remote_endpoints``
(each may list its ``models``); :func:`remote_model_specs` is the one place that reads them.
When there are remote models the list is grouped: "On this computer", then one heading per
server. "Servers…" and "Refresh models" under the list ask the panel to manage the servers.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from PySide6.QtCore import QEvent, QObject, Qt, Signal, Slot
from PySide6.QtGui import QColor, QFont, QKeyEvent, QStandardItemModel
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QPlainTextEdit,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from studio.core.config import Settings
from studio.pipelines.chat.endpoints import model_specs
from studio.pipelines.chat.remote import is_remote_spec, parse_model_spec
from studio.ui.theme import colors
from studio.workers.lanes import Calls

if TYPE_CHECKING:
    from studio.core.config import Paths

log = logging.getLogger(__name__)

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
                                     "seed": -1, "complete": False, "probabilities": False}
#: alternatives asked for with each token when "Token probabilities" is on
TOP_ALTERNATIVES = 5


LOCAL_GROUP = "On this computer"
NOT_FOUND = " (not found)"  # after a remembered model the last scan did not find


def remote_model_specs(settings: Settings) -> list[tuple[str, str, str]]:
    """(server name, model id, spec) for every model listed under a configured
    OpenAI-compatible endpoint — what the picker shows under each server's heading."""
    return model_specs(settings.remote_endpoints)


def _section(text: str) -> QLabel:
    label = QLabel(text.upper())
    label.setProperty("section", True)
    return label


class ChatControls(QWidget):
    """Model picker, system prompt and sampling; ``changed`` when the user edits any of them."""

    changed = Signal()
    # list of (label, spec, context_length, group[, sees images, note]), from the scan's thread
    modelsFound = Signal(object)
    serversRequested = Signal()  # "Servers…"
    refreshRequested = Signal()  # "Refresh models": re-query every server's /v1/models

    def __init__(self, settings: Settings, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("ChatControls")
        self.settings = settings
        self._calls = Calls(self)  # model scans
        self.contexts: dict[str, int] = {}
        self.vision: set[str] = set()  # specs of local models that can be shown images
        self.notes: dict[str, str] = {}  # what a model says when picked (a GGUF: how to install)
        self.remote_note = ""
        self._no_models = False
        self.scanning = False  # a model scan is under way
        layout = QVBoxLayout(self)
        layout.setContentsMargins(8, 12, 12, 12)
        layout.setSpacing(8)
        layout.addWidget(_section("Model"))
        self.model = QComboBox()
        self.model.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
        self.model.setMinimumContentsLength(12)
        self.model.setPlaceholderText("Scanning for models…")
        self.model.currentIndexChanged.connect(lambda _i: (self._show_note(),
                                                          self.changed.emit()))
        layout.addWidget(self.model)
        servers = QHBoxLayout()
        servers.setSpacing(6)
        self.servers_button = QPushButton("Servers…")
        self.servers_button.setToolTip("Add or edit OpenAI-compatible servers (vLLM, Ollama, "
                                       "LM Studio, llama.cpp…) whose models you can chat with")
        self.servers_button.clicked.connect(self.serversRequested)
        self.refresh_button = QPushButton("Refresh models")
        self.refresh_button.setToolTip("Ask every server again which models it has")
        self.refresh_button.clicked.connect(self.refreshRequested)
        servers.addWidget(self.servers_button, 1)
        servers.addWidget(self.refresh_button, 1)
        layout.addLayout(servers)
        self.model_note = QLabel("")
        self.model_note.setProperty("muted", True)
        self.model_note.setWordWrap(True)
        layout.addWidget(self.model_note)

        layout.addWidget(_section("Mode"))
        self.complete = QCheckBox("Complete mode")
        self.complete.setToolTip("Continue the text as written, with no chat template and no "
                                 "system prompt — the way to use a base model (GPT-2, the gpt "
                                 "lesson's model). Remembered for this conversation.")
        self.complete.toggled.connect(self._mode_toggled)
        layout.addWidget(self.complete)
        self.probabilities = QCheckBox("Token probabilities")
        self.probabilities.setToolTip(
            f"Keep each reply token's probability and its {TOP_ALTERNATIVES} likeliest "
            "alternatives; a reply's Probabilities button shows them in colour. Off: nothing "
            "is computed.")
        self.probabilities.toggled.connect(lambda _on: self.changed.emit())
        layout.addWidget(self.probabilities)

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
    def scan_models(self, settings: Settings, paths: Paths) -> None:
        """Find chat models on the I/O pool (it reads folders and the HF cache)."""
        self.settings = settings
        self.scanning = True
        self.refresh_button.setEnabled(bool(settings.remote_endpoints))

        def work() -> list:
            from studio.library.chat_models import find_chat_models

            try:
                found = [(e.name, e.spec, e.context_length, "", e.vision, e.note)
                         for e in find_chat_models(settings, paths)]
            except Exception:  # noqa: BLE001 - a scan failure leaves the list empty
                log.exception("the chat model scan failed")
                found = []
            return found + [(model, spec, 0, server)
                            for server, model, spec in remote_model_specs(settings)]

        self._calls.run(work, self.modelsFound.emit)

    def shutdown(self) -> None:
        """Wait for a model scan in flight."""
        self._calls.wait(10_000)

    @Slot(object)
    def _fill_models(self, found: list) -> None:
        wanted = self.model_spec() or self.settings.last_chat_model
        self.model.blockSignals(True)
        self.model.clear()
        grouped = any(row[3] for row in found)
        heading = None
        self.vision = {row[1] for row in found if len(row) > 4 and row[4]}
        self.notes = {row[1]: row[5] for row in found if len(row) > 5 and row[5]}
        for label, spec, ctx, group, *_sees in found:
            if grouped and (group or LOCAL_GROUP) != heading:
                heading = group or LOCAL_GROUP
                self._add_heading(heading)
            self.model.addItem(label, spec)
            self.model.setItemData(self.model.count() - 1, spec, Qt.ItemDataRole.ToolTipRole)
            self.contexts[spec] = ctx
        self.model.setPlaceholderText("No chat models found")
        self.scanning = False
        self.select_model(wanted)
        self.model.blockSignals(False)
        self._no_models = not found
        self._show_note()
        self.changed.emit()

    @property
    def no_models(self) -> bool:
        """The last scan found no model at all (none here, no server's)."""
        return self._no_models

    def set_remote_note(self, text: str) -> None:
        """What the last "Refresh models" said (errors, one line per server); "" clears it."""
        self.remote_note = text
        self._show_note()

    def _show_note(self) -> None:
        lines = []
        if self._no_models:
            lines.append("Put a chat model folder (Qwen2.5, SmolLM2, Llama…) into the models "
                         "folder, download one with 'hf download', or add a server with "
                         "Servers….")
        spec = self.model_spec()
        where = next((server for server, _m, s in remote_model_specs(self.settings)
                      if s == spec), "")
        if where:  # the closed list shows only the model id: say which server runs it
            lines.append(f"Runs on {where} · {urlsplit(parse_model_spec(spec)[0]).netloc}")
        if self.notes.get(spec):
            lines.append(self.notes[spec])
        if self.remote_note:
            lines.append(self.remote_note)
        self.model_note.setText("\n".join(lines))

    def _add_heading(self, text: str) -> None:
        """A group heading in the model list: not selectable, no spec."""
        if self.model.count():
            self.model.insertSeparator(self.model.count())
        self.model.addItem(text.upper())
        item = self.model.model()
        assert isinstance(item, QStandardItemModel)
        row = item.item(self.model.count() - 1)
        row.setFlags(Qt.ItemFlag.NoItemFlags)  # headings are labels, not choices
        font = QFont(row.font())
        font.setBold(True)
        font.setPointSizeF(max(6.0, font.pointSizeF() * 0.85))
        row.setFont(font)
        row.setForeground(QColor(colors().muted))

    def select_model(self, spec: str) -> None:
        i = self.model.findData(spec) if spec else -1
        if i < 0 and spec:
            label = spec.rsplit("/", 1)[-1] or spec
            if not self.scanning:  # remembered (a conversation's, the last one), not found now
                label += NOT_FOUND
            self.model.addItem(label, spec)
            self.model.setItemData(self.model.count() - 1, f"{spec}\nNot found by the last look "
                                   "for models: it may have been moved or deleted.",
                                   Qt.ItemDataRole.ToolTipRole)
            i = self.model.count() - 1
        if i < 0:  # the first real model, never a heading
            i = next((r for r in range(self.model.count()) if self.model.itemData(r)), -1)
        self.model.setCurrentIndex(i)

    def model_specs(self) -> list[str]:
        """Every spec the picker offers, in order (headings excluded)."""
        return [str(self.model.itemData(r)) for r in range(self.model.count())
                if self.model.itemData(r)]

    def model_spec(self) -> str:
        return str(self.model.currentData() or "")

    def sees_images(self, spec: str = "") -> bool:
        """Whether the model (the chosen one by default) can be shown images: a local
        vision-language model, or a server's model (the server decides; it says if not)."""
        spec = spec or self.model_spec()
        return spec in self.vision or is_remote_spec(spec)

    def model_label(self) -> str:
        return self.model.currentText().removesuffix(NOT_FOUND) or "Assistant"

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

    def _mode_toggled(self, complete: bool) -> None:
        self._show_mode(complete)
        self.changed.emit()

    def _show_mode(self, complete: bool) -> None:
        """Complete mode has no system prompt: its editors are disabled, saying why."""
        for w in (self.preset, self.system):
            w.setEnabled(not complete)
            w.setToolTip("Complete mode continues the text as written: no system prompt is "
                         "sent." if complete else "")

    # -- values ------------------------------------------------------------------------------
    def sampling(self) -> dict[str, Any]:
        """The conversation's settings as stored with it: sampling, and the two mode toggles."""
        return {"temperature": round(self.temperature.value(), 3), "top_p": self.top_p.value(),
                "top_k": self.top_k.value(), "repetition_penalty": self.repetition.value(),
                "max_new_tokens": self.max_new.value(), "seed": self.seed.value(),
                "complete": self.complete.isChecked(),
                "probabilities": self.probabilities.isChecked()}

    def apply(self, sampling: dict[str, Any], system: str | None = None) -> None:
        """Show a conversation's settings without emitting ``changed``."""
        values = {**SAMPLING_DEFAULTS, **(sampling or {})}
        widgets = [self.temperature, self.top_p, self.top_k, self.repetition, self.max_new,
                   self.seed, self.system, self.complete, self.probabilities]
        for w in widgets:
            w.blockSignals(True)
        self.temperature.setValue(float(values["temperature"]))
        self.top_p.setValue(float(values["top_p"]))
        self.top_k.setValue(int(values["top_k"]))
        self.repetition.setValue(float(values["repetition_penalty"]))
        self.max_new.setValue(int(values["max_new_tokens"]))
        self.seed.setValue(int(values["seed"] if values["seed"] is not None else -1))
        self.complete.setChecked(bool(values["complete"]))
        self.probabilities.setChecked(bool(values["probabilities"]))
        self._show_mode(bool(values["complete"]))
        if system is not None:
            self.system.setPlainText(system)
        for w in widgets:
            w.blockSignals(False)
        self._system_edited_quiet()

    def _system_edited_quiet(self) -> None:
        self.blockSignals(True)
        self._system_edited()
        self.blockSignals(False)


class EnterSends(QObject):
    """Enter sends, Shift+Enter starts a new line."""

    def __init__(self, send: Callable[[], None]) -> None:
        super().__init__()
        self._send = send

    def eventFilter(self, obj: QObject, event: QEvent) -> bool:
        if event.type() == QEvent.Type.KeyPress and isinstance(event, QKeyEvent) \
                and event.key() in (Qt.Key.Key_Return, Qt.Key.Key_Enter) \
                and not event.modifiers() & Qt.KeyboardModifier.ShiftModifier:
            self._send()
            return True
        return False
