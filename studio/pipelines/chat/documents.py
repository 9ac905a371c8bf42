"""Chat with your documents: files attached to a conversation or a named collection, retrieved
into the prompt with numbered citations.

- **Reading** (:mod:`studio.pipelines.chat.reading`): PDF, Word (``.docx``), Markdown, text and
  HTML, bounded; a file that cannot be read is *skipped* with a sentence saying why.
- **Passages** (:func:`~studio.pipelines.chat.reading.chunk_pages`): runs of ``CHUNK_WORDS``
  words overlapping by ``OVERLAP_WORDS``, never across a page.
- **Index** (:class:`DocumentIndex`): in the conversations database (tables made by
  :data:`~studio.pipelines.chat.store.DOCUMENTS_SCHEMA`), an FTS5 BM25 keyword index that is
  always there, and a vector per passage when an embedding model is found (:func:`find_embedder`).
  A file is read again only when its size or mtime changed *and* its SHA-256 differs.
- **Retrieval** (:meth:`DocumentIndex.retrieve`): BM25, fused with cosine similarity by
  reciprocal-rank fusion when vectors exist. A passage counts only when enough of the question's
  words are in it (:data:`MIN_COVERAGE`) or, with vectors, when it is close enough in meaning
  (:data:`MIN_COSINE`); when none does, nothing is put into the prompt and the reply says so.
- **Prompt** (:func:`grounded_messages`): the passages, numbered, go before the last user
  message; the model is asked to cite them as [1], [2]. Only the prompt changes, so local and
  remote (``openai:``) models work alike.

No Qt here: the window runs indexing on its CPU pool, the CLI inline.
"""

from __future__ import annotations

import hashlib
import logging
import re
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from studio.core.jobs import CancelToken, UserFacingError
from studio.core.wording import count_of
from studio.pipelines.chat import reading
from studio.pipelines.chat.reading import (  # noqa: F401 - re-exported, the documents API
    CHUNK_WORDS,
    OVERLAP_WORDS,
    SUPPORTED,
    Page,
    SkippedFile,
    chunk_pages,
    html_to_text,
    read_document,
)
from studio.pipelines.chat.store import ConversationStore, fts_query, inserted_id

if TYPE_CHECKING:
    import numpy as np

log = logging.getLogger(__name__)

TOP_K = 5
MIN_COVERAGE = 0.34  # share of the question's words a passage must contain to count
MIN_COSINE = 0.35  # or, with an embedding model, how close in meaning it must be
RRF_K = 60  # reciprocal-rank fusion's usual constant
NOTHING_RELEVANT = "Nothing relevant found in the attached documents."
STOPWORDS = frozenset("""a an and are as at be but by can could did do does for from had has have
how i if in into is it its me my not of on or our so than that the their them then there these
they this to was we were what when where which who whom why will with would you your about after
all also any been before being both each few more most no nor only other over same should some
such too under until up very""".split())


@dataclass
class Passage:
    """A retrieved passage: ``number`` is its citation ([1] …) in the prompt and the reply."""

    number: int
    chunk_id: int
    file: str
    page: int
    text: str
    score: float  # the fused score it was ranked by
    bm25: float | None = None  # FTS5's BM25 (higher is better here), None: not a keyword hit
    cosine: float | None = None
    coverage: float = 0.0  # share of the question's words it contains

    @property
    def source(self) -> str:
        """``report.pdf, p. 3`` — how a reference names it."""
        name = Path(self.file).name
        return f"{name}, p. {self.page}" if self.page else name

    def to_dict(self) -> dict[str, Any]:
        return {"number": self.number, "chunk_id": self.chunk_id, "file": self.file,
                "page": self.page, "text": self.text, "score": round(self.score, 4),
                "bm25": None if self.bm25 is None else round(self.bm25, 3),
                "cosine": None if self.cosine is None else round(self.cosine, 3),
                "coverage": round(self.coverage, 2)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Passage:
        return cls(int(data["number"]), int(data.get("chunk_id", 0)), str(data["file"]),
                   int(data.get("page", 0)), str(data["text"]), float(data.get("score", 0)),
                   data.get("bm25"), data.get("cosine"), float(data.get("coverage", 0)))


@dataclass
class IndexReport:
    """What one indexing run did, for a sentence and for tests."""

    indexed: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (path, why)
    passages: int = 0
    cancelled: bool = False

    def sentence(self) -> str:
        parts = [f"{count_of(len(self.indexed), 'file')} indexed "
                 f"({count_of(self.passages, 'passage')})"]
        if self.unchanged:
            parts.append(f"{len(self.unchanged):,} unchanged")
        if self.skipped:
            parts.append(f"{len(self.skipped):,} skipped")
        text = ", ".join(parts) + "."
        if self.cancelled:
            text = "Indexing stopped: " + text[0].lower() + text[1:]
        for path, why in self.skipped[:3]:
            text += f" {Path(path).name}: {why}"
        if len(self.skipped) > 3:
            text += f" (and {len(self.skipped) - 3} more skipped)"
        return text


def file_digest(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            h.update(block)
    return h.hexdigest()


def expand_paths(paths: Iterable[Path | str]) -> list[Path]:
    """Files named, and the files in folders named (recursively, hidden ones left out), sorted.
    Raises :class:`UserFacingError` for a path that does not exist."""
    found: list[Path] = []
    for raw in paths:
        path = Path(raw).expanduser()
        if path.is_dir():
            found += sorted(p for p in path.rglob("*") if p.is_file()
                            and not any(part.startswith(".") for part in p.relative_to(path).parts))
        elif path.is_file():
            found.append(path)
        else:
            raise UserFacingError(f"{path} does not exist; name files or folders to attach.")
    return [p.resolve() for p in found]


# -- embeddings --------------------------------------------------------------------------------
_ENCODER_TYPES = {"bert", "roberta", "xlm-roberta", "mpnet", "distilbert", "modernbert",
                  "nomic_bert", "electra", "deberta-v2"}


def is_embedding_folder(folder: Path) -> bool:
    """A sentence-transformers model (``modules.json``) over an encoder transformers knows."""
    from studio.library.chat_models import read_config

    if not (folder / "modules.json").is_file() and not (
            folder / "sentence_bert_config.json").is_file():
        return False
    return str(read_config(folder).get("model_type", "")) in _ENCODER_TYPES


def find_embedding_model(models_dir: Path) -> Path | None:
    """The first sentence-transformers model in the library folder, else in the HF cache."""
    candidates: list[Path] = []
    if models_dir.is_dir():
        for config in sorted(models_dir.glob("**/modules.json")):
            if len(config.relative_to(models_dir).parts) <= 4:
                candidates.append(config.parent)
    try:
        from studio.library.hf_cache import hf_cache_repos

        for repo in hf_cache_repos():
            for rev in repo.revisions:
                candidates.append(Path(rev.snapshot_path))
    except Exception as exc:  # noqa: BLE001 - an unreadable cache only means no vectors
        log.info("the HF cache could not be scanned for embedding models: %s", exc)
    return next((c for c in candidates if is_embedding_folder(c)), None)


class Embedder:
    """Sentence vectors from a local model: sentence-transformers when installed, else
    transformers' AutoModel with mean pooling over the attention mask (what most
    sentence-transformers models are). Vectors are L2-normalised float32."""

    def __init__(self, folder: Path, device: str = "cpu") -> None:
        self.folder = Path(folder)
        self.name = self.folder.name
        self.device = device
        self._st: Any = None
        try:
            from sentence_transformers import SentenceTransformer
        except ImportError:
            from transformers import AutoModel, AutoTokenizer

            self.tokenizer = AutoTokenizer.from_pretrained(self.folder)
            self.model = AutoModel.from_pretrained(self.folder).to(device).eval()
        else:
            self._st = SentenceTransformer(str(self.folder), device=device)

    def encode(self, texts: Sequence[str], batch: int = 32) -> np.ndarray:
        import numpy as np
        import torch

        if self._st is not None:
            return np.asarray(self._st.encode(list(texts), batch_size=batch,
                                              normalize_embeddings=True), dtype=np.float32)
        out = []
        with torch.inference_mode():
            for i in range(0, len(texts), batch):
                enc = self.tokenizer(list(texts[i:i + batch]), padding=True, truncation=True,
                                     max_length=256, return_tensors="pt").to(self.device)
                hidden = self.model(**enc).last_hidden_state
                mask = enc["attention_mask"].unsqueeze(-1).to(hidden.dtype)
                pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
                out.append(torch.nn.functional.normalize(pooled, dim=-1).float().cpu().numpy())
        return np.concatenate(out) if out else np.zeros((0, 0), dtype=np.float32)


def find_embedder(models_dir: Path) -> Embedder | None:
    """An :class:`Embedder` over the embedding model found locally, or None (keywords only)."""
    folder = find_embedding_model(models_dir)
    if folder is None:
        return None
    try:
        return Embedder(folder)
    except Exception as exc:  # noqa: BLE001 - a broken model means keyword search, said in the log
        log.warning("the embedding model %s could not be loaded (%s); keyword search only",
                    folder, exc)
        return None


# -- the index ---------------------------------------------------------------------------------
def question_terms(question: str) -> list[str]:
    """The question's words that carry meaning (lower case, stop words out, each once)."""
    words = re.findall(r"\w+", question.lower())
    seen: dict[str, None] = {}
    for w in words:
        if w not in STOPWORDS and (len(w) > 1 or w.isdigit()):
            seen.setdefault(w)
    return list(seen)


def _or_query(terms: list[str]) -> str:
    return " OR ".join(fts_query(t).rstrip("*") for t in terms)


def _coverage(terms: list[str], text: str) -> float:
    if not terms:
        return 0.0
    words = set(re.findall(r"\w+", text.lower()))
    stems = {w[:5] for w in words}
    hits = sum(1 for t in terms if t in words or (len(t) >= 5 and t[:5] in stems))
    return hits / len(terms)


class DocumentIndex:
    """Collections of documents in the conversations database (see the module docstring)."""

    def __init__(self, store: ConversationStore, embedder: Embedder | None = None) -> None:
        self.store = store
        self.embedder = embedder

    # -- collections ---------------------------------------------------------------------
    def collection(self, name: str, create: bool = True) -> int:
        """The id of the named collection (made when ``create``); KeyError when absent."""
        name = name.strip()
        if not name:
            raise UserFacingError("A collection needs a name.")
        row = self.store.execute("SELECT id FROM doc_collections WHERE name = ?",
                                 (name,)).fetchone()
        if row is not None:
            return int(row[0])
        if not create:
            raise KeyError(name)
        return inserted_id(self.store.execute(
            "INSERT INTO doc_collections (name, created) VALUES (?, ?)", (name, time.time())))

    def conversation_collection(self, conversation_id: int) -> int:
        """The collection holding the files attached to one conversation (made on first use)."""
        row = self.store.execute("SELECT id FROM doc_collections WHERE conversation_id = ?",
                                 (conversation_id,)).fetchone()
        if row is not None:
            return int(row[0])
        return inserted_id(self.store.execute(
            "INSERT INTO doc_collections (conversation_id, created) VALUES (?, ?)",
            (conversation_id, time.time())))

    def chosen_collection(self, conversation_id: int) -> str | None:
        """The name of the collection a conversation answers from (None: only its own files)."""
        row = self.store.execute(
            "SELECT c.name FROM conversations v JOIN doc_collections c "
            "ON c.id = v.doc_collection_id WHERE v.id = ?", (conversation_id,)).fetchone()
        return None if row is None else str(row[0])

    def choose_collection(self, conversation_id: int, name: str | None) -> None:
        """Remember which named collection (None: none) a conversation answers from; it is
        restored when the conversation is opened again. Not a change that reorders the list."""
        collection_id = None if name is None else self.collection(name)
        self.store.execute("UPDATE conversations SET doc_collection_id = ? WHERE id = ?",
                           (collection_id, conversation_id))

    def collections(self) -> list[tuple[int, str]]:
        """The named collections, by name."""
        return [(int(r[0]), str(r[1])) for r in self.store.execute(
            "SELECT id, name FROM doc_collections WHERE name IS NOT NULL ORDER BY name")]

    def files(self, collection_id: int) -> list[dict[str, Any]]:
        rows = self.store.execute(
            "SELECT f.id, f.path, f.status, f.note, f.pages, "
            "(SELECT COUNT(*) FROM doc_chunks c WHERE c.file_id = f.id) AS passages "
            "FROM doc_files f WHERE f.collection_id = ? ORDER BY f.path", (collection_id,))
        return [dict(r) for r in rows]

    def remove_file(self, collection_id: int, path: str) -> None:
        self.store.execute("DELETE FROM doc_files WHERE collection_id = ? AND path = ?",
                           (collection_id, str(path)))

    def passage_count(self, collection_ids: Sequence[int]) -> int:
        if not collection_ids:
            return 0
        marks = ",".join("?" * len(collection_ids))
        return int(self.store.execute(
            f"SELECT COUNT(*) FROM doc_chunks c JOIN doc_files f ON f.id = c.file_id "
            f"WHERE f.collection_id IN ({marks})", tuple(collection_ids)).fetchone()[0])

    # -- indexing --------------------------------------------------------------------------
    def add(self, collection_id: int, paths: Iterable[Path | str],
            progress: Callable[[int, int, str], None] | None = None,
            cancel: CancelToken | None = None) -> IndexReport:
        """Index files (and folders' files) into a collection; unchanged files are not read
        again. ``progress(done, total, file name)`` after each file; ``cancel`` stops between
        files (what was indexed stays)."""
        files = expand_paths(paths)
        report = IndexReport()
        for done, path in enumerate(files):
            if cancel is not None and cancel.cancelled:
                report.cancelled = True
                break
            if progress is not None:
                progress(done, len(files), path.name)
            self._index_file(collection_id, path, report)
        if progress is not None and not report.cancelled:
            progress(len(files), len(files), "")
        return report

    def _index_file(self, collection_id: int, path: Path, report: IndexReport) -> None:
        key = str(path)
        try:
            stat = path.stat()
        except OSError as exc:
            report.skipped.append((key, f"it cannot be read ({exc.strerror or exc})."))
            return
        row = self.store.execute(
            "SELECT id, size, mtime, sha256, status, note FROM doc_files "
            "WHERE collection_id = ? AND path = ?", (collection_id, key)).fetchone()
        if row is not None and row["size"] == stat.st_size and row["mtime"] == stat.st_mtime:
            self._unchanged(report, key, row)
            return
        digest = file_digest(path) if stat.st_size <= reading.MAX_FILE_BYTES else ""
        if row is not None and digest and row["sha256"] == digest:  # touched, not changed
            self.store.execute("UPDATE doc_files SET size = ?, mtime = ? WHERE id = ?",
                               (stat.st_size, stat.st_mtime, row["id"]))
            self._unchanged(report, key, row)
            return
        try:
            pages = read_document(path)
            chunks = chunk_pages(pages, CHUNK_WORDS, OVERLAP_WORDS)
            status, note = "ok", ""
        except SkippedFile as exc:
            pages, chunks, status, note = [], [], "skipped", str(exc)
        vectors = self._vectors([text for _, text in chunks])
        with self.store.transaction():
            db = self.store
            if row is not None:
                db.execute("DELETE FROM doc_files WHERE id = ?", (row["id"],))
            file_id = inserted_id(db.execute(
                "INSERT INTO doc_files (collection_id, path, size, mtime, sha256, status, note, "
                "pages, indexed) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (collection_id, key, stat.st_size, stat.st_mtime, digest, status, note,
                 len(pages), time.time())))
            model = self.embedder.name if self.embedder is not None and vectors is not None \
                else ""
            for i, (page, text) in enumerate(chunks):
                db.execute("INSERT INTO doc_chunks (file_id, ord, page, text, vector, "
                           "vector_model) VALUES (?, ?, ?, ?, ?, ?)",
                           (file_id, i, page, text,
                            None if vectors is None else vectors[i].tobytes(), model))
        if status == "ok":
            report.indexed.append(key)
            report.passages += len(chunks)
        else:
            report.skipped.append((key, note))

    @staticmethod
    def _unchanged(report: IndexReport, key: str, row: Any) -> None:
        if row["status"] == "ok":
            report.unchanged.append(key)
        else:
            report.skipped.append((key, row["note"]))

    def _vectors(self, texts: list[str]) -> np.ndarray | None:
        if self.embedder is None or not texts:
            return None
        return self.embedder.encode(texts)

    # -- retrieval -------------------------------------------------------------------------
    def retrieve(self, collection_ids: Sequence[int], question: str, k: int = TOP_K,
                 min_coverage: float = MIN_COVERAGE, min_cosine: float = MIN_COSINE
                 ) -> list[Passage]:
        """The ``k`` best passages for ``question`` that pass the relevance bar, numbered from 1
        (an empty list: nothing relevant)."""
        if not collection_ids:
            return []
        marks = ",".join("?" * len(collection_ids))
        terms = question_terms(question)
        pool = max(k * 4, 20)
        keyword: list[Any] = []
        if terms:
            keyword = self._keyword(marks, collection_ids, _or_query(terms), pool)
        found: dict[int, Passage] = {}
        fused: dict[int, float] = {}
        for rank, r in enumerate(keyword):
            found[r["id"]] = Passage(0, r["id"], r["path"], r["page"], r["text"], 0.0,
                                     bm25=-float(r["rank"]))
            fused[r["id"]] = 1.0 / (RRF_K + rank + 1)
        for rank, (chunk_id, cosine, row) in enumerate(self._nearest(marks, collection_ids,
                                                                     question, pool)):
            p = found.get(chunk_id)
            if p is None:
                p = found[chunk_id] = Passage(0, chunk_id, row["path"], row["page"], row["text"],
                                              0.0)
            p.cosine = cosine
            fused[chunk_id] = fused.get(chunk_id, 0.0) + 1.0 / (RRF_K + rank + 1)
        kept: list[Passage] = []
        # Best fused score first; the relevance bar is checked in that order until k pass.
        for chunk_id in sorted(fused, key=lambda c: (-fused[c], c)):
            p = found[chunk_id]
            p.score = fused[chunk_id]
            p.coverage = _coverage(terms, p.text)
            if p.coverage >= min_coverage or (p.cosine is not None and p.cosine >= min_cosine):
                p.number = len(kept) + 1
                kept.append(p)
                if len(kept) == k:
                    break
        return kept

    def _keyword(self, marks: str, collection_ids: Sequence[int], query: str,
                 pool: int) -> list[Any]:
        """The ``pool`` best BM25 passages in the collections. When the database holds no other
        collection, FTS5 ranks and cuts first (its fast path) and only those rows are joined."""
        others = self.store.execute(
            f"SELECT EXISTS (SELECT 1 FROM doc_files WHERE collection_id NOT IN ({marks}))",
            tuple(collection_ids)).fetchone()[0]
        if not others:
            return self.store.execute(
                "SELECT c.id, c.page, c.text, f.path, hit.rank FROM (SELECT rowid, rank FROM "
                "doc_chunks_fts WHERE doc_chunks_fts MATCH ? ORDER BY rank LIMIT ?) AS hit "
                "JOIN doc_chunks c ON c.id = hit.rowid JOIN doc_files f ON f.id = c.file_id "
                "ORDER BY hit.rank", (query, pool)).fetchall()
        return self.store.execute(
            "SELECT c.id, c.page, c.text, f.path, doc_chunks_fts.rank AS rank "
            "FROM doc_chunks_fts JOIN doc_chunks c ON c.id = doc_chunks_fts.rowid "
            "JOIN doc_files f ON f.id = c.file_id "
            f"WHERE doc_chunks_fts MATCH ? AND f.collection_id IN ({marks}) "
            "ORDER BY doc_chunks_fts.rank LIMIT ?", (query, *collection_ids, pool)).fetchall()

    def _nearest(self, marks: str, collection_ids: Sequence[int], question: str,
                 pool: int) -> list[tuple[int, float, Any]]:
        """Passages by cosine similarity to the question (none without an embedder)."""
        if self.embedder is None:
            return []
        import numpy as np

        rows = self.store.execute(
            "SELECT c.id, c.page, c.text, c.vector, f.path FROM doc_chunks c "
            f"JOIN doc_files f ON f.id = c.file_id WHERE f.collection_id IN ({marks}) "
            "AND c.vector IS NOT NULL AND c.vector_model = ?",
            (*collection_ids, self.embedder.name)).fetchall()
        if not rows:
            return []
        matrix = np.stack([np.frombuffer(r["vector"], dtype=np.float32) for r in rows])
        query = self.embedder.encode([question])[0]
        if matrix.shape[1] != query.shape[0]:
            return []
        sims = matrix @ query
        order = np.argsort(-sims)[:pool]
        return [(int(rows[i]["id"]), float(sims[i]), rows[i]) for i in order]


# -- the prompt --------------------------------------------------------------------------------
def grounded_messages(messages: list[dict[str, str]], passages: Sequence[Passage]
                      ) -> list[dict[str, str]]:
    """``messages`` with the numbered passages put before the last user message (unchanged when
    there are none: nothing irrelevant goes into the prompt)."""
    if not passages or not messages or messages[-1]["role"] != "user":
        return [dict(m) for m in messages]
    sources = "\n\n".join(f"[{p.number}] ({p.source})\n{p.text}" for p in passages)
    question = messages[-1]["content"]
    content = ("Answer using the numbered passages from the user's documents below. Cite the "
               "passages you use as [1], [2]. If they do not contain the answer, say so.\n\n"
               f"{sources}\n\nQuestion: {question}")
    return [dict(m) for m in messages[:-1]] + [{**messages[-1], "content": content}]


def references(passages: Sequence[Passage]) -> str:
    """The numbered references shown under an answer (one line each)."""
    return "\n".join(f"[{p.number}] {p.source}" for p in passages)


def explain(passages: Sequence[Passage]) -> str:
    """What the model was given, with each passage's scores (the expandable area, ``--verbose``)."""
    if not passages:
        return NOTHING_RELEVANT + " No passages were put into the prompt."
    lines = []
    for p in passages:
        scores = [f"fused {p.score:.4f}", f"words {p.coverage:.0%}"]
        if p.bm25 is not None:
            scores.append(f"BM25 {p.bm25:.2f}")
        if p.cosine is not None:
            scores.append(f"cosine {p.cosine:.2f}")
        lines.append(f"[{p.number}] {p.source} — {', '.join(scores)}\n{p.text}")
    return "\n\n".join(lines)


def ground(index: DocumentIndex, collection_ids: Sequence[int],
           messages: list[dict[str, str]]) -> tuple[list[dict[str, str]], list[Passage]]:
    """The messages to send for the last user message, and the passages put into them (none:
    nothing relevant was found, and the messages are unchanged)."""
    if not collection_ids or not messages or messages[-1]["role"] != "user":
        return [dict(m) for m in messages], []
    passages = index.retrieve(collection_ids, messages[-1]["content"])
    return grounded_messages(messages, passages), passages
