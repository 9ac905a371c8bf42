"""The Generate form's LoRA section: LoRAs from the library, each with a weight, several at once.

"Add LoRA" lists the library's LoRAs; those made for another base model than the chosen one are
shown disabled with the reason. Each added LoRA is a row (name, weight slider and spin box, remove)
and goes into ``Txt2ImgRequest.loras``. A LoRA named by a reused request that the library does not
have still gets a row, marked missing, so reusing parameters never silently drops one.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from PySide6.QtCore import QEvent, Qt, QUrl, Signal
from PySide6.QtGui import QDesktopServices
from PySide6.QtWidgets import (
    QDoubleSpinBox,
    QFrame,
    QHBoxLayout,
    QLabel,
    QMenu,
    QSlider,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from studio.core.requests import MAX_LORA_WEIGHT
from studio.core.wording import count_of
from studio.library.classify import LYCORIS_FORMATS
from studio.library.families import FAMILIES, lora_fits
from studio.ui.theme import colors
from studio.ui.widgets.basics import muted_label, section_label

if TYPE_CHECKING:
    from studio.library.entry import LibraryEntry

FAMILY_NAMES = {f.key: f.label for f in FAMILIES.values()}
SLIDER_RANGE = 2.0  # the slider covers the usual -2..2; the spin box goes to ±MAX_LORA_WEIGHT
SLIDER_SCALE = 100
DEFAULT_WEIGHT = 1.0
LORA_SUBDIR = "loras"


def compatible(lora_family: str, model_family: str) -> bool:
    """Whether a LoRA made for ``lora_family`` fits a model of ``model_family`` ("" / "unknown":
    not known, so not refused — the engine checks the actual layer shapes; FLUX.1 Kontext and
    Chroma take FLUX.1 LoRAs, Qwen-Image-Edit Qwen-Image's)."""
    return lora_fits(lora_family, model_family)


def family_name(family: str) -> str:
    return FAMILY_NAMES.get(family, "an unknown base")


def network_type(entry: LibraryEntry) -> str:
    """' · LoHa' / ' · LoKr' / … for a LyCORIS file (the library's format "LoRA (LoHa)"), else
    '': a plain LoRA needs no word, a LyCORIS one is worth knowing."""
    fmt = str(getattr(entry, "format", ""))
    inner = fmt[len("LoRA ("):-1] if fmt.startswith("LoRA (") and fmt.endswith(")") else ""
    return f" · {inner}" if inner in LYCORIS_FORMATS else ""


@dataclass
class LoraStatus:
    """How a row's LoRA relates to the library and the chosen model."""

    state: str  # ok | unknown-base | incompatible | missing | checking
    text: str  # the short tag shown on the row
    tooltip: str


class LoraRow(QFrame):
    """One LoRA: its name and status, a weight (slider −2…2, spin box ±10) and a remove button."""

    changed = Signal()
    removeRequested = Signal(object)  # the row

    def __init__(self, name: str, weight: float, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("loraRow")
        self.name = name
        self.status = LoraStatus("checking", "", "")
        self.name_label = QLabel()
        self.name_label.setObjectName("loraName")
        self.name_label.setMinimumWidth(60)
        self.tag = QLabel()
        self.tag.setObjectName("loraTag")
        self.remove_button = QToolButton(text="✕")
        self.remove_button.setObjectName("loraRemove")
        self.remove_button.setProperty("flat", True)
        self.remove_button.setToolTip(f"Remove {name}")
        self.remove_button.setCursor(Qt.CursorShape.PointingHandCursor)
        self.remove_button.clicked.connect(lambda: self.removeRequested.emit(self))
        self.slider = QSlider(Qt.Orientation.Horizontal)
        self.slider.setRange(-round(SLIDER_RANGE * SLIDER_SCALE), round(SLIDER_RANGE * SLIDER_SCALE))
        self.slider.setToolTip("Weight: 1 is the LoRA's full effect, 0 none, below 0 the "
                               "opposite. The box goes up to ±10.")
        self.weight = QDoubleSpinBox()
        self.weight.setRange(-MAX_LORA_WEIGHT, MAX_LORA_WEIGHT)
        self.weight.setSingleStep(0.05)
        self.weight.setDecimals(2)
        self.weight.setFixedWidth(100)  # "-10.00" fits beside the arrows
        self.weight.setToolTip(self.slider.toolTip())
        self.weight.setValue(float(weight))
        self.slider.setValue(round(float(weight) * SLIDER_SCALE))
        self.slider.valueChanged.connect(self._from_slider)
        self.weight.valueChanged.connect(self._from_box)

        top = QHBoxLayout()
        top.setContentsMargins(0, 0, 0, 0)
        top.setSpacing(6)
        top.addWidget(self.name_label, 1)
        top.addWidget(self.tag)
        top.addWidget(self.remove_button)
        bottom = QHBoxLayout()
        bottom.setContentsMargins(0, 0, 0, 0)
        bottom.setSpacing(8)
        bottom.addWidget(self.slider, 1)
        bottom.addWidget(self.weight)
        col = QVBoxLayout(self)
        col.setContentsMargins(10, 6, 6, 8)
        col.setSpacing(2)
        col.addLayout(top)
        col.addLayout(bottom)
        self.set_status(self.status)

    def value(self) -> dict[str, Any]:
        return {"name": self.name, "weight": round(self.weight.value(), 4)}

    def set_status(self, status: LoraStatus) -> None:
        self.status = status
        shown = self.fontMetrics().elidedText(self.name, Qt.TextElideMode.ElideMiddle, 200)
        self.name_label.setText(shown)
        self.name_label.setToolTip(status.tooltip or self.name)
        self.tag.setText(status.text)
        self.tag.setToolTip(status.tooltip)
        self.tag.setVisible(bool(status.text))
        problem = status.state in ("missing", "incompatible")
        if self.property("problem") != problem:
            # The section's style sheet draws a problem row (and its tag) in the error colour.
            self.setProperty("problem", problem)
            self.tag.setProperty("problem", problem)
            for widget in (self, self.tag):
                widget.style().unpolish(widget)
                widget.style().polish(widget)

    def _from_slider(self, v: int) -> None:
        if round(self.weight.value() * SLIDER_SCALE) != v:
            self.weight.setValue(v / SLIDER_SCALE)

    def _from_box(self, v: float) -> None:
        self.slider.blockSignals(True)
        self.slider.setValue(round(v * SLIDER_SCALE))  # clamps beyond ±2: the box says the truth
        self.slider.blockSignals(False)
        self.changed.emit()


class LoraSection(QWidget):
    """The LoRA heading with "Add LoRA", the rows, and a note when there are none."""

    changed = Signal()
    rescanRequested = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._library: list[LibraryEntry] | None = None  # None: not scanned yet
        self._scan_error = ""
        self._family = "unknown"
        self._models_dir: Path | None = None
        self.rows: list[LoraRow] = []

        self.add_button = QToolButton(text="+ Add LoRA")
        self.add_button.setObjectName("addLora")
        self.add_button.setPopupMode(QToolButton.ToolButtonPopupMode.InstantPopup)
        self.add_button.setStyleSheet("QToolButton::menu-indicator { image: none; width: 0; }")
        self.add_button.setToolTip("Add a LoRA from the library: a small add-on that teaches "
                                   "the model a style, a character or a concept")
        self.menu = QMenu(self.add_button)
        self.menu.setToolTipsVisible(True)
        self.menu.aboutToShow.connect(self.rebuild_menu)
        self.add_button.setMenu(self.menu)
        header = QHBoxLayout()
        header.setContentsMargins(0, 0, 0, 0)
        header.addWidget(section_label("LoRA"))
        header.addStretch(1)
        header.addWidget(self.add_button)

        self.rows_box = QVBoxLayout()
        self.rows_box.setContentsMargins(0, 0, 0, 0)
        self.rows_box.setSpacing(6)
        self.note = muted_label(wrap=True)
        self.note.setTextFormat(Qt.TextFormat.RichText)
        col = QVBoxLayout(self)
        col.setContentsMargins(0, 0, 0, 0)
        col.setSpacing(6)
        col.addLayout(header)
        col.addLayout(self.rows_box)
        col.addWidget(self.note)
        self._theme = ""
        self._restyle()
        self._update_note()

    # -- state from outside ------------------------------------------------------------------
    def set_library(self, entries: list[LibraryEntry] | None, error: str = "") -> None:
        """The library's LoRAs (LibraryEntry with kind "lora"); None while a scan runs."""
        if entries is not None:
            self._library = [e for e in entries if getattr(e, "kind", "lora") == "lora"]
            self._scan_error = error
        elif self._library is None:
            self._scan_error = ""
        self._refresh_rows()

    def set_family(self, family: str) -> None:
        """The chosen model's family (sd1 | sd2 | sdxl | unknown): which LoRAs fit it."""
        self._family = family or "unknown"
        self._refresh_rows()

    def set_models_dir(self, folder: Path) -> None:
        self._models_dir = Path(folder)
        self._update_note()

    @property
    def library(self) -> list[LibraryEntry]:
        return list(self._library or [])

    # -- the rows ----------------------------------------------------------------------------
    def loras(self) -> list[dict[str, Any]]:
        """What goes into ``Txt2ImgRequest.loras``, in the order shown."""
        return [row.value() for row in self.rows]

    def set_loras(self, loras: list[dict[str, Any]] | None) -> None:
        """Replace the rows by ``loras`` (from a request); unknown names are kept, marked."""
        for row in list(self.rows):
            self._drop(row)
        for lora in loras or []:
            if isinstance(lora, dict) and str(lora.get("name", "")).strip():
                weight = lora.get("weight", DEFAULT_WEIGHT)
                try:
                    weight = max(-MAX_LORA_WEIGHT, min(MAX_LORA_WEIGHT, float(weight)))
                except (TypeError, ValueError):
                    weight = DEFAULT_WEIGHT
                self._add_row(str(lora["name"]), weight)
        self._refresh_rows()
        self.changed.emit()

    def add(self, name: str, weight: float = DEFAULT_WEIGHT) -> LoraRow:
        """Add a row (or return the one already there for the same LoRA)."""
        for row in self.rows:
            if row.name.lower() == name.lower():
                return row
        row = self._add_row(name, weight)
        self._refresh_rows()
        self.changed.emit()
        return row

    def remove(self, row: LoraRow) -> None:
        self._drop(row)
        self._refresh_rows()
        self.changed.emit()

    def problem(self) -> str:
        """Why a job with these LoRAs cannot work on the chosen model ("" when it can)."""
        for row in self.rows:
            if row.status.state == "incompatible":
                return f"{row.status.tooltip} Remove it or pick a matching model."
        return ""

    # -- the Add LoRA menu -------------------------------------------------------------------
    def request_name(self, entry: LibraryEntry) -> str:
        """How a request names a library LoRA: its name, or its path when two share a name."""
        same = [e for e in self.library if e.name.lower() == entry.name.lower()]
        return str(entry.path) if len(same) > 1 else entry.name

    def choices(self) -> list[tuple[LibraryEntry, bool, str]]:
        """(entry, can be added, note) for every library LoRA: fitting ones first."""
        added = {row.name.lower() for row in self.rows}
        fit, other = [], []
        for e in sorted(self.library, key=lambda e: e.name.lower()):
            family = getattr(e, "family", "")
            if not compatible(family, self._family):
                other.append((e, False, f"for {family_name(family)}"))
            elif self.request_name(e).lower() in added:
                fit.append((e, False, "added"))
            else:
                fit.append((e, True, FAMILY_NAMES.get(family, "base unknown") + network_type(e)))
        return fit + other

    def rebuild_menu(self) -> None:
        menu = self.menu
        menu.clear()
        if self._library is None:
            menu.addAction("Looking for LoRAs…").setEnabled(False)
        elif not self._library:
            menu.addAction("No LoRAs in the library yet").setEnabled(False)
        else:
            model = FAMILY_NAMES.get(self._family)
            shown_other = False
            for entry, enabled, note in self.choices():
                if not enabled and note.startswith("for ") and not shown_other:
                    shown_other = True
                    menu.addSeparator()
                    head = menu.addAction(f"Made for other models than {model}" if model
                                          else "Made for other models")
                    head.setEnabled(False)
                # The text after a tab is drawn right-aligned, like a shortcut: the base model.
                action = menu.addAction(f"{entry.name}\t{note}")
                action.setEnabled(enabled)
                action.setData(str(entry.path))
                if not enabled and note.startswith("for "):
                    action.setToolTip(f"{entry.name} was made for {family_name(entry.family)}; "
                                      f"the chosen model is {model}.")
                else:
                    action.setToolTip(str(entry.path))
                if enabled:
                    action.triggered.connect(
                        lambda _=False, e=entry: self.add(self.request_name(e)))
        menu.addSeparator()
        menu.addAction("Open the LoRA folder", self.open_lora_folder)
        menu.addAction("Look for LoRAs again", self.rescanRequested.emit)

    def lora_folder(self) -> Path | None:
        return self._models_dir / LORA_SUBDIR if self._models_dir is not None else None

    def open_lora_folder(self) -> bool:
        folder = self.lora_folder()
        if folder is None:
            return False
        folder.mkdir(parents=True, exist_ok=True)
        return QDesktopServices.openUrl(QUrl.fromLocalFile(str(folder)))

    # -- internals ---------------------------------------------------------------------------
    def _restyle(self) -> None:
        c = colors()
        self._theme = c.name
        self.setStyleSheet(
            f"#loraRow {{ background: {c.surface}; border: 1px solid {c.border};"
            f" border-radius: 8px; }}"
            f"#loraRow[problem=\"true\"] {{ border-color: {c.failed}; }}"
            f"#loraName {{ font-weight: 600; }}"
            f"#loraTag {{ color: {c.muted}; font-size: 11px; }}"
            f"#loraTag[problem=\"true\"] {{ color: {c.failed}; }}"
            f"#loraRemove {{ color: {c.muted}; padding: 0 6px; }}"
            f"#loraRemove:hover {{ color: {c.text}; }}")

    def changeEvent(self, event) -> None:  # noqa: N802 - Qt override
        super().changeEvent(event)
        # Follow a theme switch; setting the sheet itself sends a StyleChange, hence the check.
        if (event.type() in (QEvent.Type.PaletteChange, QEvent.Type.StyleChange)
                and getattr(self, "_theme", None) not in (None, colors().name)):
            self._restyle()

    def _add_row(self, name: str, weight: float) -> LoraRow:
        row = LoraRow(name, weight)
        row.changed.connect(self.changed)
        row.removeRequested.connect(self.remove)
        self.rows.append(row)
        self.rows_box.addWidget(row)
        row.show()  # now, not on the next event loop pass: the form's height changes at once
        return row

    def _drop(self, row: LoraRow) -> None:
        if row in self.rows:
            self.rows.remove(row)
        self.rows_box.removeWidget(row)
        row.hide()
        row.deleteLater()

    def _find(self, name: str) -> LibraryEntry | None:
        low = name.lower()
        for e in self.library:
            if e.name.lower() == low or str(e.path) == name:
                return e
        return None

    def _status(self, name: str) -> LoraStatus:
        if self._library is None:
            return LoraStatus("checking", "", name)
        entry = self._find(name)
        if entry is None:
            if Path(name).suffix.lower() == ".safetensors" and Path(name).is_file():
                return LoraStatus("unknown-base", "file", name)
            return LoraStatus(
                "missing", "missing",
                f"{name} is not in the library. Put the file in the LoRA folder (or an extra "
                "model folder) and look again, or remove it; a job with it would fail.")
        family = getattr(entry, "family", "")
        if not compatible(family, self._family):
            return LoraStatus(
                "incompatible", f"for {FAMILY_NAMES.get(family, '?')}",
                f"The LoRA {entry.name} was made for {family_name(family)}; the chosen model is "
                f"{family_name(self._family)}.")
        return LoraStatus("ok" if family else "unknown-base",
                          FAMILY_NAMES.get(family, "base unknown") + network_type(entry),
                          str(entry.path))

    def _refresh_rows(self) -> None:
        for row in self.rows:
            row.set_status(self._status(row.name))
        self._update_note()

    def _update_note(self) -> None:
        tags = "Tags like <b>&lt;lora:name:0.8&gt;</b> in the prompt work too."
        if self.rows:
            self.note.setVisible(False)
            return
        self.note.setVisible(True)
        folder = self.lora_folder()
        self.note.setToolTip(str(folder) if folder is not None else "")
        if self._scan_error:
            self.note.setText(f"Could not look for LoRAs: {self._scan_error}")
        elif self._library:
            fit = sum(1 for _e, ok, _n in self.choices() if ok)
            self.note.setText(f"{fit} of {count_of(len(self._library), 'LoRA')} in the library "
                              f"{'fits' if fit == 1 else 'fit'} this model: add one above. {tags}")
        else:
            self.note.setText("No LoRAs yet. Put LoRA files (.safetensors) in the <b>loras</b> "
                              "folder of Studio's models folder, or add an A1111 or ComfyUI "
                              f"folder in Settings. {tags}")
