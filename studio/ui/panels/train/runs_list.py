"""Saved runs of the current lesson: resume one, overlay their loss curves, export them."""

from __future__ import annotations

import time
from pathlib import Path

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QGridLayout,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from studio.core.wording import count_of
from studio.pipelines.train.runs import RunInfo, list_runs

PATH_ROLE = Qt.ItemDataRole.UserRole


class RunsList(QWidget):
    """A checkable list: a checked run's loss curve is overlaid on the loss plot."""

    resumeRequested = Signal(object)  # Path
    overlayToggled = Signal(object, bool)  # Path, shown
    exportCsvRequested = Signal(object)  # Path
    exportPlotRequested = Signal()
    exportGifRequested = Signal()
    exportModelRequested = Signal(object)  # Path

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._lesson = ""
        self.list = QListWidget()
        self.list.setObjectName("runsList")
        self.list.setToolTip("Tick a run to overlay its loss curve")
        # Two short lines an item, wrapped if need be: the notes column is narrow on a laptop
        # and one long line ran out of it.
        self.list.setWordWrap(True)
        self.list.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.empty = QLabel("No saved runs yet. Press Play: every run is saved as it goes.")
        self.empty.setWordWrap(True)
        self.empty.setProperty("muted", True)
        self.resume_button = QPushButton("Resume")
        self.resume_button.setObjectName("resumeRun")
        self.resume_button.setToolTip("Continue the selected run where it stopped")
        self.csv_button = QPushButton("Metrics CSV…")
        self.csv_button.setObjectName("exportCsv")
        self.png_button = QPushButton("Plots PNG…")
        self.png_button.setObjectName("exportPng")
        self.gif_button = QPushButton("Evolution GIF…")
        self.gif_button.setObjectName("exportGif")
        self.gif_button.setToolTip("An animated GIF of how the picture changed during training")
        self.model_button = QPushButton("Export model…")
        self.model_button.setObjectName("exportModel")
        self.model_button.setToolTip("Put the selected run's model into the library (as it was "
                                     "at its last save: Pause saves), to use in another "
                                     "workspace")
        self.model_button.hide()  # only lessons whose model is used elsewhere
        self.note = QLabel("")
        self.note.setObjectName("runsNote")
        self.note.setWordWrap(True)
        self.note.setProperty("muted", True)
        self.note.hide()
        grid = QGridLayout()
        grid.setSpacing(6)
        grid.addWidget(self.resume_button, 0, 0)
        grid.addWidget(self.csv_button, 0, 1)
        grid.addWidget(self.png_button, 1, 0)
        grid.addWidget(self.gif_button, 1, 1)
        grid.addWidget(self.model_button, 2, 0, 1, 2)
        col = QVBoxLayout(self)
        col.setContentsMargins(0, 0, 0, 0)
        col.setSpacing(8)
        col.addWidget(self.empty)
        col.addWidget(self.list, 1)
        col.addLayout(grid)
        col.addWidget(self.note)

        self.list.itemChanged.connect(self._on_item_changed)
        self.list.currentItemChanged.connect(lambda *_: self._update_buttons())
        self.resume_button.clicked.connect(
            lambda: self.selected() and self.resumeRequested.emit(self.selected()))
        self.csv_button.clicked.connect(
            lambda: self.selected() and self.exportCsvRequested.emit(self.selected()))
        self.png_button.clicked.connect(self.exportPlotRequested)
        self.gif_button.clicked.connect(self.exportGifRequested)
        self.model_button.clicked.connect(
            lambda: self.selected() and self.exportModelRequested.emit(self.selected()))
        self._update_buttons()

    def refresh(self, root: Path, lesson: str, current: Path | None = None) -> None:
        """List ``lesson``'s runs under ``root``, keeping ticks; ``current`` is marked."""
        from studio.pipelines.train.export import EXPORTS

        self.model_button.setVisible(lesson in EXPORTS)
        if lesson != self._lesson:
            self.show_note("")
        self._lesson = lesson
        if lesson in EXPORTS:
            self.model_button.setText(f"Export model to {EXPORTS[lesson][1]}…")
        ticked = set(self.ticked())
        selected = self.selected()
        self.list.blockSignals(True)
        self.list.clear()
        for info in list_runs(root, lesson):
            item = QListWidgetItem(self._label(info, info.path == current))
            item.setData(PATH_ROLE, str(info.path))
            item.setFlags(item.flags() | Qt.ItemFlag.ItemIsUserCheckable)
            item.setCheckState(Qt.CheckState.Checked if info.path in ticked
                               else Qt.CheckState.Unchecked)
            item.setToolTip(f"{self._label(info, info.path == current)}\n{info.path}")
            self.list.addItem(item)
            if info.path == selected:
                self.list.setCurrentItem(item)
        self.list.blockSignals(False)
        self.empty.setVisible(self.list.count() == 0)
        self._update_buttons()

    @staticmethod
    def _label(info: RunInfo, current: bool) -> str:
        when = time.strftime("%d %b %H:%M", time.localtime(info.created))
        mark = "  ● now" if current else ""
        return f"{when}{mark}\nseed {info.seed}  ·  {count_of(info.last_step, 'step')}"

    def show_note(self, text: str) -> None:
        """A sentence under the buttons (what an export did), until the lesson changes."""
        self.note.setText(text)
        self.note.setToolTip(text)
        self.note.setVisible(bool(text))

    def selected(self) -> Path | None:
        item = self.list.currentItem()
        return Path(item.data(PATH_ROLE)) if item is not None else None

    def ticked(self) -> list[Path]:
        return [Path(self.list.item(i).data(PATH_ROLE)) for i in range(self.list.count())
                if self.list.item(i).checkState() == Qt.CheckState.Checked]

    def _on_item_changed(self, item: QListWidgetItem) -> None:
        self.overlayToggled.emit(Path(item.data(PATH_ROLE)),
                                 item.checkState() == Qt.CheckState.Checked)

    def _update_buttons(self) -> None:
        has = self.selected() is not None
        self.resume_button.setEnabled(has)
        self.csv_button.setEnabled(has)
        self.model_button.setEnabled(has)
