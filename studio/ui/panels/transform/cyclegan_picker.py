"""Choosing a CycleGAN model: the ones on disk, and the released ones to download.

The combo lists installed generators (found off the GUI thread by key layout), then the catalog's
models not yet installed, marked "download" — each under the one name the library, the results'
metadata and the Gallery use too (the catalog's title, "Photo → Monet", is shown as its
description). Picking one of those shows its description and a Download button; the download runs on the panel's I/O pool (never the GPU worker) with a progress
bar, can be cancelled and resumed, and ends with the file's sha256 on screen and the model selected.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from PySide6.QtCore import QObject, QRunnable, Qt, QThreadPool, Signal, Slot
from PySide6.QtWidgets import (
    QComboBox,
    QHBoxLayout,
    QLabel,
    QProgressBar,
    QPushButton,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from studio.core.jobs import CancelToken, JobCancelled, describe_error
from studio.ui.context import AppContext
from studio.workers.background import run_in_background

log = logging.getLogger(__name__)


class _DownloadSignals(QObject):
    progress = Signal(int, int)
    done = Signal(object)  # DownloadResult
    failed = Signal(str)


class _Download(QRunnable):
    def __init__(self, url: str, target: Path, sha256: str, signals: _DownloadSignals,
                 cancel: CancelToken) -> None:
        super().__init__()
        self.url, self.target, self.sha256 = url, target, sha256
        self.signals, self.cancel = signals, cancel

    def run(self) -> None:  # pool thread
        from studio.library.download import download_file

        try:
            result = download_file(self.url, self.target, expected_sha256=self.sha256,
                                   progress=lambda d, t: self.signals.progress.emit(d, t),
                                   cancel=self.cancel)
        except JobCancelled:
            self.signals.failed.emit("Download paused — start it again to resume.")
        except Exception as exc:  # noqa: BLE001 - every failure becomes a message (rule 8)
            self.signals.failed.emit(describe_error(exc))
        else:
            self.signals.done.emit(result)


class CycleGANPicker(QWidget):
    """``modelChanged(CycleGANModel or None)`` when an installed model is picked."""

    modelChanged = Signal(object)
    scanFinished = Signal(int)
    downloadFinished = Signal(object)  # DownloadResult

    def __init__(self, ctx: AppContext, pool: QThreadPool, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._ctx = ctx
        self._pool = pool
        self._cancel: CancelToken | None = None
        self._signals: _DownloadSignals | None = None
        self._want: str = ""
        self._again = False
        self._titles: dict[str, str] = {}  # catalog name → title, for the description line
        self.scanning = False

        self.combo = QComboBox()
        self.combo.setMinimumContentsLength(10)
        self.combo.setSizeAdjustPolicy(
            QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
        self.combo.setPlaceholderText("Looking for models…")
        self.combo.currentIndexChanged.connect(self._index_changed)
        self.refresh_button = QToolButton(text="↻")
        self.refresh_button.setToolTip("Look for CycleGAN models again")
        self.refresh_button.clicked.connect(self.refresh)
        self.detail = QLabel()
        self.detail.setWordWrap(True)
        self.detail.setProperty("muted", True)
        self.download_button = QPushButton("Download")
        self.download_button.clicked.connect(self.toggle_download)
        self.bar = QProgressBar()
        self.bar.setFixedHeight(6)
        self.bar.setTextVisible(False)
        self.bar.hide()
        self.sha_label = QLabel()
        self.sha_label.setWordWrap(True)
        self.sha_label.setProperty("muted", True)
        self.sha_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.sha_label.hide()

        col = QVBoxLayout(self)
        col.setContentsMargins(0, 0, 0, 0)
        col.setSpacing(4)
        row = QHBoxLayout()
        row.addWidget(self.combo, 1)
        row.addWidget(self.refresh_button)
        col.addLayout(row)
        col.addWidget(self.detail)
        dl = QHBoxLayout()
        dl.addWidget(self.download_button)
        dl.addWidget(self.bar, 1)
        col.addLayout(dl)
        col.addWidget(self.sha_label)
        self._show_download(False)

    # -- public API --------------------------------------------------------------------------
    def current(self) -> Any:
        """The picked installed model (CycleGANModel), or None (nothing, or a catalog entry)."""
        kind, item = self.combo.currentData() or (None, None)
        return item if kind == "model" else None

    def current_catalog_entry(self) -> Any:
        kind, item = self.combo.currentData() or (None, None)
        return item if kind == "catalog" else None

    def models(self) -> list[Any]:
        out = []
        for i in range(self.combo.count()):
            kind, item = self.combo.itemData(i) or (None, None)
            if kind == "model":
                out.append(item)
        return out

    def refresh(self, select: str = "") -> None:
        if select:
            self._want = select
        if self.scanning:
            self._again = True  # what is on disk may have changed since that scan started
            return
        self._again = False
        self.scanning = True
        self.refresh_button.setEnabled(False)
        settings, paths = self._ctx.settings, self._ctx.paths

        def scan() -> tuple[list, list]:
            from studio.library.cyclegan_models import find_cyclegan_models, load_catalog

            try:
                catalog = load_catalog()
            except (OSError, ValueError, TypeError) as exc:  # the list still shows what is here
                log.warning("cannot read the CycleGAN catalog: %s", exc)
                catalog = []
            return find_cyclegan_models(settings, paths), catalog

        run_in_background(self._pool, scan, self._scan_done, self._scan_failed, owner=self)

    def select_path(self, path: str) -> bool:
        for i in range(self.combo.count()):
            kind, item = self.combo.itemData(i) or (None, None)
            if kind == "model" and (str(item.path) == path or
                                    path in {str(p) for p in item.directions.values()}):
                self.combo.setCurrentIndex(i)
                return True
        return False

    @Slot()
    def toggle_download(self) -> None:
        if self._cancel is not None:
            self._cancel.cancel()
            return
        entry = self.current_catalog_entry()
        if entry is None:
            return
        self._cancel = CancelToken()
        self._signals = _DownloadSignals(self)
        self._signals.progress.connect(self._on_progress)
        self._signals.done.connect(self._on_done)
        self._signals.failed.connect(self._on_failed)
        self.download_button.setText("Cancel")
        self.bar.setRange(0, 0)
        self.bar.show()
        self.sha_label.hide()
        self.detail.setText(f"Downloading {entry.title} from {entry.url}…")
        target = entry.target(self._ctx.paths)
        self._pool.start(_Download(entry.url, target, entry.sha256, self._signals, self._cancel))

    def cancel_download(self) -> None:
        if self._cancel is not None:
            self._cancel.cancel()

    # -- internals ---------------------------------------------------------------------------
    def _scan_done(self, found: tuple[list, list]) -> None:
        models, catalog = found
        self.scanning = False
        self.refresh_button.setEnabled(True)
        if self._again:
            self.refresh()
            return
        previous = self.current()
        want = self._want or (str(previous.path) if previous else "")
        self._want = ""
        self.combo.blockSignals(True)
        self.combo.clear()
        installed = {m.name for m in models}
        self._titles = {e.name: e.title for e in catalog}
        for m in models:
            arrows = " ⇄" if len(m.directions) == 2 else ""
            self.combo.addItem(f"{m.name}{arrows}", ("model", m))
            if m.name in self._titles:
                self.combo.setItemData(self.combo.count() - 1, self._titles[m.name],
                                       Qt.ItemDataRole.ToolTipRole)
        missing = [e for e in catalog if e.name not in installed]
        if missing:
            self.combo.insertSeparator(self.combo.count())
            for e in missing:
                # The name the download will have in the library, not a second one.
                self.combo.addItem(f"{e.name}  ·  download", ("catalog", e))
                self.combo.setItemData(self.combo.count() - 1, e.title,
                                       Qt.ItemDataRole.ToolTipRole)
        self.combo.blockSignals(False)
        if not (want and self.select_path(want)):
            self.combo.setCurrentIndex(0 if self.combo.count() else -1)
        self._index_changed()
        self.scanFinished.emit(len(models))

    def _scan_failed(self, message: str) -> None:
        self.scanning = False
        self._again = False
        self.refresh_button.setEnabled(True)
        self.detail.setText(f"Could not look for models: {message}")

    def _index_changed(self, *_: Any) -> None:
        model, entry = self.current(), self.current_catalog_entry()
        if model is not None:
            files = ", ".join(f"{d}: {p.name}" for d, p in model.directions.items())
            where = model.path.parent if len(model.directions) == 1 else model.path
            title = self._titles.get(model.name)
            self.detail.setText((f"{title} · " if title else "") + f"{files} · in {where.name}/")
            self.detail.setToolTip(str(where))
            self._show_download(False)
        elif entry is not None:
            size = f" · about {entry.size_mb} MB" if entry.size_mb else ""
            self.detail.setText(f"{entry.title}: {entry.description}{size}")
            self._show_download(True)
        else:
            self.detail.setText("No CycleGAN models yet — pick one from the list to download it.")
            self._show_download(False)
        self.modelChanged.emit(model)

    def _show_download(self, visible: bool) -> None:
        self.download_button.setVisible(visible or self._cancel is not None)

    @Slot(int, int)
    def _on_progress(self, done: int, total: int) -> None:
        if total:
            self.bar.setRange(0, 1000)
            self.bar.setValue(int(1000 * done / total))
            self.detail.setText(f"Downloading… {done / 2**20:.1f} of {total / 2**20:.1f} MB")
        else:
            self.detail.setText(f"Downloading… {done / 2**20:.1f} MB")

    @Slot(object)
    def _on_done(self, result: Any) -> None:
        self._end_download()
        self.sha_label.setText(f"sha256 {result.sha256}")
        self.sha_label.show()
        self.detail.setText(f"Saved {result.path.name} ({result.size / 2**20:.1f} MB).")
        self.downloadFinished.emit(result)
        self.refresh(select=str(result.path))

    @Slot(str)
    def _on_failed(self, message: str) -> None:
        self._end_download()
        self.detail.setText(message)

    def _end_download(self) -> None:
        self._cancel = None
        self.download_button.setText("Download")
        self.bar.hide()
        self._show_download(self.current_catalog_entry() is not None)
