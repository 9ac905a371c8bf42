"""The Gallery's search by what images show: a CLIP / SigLIP model ranks the images by text.

Finding the model is a folder scan (I/O pool); bringing the index up to date and searching are
``gallery-index`` / ``gallery-search`` jobs on the GPU lane (:mod:`studio.pipelines.gallery_clip`),
so they show in the queue with progress and can be stopped. A new search replaces the one in
flight. Without a model the panel is told which ``hf download`` provides one.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from PySide6.QtCore import QObject, Signal

from studio.ui.context import AppContext
from studio.workers.lanes import Calls

if TYPE_CHECKING:
    from studio.core.jobs import JobSnapshot
    from studio.workers.job_bridge import QtJobHandle

RESULTS = 500  # images a search shows at most


class MeaningSearch(QObject):
    """Owns the model choice and the jobs of the search by meaning (GUI thread)."""

    #: A line for the header: indexing progress, or "" when idle.
    status = Signal(str)
    #: Search results: the GalleryItems best first (found on disk).
    results = Signal(str, list)
    #: Something to say in place of the grid: (title, text) — no model, a failed job.
    problem = Signal(str, str)
    #: The index job started (True) or ended (False).
    indexing = Signal(bool)

    def __init__(self, ctx: AppContext, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.ctx = ctx
        self._calls = Calls(self)
        self.model: str | None = None  # the model's folder, once found
        self.missing = ""  # why there is none (the sentence with the hf download command)
        self._index_job: QtJobHandle | None = None
        self._search_job: QtJobHandle | None = None
        self._pending_text = ""

    # -- model -----------------------------------------------------------------------------------
    def find_model(self, then: Callable[[], None] | None = None) -> None:
        """Look for a CLIP / SigLIP model (pool thread), then call ``then()``."""
        settings, paths = self.ctx.settings, self.ctx.paths

        def work() -> tuple[str | None, str]:
            from studio.core.jobs import UserFacingError
            from studio.library.clip_models import resolve_clip_model

            try:
                return str(resolve_clip_model("", settings, paths).path), ""
            except UserFacingError as exc:
                return None, str(exc)

        def done(answer: tuple[str | None, str]) -> None:
            self.model, self.missing = answer
            if self.model is None:
                self.problem.emit("Search by what images show needs a CLIP model",
                                  self.missing)
            if then is not None:
                then()

        self._calls.run(work, done)

    # -- jobs ------------------------------------------------------------------------------------
    def build_index(self) -> None:
        """Embed new and changed images now (a job in the queue); no-op while one runs."""
        if self.model is None or self._index_job is not None:
            return
        from studio.core.gallery_requests import GalleryIndexRequest

        job = self._index_job = self.ctx.bridge.submit(
            GalleryIndexRequest(model=self.model), "Indexing the Gallery for search")
        job.progress.connect(lambda _s, step, total, _p: self.status.emit(
            f"Indexing {step:,} of {total:,}…" if total else ""))
        job.ended.connect(self._index_ended)
        self.indexing.emit(True)

    def _index_ended(self, snapshot: JobSnapshot) -> None:
        self._index_job = None
        self.indexing.emit(False)
        self.status.emit("")
        if snapshot.error:
            self.problem.emit("The images could not be indexed for search", snapshot.error)

    def stop_indexing(self) -> None:
        if self._index_job is not None:
            self._index_job.cancel()

    def search(self, text: str) -> None:
        """Rank the images by ``text`` (replacing a search still queued or running)."""
        if self.model is None:
            self.problem.emit("Search by what images show needs a CLIP model",
                              self.missing or "Looking for a CLIP model…")
            return
        from studio.core.gallery_requests import GallerySearchRequest

        if self._search_job is not None:
            self._search_job.cancel()
        job = self._search_job = self.ctx.bridge.submit(
            GallerySearchRequest(text=text, model=self.model, limit=RESULTS),
            f"Searching the Gallery for “{text}”")
        job.ended.connect(lambda snapshot, j=job, t=text: self._search_ended(j, t, snapshot))

    def _search_ended(self, job: QtJobHandle, text: str, snapshot: JobSnapshot) -> None:
        if job is not self._search_job:
            return  # a newer search replaced it
        self._search_job = None
        if snapshot.error:
            self.problem.emit("The search failed", snapshot.error)
        elif snapshot.result is not None:
            self.results.emit(text, [hit.item for hit in snapshot.result if hit.item])

    def shutdown(self) -> None:
        for job in (self._search_job, self._index_job):
            if job is not None:
                job.cancel()
        self._calls.wait(10_000)
