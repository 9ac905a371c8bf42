"""Download… : pick a recommended model or type a repo id, see the size, download with progress.

The plan (size, files) is asked on the I/O pool; the download is a job of the I/O lane (it shows
in the queue, and never waits for the GPU worker), followed through its handle. Cancel keeps the
partial files; downloading the same repo again resumes them.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from PySide6.QtCore import Qt, Signal, Slot
from PySide6.QtWidgets import (
    QDialog,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QListWidget,
    QListWidgetItem,
    QProgressBar,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from studio.core.wording import count_of
from studio.library import hub_download as hd
from studio.library.download_jobs import HubDownloadRequest
from studio.library.manage import human_size
from studio.ui.context import AppContext
from studio.ui.widgets.input_policy import fit_size_to_screen
from studio.workers.lanes import Calls

if TYPE_CHECKING:
    from studio.workers.job_bridge import QtJobHandle

KIND_WORDS = {"image": "image generation", "chat": "chat", "preview": "preview decoder",
              "transform": "image transform"}


def approx_size(gb: float) -> str:
    """'≈2.6 GB', '≈10 MB' (catalog sizes are approximate)."""
    return f"≈{gb:g} GB" if gb >= 1 else f"≈{round(gb * 1000):d} MB"


def status_text(s: hd.TransferStatus) -> str:
    """'1.2 GB of 2.6 GB · 45.3 MB/s · 0:31 left · file 2 of 9'."""
    parts = [f"{human_size(s.done)} of {human_size(s.total)}"]
    if s.speed > 0:
        parts.append(f"{human_size(s.speed)}/s")
    if s.eta_s is not None:
        parts.append(time.strftime("%H:%M:%S" if s.eta_s >= 3600 else "%M:%S",
                                   time.gmtime(s.eta_s)) + " left")
    parts.append(f"file {s.file_index + 1} of {s.file_count}")
    return "  ·  ".join(parts)


def wants_fp16(ctx: AppContext, window: QWidget | None = None) -> bool:
    """Whether downloads should take fp16 weights: the precision setting, or "auto" on CUDA
    (``window.device_report`` is the device probe's answer, when there is one)."""
    s = ctx.settings
    if s.precision in ("fp16", "fp32", "bf16"):
        return s.precision == "fp16"
    report = getattr(window, "device_report", None)
    return bool(report is not None and report.info.kind == "cuda")


@dataclass(frozen=True)
class DownloadRequest:
    """Another workspace asks the Models workspace to open this dialog on ``repo_id`` (e.g.
    Chat's empty state: "Download a chat model…")."""

    repo_id: str


class DownloadDialog(QDialog):
    """Recommended models and any repo id; emits ``downloaded(Path)`` when a model arrived."""

    downloaded = Signal(object)

    def __init__(self, ctx: AppContext, fp16: bool, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.ctx, self.fp16 = ctx, fp16
        self._calls = Calls(self)
        self.plan: hd.DownloadPlan | None = None
        self.job: QtJobHandle | None = None  # the download's job while it runs
        self.setWindowTitle("Download a model")
        fit_size_to_screen(self, 760, 520)

        self.catalog = QListWidget()
        self.catalog.setMinimumWidth(280)
        self.catalog.setSpacing(3)
        for m in hd.load_catalog():
            item = QListWidgetItem(f"{m.title}\n{approx_size(m.size_gb)} · {KIND_WORDS[m.kind]}")
            item.setData(Qt.ItemDataRole.UserRole, m)
            self.catalog.addItem(item)
        self.catalog.currentItemChanged.connect(self._on_catalog)

        self.about = QLabel("Pick a recommended model, or type any Hugging Face repo id.")
        self.about.setWordWrap(True)
        self.about.setTextFormat(Qt.TextFormat.RichText)
        self.about.setAlignment(Qt.AlignmentFlag.AlignTop)
        self.repo = QLineEdit()
        self.repo.setPlaceholderText("org/name, e.g. stabilityai/sd-turbo")
        self.repo.textChanged.connect(self._invalidate)
        self.token = QLineEdit()
        self.token.setEchoMode(QLineEdit.EchoMode.Password)
        self.token.setPlaceholderText("Access token — only for gated models (saved securely)")
        self.check_button = QPushButton("Check size")
        self.check_button.clicked.connect(self.check)
        self.plan_label = QLabel("")
        self.plan_label.setWordWrap(True)
        self.plan_label.setProperty("muted", True)
        self.progress = QProgressBar()
        self.progress.setRange(0, 1000)
        self.progress.setTextVisible(False)
        self.progress.hide()
        self.status = QLabel("")
        self.status.setWordWrap(True)
        self.download_button = QPushButton("Download")
        self.download_button.setProperty("accent", True)
        self.download_button.setEnabled(False)
        self.download_button.clicked.connect(self.start)
        self.cancel_button = QPushButton("Cancel download")
        self.cancel_button.hide()
        self.cancel_button.clicked.connect(self.cancel)
        close = QPushButton("Close")
        close.clicked.connect(self.reject)

        right = QVBoxLayout()
        right.addWidget(self.about, 1)
        right.addWidget(QLabel("Repository"))
        row = QHBoxLayout()
        row.addWidget(self.repo, 1)
        row.addWidget(self.check_button)
        right.addLayout(row)
        right.addWidget(self.token)
        right.addWidget(self.plan_label)
        right.addWidget(self.progress)
        right.addWidget(self.status)
        buttons = QHBoxLayout()
        buttons.addStretch(1)
        buttons.addWidget(self.cancel_button)
        buttons.addWidget(close)
        buttons.addWidget(self.download_button)
        right.addLayout(buttons)
        left = QVBoxLayout()
        heading = QLabel("Recommended")
        heading.setProperty("section", True)
        left.addWidget(heading)
        left.addWidget(self.catalog, 1)
        body = QHBoxLayout(self)
        body.setContentsMargins(16, 16, 16, 16)
        body.setSpacing(16)
        body.addLayout(left)
        body.addLayout(right, 1)

    # -- choosing ----------------------------------------------------------------------------
    def prefer_kind(self, kind: str) -> bool:
        """Select the first recommended model of ``kind`` ("image", "chat"…) unless the user has
        chosen something already; True if one is selected."""
        if self.repo.text().strip():
            return False
        for row in range(self.catalog.count()):
            item = self.catalog.item(row)
            if item.data(Qt.ItemDataRole.UserRole).kind == kind:
                self.catalog.setCurrentItem(item)
                return True
        return False


    def choose(self, repo_id: str) -> None:
        """Select ``repo_id`` in the recommended list (or type it in when it is not there)."""
        for row in range(self.catalog.count()):
            item = self.catalog.item(row)
            if item.data(Qt.ItemDataRole.UserRole).repo_id == repo_id:
                self.catalog.setCurrentItem(item)
                return
        self.repo.setText(repo_id)

    @Slot()
    def _on_catalog(self, item: QListWidgetItem | None, _previous=None) -> None:
        if item is None:
            return
        m: hd.CatalogModel = item.data(Qt.ItemDataRole.UserRole)
        self.about.setText(
            f"<b>{m.title}</b><br><span>{m.purpose}</span><br><br>"
            f"Download: {approx_size(m.size_gb)}<br>Memory: {m.memory}<br>Licence: {m.licence}<br>"
            f"<span style='color:gray'>{m.repo_id} · sizes are approximate</span>")
        self.repo.setText(m.repo_id)

    @Slot()
    def _invalidate(self) -> None:
        self.plan = None
        self.download_button.setEnabled(False)
        self.plan_label.setText("")

    @Slot()
    def check(self) -> None:
        repo_id = self.repo.text().strip()
        self.plan_label.setText(f"Asking the Hub about {repo_id}…")
        self.check_button.setEnabled(False)
        token_text, paths = self.token.text().strip(), self.ctx.paths

        def work():
            if token_text:
                hd.save_access_token(token_text, paths)
            token = token_text or hd.access_token(paths)
            return hd.plan_download(repo_id, fp16=self.fp16, token=token)

        self._calls.run(work, self._on_plan, self._on_plan_error)

    def _on_plan(self, plan: hd.DownloadPlan) -> None:
        self.check_button.setEnabled(True)
        if plan.repo_id != self.repo.text().strip():
            return  # the user typed another repo meanwhile
        self.plan = plan
        where = hd.destination(plan.repo_id, self.ctx.paths)
        self.plan_label.setText(
            f"{count_of(len(plan.files), 'file')}, {human_size(plan.total_bytes)}"
            f"{' (fp16 weights)' if plan.fp16 else ''} → {where}. "
            f"Leaving out {count_of(len(plan.skipped), 'file')} Studio does not need.")
        self.download_button.setEnabled(True)

    def _on_plan_error(self, message: str) -> None:
        self.check_button.setEnabled(True)
        self.plan_label.setText(message)

    # -- downloading -------------------------------------------------------------------------
    @Slot()
    def start(self) -> None:
        if self.plan is None:
            return
        token = self.token.text().strip() or None
        self.progress.setValue(0)
        self.progress.show()
        self.cancel_button.show()
        self.download_button.setEnabled(False)
        self.check_button.setEnabled(False)
        self.status.setText("Starting…")
        if token is None:
            token = hd.access_token(self.ctx.paths)
        self.job = self.ctx.bridge.submit(HubDownloadRequest(self.plan, token),
                                          title=f"Download {self.plan.repo_id}")
        self.job.progress.connect(lambda _job, _done, _total, s: self._on_status(s))
        self.job.finished.connect(lambda job: self._on_done(job.result))
        self.job.failed.connect(lambda job: self._on_failed(job.error))
        self.job.cancelled.connect(lambda _job: self._on_cancelled())

    @Slot()
    def cancel(self) -> None:
        if self.job is not None:
            self.job.cancel()
            self.status.setText("Cancelling…")

    def shutdown(self) -> None:
        """Stop a download (its partial files stay for a resume) and the plan query."""
        self.cancel()
        self._calls.wait(10_000)

    @property
    def busy(self) -> bool:
        return self.cancel_button.isVisible()

    @Slot(object)
    def _on_status(self, s: hd.TransferStatus | None) -> None:
        if s is None:
            return
        self.progress.setValue(int(1000 * s.done / s.total) if s.total else 0)
        self.status.setText(status_text(s))

    def _finish(self, text: str) -> None:
        self.job = None
        self.cancel_button.hide()
        self.check_button.setEnabled(True)
        self.status.setText(text)

    @Slot(object)
    def _on_done(self, folder: Path) -> None:
        self.progress.setValue(1000)
        self._finish(f"Downloaded to {folder}.")
        self.plan = None
        self.downloaded.emit(folder)

    @Slot(str)
    def _on_failed(self, message: str) -> None:
        self.progress.hide()
        self._finish(message)
        self.download_button.setEnabled(self.plan is not None)

    @Slot()
    def _on_cancelled(self) -> None:
        self._finish("Cancelled. The part already downloaded is kept: download again to resume.")
        self.download_button.setEnabled(self.plan is not None)

    def reject(self) -> None:
        self.cancel()  # closing the dialog stops the download (it resumes next time)
        super().reject()
