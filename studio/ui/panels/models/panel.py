"""The Models workspace: every model in the library, its details, import, remove and download;
per-model memory options for image models and "Unload all" for what the GPU worker holds.

Scanning, copying and removing run on the I/O pool, hashing on the CPU pool and downloads as jobs
of the I/O lane (DESIGN rule 5) — never on the GUI thread and never on the GPU worker; results
come back on the GUI thread (:class:`studio.workers.lanes.Calls`). Other workspaces' pickers read
the same scanning functions, so what this panel lists is what they offer.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from PySide6.QtCore import Qt, Slot
from PySide6.QtGui import QDragEnterEvent, QDropEvent, QFontDatabase
from PySide6.QtWidgets import (
    QFileDialog,
    QFormLayout,
    QFrame,
    QHBoxLayout,
    QLabel,
    QMessageBox,
    QPushButton,
    QSplitter,
    QVBoxLayout,
    QWidget,
)

from studio.core.config import MemoryOptions
from studio.core.jobs import JobSnapshot, JobState
from studio.core.wording import count_of
from studio.library import manage
from studio.library.catalog import LibraryEntry, list_models
from studio.library.families import label as family_label
from studio.ui.context import AppContext
from studio.ui.loaded_models import loaded_models
from studio.ui.panels.models.memory import MemoryOptionsBox
from studio.ui.panels.models.parts import SplitPartsBox
from studio.ui.panels.models.shrink_dialog import ShrinkDialog, shrinkable
from studio.ui.panels.models.toolbar import ModelsToolbar
from studio.ui.panels.models.tree import ENTRY_ROLE, ModelTree, when
from studio.ui.theme import colors
from studio.ui.widgets.basics import vertical_scroll
from studio.ui.widgets.download_dialog import (
    DownloadDialog,
    DownloadRequest,
    wants_fp16,
)
from studio.ui.widgets.unload_job import UnloadJob
from studio.workers.lanes import Calls, cpu_pool

if TYPE_CHECKING:
    from PySide6.QtWidgets import QStatusBar

    from studio.core.devices import DeviceInfo
    from studio.workers.device_probe import DeviceReport
    from studio.workers.job_bridge import QtJobHandle


class DetailsPane(QFrame):
    """Path, hash and workspaces of the selected model, with Compute hash and Remove…."""

    FIELDS = ("Kind", "Path", "Source", "Format", "Size", "Precision", "Base", "Details",
              "Used by", "Last used", "SHA-256", "Model hash")

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("modelDetails")
        self.setMinimumWidth(300)
        self.title = QLabel("No model selected")
        self.title.setProperty("heading", True)
        self.title.setWordWrap(True)
        form = QFormLayout()
        form.setLabelAlignment(Qt.AlignmentFlag.AlignRight)
        form.setVerticalSpacing(8)
        self.values: dict[str, QLabel] = {}
        mono = QFontDatabase.systemFont(QFontDatabase.SystemFont.FixedFont)
        for name in self.FIELDS:
            value = QLabel("—")
            if name in ("SHA-256", "Model hash"):
                value.setFont(mono)
            value.setWordWrap(True)
            value.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
            label = QLabel(name)
            label.setProperty("muted", True)
            form.addRow(label, value)
            self.values[name] = value
        self.memory = MemoryOptionsBox()
        self.memory.hide()
        self.parts = SplitPartsBox()
        self.parts.hide()
        self.hash_button = QPushButton("Compute SHA-256")
        self.remove_button = QPushButton("Remove…")
        self.shrink_button = QPushButton("Make smaller…")
        self.shrink_button.setToolTip("Save a copy of this model with 8-bit (or 4-bit) "
                                      "weights, and see size, quality and speed both ways")
        self.shrink_button.hide()
        self.message = QLabel("")
        self.message.setWordWrap(True)
        buttons = QHBoxLayout()
        buttons.addWidget(self.hash_button)
        buttons.addStretch(1)
        buttons.addWidget(self.remove_button)
        # Its own row: three buttons do not fit the pane's width on a laptop screen.
        shrink_row = QHBoxLayout()
        shrink_row.addWidget(self.shrink_button)
        shrink_row.addStretch(1)
        column = QVBoxLayout(self)
        column.setContentsMargins(18, 16, 18, 16)
        column.addWidget(self.title)
        column.addSpacing(6)
        column.addLayout(form)
        column.addSpacing(8)
        column.addLayout(buttons)
        column.addLayout(shrink_row)
        column.addSpacing(10)
        column.addWidget(self.parts)
        column.addSpacing(4)
        column.addWidget(self.memory)
        column.addWidget(self.message)
        column.addStretch(1)
        self.show_entry(None)

    def show_entry(self, e: LibraryEntry | None, sha256: str | None = None) -> None:
        self.hash_button.setEnabled(e is not None)
        self.remove_button.setEnabled(e is not None)
        self.shrink_button.setVisible(e is not None and e.kind in ("chat", "image"))
        self.shrink_button.setEnabled(bool(e is not None and shrinkable(e)))
        self.message.setText("")
        if e is None:
            self.title.setText("No model selected")
            for v in self.values.values():
                v.setText("—")
            return
        self.title.setText(e.name)
        data = {"Kind": e.kind_title, "Path": str(e.path), "Source": e.source_title,
                "Format": e.format, "Size": manage.human_size(e.size_bytes),
                "Precision": e.precision or "unknown (not read from a pickle)",
                "Base": family_label(e.family, "—"),
                "Details": e.detail or "—", "Used by": ", ".join(e.workspaces) or "—",
                "Last used": when(e.last_used)}
        for key, value in data.items():
            self.values[key].setText(value)
        self.show_hash(sha256)

    def show_hash(self, sha256: str | None, file: Path | None = None) -> None:
        # 64 hex digits do not wrap at word boundaries; two lines of 32 fit the pane.
        self.values["SHA-256"].setText(f"{sha256[:32]}\n{sha256[32:]}" if sha256
                                       else "not computed yet")
        self.values["Model hash"].setText(sha256[:10] if sha256 else "—")
        if file is not None:
            self.values["SHA-256"].setToolTip(f"of {file}")


class ModelsPanel(QWidget):
    """Library table (grouped by kind, search, kind filter) + details; Import, Remove, Download."""

    def __init__(self, ctx: AppContext, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.ctx = ctx
        self.setObjectName("modelsPanel")
        self.setAcceptDrops(True)
        self._calls = Calls(self)  # scans, imports, removals
        self._hashes = Calls(self, pool=cpu_pool)  # hashing computes
        self.entries: list[LibraryEntry] = []
        self.hashes: dict[Path, str] = {}
        self.download_dialog: DownloadDialog | None = None
        self.shrink_dialog: ShrinkDialog | None = None
        self.scans = 0  # finished scans (tests wait on it)

        self.toolbar = ModelsToolbar()
        bar = self.toolbar
        self.summary, self.search, self.kind = bar.summary, bar.search, bar.kind
        self.unload_button, self.refresh_button = bar.unload_button, bar.refresh_button
        self.import_button, self.download_button = bar.import_button, bar.download_button
        self.unloader = UnloadJob(self)
        self.unloader.changed.connect(self.refresh_loaded)
        self.unloader.refused.connect(self._say_error)
        self.unloader.ended.connect(self._on_unloaded)
        self._places = self._model_places(ctx.settings)
        self._device_source: QStatusBar | None = None

        self.tree = ModelTree()
        self.details = DetailsPane()
        split = QSplitter(Qt.Orientation.Horizontal)
        split.addWidget(self.tree)
        # With memory options the details are taller than a small window: let them scroll.
        details_scroll = vertical_scroll(self.details)
        details_scroll.setMinimumWidth(self.details.minimumWidth())
        split.addWidget(details_scroll)
        split.setStretchFactor(0, 3)
        split.setStretchFactor(1, 1)
        split.setSizes([900, 360])
        split.setChildrenCollapsible(False)
        self.notice = QLabel("")
        self.notice.setWordWrap(True)
        self.notice.hide()
        column = QVBoxLayout(self)
        column.setContentsMargins(20, 16, 20, 16)
        column.setSpacing(12)
        column.addWidget(self.toolbar)
        column.addWidget(self.notice)
        column.addWidget(split, 1)
        self._style()

        self.search.textChanged.connect(self._filter)
        self.kind.currentIndexChanged.connect(self._filter)
        self.refresh_button.clicked.connect(self.refresh)
        self.import_button.clicked.connect(self.choose_import)
        self.download_button.clicked.connect(self.open_download)
        self.tree.entryChosen.connect(self._on_chosen)
        self.details.hash_button.clicked.connect(self.compute_hash)
        self.details.remove_button.clicked.connect(self.confirm_remove)
        self.details.shrink_button.clicked.connect(lambda: self.open_shrink())
        self.tree.setContextMenuPolicy(Qt.ContextMenuPolicy.CustomContextMenu)
        self.tree.customContextMenuRequested.connect(self._tree_menu)
        self.details.memory.optionsChanged.connect(self.save_memory_options)
        self.details.parts.partChosen.connect(self.save_part)
        self.unload_button.clicked.connect(self.unload_all)
        ctx.bridge.jobChanged.connect(self._on_job_changed)
        ctx.settingsChanged.connect(self._on_settings_changed)
        self.refresh()
        self.refresh_loaded()

    def _style(self) -> None:
        c = colors()
        self.setStyleSheet(
            f"#modelsTree {{ background: {c.surface}; border: 1px solid {c.border}; "
            f"border-radius: 10px; padding: 4px; }}"
            f"#modelsTree::item {{ padding: 5px 4px; }}"
            f"#modelsTree::item:selected {{ background: {c.accent}; color: {c.accent_text}; }}"
            f"QHeaderView::section {{ background: {c.surface}; color: {c.muted}; border: none;"
            f" border-bottom: 1px solid {c.border}; padding: 6px 4px; font-weight: 600; }}"
            f"#modelDetails {{ background: {c.surface}; border: 1px solid {c.border}; "
            f"border-radius: 10px; }}")

    # -- listing -----------------------------------------------------------------------------
    @Slot()
    def refresh(self) -> None:
        settings, paths = self.ctx.settings, self.ctx.paths
        self.summary.setText("Scanning…")
        self._calls.run(lambda: list_models(settings, paths), self._on_scanned,
                          self._on_scan_failed)

    def _on_scanned(self, entries: list[LibraryEntry]) -> None:
        self.entries = entries
        self.tree.set_entries(entries)
        self._filter()
        total = sum(e.size_bytes for e in entries)
        self.summary.setText(f"{count_of(len(entries), 'model')} · {manage.human_size(total)} on disk")
        self.summary.setToolTip(f"Models folder: {self.ctx.paths.models_dir}")
        self.scans += 1
        self._on_chosen(self.tree.current_entry())

    def _on_scan_failed(self, message: str) -> None:
        self.summary.setText(f"Scanning failed: {message}")
        self.scans += 1

    @Slot()
    def _filter(self) -> None:
        self.tree.apply_filter(self.search.text(), self.kind.currentData() or "")

    @Slot(object)
    def _on_chosen(self, entry: LibraryEntry | None) -> None:
        self.details.show_entry(entry, self.hashes.get(entry.path) if entry else None)
        image = entry is not None and entry.kind == "image"
        if image:
            self.details.memory.show_for(entry.path, self.ctx.settings.memory_options_for(
                entry.path))
        self.details.memory.setVisible(image)
        self.details.parts.hide()
        if image and entry.format == "split":
            self._show_parts(entry)

    def _show_parts(self, entry: LibraryEntry) -> None:
        """Find the split model's parts on the I/O pool (reads file headers), then show them."""
        from studio.library.split_files import find_parts

        chosen = self.ctx.settings.parts_for(entry.path)

        def done(parts) -> None:
            if self.tree.current_entry() is entry:
                self.details.parts.show_parts(entry.path, parts, chosen)
                self.details.parts.show()

        self._calls.run(lambda: find_parts(entry.path, entry.family, chosen), done,
                        lambda message: self.say(f"Cannot read the parts: {message}", error=True))

    @Slot(object, str, object)
    def save_part(self, path: Path, role: str, file: Path | None) -> None:
        """Keep the part chosen for a split model (None: Studio picks again); rescan so its
        details show it."""
        from studio.core.jobs import UserFacingError
        from studio.library.split_files import check_part

        entry = self.tree.current_entry()
        if file is not None and entry is not None:
            try:
                check_part(role, file, entry.family, entry.path)
            except (OSError, UserFacingError) as exc:
                self.say(str(exc), error=True)
                return
        self.ctx.update_settings(self.ctx.settings.with_part(path, role, file))
        self.refresh()

    @staticmethod
    def _model_places(settings) -> tuple:
        return (settings.models_dir, tuple(settings.extra_model_dirs),
                tuple(settings.added_models))

    def _on_settings_changed(self, settings) -> None:
        # Settings change for many reasons (a memory option, the last model picked in
        # Generate): scan the disk again only when where models are looked for has changed.
        places = self._model_places(settings)
        if places != self._places:
            self._places = places
            self.refresh()
        self.refresh_loaded()

    # -- memory ------------------------------------------------------------------------------
    @Slot(object, object)
    def save_memory_options(self, path: Path, options: MemoryOptions) -> None:
        """Keep the low-memory options of the model at ``path`` in settings (next job uses them)."""
        self.ctx.update_settings(self.ctx.settings.with_memory_options(path, options))

    @Slot()
    def refresh_loaded(self) -> None:
        """Show what the GPU worker holds now on the Unload all button."""
        self.unload_button.show_loaded(loaded_models(), self.ctx.settings, self.unloader.running)

    @Slot()
    def unload_all(self) -> QtJobHandle | None:
        """Queue the job that frees every loaded model; its handle."""
        return self.unloader.start(self.ctx.bridge)

    @Slot(object)
    def _on_unloaded(self, job: JobSnapshot) -> None:
        if job.state is JobState.FAILED:
            self.say(f"Unloading failed: {job.error or job.message}", error=True)
        elif job.state is JobState.DONE:
            self.say("All models were unloaded; their memory is free again.")

    @Slot(object)
    def _on_job_changed(self, job: JobSnapshot) -> None:
        if job.finished:  # any job may have loaded or freed a model
            self.refresh_loaded()

    def _device_report(self) -> DeviceReport | None:
        return getattr(self.window(), "device_report", None)

    @Slot(object)
    def _on_device(self, info: DeviceInfo | None) -> None:
        self.details.memory.set_device(getattr(info, "kind", None), getattr(info, "label", ""))

    def showEvent(self, event) -> None:  # noqa: N802 - Qt override
        super().showEvent(event)
        report = self._device_report()
        self._on_device(report.info if report is not None else None)
        # The window's status bar hears the device probe; follow it while this panel lives.
        bar = self.window().statusBar() if hasattr(self.window(), "statusBar") else None
        signal = getattr(bar, "deviceChanged", None)
        if signal is not None and self._device_source is not bar:
            signal.connect(self._on_device)
            self._device_source = bar
        self.refresh_loaded()

    def say(self, text: str, error: bool = False) -> None:
        c = colors()
        self.notice.setStyleSheet(f"color: {'#e5484d' if error else c.text};")
        self.notice.setText(text)
        self.notice.setVisible(bool(text))

    @Slot(str)
    def _say_error(self, text: str) -> None:
        self.say(text, error=True)

    # -- hash --------------------------------------------------------------------------------
    @Slot()
    def compute_hash(self) -> None:
        entry = self.tree.current_entry()
        if entry is None:
            return
        self.details.hash_button.setEnabled(False)
        self.details.values["SHA-256"].setText("computing…")
        paths = self.ctx.paths

        def done(result: manage.HashResult) -> None:
            self.hashes[entry.path] = result.sha256
            if self.tree.current_entry() is entry:
                self.details.show_hash(result.sha256, result.file)
                self.details.hash_button.setEnabled(True)

        def failed(message: str) -> None:
            self.details.hash_button.setEnabled(True)
            self.details.values["SHA-256"].setText(message)

        self._hashes.run(lambda: manage.model_sha256(entry, paths), done, failed)

    # -- import ------------------------------------------------------------------------------
    @Slot()
    def choose_import(self) -> None:
        box = QMessageBox(self)
        box.setWindowTitle("Import a model")
        box.setText("Import a single weights file, or a model folder?")
        file_button = box.addButton("A file…", QMessageBox.ButtonRole.AcceptRole)
        folder_button = box.addButton("A folder…", QMessageBox.ButtonRole.AcceptRole)
        box.addButton(QMessageBox.StandardButton.Cancel)
        box.exec()
        if box.clickedButton() is file_button:
            path, _ = QFileDialog.getOpenFileName(
                self, "Import a model file", "",
                "Weights (*.safetensors *.ckpt *.pth *.pt *.bin);;All files (*)")
        elif box.clickedButton() is folder_button:
            path = QFileDialog.getExistingDirectory(self, "Import a model folder")
        else:
            return
        if path:
            self.import_path(Path(path))

    def ask_copy(self, path: Path) -> bool | None:
        """True: copy into the models folder; False: register in place; None: cancelled."""
        box = QMessageBox(self)
        box.setWindowTitle("Import a model")
        box.setText(f"Import {path.name}")
        box.setInformativeText(
            "Use it where it is (nothing is copied; keep the file there), or copy it into "
            f"Studio's models folder ({self.ctx.paths.models_dir})?")
        in_place = box.addButton("Use where it is", QMessageBox.ButtonRole.AcceptRole)
        copy = box.addButton("Copy into Studio", QMessageBox.ButtonRole.AcceptRole)
        box.addButton(QMessageBox.StandardButton.Cancel)
        box.setDefaultButton(in_place)
        box.exec()
        clicked = box.clickedButton()
        return True if clicked is copy else False if clicked is in_place else None

    def import_path(self, path: Path, copy: bool | None = None) -> None:
        """Import ``path``, asking register-or-copy unless ``copy`` says."""
        if copy is None:
            copy = self.ask_copy(path)
            if copy is None:
                return
        settings, paths = self.ctx.settings, self.ctx.paths
        self.say(f"{'Copying' if copy else 'Adding'} {path.name}…")

        def done(result: manage.ImportResult) -> None:
            if result.settings is not settings:
                self.ctx.update_settings(result.settings)  # triggers a refresh
            else:
                self.refresh()
            self.say(result.message)

        self._calls.run(lambda: manage.import_model(path, settings, paths, copy=copy),
                          done, lambda m: self.say(m, error=True))

    def dragEnterEvent(self, event: QDragEnterEvent) -> None:  # noqa: N802 - Qt override
        if event.mimeData().hasUrls() and any(u.isLocalFile() for u in event.mimeData().urls()):
            event.acceptProposedAction()

    def dropEvent(self, event: QDropEvent) -> None:  # noqa: N802 - Qt override
        urls = [u for u in event.mimeData().urls() if u.isLocalFile()]
        if urls:
            event.acceptProposedAction()
            self.import_path(Path(urls[0].toLocalFile()))

    # -- remove ------------------------------------------------------------------------------
    @Slot()
    def confirm_remove(self, answer: bool | None = None) -> None:
        """Show what removing the selected model does and the space freed; ``answer`` skips
        the question (tests)."""
        entry = self.tree.current_entry()
        if entry is None:
            return
        settings, paths = self.ctx.settings, self.ctx.paths
        try:
            plan = manage.plan_removal(entry, settings)
        except Exception as exc:  # noqa: BLE001 - loaded, or the HF cache is unreadable
            from studio.core.jobs import describe_error

            self.say(describe_error(exc), error=True)
            return
        if answer is None:
            reply = QMessageBox.question(self, "Remove model", plan.summary + "\n\nRemove it?")
            answer = reply == QMessageBox.StandardButton.Yes
        if not answer:
            return

        def done(new_settings) -> None:
            self.say(f"{entry.name} was removed"
                     + (f"; {manage.human_size(plan.freed_bytes)} freed." if plan.freed_bytes
                        else "."))
            if new_settings is not settings:
                self.ctx.update_settings(new_settings)
            else:
                self.refresh()

        self._calls.run(lambda: manage.remove_model(plan, settings, paths), done,
                          lambda m: self.say(m, error=True))

    # -- make smaller ------------------------------------------------------------------------
    def _tree_menu(self, pos) -> None:
        from PySide6.QtWidgets import QMenu

        item = self.tree.itemAt(pos)
        entry = item.data(0, ENTRY_ROLE) if item is not None else None
        if not isinstance(entry, LibraryEntry):
            return
        menu = QMenu(self.tree)
        shrink = menu.addAction("Make smaller…")
        shrink.setEnabled(shrinkable(entry))
        if not shrinkable(entry):
            shrink.setToolTip("Only chat and image generation models can be made smaller "
                              "here.")
        shrink.triggered.connect(lambda: self.open_shrink(entry))
        remove = menu.addAction("Remove…")
        remove.triggered.connect(lambda: (self.tree.select_path(entry.path),
                                          self.confirm_remove()))
        menu.popup(self.tree.viewport().mapToGlobal(pos))

    def open_shrink(self, entry: LibraryEntry | None = None) -> ShrinkDialog | None:
        """The Make smaller… dialog on ``entry`` (default: the selected model)."""
        entry = entry or self.tree.current_entry()
        if entry is None or not shrinkable(entry):
            return None
        if self.shrink_dialog is not None and self.shrink_dialog.job is not None:
            self.shrink_dialog.raise_()  # one at a time: the running one stays on screen
            return self.shrink_dialog
        self.shrink_dialog = ShrinkDialog(self.ctx, entry, {e.name for e in self.entries},
                                          self)
        self.shrink_dialog.made.connect(lambda _p: self.refresh())
        self.shrink_dialog.show()
        return self.shrink_dialog

    # -- download ----------------------------------------------------------------------------
    def _fp16(self) -> bool:
        return wants_fp16(self.ctx, self.window())

    @Slot()
    def open_download(self) -> DownloadDialog:
        if self.download_dialog is None:
            self.download_dialog = DownloadDialog(self.ctx, self._fp16(), self)
            self.download_dialog.downloaded.connect(lambda _p: self.refresh())
        self.download_dialog.fp16 = self._fp16()
        self.download_dialog.show()
        self.download_dialog.raise_()
        return self.download_dialog

    def receive(self, payload: object) -> None:
        """Another workspace sent something: a :class:`DownloadRequest` opens the download
        dialog on that repository."""
        if isinstance(payload, DownloadRequest):
            self.open_download().choose(payload.repo_id)

    def shutdown(self) -> None:
        """Stop a download (its partial files stay for a resume) and wait for the panel's calls."""
        if self.download_dialog is not None:
            self.download_dialog.shutdown()
        if self.shrink_dialog is not None:
            self.shrink_dialog.shutdown()
        self._calls.wait(10_000)
        self._hashes.wait(10_000)
