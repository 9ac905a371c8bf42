"""Benchmark: chat with documents — indexing a 1,000-page collection and answering a question.

A synthetic collection of ``--pages`` pages (default 1,000) in ``--files`` PDFs written with pypdf
(about 250 words a page from a made-up 4,000-word vocabulary, so BM25 has real work), each page
holding one fact "the code name of project <P> is <N>". Studio indexes it
(``DocumentIndex.add``: pypdf text per page, passages with overlap, FTS5) and then answers
``--questions`` questions "What is the code name of project <P>?" with ``DocumentIndex.retrieve``
(stop words out, BM25, the relevance bar, numbered passages) — the work done before every reply
with documents attached. Side by side in the same process, on the same database: the raw SQLite
FTS5 query (``MATCH`` + ``bm25`` + ``LIMIT``) for the same words. Printed: indexing time, the
median and worst time per question for both, their ratio, and how often the right page came first.
Keyword ranking only (no embedding model here); the issue's target is < 200 ms a question.

    python bench/retrieval.py
    python bench/retrieval.py --pages 3000 --files 60 --questions 200
"""

from __future__ import annotations

import argparse
import random
import sqlite3
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def _vocabulary(rng: random.Random, n: int = 4000) -> list[str]:
    syllables = ["ka", "lo", "mi", "ren", "tu", "sha", "vor", "ix", "bel", "dra", "qu", "nen"]
    words: set[str] = set()
    while len(words) < n:
        words.add("".join(rng.choice(syllables) for _ in range(rng.randint(2, 4))))
    return sorted(words)


def build_collection(folder: Path, pages: int, files: int, seed: int = 0) -> list[tuple[str, str,
                                                                                         int]]:
    """Write the PDFs; returns (project, file name, page) for every fact."""
    from tests.fixtures.tiny_docs import write_pdf

    rng = random.Random(seed)
    vocab = _vocabulary(rng)
    facts: list[tuple[str, str, int]] = []
    per_file = max(1, pages // files)
    for f in range(files):
        name = f"report-{f:03d}.pdf"
        texts = []
        for p in range(per_file):
            project = f"project{f:03d}x{p:03d}"
            filler = " ".join(rng.choice(vocab) for _ in range(250))
            cut = rng.randint(20, 200)
            words = filler.split()
            words[cut:cut] = f"the code name of {project} is {rng.choice(vocab)}".split()
            texts.append(" ".join(words))
            facts.append((project, name, p + 1))
        write_pdf(folder / name, texts)
    return facts


def run(pages: int, files: int, questions: int) -> dict:
    from studio.pipelines.chat.documents import DocumentIndex, _or_query, question_terms
    from studio.pipelines.chat.store import ConversationStore

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        docs = root / "docs"
        started = time.perf_counter()
        facts = build_collection(docs, pages, files)
        written_s = time.perf_counter() - started
        store = ConversationStore(root / "studio.db")
        index = DocumentIndex(store)
        cid = index.collection("bench")
        started = time.perf_counter()
        report = index.add(cid, [docs])
        index_s = time.perf_counter() - started
        again = time.perf_counter()
        unchanged = index.add(cid, [docs])
        reindex_s = time.perf_counter() - again
        raw = sqlite3.connect(root / "studio.db")
        rng = random.Random(1)
        asked = [rng.choice(facts) for _ in range(questions)]
        studio_t, raw_t, first = [], [], 0
        for project, name, page in asked:  # alternating, so both see the same cache state
            question = f"What is the code name of {project}?"
            t = time.perf_counter()
            hits = index.retrieve([cid], question)
            studio_t.append(time.perf_counter() - t)
            first += bool(hits) and hits[0].file.endswith(name) and hits[0].page == page
            t = time.perf_counter()
            raw.execute("SELECT rowid, bm25(doc_chunks_fts) FROM doc_chunks_fts WHERE "
                        "doc_chunks_fts MATCH ? ORDER BY bm25(doc_chunks_fts) LIMIT 5",
                        (_or_query(question_terms(question)),)).fetchall()
            raw_t.append(time.perf_counter() - t)
        raw.close()
        store.close()
    return {"pages": len(facts), "files": files, "written_s": written_s, "index_s": index_s,
            "passages": report.passages, "skipped": len(report.skipped),
            "reindex_s": reindex_s, "unchanged": len(unchanged.unchanged),
            "studio_ms": statistics.median(studio_t) * 1000, "studio_max_ms": max(studio_t) * 1000,
            "raw_ms": statistics.median(raw_t) * 1000, "raw_max_ms": max(raw_t) * 1000,
            "first": first, "questions": questions}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pages", type=int, default=1000)
    parser.add_argument("--files", type=int, default=20)
    parser.add_argument("--questions", type=int, default=100)
    args = parser.parse_args(argv)
    r = run(args.pages, args.files, args.questions)
    print(f"retrieval: {r['pages']:,} pages in {r['files']} PDFs (written in "
          f"{r['written_s']:.1f} s)")
    print(f"  index (pypdf + passages + FTS5)  {r['index_s']:8.2f} s   {r['passages']:,} "
          f"passages, {r['pages'] / r['index_s']:,.0f} pages/s, {r['skipped']} skipped")
    print(f"  index again, nothing changed     {r['reindex_s']:8.3f} s   "
          f"{r['unchanged']} files unchanged")
    print(f"  studio retrieve, per question    {r['studio_ms']:8.2f} ms  median "
          f"(worst {r['studio_max_ms']:.2f} ms; target < 200 ms)")
    print(f"  raw sqlite FTS5 MATCH+bm25       {r['raw_ms']:8.2f} ms  median "
          f"(worst {r['raw_max_ms']:.2f} ms)")
    print(f"  ratio studio/raw = {r['studio_ms'] / r['raw_ms']:.2f}   right page first: "
          f"{r['first']}/{r['questions']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
