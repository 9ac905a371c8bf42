"""Choosing a CycleGAN model: the ones on disk, and the released ones to download.

The combo lists installed generators (found off the GUI thread by key layout), then the catalog's
models not yet installed, marked "download" — each under the one name the library, the results'
metadata and the Gallery use too (the catalog's title, "Photo → Monet", is shown as its
description). Picking one of those shows its description and a Download button; the download runs on the panel's I/O pool (never the GPU worker) with a progress
bar, can be cancelled and resumed, and ends with the file's sha256 on screen and the model selected.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from PySide6.QtCore import Qt, Signal, Slot
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

from studio.library.download_jobs import FileDownloadRequest
from studio.ui.context import AppContext
from studio.workers.lanes import Calls

if TYPE_CHECKING:
    from studio.library.cyclegan_models import CatalogEntry, CycleGANModel
    from studio.library.download import DownloadResult
    from studio.workers.job_bridge import QtJobHandle

log = logging.getLogger(__name__)


class CycleGANPicker(QWidget):
    """``modelChanged(CycleGANModel or None)`` when an installed model is picked."""

    modelChanged = Signal(object)
    scanFinished = Signal(int)
    downloadFinished = Signal(object)  # DownloadResult

    def __init__(self, ctx: AppContext, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._ctx = ctx
        self._calls = Calls(self)  # the model scan
        self._download: QtJobHandle | None = None  # the download's job while it runs
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
    def current(self) -> CycleGANModel | None:
        """The picked installed model (CycleGANModel), or None (nothing, or a catalog entry)."""
        kind, item = self.combo.currentData() or (None, None)
        return item if kind == "model" else None

    def current_catalog_entry(self) -> CatalogEntry | None:
        kind, item = self.combo.currentData() or (None, None)
        return item if kind == "catalog" else None

    def models(self) -> list[CycleGANModel]:
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

        self._calls.run(scan, self._scan_done, self._scan_failed)

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
        """Download the catalog model picked (a job of the I/O lane, shown in the queue), or
        stop the download running; the partial file stays for a resume."""
        if self._download is not None:
            self._download.cancel()
            return
        entry = self.current_catalog_entry()
        if entry is None:
            return
        self.download_button.setText("Cancel")
        self.bar.setRange(0, 0)
        self.bar.show()
        self.sha_label.hide()
        self.detail.setText(f"Downloading {entry.title} from {entry.url}…")
        target = entry.target(self._ctx.paths)
        job = self._ctx.bridge.submit(FileDownloadRequest(entry.url, str(target), entry.sha256),
                                      title=f"Download {entry.name}")
        job.progress.connect(lambda _job, done, total, _s: self._on_progress(done, total))
        job.finished.connect(lambda done: self._on_done(done.result))
        job.failed.connect(lambda failed: self._on_failed(failed.error))
        job.cancelled.connect(
            lambda _job: self._on_failed("Download paused — start it again to resume."))
        self._download = job

    def cancel_download(self) -> None:
        if self._download is not None:
            self._download.cancel()

    def shutdown(self) -> None:
        """Stop a download (its partial file stays) and wait for a model scan in flight."""
        self.cancel_download()
        self._calls.wait(10_000)

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

    def _index_changed(self, *_: object) -> None:
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
        self.download_button.setVisible(visible or self._download is not None)

    def _on_progress(self, done_kib: int, total_kib: int) -> None:
        if total_kib > 1:
            self.bar.setRange(0, 1000)
            self.bar.setValue(int(1000 * done_kib / total_kib))
            self.detail.setText(f"Downloading… {done_kib / 1024:.1f} of {total_kib / 1024:.1f} MB")
        else:
            self.detail.setText(f"Downloading… {done_kib / 1024:.1f} MB")

    @Slot(object)
    def _on_done(self, result: DownloadResult) -> None:
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
        self._download = None
        self.download_button.setText("Download")
        self.bar.hide()
        self._show_download(self.current_catalog_entry() is not None)
