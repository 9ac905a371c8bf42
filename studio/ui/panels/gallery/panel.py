"""The Gallery workspace: every image in the outputs folder, searchable by prompt or, with a
CLIP / SigLIP model, by what the images show (:mod:`.meaning`).

The index (:class:`studio.media.gallery.GalleryIndex`, SQLite) is refreshed and queried on a one-thread
I/O pool, never on the GUI thread; the grid model holds only paths and prompts and thumbnails are
loaded for the tiles on screen (:mod:`studio.workers.thumbnails`). New outputs appear when
``ctx.outputWritten`` fires; the folder is rescanned each time the workspace is shown.
"""

from __future__ import annotations

import concurrent.futures
import logging
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from PySide6.QtCore import (
    QItemSelectionModel,
    QModelIndex,
    QPoint,
    Qt,
    QTimer,
    Signal,
    Slot,
)
from PySide6.QtGui import QImage, QKeySequence, QShortcut, QShowEvent
from PySide6.QtWidgets import (
    QComboBox,
    QFrame,
    QHBoxLayout,
    QInputDialog,
    QLabel,
    QLineEdit,
    QMessageBox,
    QPushButton,
    QStackedWidget,
    QVBoxLayout,
    QWidget,
)

from studio.ui.context import AppContext
from studio.ui.panels.gallery.details import DetailsPane
from studio.ui.panels.gallery.grid import GalleryGrid
from studio.ui.panels.gallery.meaning import MeaningSearch
from studio.ui.panels.gallery.model import GalleryModel, ItemRole, PathRole
from studio.ui.panels.gallery.widgets import EmptyGallery, ImageDialog
from studio.ui.widgets import image_actions
from studio.workers.lanes import Calls
from studio.workers.thumbnails import ThumbnailLoader

if TYPE_CHECKING:
    from PySide6.QtWidgets import QMenu

    from studio.core.config import Settings
    from studio.core.requests import Txt2ImgRequest
    from studio.media.gallery import GalleryIndex, GalleryItem
    from studio.media.metadata import ImageMetadata
    from studio.media.transform_reuse import TransformReuse
    from studio.pipelines.train.classify import Classification

log = logging.getLogger(__name__)

THUMB = 208  # thumbnail size asked for (fits the largest cell without upscaling)
SEARCH_DELAY_MS = 250
DETAIL_PX = 512
GALLERY_DB = "gallery.db"  # studio.media.gallery.GALLERY_DB (not imported: no media at start)
#: The search box's modes: words of the prompts, or what the images show (CLIP / SigLIP).
SEARCH_MODES = (("prompt", "Prompt words", "Search prompts…"),
                ("meaning", "What images show", "Describe an image, e.g. a red fox at dusk…"))


class GalleryPanel(QWidget):
    """Browse, search and act on finished images."""

    #: The list was (re)loaded: number of images shown.
    itemsLoaded = Signal(int)

    def __init__(self, ctx: AppContext, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("galleryPanel")
        self.ctx = ctx
        self._calls = Calls(self, serial=True)  # index jobs in order: one SQLite writer
        self._classify_calls = Calls(self)  # Classify: torch and a small CNN, beside the index
        self.last_classification = ""
        self._index: GalleryIndex | None = None  # opened on the pool thread (SQLite is I/O)
        self._generation = 0
        self._loaded_once = False
        self._pending_new: list[Path] = []
        self._select_after_load: str | None = None
        self.loader = ThumbnailLoader(self)
        self.model = GalleryModel(self)
        dpr = max(1.0, self.devicePixelRatioF())
        self._thumb_px = int(THUMB * dpr)
        self._build()
        self._connect()

    # -- layout ------------------------------------------------------------------------------
    def _build(self) -> None:
        title = QLabel("Gallery")
        title.setProperty("heading", True)
        self.count_label = QLabel()
        self.count_label.setProperty("muted", True)
        self.search = QLineEdit()
        self.search.setPlaceholderText(SEARCH_MODES[0][2])
        self.search.setClearButtonEnabled(True)
        self.search.setFixedWidth(300)
        self.search_mode = QComboBox()
        self.search_mode.setObjectName("gallerySearchMode")
        for key, label, _hint in SEARCH_MODES:
            self.search_mode.addItem(label, key)
        self.search_mode.setToolTip("Search the words of the prompts, or what the images show "
                                    "(needs a CLIP or SigLIP model)")
        self.index_status = QLabel()
        self.index_status.setProperty("muted", True)
        self.stop_index = QPushButton("Stop")
        self.stop_index.setToolTip("Stop indexing the images for search")
        self.stop_index.setVisible(False)
        self.refresh_button = QPushButton("Refresh")
        self.refresh_button.setToolTip("Look for new and deleted images")
        header = QHBoxLayout()
        header.setContentsMargins(16, 12, 16, 8)
        header.setSpacing(10)
        header.addWidget(title)
        header.addWidget(self.count_label)
        header.addStretch(1)
        header.addWidget(self.index_status)
        header.addWidget(self.stop_index)
        header.addWidget(self.search_mode)
        header.addWidget(self.search)
        header.addWidget(self.refresh_button)

        self.view = GalleryGrid(self.model, self.loader, self._thumb_px)
        self.delegate = self.view.delegate

        self.empty = EmptyGallery()
        self.stack = QStackedWidget()
        self.stack.addWidget(self.view)
        self.stack.addWidget(self.empty)

        self.details = DetailsPane()
        line = self._divider = QFrame()
        line.setFrameShape(QFrame.Shape.VLine)
        line.setObjectName("detailsDivider")
        line.setStyleSheet("#detailsDivider { color: palette(mid); }")
        body = QHBoxLayout()
        body.setContentsMargins(0, 0, 0, 0)
        body.setSpacing(0)
        grid_col = QVBoxLayout()
        grid_col.setContentsMargins(12, 0, 4, 0)
        grid_col.addWidget(self.stack)
        body.addLayout(grid_col, 1)
        body.addWidget(line)
        body.addWidget(self.details)

        col = QVBoxLayout(self)
        col.setContentsMargins(0, 0, 0, 0)
        col.setSpacing(0)
        col.addLayout(header)
        col.addLayout(body, 1)
        self._show_empty("Loading…")

    def _connect(self) -> None:
        self._search_timer = QTimer(self, singleShot=True, interval=SEARCH_DELAY_MS)
        self._search_timer.timeout.connect(self.reload)
        self.meaning = MeaningSearch(self.ctx, self)
        self.meaning.results.connect(self._on_meaning_results)
        self.meaning.problem.connect(self._on_meaning_problem)
        self.meaning.status.connect(self.index_status.setText)
        self.meaning.indexing.connect(self.stop_index.setVisible)
        self.stop_index.clicked.connect(self.meaning.stop_indexing)
        self.search_mode.currentIndexChanged.connect(self._on_search_mode)
        self.search.textChanged.connect(lambda _t: self._search_timer.start())
        self._new_timer = QTimer(self, singleShot=True, interval=300)
        self._new_timer.timeout.connect(self._index_new_outputs)
        self.refresh_button.clicked.connect(self.refresh)
        self.loader.thumbnailReady.connect(self._on_thumbnail)
        self.view.selectionModel().currentChanged.connect(self._on_current_changed)
        self.view.doubleClicked.connect(lambda index: self.open_large(index.data(PathRole)))
        self.view.customContextMenuRequested.connect(self._context_menu)
        self.model.modelReset.connect(self._update_count)
        self.model.rowsRemoved.connect(self._update_count)
        self.ctx.outputWritten.connect(self._on_output_written)
        self.ctx.settingsChanged.connect(self._on_settings_changed)
        self.details.reuseRequested.connect(self.reuse_selected)
        self.details.openRequested.connect(
            lambda: self.details.path and image_actions.open_file(self.details.path))
        self.details.showInFolderRequested.connect(
            lambda: self.details.path and image_actions.open_folder(self.details.path))
        self.details.deleteRequested.connect(
            lambda: self.details.path and self.delete_path(self.details.path))
        self.details.imageDoubleClicked.connect(
            lambda: self.details.path and self.open_large(self.details.path))
        QShortcut(QKeySequence(QKeySequence.StandardKey.Delete), self.view,
                  lambda: self.details.path and self.delete_path(self.details.path),
                  context=Qt.ShortcutContext.WidgetShortcut)
        QShortcut(QKeySequence(QKeySequence.StandardKey.Find), self, self.search.setFocus,
                  context=Qt.ShortcutContext.WidgetWithChildrenShortcut)

    # -- public API --------------------------------------------------------------------------
    def receive(self, payload: object) -> None:
        """Show a path (select it) or a search text."""
        if isinstance(payload, (str, Path)) and Path(payload).suffix:
            self._select_after_load = str(Path(payload).resolve())
            self.refresh()
        elif isinstance(payload, str):
            self.search.setText(payload)

    @Slot()
    def refresh(self) -> None:
        """Rescan the outputs folder, then list (off the GUI thread)."""
        self._run_query(rescan=True)

    @Slot()
    def reload(self) -> None:
        """Query the index again with the search text (no rescan)."""
        self._run_query(rescan=False)

    def selected_item(self) -> GalleryItem | None:
        return self.view.currentIndex().data(ItemRole)

    def select_path(self, path: str | Path) -> bool:
        row = self.model.row_of(str(path))
        if row < 0:
            return False
        index = self.model.index(row)
        self.view.selectionModel().setCurrentIndex(
            index, QItemSelectionModel.SelectionFlag.ClearAndSelect)
        self.view.scrollTo(index)
        return True

    def reuse_selected(self) -> None:
        """Open the selected image's settings where it was made: Transform for CycleGAN,
        img2img and inpaint results, Generate for the rest."""
        if self.details.transform_reuse is not None:
            self.ctx.openInWorkspace.emit("transform", self.details.transform_reuse)
        elif self.details.request is not None:
            self.ctx.openInWorkspace.emit("generate", self.details.request)

    def delete_path(self, path: str | Path, confirm: bool = True) -> bool:
        """Delete the file (after asking) and drop it from the index and the grid."""
        path = Path(path)
        if not image_actions.delete_image(self, path, confirm=confirm):
            return False
        self._forget(path)
        return True

    def open_large(self, path: str | Path | None) -> ImageDialog | None:
        if not path:
            return None
        image = QImage(str(path))
        if image.isNull():
            return None
        paths = [self.model.index(row).data(PathRole) for row in range(self.model.rowCount())]
        dialog = ImageDialog(Path(path), image, self, paths=paths)
        dialog.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        dialog.currentPathChanged.connect(self.select_path)  # the grid follows the viewer
        dialog.show()
        dialog.raise_()
        dialog.activateWindow()  # the arrow keys work at once
        return dialog

    def shutdown(self) -> None:
        """Stop background work (call before the window goes away)."""
        self._search_timer.stop()
        self._new_timer.stop()
        self.meaning.shutdown()
        self.loader.shutdown()
        self._calls.wait(10_000)
        if self._index is not None:
            self._index.close()
            self._index = None

    # -- background queries ------------------------------------------------------------------
    def _get_index(self) -> GalleryIndex:
        """The index of the outputs folder in force, opened on first use (pool thread)."""
        paths = self.ctx.paths
        if self._index is not None and self._index.outputs_dir != paths.outputs_dir:
            self._index.close()  # the user moved the outputs folder in Settings
            self._index = None
        if self._index is None:
            from studio.media.gallery import GalleryIndex

            self._index = GalleryIndex(paths.outputs_dir, paths.data_dir / GALLERY_DB)
        return self._index

    def _on_settings_changed(self, _settings: Settings) -> None:
        if self._index is not None and self._index.outputs_dir != self.ctx.paths.outputs_dir:
            self.refresh()

    def searching_meaning(self) -> bool:
        return self.search_mode.currentData() == "meaning"

    def _on_search_mode(self, _index: int) -> None:
        self.search.setPlaceholderText(SEARCH_MODES[self.search_mode.currentIndex()][2])
        self.search.setToolTip("")
        if self.searching_meaning():
            self.meaning.find_model(then=self._meaning_ready)
        else:
            self.reload()

    def _meaning_ready(self, reload: bool = True) -> None:
        if self.meaning.model is not None and self.searching_meaning():
            self.meaning.build_index()  # in the background, in the queue
            if reload:
                self.reload()

    def _on_meaning_results(self, text: str, items: list) -> None:
        if self.searching_meaning() and text == self.search.text().strip():
            self._on_listed((self._generation, items))

    def _on_meaning_problem(self, title: str, text: str) -> None:
        if self.searching_meaning():
            self._show_empty(title, text)
            if self.meaning.model is None:  # the box itself says what to download
                self.search.setToolTip(text)

    def _run_query(self, rescan: bool, added: list[Path] | None = None) -> None:
        self._generation += 1
        generation = self._generation
        query = self.search.text().strip()
        if query and self.searching_meaning():
            self.meaning.search(query)  # the job rescans the folder and embeds what is new
            return

        def work() -> tuple[int, list]:
            index = self._get_index()
            if rescan:
                index.refresh()
            for path in added or []:
                index.add(path)
            return generation, index.list(query)

        self._calls.run(work, self._on_listed, self._on_list_failed)

    def _on_listed(self, answer: tuple[int, list]) -> None:
        generation, items = answer
        if generation != self._generation:
            return  # a newer query is on its way
        self._loaded_once = True
        current = self.details.path
        self.loader.clear_pending()
        self.model.set_items(items)
        if not items:
            query = self.search.text().strip()
            if query and self.searching_meaning():
                self._show_empty(f"No images found for “{query}”",
                                 "The images are being indexed, or there are none yet.")
            elif query:
                self._show_empty(f"No images match “{query}”",
                                 "Search looks in prompts and negative prompts.")
            else:
                self._show_empty(*self._empty_texts())
        else:
            self.stack.setCurrentIndex(0)
            self.details.setVisible(True)
            self._divider.setVisible(True)
        want = self._select_after_load or (str(current) if current else None)
        self._select_after_load = None
        if not (want and self.select_path(want)):
            if items:
                self.select_path(items[0].path)  # the newest image, described at once
            else:
                self.details.show_item(None)
        self.itemsLoaded.emit(len(items))

    def _on_list_failed(self, message: str) -> None:
        self._show_empty("The gallery could not be read", message)

    def _on_output_written(self, path: str | Path) -> None:
        self._pending_new.append(Path(path))
        self._new_timer.start()

    def _index_new_outputs(self) -> None:
        added, self._pending_new = self._pending_new, []
        self._run_query(rescan=False, added=added)

    def _forget(self, path: Path) -> None:
        self.loader.forget(path)
        self.model.remove_path(str(path))
        if self.details.path and Path(self.details.path) == path:
            self.details.show_item(None)
            index = self.view.currentIndex()
            if index.isValid():
                self._on_current_changed(index, QModelIndex())
        if self.model.rowCount() == 0:
            self._show_empty(*self._empty_texts())

        def work() -> None:
            self._get_index().remove(path)  # the file is gone already; this drops the row

        self._calls.run(work, lambda _r: None)

    # -- selection and details ---------------------------------------------------------------
    def _on_current_changed(self, current: QModelIndex, _previous: QModelIndex) -> None:
        item = current.data(ItemRole) if current.isValid() else None
        self.details.show_item(item)
        if item is None:
            return
        image = self.loader.get(item.path, DETAIL_PX)
        if image is not None:
            self.details.set_thumbnail(image)
        path = Path(item.path)
        fallback = self.ctx.settings.last_model

        def work() -> tuple[Path, ImageMetadata, Txt2ImgRequest | None, TransformReuse | None]:
            from studio.media.metadata import read_image_metadata, to_request
            from studio.media.transform_reuse import transform_reuse_from_text

            meta = read_image_metadata(path)  # its raw text serves both kinds of reuse
            return (path, meta, to_request(meta, fallback),
                    transform_reuse_from_text(meta.raw, path))

        self._calls.run(work, self._on_metadata)

    def _on_metadata(self, answer: tuple[Path, ImageMetadata, Txt2ImgRequest | None,
                                         TransformReuse | None]) -> None:
        path, meta, request, transform = answer
        if self.details.path != path:
            return  # the selection moved on
        self.details.set_metadata(meta, request, transform)

    @Slot(str, int, QImage)
    def _on_thumbnail(self, path: str, size: int, image: QImage) -> None:
        if size == DETAIL_PX:
            if self.details.path and str(self.details.path) == path:
                self.details.set_thumbnail(image)
            return
        self.model.refresh_path(path)

    def _context_menu(self, pos: QPoint) -> None:
        index = self.view.indexAt(pos)
        if not index.isValid():
            return
        self.context_menu_for(index).exec(self.view.viewport().mapToGlobal(pos))

    def context_menu_for(self, index: QModelIndex) -> QMenu:
        path = Path(index.data(PathRole))

        def reuse() -> None:
            from studio.media.metadata import read_image_metadata, to_request
            from studio.media.transform_reuse import transform_reuse_from_text

            meta = read_image_metadata(path)
            transform = transform_reuse_from_text(meta.raw, path)
            if transform is not None:
                self.ctx.openInWorkspace.emit("transform", transform)
                return
            request = to_request(meta, self.ctx.settings.last_model)
            if request is not None:
                self.ctx.openInWorkspace.emit("generate", request)

        return image_actions.build_image_menu(
            self, path, reuse=reuse, on_deleted=lambda p: self._forget(Path(p)),
            send_to=lambda key, p: self.ctx.openInWorkspace.emit(key, Path(p)),
            classify=self.classify, classify_with=self.classify_with_model,
            upscale=lambda p: self.ctx.openInWorkspace.emit(
                "transform", image_actions.OpenInMode(Path(p), "upscale")),
            chat=lambda ask: self.ctx.openInWorkspace.emit("chat", ask))

    def classify(self, path: Path) -> concurrent.futures.Future:
        """The top-3 classes of the image at ``path`` by the newest trained CNN (Train's CNN
        lesson), said in a message box; loading and running the small model happens off the GUI
        thread."""
        runs_dir = self.ctx.paths.runs_dir

        def work() -> Classification:
            from studio.pipelines.train.classify import classify_image

            return classify_image(Path(path), runs_dir)

        return self._classify_in_background(path, work)

    def _classify_in_background(self, path: Path, work: Callable[[], Classification]
                                ) -> concurrent.futures.Future:
        """``work()`` (a Classification) on the pool; its sentence, or why not, said here."""
        return self._classify_calls.run(
            work,
            lambda answer: self._say(QMessageBox.Icon.Information, "Classify",
                                     f"{Path(path).name}: {answer.sentence()}"),
            lambda message: self._say(QMessageBox.Icon.Warning, "Could not classify the image",
                                      message))

    def _say(self, icon: QMessageBox.Icon, title: str, text: str) -> None:
        """A classification (or why there is none) in a message box that does not block the
        gallery."""
        self.last_classification = text
        box = QMessageBox(icon, title, text, QMessageBox.StandardButton.Ok, self)
        box.setObjectName("classifyResult")
        box.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        box.open()  # not modal for the whole app: the gallery stays usable

    def classify_with_model(self, path: Path, name: str = "") -> concurrent.futures.Future:
        """The top-3 classes of the image at ``path`` by a classifier exported from Train (cnn,
        distill, federated) into the library: the one called ``name``, the only one, or the one
        picked in a short list. Listing and classifying happen off the GUI thread."""
        models_dir = self.ctx.paths.models_dir

        def listed() -> list[Path]:
            from studio.library.classifier_models import find_classifiers

            return find_classifiers(models_dir)

        def run(folder: Path) -> None:
            def work() -> Classification:
                from studio.pipelines.train.classify import classify_with_model

                return classify_with_model(Path(path), folder)

            self._classify_in_background(path, work)

        def chosen(folders: list[Path]) -> None:
            by_name = {f.name: f for f in folders}
            if not folders or (name and name not in by_name):
                missing = f"No exported classifier called {name}" if name else \
                    "No exported classifier yet"
                self._say(QMessageBox.Icon.Warning, "Could not classify the image",
                          f"{missing}: in Train, run CNN, Distillation or Federated learning, "
                          "then Runs → Export model to Gallery… (or studio train distill "
                          "--export NAME), and classify again.")
            elif name or len(folders) == 1:
                run(by_name[name] if name else folders[0])
            else:
                picker = QInputDialog(self)
                picker.setObjectName("classifierPicker")
                picker.setWindowTitle("Classify")
                picker.setLabelText("Classify with:")
                picker.setComboBoxItems(list(by_name))
                picker.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
                picker.textValueSelected.connect(lambda picked: run(by_name[picked]))
                picker.open()

        return self._classify_calls.run(
            listed, chosen,
            lambda message: self._say(QMessageBox.Icon.Warning, "Could not classify the image",
                                      message))

    # -- misc ----------------------------------------------------------------------------------
    def _show_empty(self, title: str, text: str = "") -> None:
        self.empty.set_text(title, text)
        self.stack.setCurrentIndex(1)
        self.details.setVisible(False)
        self._divider.setVisible(False)

    def _empty_texts(self) -> tuple[str, str]:
        return ("Images you generate appear here",
                "Make one in Generate, or put images in\n"
                f"{self.ctx.paths.outputs_dir}")

    def _update_count(self, *_: object) -> None:
        n = self.model.rowCount()
        self.count_label.setText(f"{n:,} image{'s' if n != 1 else ''}" if n else "")

    def showEvent(self, event: QShowEvent) -> None:  # noqa: N802 - Qt override
        super().showEvent(event)
        self.refresh()
        if self.searching_meaning():
            # a model downloaded meanwhile is found; new images are embedded in the background
            self.meaning.find_model(then=lambda: self._meaning_ready(reload=False))
