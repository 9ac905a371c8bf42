"""The text-to-image model picker: a combo filled by a scan that runs off the GUI thread.

Lists what :func:`studio.library.models.find_txt2img_models` finds (the Studio models folder, the
Hugging Face cache, extra folders, files added one by one), shows each model's family and source as
secondary text, remembers the choice in ``settings.last_model`` and lets the user add a diffusers
folder or a single ``.safetensors`` file.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, TypeAlias

from PySide6.QtCore import QModelIndex, QPersistentModelIndex, QRect, QSize, Qt, Signal
from PySide6.QtGui import QColor, QPainter
from PySide6.QtWidgets import (
    QComboBox,
    QFileDialog,
    QHBoxLayout,
    QLabel,
    QMenu,
    QStyle,
    QStyledItemDelegate,
    QStyleOptionViewItem,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from studio.library.families import FAMILIES
from studio.ui.context import AppContext
from studio.workers.lanes import Calls

if TYPE_CHECKING:
    from studio.core.config import Paths, Settings
    from studio.library.models import ModelEntry

FAMILY_LABELS = {**{f.key: f.label for f in FAMILIES.values()}, "gan": "GAN (trained in Studio)",
                 "unknown": "Unknown type"}
SOURCE_LABELS = {"studio": "Studio library", "hf-cache": "HF cache", "extra": "Extra folder",
                 "file": "Added"}
EntryRole = Qt.ItemDataRole.UserRole + 1
SecondaryRole = Qt.ItemDataRole.UserRole + 2

#: what the picker lists: the scan's entries, and models it did not list (reused parameters)
PickedModel: TypeAlias = "ModelEntry | LooseModel"
Scanner: TypeAlias = "Callable[[Settings, Paths], list[ModelEntry]]"
#: why an entry cannot be used where the picker is ("" when it can): greyed out with this reason
Usability: TypeAlias = "Callable[[PickedModel], str]"


@dataclass
class LooseModel:
    """A model the scan did not list (e.g. from reused parameters); shaped like a ModelEntry."""

    name: str
    path: str
    source: str = "file"
    format: str = ""
    family: str = "unknown"
    repo_id: str | None = None


def default_scanner() -> Scanner:
    from studio.library.models import find_txt2img_models

    return find_txt2img_models


def secondary_text(entry: PickedModel) -> str:
    family = FAMILY_LABELS.get(getattr(entry, "family", "unknown"), "Unknown type")
    if getattr(entry, "format", "") == "split":  # ComfyUI's separate files (issue 15)
        from studio.library.all_in_one import is_all_in_one

        family += " · all-in-one" if is_all_in_one(entry) else " · split files"
        family += " · parts missing" if getattr(entry, "needs", "") else ""
    source = SOURCE_LABELS.get(getattr(entry, "source", ""), getattr(entry, "source", ""))
    return f"{family} · {source}" if source else family


def entry_keys(entry: PickedModel) -> set[str]:
    """Every string a request's ``model`` field may hold for this entry."""
    keys = {str(entry.path)}
    if getattr(entry, "repo_id", None):
        keys.add(str(entry.repo_id))
    return keys


class _TwoLineDelegate(QStyledItemDelegate):
    """Popup rows: the model's name, and its family · source right-aligned and dimmer."""

    def paint(self, painter: QPainter, option: QStyleOptionViewItem,
              index: QModelIndex | QPersistentModelIndex) -> None:
        opt = QStyleOptionViewItem(option)
        self.initStyleOption(opt, index)
        secondary = index.data(SecondaryRole) or ""
        opt.text = ""
        style = opt.widget.style() if opt.widget else None
        if style is not None:
            style.drawControl(QStyle.ControlElement.CE_ItemViewItem, opt, painter, opt.widget)
        painter.save()
        selected = bool(option.state & QStyle.StateFlag.State_Selected)
        text_color = option.palette.highlightedText() if selected else option.palette.text()
        if not option.state & QStyle.StateFlag.State_Enabled:  # greyed: see set_usability
            text_color = option.palette.placeholderText()
        rect = option.rect.adjusted(10, 0, -10, 0)
        dim = QColor(text_color.color())
        dim.setAlphaF(0.6)
        painter.setPen(dim)
        sec_width = painter.fontMetrics().horizontalAdvance(secondary) + 8
        painter.drawText(rect, Qt.AlignmentFlag.AlignVCenter | Qt.AlignmentFlag.AlignRight,
                         secondary)
        painter.setPen(text_color.color())
        name_rect = QRect(rect.left(), rect.top(), rect.width() - sec_width, rect.height())
        name = painter.fontMetrics().elidedText(index.data() or "", Qt.TextElideMode.ElideMiddle,
                                                name_rect.width())
        painter.drawText(name_rect, Qt.AlignmentFlag.AlignVCenter | Qt.AlignmentFlag.AlignLeft,
                         name)
        painter.restore()

    def sizeHint(self, option: QStyleOptionViewItem,  # noqa: N802
                 index: QModelIndex | QPersistentModelIndex) -> QSize:
        # Room for the whole name, a gap and the secondary text: the popup is made this wide
        # (studio.ui.widgets.input_policy), so no name is cut.
        hint = super().sizeHint(option, index)
        secondary = option.fontMetrics.horizontalAdvance(index.data(SecondaryRole) or "")
        return QSize(hint.width() + secondary + 40, max(hint.height(), 30))


class ModelPicker(QWidget):
    """Choose the text-to-image model; ``modelChanged(entry or None)`` on every change."""

    modelChanged = Signal(object)
    #: A scan finished: the number of models found, and an error text ("" if it worked).
    scanFinished = Signal(int, str)

    def __init__(self, ctx: AppContext, parent: QWidget | None = None,
                 scanner: Scanner | None = None) -> None:
        super().__init__(parent)
        self._ctx = ctx
        self._calls = Calls(self)
        self._scanner = scanner
        self._scanning = False
        self._want: str | None = None  # the model to select once the scan is done
        self._usability: Usability | None = None
        self.scan_error = ""

        self.combo = QComboBox()
        self.combo.setItemDelegate(_TwoLineDelegate(self.combo))
        self.combo.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
        self.combo.setMinimumContentsLength(12)
        self.combo.setPlaceholderText("Looking for models…")
        self.combo.currentIndexChanged.connect(self._index_changed)
        self.refresh_button = QToolButton(text="↻")
        self.refresh_button.setToolTip("Look for models again")
        self.refresh_button.clicked.connect(self.refresh)
        self.add_button = QToolButton(text="Add model…")
        self.add_button.setPopupMode(QToolButton.ToolButtonPopupMode.InstantPopup)
        menu = QMenu(self.add_button)
        menu.addAction("Diffusers folder…", self.add_folder_dialog)
        menu.addAction("Single .safetensors file…", self.add_file_dialog)
        self.add_button.setMenu(menu)
        self.add_button.setStyleSheet("QToolButton::menu-indicator { image: none; width: 0; }")
        self.detail = QLabel()
        self.detail.setProperty("muted", True)

        col = QVBoxLayout(self)
        col.setContentsMargins(0, 0, 0, 0)
        col.setSpacing(4)
        row = QHBoxLayout()
        row.setSpacing(6)
        row.addWidget(self.combo, 1)
        row.addWidget(self.refresh_button)
        row.addWidget(self.add_button)
        col.addLayout(row)
        col.addWidget(self.detail)

    # -- public API --------------------------------------------------------------------------
    @property
    def scanning(self) -> bool:
        return self._scanning

    def entries(self) -> list[PickedModel]:
        return [self.combo.itemData(i, EntryRole) for i in range(self.combo.count())]

    def current(self) -> PickedModel | None:
        return self.combo.currentData(EntryRole)

    def current_model(self) -> str:
        """The value for ``Txt2ImgRequest.model`` ("" when nothing is chosen)."""
        entry = self.current()
        return str(entry.path) if entry is not None else ""

    def unusable_reason(self, entry: PickedModel | None) -> str:
        """Why ``entry`` cannot be used here ("" when it can; see :meth:`set_usability`)."""
        return self._usability(entry) if self._usability is not None and entry is not None \
            else ""

    def set_usability(self, usability: Usability | None) -> None:
        """Grey out the models ``usability`` gives a reason for (the reason is their tooltip).

        The chosen model moves to the first usable one when it becomes unusable; when none is
        usable the choice stays and the line under the combo says why.
        """
        self._usability = usability
        self._apply_usability()
        self._prefer_usable()

    def _prefer_usable(self) -> None:
        entry = self.current()
        if entry is not None and self.unusable_reason(entry):
            usable = next((i for i in range(self.combo.count())
                           if not self.unusable_reason(self.combo.itemData(i, EntryRole))), None)
            if usable is not None:
                self.combo.setCurrentIndex(usable)  # → _index_changed
                return
        self._index_changed()

    def shutdown(self) -> None:
        """Wait for a model scan in flight."""
        self._calls.wait(10_000)

    def refresh(self) -> None:
        """Scan for models off the GUI thread; the combo fills when the scan is done."""
        if self._scanning:
            return
        self._scanning = True
        self.refresh_button.setEnabled(False)
        self.detail.setText("Looking for models…")
        settings, paths = self._ctx.settings, self._ctx.paths
        scanner = self._scanner

        def scan() -> list[ModelEntry]:
            return list((scanner or default_scanner())(settings, paths))

        self._calls.run(scan, self._scan_done, self._scan_failed)

    def select_model(self, model: str, add_if_missing: bool = True) -> bool:
        """Select the entry whose path or repo id is ``model``; add it if it is not listed."""
        if not model:
            return False
        for i in range(self.combo.count()):
            if model in entry_keys(self.combo.itemData(i, EntryRole)):
                self.combo.setCurrentIndex(i)
                return True
        if self._scanning:
            self._want = model  # it may be among what the running scan finds
            return False
        if not add_if_missing:
            return False
        self._add_entry(LooseModel(name=Path(model).name or model, path=model))
        self.combo.setCurrentIndex(self.combo.count() - 1)
        return True

    def add_model_path(self, path: str | Path) -> None:
        """Remember a model file or folder in settings, then rescan and select it."""
        path = str(Path(path).expanduser())
        settings = self._ctx.settings
        added = list(settings.added_models)
        if path not in added:
            added.append(path)
        self._ctx.update_settings(dataclasses.replace(settings, added_models=added,
                                                      last_model=path))
        self._want = path
        if self._scanning:
            return
        self.refresh()

    def add_folder_dialog(self) -> None:
        folder = QFileDialog.getExistingDirectory(
            self, "Choose a diffusers model folder (it holds model_index.json)",
            str(self._ctx.paths.models_dir))
        if folder:
            self.add_model_path(folder)

    def add_file_dialog(self) -> None:
        file, _ = QFileDialog.getOpenFileName(
            self, "Choose a Stable Diffusion checkpoint", str(self._ctx.paths.models_dir),
            "Safetensors checkpoints (*.safetensors)")
        if file:
            self.add_model_path(file)

    # -- internals ---------------------------------------------------------------------------
    def _add_entry(self, entry: PickedModel) -> None:
        self.combo.addItem(str(entry.name))
        i = self.combo.count() - 1
        self.combo.setItemData(i, entry, EntryRole)
        self.combo.setItemData(i, secondary_text(entry), SecondaryRole)
        self._apply_usability(i)  # and the tooltip: the path, what it needs, why it is greyed

    def _apply_usability(self, only: int | None = None) -> None:
        model = self.combo.model()
        rows = range(self.combo.count()) if only is None else (only,)
        for i in rows:
            entry = self.combo.itemData(i, EntryRole)
            reason = self.unusable_reason(entry)
            item = model.item(i) if hasattr(model, "item") else None
            if item is not None:
                item.setEnabled(not reason)
            needs = getattr(entry, "needs", "")
            tip = f"{entry.path}\n{needs}" if needs else str(entry.path)
            self.combo.setItemData(i, f"{reason}\n{tip}" if reason else tip,
                                   Qt.ItemDataRole.ToolTipRole)

    def _scan_done(self, entries: list[ModelEntry]) -> None:
        self._finish_scan(entries, "")

    def _scan_failed(self, message: str) -> None:
        self._finish_scan([], message)

    def _finish_scan(self, entries: list[ModelEntry], error: str) -> None:
        self._scanning = False
        self.scan_error = error
        self.refresh_button.setEnabled(True)
        want, self._want = self._want, None
        keep = self.current_model() or self._ctx.settings.last_model
        self.combo.blockSignals(True)
        self.combo.clear()
        for entry in entries:
            self._add_entry(entry)
        self.combo.setPlaceholderText("No models found" if not entries else "Choose a model")
        self.combo.setCurrentIndex(-1)
        self.combo.blockSignals(False)
        # A model asked for explicitly (added, reused) is selected even if the scan missed it;
        # the last-used one only if it still exists.
        if want:
            self.select_model(want, add_if_missing=True)
        elif not (keep and self.select_model(keep, add_if_missing=False)) and entries:
            self.combo.setCurrentIndex(0)
        self._prefer_usable()
        if error:
            self.detail.setText(f"Could not look for models: {error}")
        self.scanFinished.emit(len(entries), error)

    def _index_changed(self, *_: object) -> None:
        entry = self.current()
        reason = self.unusable_reason(entry)
        self.detail.setText(reason or (secondary_text(entry) if entry is not None else ""))
        self.detail.setWordWrap(bool(reason))
        self.detail.setToolTip(str(entry.path) if entry is not None else "")
        if entry is not None and self._ctx.settings.last_model != str(entry.path) \
                and not self._scanning:
            self._ctx.update_settings(dataclasses.replace(self._ctx.settings,
                                                          last_model=str(entry.path)))
        self.modelChanged.emit(entry)
