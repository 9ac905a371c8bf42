"""Reading attached documents into text, for :mod:`studio.pipelines.chat.documents`.

PDF through pypdf (page numbers kept), Word (``.docx``) through python-docx (paragraphs,
headings and tables in document order), Markdown and text, HTML through the standard library's
``html.parser``. Untrusted files are bounded: at most :data:`MAX_FILE_BYTES` on disk (and, for
the zip inside a ``.docx``, :data:`MAX_DOCX_UNZIPPED` unpacked) and :data:`MAX_TEXT_CHARS` of
text per file; a file that is too large, empty, binary, encrypted, damaged or a scan without a
text layer is *skipped* (:class:`SkippedFile`) with a sentence saying why, never a crash.
:func:`chunk_pages` cuts the text into overlapping passages, never across a page.
"""

from __future__ import annotations

import html.parser
import re
import zipfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

MAX_FILE_BYTES = 50 * 1024 * 1024  # larger files are skipped, never read into memory
MAX_DOCX_UNZIPPED = 256 * 1024 * 1024  # a .docx whose parts unpack larger is a zip bomb
MAX_TEXT_CHARS = 5_000_000  # text kept per file (about 2,500 pages); the rest is left out
MAX_PDF_PAGES = 5_000
CHUNK_WORDS = 160
OVERLAP_WORDS = 40
TEXT_SUFFIXES = {".txt", ".text", ".md", ".markdown", ".rst", ".csv", ".log"}
HTML_SUFFIXES = {".html", ".htm", ".xhtml"}
DOCX_SUFFIXES = {".docx"}
SUPPORTED = "PDF, Word (.docx), Markdown, text or HTML"


class SkippedFile(Exception):
    """A file that cannot be indexed; the message is the sentence the user reads."""


@dataclass
class Page:
    number: int  # 1-based; 0 for a file without pages
    text: str



# -- reading -----------------------------------------------------------------------------------
class _HTMLText(html.parser.HTMLParser):
    """The visible text of an HTML page (scripts and styles left out, blocks on new lines)."""

    BLOCKS = {"p", "div", "br", "li", "tr", "h1", "h2", "h3", "h4", "h5", "h6", "section",
              "article", "pre", "blockquote", "table", "ul", "ol"}

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self._hidden = 0

    def handle_starttag(self, tag: str, attrs: Any) -> None:
        if tag in ("script", "style", "noscript", "template"):
            self._hidden += 1
        elif tag in self.BLOCKS:
            self.parts.append("\n")

    def handle_endtag(self, tag: str) -> None:
        if tag in ("script", "style", "noscript", "template") and self._hidden:
            self._hidden -= 1
        elif tag in self.BLOCKS:
            self.parts.append("\n")

    def handle_data(self, data: str) -> None:
        if not self._hidden:
            self.parts.append(data)


def html_to_text(markup: str) -> str:
    parser = _HTMLText()
    parser.feed(markup)
    parser.close()
    return re.sub(r"\n\s*\n+", "\n\n", "".join(parser.parts)).strip()


def _size(n: int) -> str:
    return f"{n / 2**20:,.0f} MB" if n >= 2**20 else f"{n / 1024:,.1f} KB"


def _decoded(data: bytes) -> str:
    if b"\x00" in data[:8192]:
        raise SkippedFile("it is a binary file, not text.")
    for encoding in ("utf-8-sig", "utf-16") if data[:2] in (b"\xff\xfe", b"\xfe\xff") else (
            "utf-8-sig",):
        try:
            return data.decode(encoding)
        except UnicodeDecodeError:
            pass
    return data.decode("latin-1")


def _pdf_pages(path: Path) -> list[Page]:
    import pypdf
    from pypdf.errors import PdfReadError

    try:
        reader = pypdf.PdfReader(str(path))
        if reader.is_encrypted:
            try:
                opened = bool(reader.decrypt(""))  # an empty user password opens some
            except Exception:  # noqa: BLE001 - an unsupported cipher is as locked as a password
                opened = False
            if not opened:
                raise SkippedFile("the PDF is encrypted (password-protected); save a copy "
                                  "without the password and attach that.")
        if len(reader.pages) > MAX_PDF_PAGES:
            raise SkippedFile(f"it has {len(reader.pages):,} pages; Studio reads PDFs of up to "
                              f"{MAX_PDF_PAGES:,} pages.")
        pages, total = [], 0
        for number, page in enumerate(reader.pages, start=1):
            text = page.extract_text() or ""
            total += len(text)
            pages.append(Page(number, text))
            if total > MAX_TEXT_CHARS:
                break
    except SkippedFile:
        raise
    except (PdfReadError, ValueError, KeyError, TypeError, OSError, RecursionError) as exc:
        raise SkippedFile(f"it could not be read as a PDF (damaged or not a PDF: {exc}).") \
            from exc
    if not any(p.text.strip() for p in pages):
        raise SkippedFile("the PDF has no text layer (a scan?); Studio does not do OCR, so "
                          "run it through an OCR tool first.")
    return pages


def _docx_blocks(document: Any) -> Iterable[str]:
    """Paragraphs (headings included) and tables, in document order; a table row is its cells
    joined by `` | `` (a merged cell is read once), one row a line."""
    from docx.table import Table

    for block in document.iter_inner_content():
        if isinstance(block, Table):
            for row in block.rows:
                cells: list[str] = []
                for cell in row.cells:
                    text = " ".join(cell.text.split())
                    if text and (not cells or cells[-1] != text):
                        cells.append(text)
                if cells:
                    yield " | ".join(cells)
        elif block.text.strip():
            yield block.text.strip()


def _docx_pages(path: Path) -> list[Page]:
    """A Word document as one page (``.docx`` has no fixed pages; Word lays them out)."""
    import docx
    from docx.opc.exceptions import OpcError

    try:
        with zipfile.ZipFile(path) as archive:
            unpacked = sum(info.file_size for info in archive.infolist())
        if unpacked > MAX_DOCX_UNZIPPED:
            raise SkippedFile(f"it unpacks to {_size(unpacked)}; Studio reads Word documents "
                              f"that unpack to at most {_size(MAX_DOCX_UNZIPPED)}.")
        parts, total = [], 0
        for text in _docx_blocks(docx.Document(str(path))):
            parts.append(text)
            total += len(text) + 1
            if total > MAX_TEXT_CHARS:
                break
    except SkippedFile:
        raise
    except (zipfile.BadZipFile, OpcError, KeyError, ValueError, TypeError, OSError,
            SyntaxError, AttributeError) as exc:  # lxml's XMLSyntaxError is a SyntaxError
        raise SkippedFile("it could not be read as a Word document (damaged, password-protected "
                          f"or not a .docx: {exc}); open it in Word and save it again as .docx."
                          ) from exc
    text = "\n".join(parts)[:MAX_TEXT_CHARS]
    if not text.strip():
        raise SkippedFile("the Word document has no text.")
    return [Page(0, text)]


def read_document(path: Path) -> list[Page]:
    """The text of a file as pages; raises :class:`SkippedFile` with the reason it is left out."""
    path = Path(path)
    suffix = path.suffix.lower()
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise SkippedFile(f"it cannot be read ({exc.strerror or exc}).") from exc
    if size == 0:
        raise SkippedFile("the file is empty.")
    if size > MAX_FILE_BYTES:
        raise SkippedFile(f"it is {_size(size)}; Studio indexes files of up to "
                          f"{_size(MAX_FILE_BYTES)}.")
    if suffix == ".pdf":
        return _pdf_pages(path)
    if suffix in DOCX_SUFFIXES:
        return _docx_pages(path)
    if suffix not in TEXT_SUFFIXES | HTML_SUFFIXES:
        raise SkippedFile(f"{suffix or 'a file without an extension'} is not a type Studio "
                          f"reads ({SUPPORTED}).")
    try:
        text = _decoded(path.read_bytes())
    except OSError as exc:
        raise SkippedFile(f"it cannot be read ({exc.strerror or exc}).") from exc
    if suffix in HTML_SUFFIXES:
        text = html_to_text(text)
    text = text[:MAX_TEXT_CHARS]
    if not text.strip():
        raise SkippedFile("it has no text.")
    return [Page(0, text)]


def chunk_pages(pages: Iterable[Page], size: int = CHUNK_WORDS,
                overlap: int = OVERLAP_WORDS) -> list[tuple[int, str]]:
    """``(page, text)`` passages of ``size`` words, each sharing ``overlap`` words with the one
    before it on the same page (a passage never spans two pages, so its page number is true)."""
    if not 0 <= overlap < size:
        raise ValueError("the overlap must be smaller than the passage")
    out: list[tuple[int, str]] = []
    step = size - overlap
    for page in pages:
        words = page.text.split()
        for start in range(0, max(len(words) - overlap, 1), step):
            piece = words[start:start + size]
            if piece:
                out.append((page.number, " ".join(piece)))
    return out


