"""Word (.docx) attachments: paragraphs, headings and tables read in document order and cited;
a damaged, renamed, empty or zip-bomb .docx skipped with a sentence."""

from __future__ import annotations

import zipfile
from pathlib import Path

import docx
import pytest

from studio.pipelines.chat import documents as docs
from studio.pipelines.chat import reading
from studio.pipelines.chat.documents import DocumentIndex, read_document
from studio.pipelines.chat.store import ConversationStore


def write_docx(path: Path) -> Path:
    document = docx.Document()
    document.add_heading("Harbour report", level=1)
    document.add_paragraph("The lighthouse keeper logs every ship entering the harbour.")
    table = document.add_table(rows=2, cols=2)
    for r, (name, tonnage) in enumerate([("Vessel", "Tonnage"), ("Albatross", "4200")]):
        table.cell(r, 0).text, table.cell(r, 1).text = name, tonnage
    document.add_heading("Weather", level=2)
    document.add_paragraph("Fog rolls in from the estuary most mornings in autumn.")
    document.save(str(path))
    return path


@pytest.fixture()
def harbour_index(tmp_path):
    """A documents index in a fresh conversations database, closed after the test."""
    index = DocumentIndex(ConversationStore(tmp_path / "studio.db"))
    yield index
    index.store.close()


def test_docx_text_keeps_headings_and_tables_in_order(tmp_path):
    pages = read_document(write_docx(tmp_path / "harbour.docx"))
    assert [p.number for p in pages] == [0]
    assert pages[0].text.splitlines() == [
        "Harbour report", "The lighthouse keeper logs every ship entering the harbour.",
        "Vessel | Tonnage", "Albatross | 4200", "Weather",
        "Fog rolls in from the estuary most mornings in autumn."]


def test_docx_is_indexed_and_cited(harbour_index, tmp_path):
    index = harbour_index
    cid = index.collection("harbour")
    report = index.add(cid, [write_docx(tmp_path / "harbour.docx")])
    assert report.skipped == [] and len(report.indexed) == 1
    messages, passages = docs.ground(index, [cid], [
        {"role": "user", "content": "What tonnage is the Albatross?"}])
    assert [p.source for p in passages] == ["harbour.docx"]
    assert "Albatross | 4200" in messages[-1]["content"] and "[1]" in messages[-1]["content"]


def test_bad_docx_files_are_skipped_with_a_sentence(harbour_index, tmp_path, monkeypatch):
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "notzip.docx").write_bytes(b"this was a .doc renamed to .docx")
    with zipfile.ZipFile(bad / "nodocument.docx", "w") as z:  # a zip, but no Word parts
        z.writestr("hello.txt", "hi")
    blank = docx.Document()
    blank.save(str(bad / "blank.docx"))
    with zipfile.ZipFile(write_docx(bad / "bomb.docx"), "a", zipfile.ZIP_DEFLATED) as z:
        z.writestr("word/media/padding.bin", bytes(4 * 2**20))  # 4 MB of zeros, a few KB zipped
    monkeypatch.setattr(reading, "MAX_DOCX_UNZIPPED", 2 * 2**20)  # the template unpacks < 1 MB
    report = harbour_index.add(harbour_index.collection("bad"), [bad])
    why = {Path(p).name: reason for p, reason in report.skipped}
    assert report.indexed == []
    assert "could not be read as a Word document" in why["notzip.docx"]
    assert "save it again as .docx" in why["nodocument.docx"]
    assert why["blank.docx"] == "the Word document has no text."
    assert why["bomb.docx"].startswith("it unpacks to ") and "at most" in why["bomb.docx"]
