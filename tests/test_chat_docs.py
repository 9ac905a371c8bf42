"""Chat with documents: reading, passages, the FTS5 index, citations in the prompt, the
nothing-relevant path, re-indexing only changed files, bad files, hybrid ranking with a tiny
embedding model, and ``studio chat --docs`` / ``--collection``."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

import pytest

from studio.pipelines.chat import documents as docs
from studio.pipelines.chat import reading
from studio.pipelines.chat.documents import DocumentIndex, Page, chunk_pages, read_document
from studio.pipelines.chat.store import MIGRATIONS, ConversationStore
from tests.fixtures.tiny_docs import build_tiny_bert, write_pdf

FOXES = "The red fox hunts mice at dusk along the river. Foxes dig dens in sandy banks."
BREAD = "Bread rises because yeast turns flour sugars into gas; bake it in a hot oven."
PARIS = "Paris is the capital of France and sits on the river Seine."


@pytest.fixture()
def folder(tmp_path):
    d = tmp_path / "docs"
    d.mkdir()
    (d / "foxes.md").write_text("# Foxes\n\n" + FOXES, encoding="utf-8")
    (d / "bread.txt").write_text(BREAD, encoding="utf-8")
    (d / "paris.html").write_text(f"<html><head><style>p{{}}</style><script>var x = 'fox';"
                                  f"</script></head><body><p>{PARIS}</p></body></html>",
                                  encoding="utf-8")
    return d


@pytest.fixture()
def index(tmp_path):
    store = ConversationStore(tmp_path / "studio.db")
    yield DocumentIndex(store)
    store.close()


def test_passages_overlap_and_keep_their_page():
    words = [f"w{i}" for i in range(25)]
    chunks = chunk_pages([Page(1, " ".join(words)), Page(2, "last page")], size=10, overlap=4)
    assert [page for page, _ in chunks] == [1, 1, 1, 1, 2]
    first, second = chunks[0][1].split(), chunks[1][1].split()
    assert first == words[:10] and second[:4] == first[-4:]
    assert chunks[3][1].split()[-1] == "w24"  # nothing lost at the end
    with pytest.raises(ValueError):
        chunk_pages([], size=5, overlap=5)


def test_reads_pdf_pages_html_text_and_markdown(tmp_path, folder):
    pdf = write_pdf(tmp_path / "atlas.pdf", ["Mountains are tall.", PARIS])
    assert [(p.number, p.text.strip()) for p in read_document(pdf)] == [
        (1, "Mountains are tall."), (2, PARIS)]
    html_text = read_document(folder / "paris.html")[0].text
    assert html_text == PARIS and "var x" not in html_text


def test_keyword_ranking_cites_the_right_file_and_page(index, folder, tmp_path):
    write_pdf(folder / "atlas.pdf", ["Mountains are tall and cold.", PARIS])
    cid = index.collection("library")
    report = index.add(cid, [folder])
    assert len(report.indexed) == 4 and not report.skipped
    hits = index.retrieve([cid], "Where do foxes dig their dens?")
    assert hits[0].file.endswith("foxes.md") and hits[0].number == 1 and hits[0].bm25 > 0
    pages = index.retrieve([cid], "How tall are mountains?")
    assert pages[0].source == "atlas.pdf, p. 1"
    assert index.retrieve([cid], "Which city is the capital of France?")[0].source in (
        "paris.html", "atlas.pdf, p. 2")
    other = index.collection("other")  # a second collection: each is searched on its own
    (tmp_path / "more.txt").write_text("Foxes dig their dens under old oak roots.",
                                       encoding="utf-8")
    index.add(other, [tmp_path / "more.txt"])
    mine = index.retrieve([cid], "Where do foxes dig their dens?")
    assert mine[0].file.endswith("foxes.md") and not any(h.file.endswith("more.txt")
                                                         for h in mine)
    assert [h.file for h in index.retrieve([other], "foxes dens")] == [
        str((tmp_path / "more.txt").resolve())]
    assert len(index.retrieve([cid, other], "Where do foxes dig their dens?")) == 2


def test_citations_go_into_the_prompt_and_nothing_relevant_leaves_it_alone(index, folder):
    cid = index.collection("library")
    index.add(cid, [folder])
    history = [{"role": "system", "content": "Be brief."},
               {"role": "user", "content": "How does bread rise?"}]
    messages, passages = docs.ground(index, [cid], history)
    assert passages and passages[0].file.endswith("bread.txt")
    assert messages[0] == history[0] and len(messages) == 2
    prompt = messages[-1]["content"]
    assert "[1] (bread.txt)\n" + BREAD in prompt and prompt.endswith("How does bread rise?")
    assert "[1]" in docs.references(passages) and "BM25" in docs.explain(passages)
    off_topic = [{"role": "user", "content": "Explain quantum chromodynamics"}]
    messages, passages = docs.ground(index, [cid], off_topic)
    assert passages == [] and messages == off_topic
    assert docs.NOTHING_RELEVANT in docs.explain(passages)


def test_a_file_is_read_again_only_when_it_changed(index, folder, monkeypatch):
    cid = index.collection("library")
    index.add(cid, [folder])
    reads = []
    real = docs.read_document
    monkeypatch.setattr(docs, "read_document", lambda p: reads.append(p.name) or real(p))
    again = index.add(cid, [folder])
    assert reads == [] and len(again.unchanged) == 3
    bread = folder / "bread.txt"
    os.utime(bread, (1, 1))  # touched, same bytes: hashed, not read
    assert index.add(cid, [folder]).indexed == [] and reads == []
    bread.write_text("Sourdough uses a starter instead of yeast.", encoding="utf-8")
    report = index.add(cid, [folder])
    assert reads == ["bread.txt"] and report.indexed == [str(bread.resolve())]
    assert index.retrieve([cid], "sourdough starter")[0].file.endswith("bread.txt")
    assert index.retrieve([cid], "flour sugars gas oven") == []  # the old text is gone
    assert index.passage_count([cid]) == 3


def test_bad_files_are_skipped_with_a_sentence(index, tmp_path, monkeypatch):
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "empty.txt").write_bytes(b"")
    (bad / "blob.txt").write_bytes(b"\x00\x01\x02binary" * 10)
    (bad / "broken.pdf").write_bytes(b"%PDF-1.4 this is not really a pdf")
    write_pdf(bad / "locked.pdf", ["secret plans"], password="pw")
    write_pdf(bad / "scan.pdf", [""])
    (bad / "photo.jpg").write_bytes(b"\xff\xd8\xff")
    (bad / "huge.md").write_text("word " * 2000, encoding="utf-8")
    (bad / "fine.md").write_text(FOXES, encoding="utf-8")
    monkeypatch.setattr(reading, "MAX_FILE_BYTES", 5000)
    cid = index.collection("bad")
    report = index.add(cid, [bad])
    why = {Path(p).name: reason for p, reason in report.skipped}
    assert [Path(p).name for p in report.indexed] == ["fine.md"]
    assert why["empty.txt"] == "the file is empty."
    assert "binary" in why["blob.txt"]
    assert "could not be read as a PDF" in why["broken.pdf"]
    assert "encrypted" in why["locked.pdf"]
    assert "no text layer" in why["scan.pdf"] and "OCR" in why["scan.pdf"]
    assert "not a type Studio reads" in why["photo.jpg"]
    assert why["huge.md"] == "it is 9.8 KB; Studio indexes files of up to 4.9 KB."
    sentence = report.sentence()
    assert sentence.startswith("1 file indexed") and "7 skipped" in sentence


def test_an_old_database_gains_the_document_tables(tmp_path):
    path = tmp_path / "old.db"
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE conversations (id INTEGER PRIMARY KEY, title TEXT NOT NULL DEFAULT "
               "'', system_prompt TEXT NOT NULL DEFAULT '', model TEXT NOT NULL DEFAULT '', "
               "settings TEXT NOT NULL DEFAULT '{}', current_leaf INTEGER, created REAL NOT "
               "NULL, updated REAL NOT NULL)")
    db.execute("INSERT INTO conversations (title, created, updated) VALUES ('kept', 0, 0)")
    db.commit()
    db.close()
    store = ConversationStore(path)
    assert store.conversations()[0].title == "kept"
    assert store.execute("PRAGMA user_version").fetchone()[0] == len(MIGRATIONS)
    index = DocumentIndex(store)
    conv_cid = index.conversation_collection(1)
    assert index.conversation_collection(1) == conv_cid
    store.delete_conversation(1)  # its attachments go with it
    assert store.execute("SELECT COUNT(*) FROM doc_collections").fetchone()[0] == 0
    store.close()


def test_hybrid_ranking_with_a_tiny_embedding_model(tmp_path, folder, studio_home):
    import numpy as np
    import torch
    from transformers import AutoModel, AutoTokenizer

    from studio.core.config import default_paths

    bert = build_tiny_bert(default_paths().models_dir / "embed" / "tiny-bert")
    assert docs.find_embedding_model(default_paths().models_dir) == bert
    embedder = docs.Embedder(bert)
    # Mean pooling equals transformers' own forward pass, pooled by hand.
    tok, model = AutoTokenizer.from_pretrained(bert), AutoModel.from_pretrained(bert).eval()
    enc = tok(["red fox"], return_tensors="pt")
    with torch.no_grad():
        ref = model(**enc).last_hidden_state.mean(1)
    ref = torch.nn.functional.normalize(ref, dim=-1).numpy()
    assert np.allclose(embedder.encode(["red fox"]), ref, atol=1e-6)

    store = ConversationStore(tmp_path / "hybrid.db")
    index = DocumentIndex(store, embedder)
    cid = index.collection("hybrid")
    index.add(cid, [folder])
    stored = store.execute("SELECT COUNT(*) FROM doc_chunks WHERE vector_model = 'tiny-bert'")
    assert stored.fetchone()[0] == 3
    hits = index.retrieve([cid], "red fox river", min_cosine=-1.0)
    assert len(hits) == 3 and all(h.cosine is not None for h in hits)
    both = [h for h in hits if h.bm25 is not None]
    assert both and both[0].score > max(h.score for h in hits if h.bm25 is None)
    store.close()


def test_cli_docs_and_collection(tiny_llama_dir, folder, capsys):
    from studio.cli import main

    common = ["chat", "--model", str(tiny_llama_dir), "--temperature", "0",
              "--max-new-tokens", "3", "--device", "cpu"]
    code = main([*common, "--docs", str(folder), "--collection", "kitchen", "--verbose",
                 "--prompt", "How does bread rise?"])
    out = capsys.readouterr()
    assert code == 0, out.err
    assert "3 files indexed" in out.err and "[1] bread.txt — fused" in out.err
    assert out.out.endswith("\nSources:\n[1] bread.txt\n")
    code = main([*common, "--collection", "kitchen", "--prompt", "What is quantum gravity?"])
    again = capsys.readouterr()
    assert code == 0, again.err
    assert "nothing relevant found in the attached documents" in again.err
    assert "Sources:" not in again.out


def test_cli_unknown_collection_is_bad_input(tiny_llama_dir, studio_home, capsys):
    from studio.cli import main
    from studio.core.config import default_paths

    store = ConversationStore(default_paths().database)
    DocumentIndex(store).collection("kitchen")
    store.close()
    code = main(["chat", "--model", str(tiny_llama_dir), "--collection", "garden",
                 "--prompt", "hi"])
    err = capsys.readouterr().err
    assert code == 2 and "no collection named 'garden'" in err and "collections: kitchen" in err


def test_cli_docs_with_a_remote_model_sends_the_passages(folder, capsys, monkeypatch):
    from studio.cli import main
    from tests.fixtures.fake_openai import FakeOpenAI, serve_fake_openai

    monkeypatch.setattr(FakeOpenAI, "require_key", False)
    with serve_fake_openai() as url:
        code = main(["chat", "--model", f"openai:{url}/v1#m1", "--docs", str(folder),
                     "--prompt", "How does bread rise?"])
        sent = FakeOpenAI.bodies[-1]["messages"]
    out = capsys.readouterr()
    assert code == 0, out.err
    assert out.out == "Hello, world!\n\nSources:\n[1] bread.txt\n"
    assert sent[-1]["role"] == "user" and "[1] (bread.txt)\n" + BREAD in sent[-1]["content"]


def test_shipped_questions_find_their_gold_passage_in_the_top_3(tmp_path, monkeypatch):
    """Retrieval quality on shipped documents (Markdown and HTML) cut into short passages: each
    question's gold passage (the one holding its answer) is among the first three."""
    import json

    shipped = Path(__file__).parent / "fixtures" / "retrieval"
    monkeypatch.setattr(docs, "CHUNK_WORDS", 40)
    monkeypatch.setattr(docs, "OVERLAP_WORDS", 10)
    store = ConversationStore(tmp_path / "quality.db")
    index = DocumentIndex(store)
    cid = index.collection("shipped")
    report = index.add(cid, [shipped])
    assert len(report.indexed) == 3 and report.passages >= 12
    misses = []
    for case in json.loads((shipped / "questions.json").read_text(encoding="utf-8")):
        top = index.retrieve([cid], case["question"], k=3)
        if not any(Path(p.file).name == case["file"] and case["gold"] in p.text for p in top):
            misses.append(case["question"])
    store.close()
    assert misses == []


def test_a_conversation_remembers_its_collection_across_a_migration(tmp_path):
    path = tmp_path / "v1.db"
    store = ConversationStore(path)  # made at the newest version, then put back to version 1
    store.execute("ALTER TABLE conversations DROP COLUMN doc_collection_id")
    store.execute("PRAGMA user_version = 1")
    conv = store.execute("INSERT INTO conversations (title, created, updated) "
                         "VALUES ('kept', 5, 5)").lastrowid
    store.close()
    store = ConversationStore(path)
    assert store.execute("PRAGMA user_version").fetchone()[0] == len(MIGRATIONS) == 2
    index = DocumentIndex(store)
    assert index.chosen_collection(conv) is None
    before = store.conversation(conv).updated
    index.choose_collection(conv, "recipes")
    assert index.chosen_collection(conv) == "recipes"
    assert store.conversation(conv).doc_collection_id == index.collection("recipes")
    assert store.conversation(conv).updated == before  # choosing does not reorder the list
    store.close()
    store = ConversationStore(path)  # reopened: still there
    index = DocumentIndex(store)
    assert index.chosen_collection(conv) == "recipes"
    store.execute("DELETE FROM doc_collections WHERE name = 'recipes'")
    assert index.chosen_collection(conv) is None and store.conversation(conv).title == "kept"
    index.choose_collection(conv, "recipes")
    index.choose_collection(conv, None)
    assert store.conversation(conv).doc_collection_id is None
    store.close()
