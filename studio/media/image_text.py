"""Read the text an image carries without decoding its pixels. No Qt, no torch.

Bounded: at most :data:`MAX_TEXT_TOTAL` bytes of text are read (and decompressed) per image,
whatever the number of chunks, so a crafted file (40 zTXt chunks of 32 MB each) cannot take
gigabytes. Text past the budget is dropped; nothing here raises for a hostile file.

PNG: the tEXt / zTXt / iTXt chunks are read straight from the file, skipping the image data by
seeking over it, so the gallery can index thousands of files quickly. JPEG / WebP: the EXIF
``UserComment`` (where AUTOMATIC1111 puts its ``parameters``) and a JPEG comment, through Pillow
(which parses headers only on ``open``). A PNG with alpha and no text chunks at all is checked for
A1111's "stealth" infotext in the alpha channel's low bits (:func:`read_stealth_text`), which
decodes its pixels.
"""

from __future__ import annotations

import json
import struct
import zlib
from pathlib import Path
from typing import BinaryIO

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
#: All the text of one image, decompressed, together. A1111 parameters are a few KB and a large
#: ComfyUI workflow a few hundred KB; beyond this it is not metadata anyone wrote on purpose.
MAX_TEXT_TOTAL = 2 * 2**20
_EXIF_IFD = 0x8769
_USER_COMMENT = 0x9286
_IMAGE_DESCRIPTION = 0x010E


def clip_text(text: str, limit: int) -> str:
    """``text`` cut to about ``limit`` characters, with a marker saying how much was left out."""
    if len(text) <= limit:
        return text
    return f"{text[:limit]}… [{len(text) - limit:,} more characters not kept]"


class _Budget:
    """How many bytes of text one image may still yield (decompressed)."""

    def __init__(self, total: int = MAX_TEXT_TOTAL) -> None:
        self.left = total

    def inflate(self, data: bytes) -> bytes | None:
        # Bounded: a crafted compressed chunk must not expand into gigabytes. What was inflated
        # counts even when the chunk is then dropped, so chunk after chunk cannot each take it all.
        d = zlib.decompressobj()
        try:
            out = d.decompress(data, max(self.left, 1))
        except zlib.error:
            return None
        self.left -= len(out)
        return out if d.unconsumed_tail == b"" and self.left >= 0 else None


def _decode_chunk(kind: bytes, data: bytes, budget: _Budget) -> tuple[str, str] | None:
    key, sep, rest = data.partition(b"\0")
    if not sep or not key:
        return None
    keyword = key.decode("latin-1")
    if kind == b"tEXt":
        return keyword, rest.decode("latin-1")
    if kind == b"zTXt":
        if not rest or rest[0] != 0:  # 0 = deflate, the only method PNG defines
            return None
        raw = budget.inflate(rest[1:])
        return (keyword, raw.decode("latin-1")) if raw is not None else None
    if kind == b"iTXt":
        if len(rest) < 2:
            return None
        compressed, method, tail = rest[0], rest[1], rest[2:]
        _lang, _, tail = tail.partition(b"\0")
        _translated, _, body = tail.partition(b"\0")
        if compressed:
            if method != 0:
                return None
            raw = budget.inflate(body)
            return (keyword, raw.decode("utf-8", "replace")) if raw is not None else None
        return keyword, body.decode("utf-8", "replace")
    return None


def read_png_text(path: Path) -> dict[str, str]:
    """Every text chunk of a PNG as ``{keyword: text}``; ``{}`` for a non-PNG or unreadable file.

    Chunks after the image data are read too (some tools write them there); the image data itself
    is skipped with a seek, never read.
    """
    try:
        with open(path, "rb") as fh:
            if fh.read(8) != PNG_SIGNATURE:
                return {}
            return read_png_chunks(fh)
    except OSError:
        return {}


def read_png_chunks(fh: BinaryIO) -> dict[str, str]:
    """:func:`read_png_text` from a file already open and positioned just after the signature
    (the gallery reads a PNG's size and its text through one open)."""
    out: dict[str, str] = {}
    budget = _Budget()
    try:
        while True:
            head = fh.read(8)
            if len(head) < 8:
                break
            length, kind = struct.unpack(">I4s", head)
            if kind in (b"tEXt", b"zTXt", b"iTXt") and length <= budget.left:
                data = fh.read(length)
                if len(data) < length:
                    break
                fh.seek(4, 1)  # CRC
                budget.left -= length  # what is read counts, and what it inflates to
                item = _decode_chunk(kind, data, budget)
                if item and item[0] not in out:
                    out[item[0]] = item[1]
            elif kind == b"IEND":
                break
            else:
                fh.seek(length + 4, 1)
    except OSError:
        return out
    return out


def decode_user_comment(value: bytes | str) -> str:
    """Decode an EXIF UserComment: an 8-byte character-code prefix, then the text."""
    if isinstance(value, str):
        return value.strip("\0")
    prefix, body = value[:8], value[8:]
    if prefix == b"UNICODE\0":
        # The EXIF spec says the byte order of the file; A1111 (piexif) writes big-endian.
        # A UTF-16-LE body of mostly ASCII text has its zero bytes at odd offsets.
        if len(body) >= 2 and body[0] != 0 and body[1] == 0:
            return body.decode("utf-16-le", "replace").strip("\0")
        return body.decode("utf-16-be", "replace").strip("\0")
    if prefix in (b"ASCII\0\0\0", b"\0" * 8):
        return body.decode("utf-8", "replace").strip("\0")
    if prefix == b"JIS\0\0\0\0\0":
        return body.decode("shift_jis", "replace").strip("\0")
    return value.decode("utf-8", "replace").strip("\0")


def read_exif_text(path: Path) -> dict[str, str]:
    """Text a JPEG / WebP carries: ``{"parameters": UserComment}`` and ``{"comment": ...}``.

    Uses Pillow, which reads headers only (no pixel decoding). ``{}`` when there is nothing.
    """
    from PIL import Image

    out: dict[str, str] = {}
    try:
        with Image.open(path) as im:
            exif = im.getexif()
            comment = exif.get_ifd(_EXIF_IFD).get(_USER_COMMENT)
            if comment:
                text = decode_user_comment(comment)
                if text.strip():
                    out["parameters"] = text
            description = exif.get(_IMAGE_DESCRIPTION)
            if isinstance(description, str) and description.strip():
                out.setdefault("description", description)
            jpeg_comment = im.info.get("comment")
            if isinstance(jpeg_comment, bytes):
                jpeg_comment = jpeg_comment.decode("utf-8", "replace")
            if isinstance(jpeg_comment, str) and jpeg_comment.strip():
                out["comment"] = jpeg_comment
                out.setdefault("parameters", jpeg_comment)
    except Exception:  # noqa: BLE001 - a broken file has no metadata; never an error
        return {}
    left = MAX_TEXT_TOTAL  # the same total as a PNG's chunks (a WebP EXIF chunk can be any size)
    for key, text in out.items():
        out[key] = text[:max(left, 0)]
        left -= len(out[key])
    return out


_STEALTH_SIGNATURES = {b"stealth_pnginfo": False, b"stealth_pngcomp": True}


def _has_alpha(path: Path) -> bool:
    """Whether a PNG's IHDR says it has an alpha channel (colour type 4 or 6)."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(33)
    except OSError:
        return False
    return len(head) == 33 and head[12:16] == b"IHDR" and head[25] in (4, 6)


def read_stealth_text(path: Path) -> dict[str, str]:
    """A1111's "stealth" infotext (the stealth_pnginfo extension, also Forge and NovelAI): the text
    hidden in the lowest bit of each alpha value, read column by column: a 15-byte signature
    (``stealth_pnginfo`` plain, ``stealth_pngcomp`` gzip), a 32-bit length in bits, the text.

    Only PNGs with alpha and no text chunks are looked at (it needs the pixels decoded). Bounded
    by :data:`MAX_TEXT_TOTAL`; ``{}`` when there is nothing or on any error."""
    if not _has_alpha(path):
        return {}
    import numpy as np
    from PIL import Image

    try:
        with Image.open(path) as im:
            if im.mode not in ("RGBA", "LA"):
                return {}
            alpha = np.asarray(im.getchannel("A"))
        bits = (alpha.T.ravel() & 1).astype(np.uint8)  # x outer, y inner, as the writer goes
        head = np.packbits(bits[:15 * 8]).tobytes()
        if head not in _STEALTH_SIGNATURES:
            return {}
        length = int.from_bytes(np.packbits(bits[120:152]).tobytes(), "big")
        if length <= 0 or length > MAX_TEXT_TOTAL * 8 or 152 + length > bits.size:
            return {}
        data = np.packbits(bits[152:152 + length]).tobytes()
        if _STEALTH_SIGNATURES[head]:
            d = zlib.decompressobj(wbits=31)  # gzip, bounded like every other text
            data = d.decompress(data, MAX_TEXT_TOTAL)
            if d.unconsumed_tail:
                return {}
        text = data.decode("utf-8", "replace")
    except Exception:  # noqa: BLE001 - a broken file has no metadata; never an error
        return {}
    if text.startswith("{"):  # NovelAI hides its whole set of chunks, as JSON, the same way
        try:
            chunks = json.loads(text)
        except ValueError:
            chunks = None
        if isinstance(chunks, dict) and chunks and all(isinstance(v, str) for v in chunks.values()):
            return chunks
    return {"parameters": text} if text.strip() else {}


def read_image_text(path: Path) -> dict[str, str]:
    """All text metadata of an image file, whatever its format (``{}`` if none or unreadable)."""
    path = Path(path)
    try:
        with open(path, "rb") as fh:
            magic = fh.read(8)
    except OSError:
        return {}
    if magic == PNG_SIGNATURE:
        return read_png_text(path) or read_stealth_text(path)
    if magic[:3] == b"\xff\xd8\xff" or (magic[:4] == b"RIFF"):
        return read_exif_text(path)
    return {}
