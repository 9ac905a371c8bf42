"""Document collections over ``studio serve``: ``GET /v1/collections`` lists the named collections
made in the Chat window or by ``studio chat --docs … --collection NAME``, and a chat completion
with ``"studio_collection": "NAME"`` answers from one of them. The passages found are numbered
into the prompt as in the window (:func:`studio.pipelines.chat.documents.ground`) and come back
as ``studio_citations`` on the completion (the first chunk of a stream): ``[{"index": 1,
"source": "report.pdf, p. 3", "file": "report.pdf", "page": 3, "text": …}]``, file names only,
never the server's paths. An empty list means nothing relevant was found and the question went
to the model as asked.

The database is opened on first use; every call runs in a worker thread (SQLite and, when an
embedding model is in the models folder, its encoder), never on the event loop.
"""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

from studio.server.schemas import ApiError

if TYPE_CHECKING:
    from studio.pipelines.chat.documents import DocumentIndex

FIELD = "studio_collection"


class ServedDocuments:
    """The named collections of one conversations database (``paths.database``)."""

    def __init__(self, database: Path, models_dir: Path | None = None) -> None:
        self.database = Path(database)
        self.models_dir = models_dir
        self._lock = threading.Lock()
        self._index: DocumentIndex | None = None

    def _opened(self) -> DocumentIndex:
        from studio.pipelines.chat import documents as docs
        from studio.pipelines.chat.store import ConversationStore

        with self._lock:
            if self._index is None:
                embedder = docs.find_embedder(self.models_dir) if self.models_dir else None
                self._index = docs.DocumentIndex(ConversationStore(self.database), embedder)
            return self._index

    def listing(self) -> dict[str, Any]:
        """The ``/v1/collections`` answer: each named collection with its files and passages."""
        index = self._opened()
        data = []
        for cid, name in index.collections():
            files = sum(1 for f in index.files(cid) if f["status"] == "ok")
            data.append({"id": name, "object": "collection", "files": files,
                         "passages": index.passage_count([cid])})
        return {"object": "list", "data": data}

    def ground(self, name: str, messages: list[dict[str, str]]
               ) -> tuple[list[dict[str, str]], list[dict[str, Any]]]:
        """The messages with the passages of collection ``name`` put in, and their citations.
        Raises an OpenAI-shaped 404 naming :data:`FIELD` for a collection that does not exist."""
        from studio.pipelines.chat import documents as docs

        index = self._opened()
        try:
            cid = index.collection(name, create=False)
        except KeyError:
            names = ", ".join(n for _, n in index.collections()) or "none yet"
            raise ApiError(404, f"There is no document collection named '{name}' "
                                f"(collections here: {names}; GET /v1/collections lists them).",
                           FIELD, "collection_not_found") from None
        if not index.passage_count([cid]):
            raise ApiError(400, f"The collection '{name}' holds no text to answer from; add "
                                "documents to it in the Chat window or with studio chat --docs "
                                f"PATH… --collection {name}.", FIELD, "collection_empty")
        grounded, passages = docs.ground(index, [cid], messages)
        return grounded, citations(passages)

    def close(self) -> None:
        with self._lock:
            if self._index is not None:
                self._index.store.close()
                self._index = None


def citations(passages: Any) -> list[dict[str, Any]]:
    """What the completion carries for each passage put into the prompt (no server paths)."""
    return [{"index": p.number, "source": p.source, "file": Path(p.file).name,
             "page": p.page or None, "text": p.text} for p in passages]


async def ground_request(documents: ServedDocuments | None, name: str | None,
                         job_request: Any) -> list[dict[str, Any]] | None:
    """Put collection ``name``'s passages into ``job_request.messages`` (off the event loop);
    the citations, or None when the request named no collection."""
    if name is None:
        return None
    if documents is None:
        raise ApiError(400, "This server was started without document collections.", FIELD,
                       "collections_unavailable")
    job_request.messages, cited = await asyncio.to_thread(documents.ground, name,
                                                          job_request.messages)
    return cited


async def listing(documents: ServedDocuments | None) -> dict[str, Any]:
    if documents is None:
        return {"object": "list", "data": []}
    return await asyncio.to_thread(documents.listing)
