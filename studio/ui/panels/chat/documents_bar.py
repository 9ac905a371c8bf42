"""The row above the message box that attaches documents to a chat.

"Attach files…" / "Folder…" add PDF, Word, Markdown, text and HTML files to this conversation — or,
when a collection is chosen in "Docs:", to that named collection, which any chat can use again.
Indexing runs on the window's CPU pool (one call at a time, in order), never on the GUI thread,
with a progress bar and Cancel; bad files are skipped and the sentence says how many and why.
Before a reply is written, :meth:`DocumentsBar.retrieve` finds the passages for the question on
the same pool and hands back the messages to send (see :mod:`studio.pipelines.chat.documents`).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from PySide6.QtCore import QTimer, Signal
from PySide6.QtWidgets import (
    QComboBox,
    QFileDialog,
    QHBoxLayout,
    QInputDialog,
    QLabel,
    QProgressBar,
    QPushButton,
    QWidget,
)

from studio.core.jobs import CancelToken
from studio.core.wording import count_of
from studio.pipelines.chat import documents as docs
from studio.pipelines.chat import reading
from studio.pipelines.chat.store import ConversationStore
from studio.workers.lanes import Calls, cpu_pool

NEW_COLLECTION = "new"
FILE_FILTER = ("Documents (*.pdf *.docx *.md *.markdown *.txt *.text *.rst *.csv *.log *.html *.htm "
               "*.xhtml);;All files (*)")


class DocumentsBar(QWidget):
    """Attach documents, choose a collection, see indexing progress (module docstring)."""

    message = Signal(str)  # a sentence for the panel's status line

    def __init__(self, store: ConversationStore, models_dir: Path,
                 conversation: Callable[[], int], parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.index = docs.DocumentIndex(store)
        self._models_dir = models_dir
        self._conversation = conversation  # the open conversation's id (made when none is)
        self.conv_id: int | None = None
        self._embedder_checked = False
        self._calls = Calls(self, pool=cpu_pool, serial=True)
        self._cancel: CancelToken | None = None
        self._progress: tuple[int, int, str] = (0, 0, "")
        self._timer = QTimer(self, interval=100)
        self._timer.timeout.connect(self._show_progress)
        row = QHBoxLayout(self)
        row.setContentsMargins(0, 0, 0, 4)
        self.attach_files = QPushButton("Attach files…")
        self.attach_files.setProperty("flat", True)
        self.attach_files.setToolTip("Answer from PDF, Word (.docx), Markdown, text or HTML "
                                     "files: the passages found are put into the prompt and "
                                     "cited as [1], [2] under the reply. "
                                     f"Files over {reading.MAX_FILE_BYTES // 2**20} MB "
                                     "are skipped.")
        self.attach_files.clicked.connect(self._pick_files)
        self.attach_folder = QPushButton("Folder…")
        self.attach_folder.setProperty("flat", True)
        self.attach_folder.setToolTip("Attach every document in a folder (and its subfolders)")
        self.attach_folder.clicked.connect(self._pick_folder)
        self.collection = QComboBox()
        self.collection.setToolTip("A named collection answers in every chat that chooses it; "
                                   "files attached while one is chosen go into it")
        self.collection.setMinimumContentsLength(12)
        self.collection.activated.connect(self._collection_chosen)
        self.summary = QPushButton("no documents")
        self.summary.setProperty("flat", True)
        self.summary.clicked.connect(self.show_files)
        self.progress = QProgressBar()
        self.progress.setFixedWidth(110)
        self.progress.setVisible(False)
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setToolTip("Stop indexing; the files indexed so far stay")
        self.cancel_button.clicked.connect(self.cancel)
        self.cancel_button.setVisible(False)
        row.addWidget(self.attach_files)
        row.addWidget(self.attach_folder)
        row.addWidget(QLabel("Docs:"))
        row.addWidget(self.collection)
        row.addWidget(self.summary)
        row.addStretch(1)
        row.addWidget(self.progress)
        row.addWidget(self.cancel_button)
        self.refresh_collections()

    # -- state -----------------------------------------------------------------------------
    @property
    def busy(self) -> bool:
        return self._calls.busy

    def set_conversation(self, conv_id: int | None) -> None:
        """Show a conversation's documents: its own files and the collection it was left on (a
        new chat, ``None``, keeps the choice on screen; :meth:`remember` gives it to it)."""
        self.conv_id = conv_id
        if conv_id is None:
            self.refresh_summary()
        else:
            self.refresh_collections(select=self.index.chosen_collection(conv_id) or "")

    def remember(self, conv_id: int) -> None:
        """Keep the collection chosen now as the one conversation ``conv_id`` answers from."""
        name = self.collection.currentData()
        self.index.choose_collection(conv_id, name if name and name != NEW_COLLECTION else None)

    def refresh_collections(self, select: str | None = None) -> None:
        """Refill the list; ``select`` a name ("": this chat only; None: keep the current)."""
        current = (select or None) if select is not None else self.collection.currentData()
        self.collection.clear()
        self.collection.addItem("this chat only", None)
        for _cid, name in self.index.collections():
            self.collection.addItem(name, name)
        self.collection.addItem("New collection…", NEW_COLLECTION)
        at = self.collection.findData(current)
        self.collection.setCurrentIndex(max(0, at))
        self.refresh_summary()

    def collection_ids(self) -> list[int]:
        """The collections a question searches: this chat's files and the chosen collection."""
        ids = []
        if self.conv_id is not None:
            row = self.index.store.execute(
                "SELECT id FROM doc_collections WHERE conversation_id = ?",
                (self.conv_id,)).fetchone()
            if row is not None:
                ids.append(int(row[0]))
        name = self.collection.currentData()
        if name and name != NEW_COLLECTION:
            ids.append(self.index.collection(name))
        return ids

    def active(self) -> bool:
        """Whether replies are grounded in documents (some passages are attached)."""
        return self.index.passage_count(self.collection_ids()) > 0

    def refresh_summary(self) -> None:
        ids = self.collection_ids()
        files = sum(1 for cid in ids for f in self.index.files(cid) if f["status"] == "ok")
        passages = self.index.passage_count(ids)
        self.summary.setText(f"{count_of(files, 'file')} · {count_of(passages, 'passage')}"
                             if files else "no documents")
        self.summary.setEnabled(bool(ids))
        self.summary.setToolTip("The files this chat answers from, and why any was skipped")

    def show_files(self) -> None:
        """The attached files, with a Remove button (a dialog; the summary updates after)."""
        from studio.ui.panels.chat.sources import AttachedDialog

        self.dialog = AttachedDialog(self.index, self.collection_ids(), self)
        self.dialog.finished.connect(lambda _code: self.refresh_summary())
        self.dialog.open()

    # -- attaching ---------------------------------------------------------------------------
    def _collection_chosen(self, _row: int) -> None:
        if self.collection.currentData() == NEW_COLLECTION:
            name, ok = QInputDialog.getText(self, "New collection",
                                            "Name of the collection (any chat can use it):")
            name = name.strip()
            if ok and name:
                self.index.collection(name)
            self.refresh_collections(select=name if ok and name else "")
        else:
            self.refresh_summary()
        if self.conv_id is not None:
            self.remember(self.conv_id)

    def _pick_files(self) -> None:
        files, _ = QFileDialog.getOpenFileNames(self, "Attach documents", "", FILE_FILTER)
        if files:
            self.attach(files)

    def _pick_folder(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Attach a folder of documents")
        if folder:
            self.attach([folder])

    def _target(self) -> int:
        name = self.collection.currentData()
        if name and name != NEW_COLLECTION:
            return self.index.collection(name)
        self.conv_id = self._conversation()
        return self.index.conversation_collection(self.conv_id)

    def attach(self, paths: list[str]) -> None:
        """Index ``paths`` into the chosen collection (or this chat) in the background."""
        target = self._target()
        cancel = self._cancel = CancelToken()
        self._progress = (0, 0, "")
        self.progress.setVisible(True)
        self.cancel_button.setVisible(True)
        self.progress.setRange(0, 0)
        self._timer.start()
        self.message.emit("Indexing documents…")

        def work() -> docs.IndexReport:  # a CPU-pool thread
            self._load_embedder()
            return self.index.add(target, paths, self._report_progress, cancel)

        self._calls.run(work, self._attached, self._failed)

    def _report_progress(self, done: int, total: int, name: str) -> None:
        self._progress = (done, total, name)  # read by the GUI thread's timer

    def _show_progress(self) -> None:
        done, total, name = self._progress
        if total:
            self.progress.setRange(0, total)
            self.progress.setValue(done)
            self.progress.setToolTip(f"{done:,} of {count_of(total, 'file')}: {name}")

    def _end_indexing(self) -> None:
        self._timer.stop()
        self._cancel = None
        self.progress.setVisible(False)
        self.cancel_button.setVisible(False)
        self.refresh_summary()

    def _attached(self, report: docs.IndexReport) -> None:
        self._end_indexing()
        self.message.emit(report.sentence())

    def _failed(self, sentence: str) -> None:
        self._end_indexing()
        self.message.emit(f"The documents could not be indexed: {sentence}")

    def cancel(self) -> None:
        if self._cancel is not None:
            self._cancel.cancel()
            self.message.emit("Stopping indexing after this file…")

    def _load_embedder(self) -> None:
        """Look for an embedding model once (a CPU-pool thread): vectors when there is one."""
        if not self._embedder_checked:
            self._embedder_checked = True
            self.index.embedder = docs.find_embedder(self._models_dir)

    # -- asking ------------------------------------------------------------------------------
    def retrieve(self, messages: list[dict[str, str]],
                 on_done: Callable[[list[dict[str, str]], list[docs.Passage]], None],
                 on_error: Callable[[str], None]) -> None:
        """Find the passages for the last message in the background; then ``on_done(messages to
        send, passages)`` on the GUI thread."""
        ids = self.collection_ids()

        def work() -> tuple[list[dict[str, str]], list[docs.Passage]]:
            self._load_embedder()
            return docs.ground(self.index, ids, messages)

        self._calls.run(work, lambda result: on_done(*result), on_error)

    def shutdown(self) -> None:
        self.cancel()
        self._calls.wait(30_000)
