"""The gallery's index of everything in the outputs folder, and cached thumbnails. No Qt.

Opening the Gallery must be instant with 10,000 images and searching by prompt must not reread
files, so each image's prompt and size are read once (from its text chunks, never decoding pixels)
into an SQLite table keyed by path and validated by mtime + size. :meth:`GalleryIndex.refresh`
rescans the folder tree (a ``stat`` per file) and reads only new or changed files.

Every method may be called from any thread (the GUI runs them on its I/O pool): one connection,
guarded by a lock; file reading happens outside the lock.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import sqlite3
import struct
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from studio.core.files import atomic_write
from studio.media.image_text import (
    PNG_SIGNATURE,
    clip_text,
    read_image_text,
    read_png_chunks,
    read_stealth_text,
)
from studio.media.metadata import metadata_from_text

if TYPE_CHECKING:
    from PIL.Image import Image as PILImage

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".webp"})
_SCHEMA = 1
_BATCH = 500  # rows per transaction while indexing: progress survives an interrupted refresh
#: What the index keeps per image (the details pane rereads the file for the whole text): a prompt
#: of 30 MB used to be copied into gallery.db for every such file.
INDEX_PROMPT_CHARS = 16_384
INDEX_PARAM_CHARS = 4_096
INDEX_PARAMS_TOTAL = 65_536


@dataclass
class GalleryItem:
    """One image in the gallery, as the grid and the search need it."""

    path: Path
    mtime: float
    prompt: str
    width: int
    height: int
    source: str  # studio | a1111 | comfyui | invokeai | none
    negative_prompt: str = ""
    params: dict[str, Any] = field(default_factory=dict)


def _image_size(path: Path) -> tuple[int, int]:
    """Width and height from the file header (PNG IHDR directly; others through Pillow)."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(24)
        if head[:8] == PNG_SIGNATURE and head[12:16] == b"IHDR":
            return struct.unpack(">II", head[16:24])
        from PIL import Image

        with Image.open(path) as im:  # parses headers only
            return im.size
    except Exception:  # noqa: BLE001 - unreadable images are listed with size 0×0
        return 0, 0


def _fold(text: str) -> str:
    return text.casefold()


def _scan(root: Path) -> dict[str, tuple[float, int]]:
    """Every image under ``root`` → (mtime, size). Hidden files and folders are skipped."""
    found: dict[str, tuple[float, int]] = {}
    stack = [root]
    while stack:
        folder = stack.pop()
        try:
            it = os.scandir(folder)
        except OSError:
            continue
        with it:
            for entry in it:
                if entry.name.startswith("."):
                    continue  # temp files being written, lock files, thumbnails
                try:
                    if entry.is_dir(follow_symlinks=False):
                        stack.append(Path(entry.path))
                    elif os.path.splitext(entry.name)[1].lower() in IMAGE_SUFFIXES:
                        st = entry.stat()
                        found[os.path.abspath(entry.path)] = (st.st_mtime, st.st_size)
                except OSError:
                    continue
    return found


def _key(path: str) -> str | bytes:
    """The index's key for a path. SQLite stores UTF-8, and a Linux file name is any bytes: a name
    that is not UTF-8 (``b'\\xff.png'``, a lone surrogate in Python) is stored as its raw bytes (a
    BLOB), which round-trips exactly and never equals a text key. It used to raise
    UnicodeEncodeError and lose the whole batch: one such file emptied the Gallery."""
    try:
        path.encode("utf-8")
    except UnicodeEncodeError:
        return os.fsencode(path)
    return path


def _unkey(value: str | bytes) -> str:
    return os.fsdecode(value) if isinstance(value, bytes) else value


def _text(value: str) -> str:
    """Text SQLite can store: lone surrogates (an odd file name, ``\\ud800`` in a JSON chunk)
    become ``?``."""
    return value if value.isascii() else value.encode("utf-8", "replace").decode("utf-8")


def _index_params(params: dict[str, Any]) -> str:
    """The params as the index keeps them: each value at most INDEX_PARAM_CHARS (text cut with
    a marker, anything else replaced by one), all together at most INDEX_PARAMS_TOTAL."""
    whole = json.dumps(params, ensure_ascii=False, default=str)
    if len(whole) <= INDEX_PARAM_CHARS:  # every key and value fits (the usual picture): as is
        return whole
    kept: dict[str, Any] = {}
    total = 0
    for key, value in params.items():
        text = json.dumps(value, ensure_ascii=False, default=str)
        if len(text) > INDEX_PARAM_CHARS:
            value = (clip_text(value, INDEX_PARAM_CHARS) if isinstance(value, str)
                     else f"[{len(text):,} characters not kept]")
            text = json.dumps(value, ensure_ascii=False)
        total += len(text) + len(str(key))
        if total > INDEX_PARAMS_TOTAL:
            kept["…"] = f"[{len(params) - len(kept):,} more values not kept]"
            break
        kept[str(key)[:INDEX_PARAM_CHARS]] = value
    return json.dumps(kept, ensure_ascii=False, default=str)


def _text_and_size(path: str) -> tuple[dict[str, str], tuple[int, int]]:
    """What :func:`read_image_text` and :func:`_image_size` give for ``path``, a PNG's through
    one open: its size from the IHDR, then its text chunks from the same handle. Anything else
    (JPEG, WebP, a PNG cut short or without IHDR first) goes the general way."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(24)
            if len(head) == 24 and head[:8] == PNG_SIGNATURE and head[12:16] == b"IHDR":
                fh.seek(8)
                text = read_png_chunks(fh)
                size: tuple[int, int] = struct.unpack(">II", head[16:24])
                # no text chunks: stealth infotext in the alpha channel (decodes the pixels)
                return (text or read_stealth_text(Path(path))), size
    except OSError:
        pass
    p = Path(path)
    return read_image_text(p), _image_size(p)


def _describe(path: str, mtime: float, size: int) -> tuple:
    """The table row for one file: reads its text chunks and header, nothing else."""
    raw, (width, height) = _text_and_size(path)
    meta = metadata_from_text(raw)
    params = _text(_index_params(meta.params))
    prompt = _text(clip_text(meta.prompt, INDEX_PROMPT_CHARS))
    negative = _text(clip_text(meta.negative_prompt, INDEX_PROMPT_CHARS))
    search = _fold(f"{prompt}\n{negative}")
    return (_key(path), _text(os.path.basename(path)), mtime, size, prompt, negative, params,
            width, height, _text(meta.source), search)


_D = TypeVar("_D", bound="_Database")


class _Database:
    """One connection to the gallery's SQLite file (WAL), guarded by a lock so any thread may
    use it; closed by :meth:`close` or at the end of a ``with`` block."""

    def __init__(self, db_path: Path) -> None:
        self.db_path = Path(db_path)
        self.db_path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.RLock()
        self._conn = sqlite3.connect(str(self.db_path), check_same_thread=False, timeout=30)
        with self._lock:
            self._conn.execute("PRAGMA journal_mode=WAL")

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def __enter__(self: _D) -> _D:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class GalleryIndex(_Database):
    """SQLite cache of the images under ``outputs_dir`` (see the module docstring)."""

    def __init__(self, outputs_dir: Path, db_path: Path) -> None:
        self.outputs_dir = Path(outputs_dir)
        super().__init__(db_path)
        with self._lock:
            self._conn.execute("PRAGMA synchronous=NORMAL")  # a cache: losing the last commit is fine
            if self._conn.execute("PRAGMA user_version").fetchone()[0] != _SCHEMA:
                self._conn.executescript(f"""
                    DROP TABLE IF EXISTS images;
                    CREATE TABLE images (
                        path TEXT PRIMARY KEY, name TEXT, mtime REAL, size INTEGER,
                        prompt TEXT, negative TEXT, params TEXT, width INTEGER, height INTEGER,
                        source TEXT, search TEXT);
                    CREATE INDEX images_newest ON images (mtime DESC, name DESC);
                    PRAGMA user_version = {_SCHEMA};
                """)
            self._conn.commit()

    # -- updating ------------------------------------------------------------------------------
    def refresh(self) -> int:
        """Bring the index in line with the folder tree; returns how many images it holds."""
        on_disk = _scan(self.outputs_dir)
        with self._lock:
            known = {_unkey(p): (m, s) for p, m, s in
                     self._conn.execute("SELECT path, mtime, size FROM images")}
        gone = [(_key(p),) for p in known if p not in on_disk]
        todo = [(p, ms) for p, ms in on_disk.items() if known.get(p) != ms]
        if gone:
            with self._lock, self._conn:
                self._conn.executemany("DELETE FROM images WHERE path = ?", gone)
        for start in range(0, len(todo), _BATCH):
            rows = []
            for path, (mtime, size) in todo[start:start + _BATCH]:
                try:
                    rows.append(_describe(path, mtime, size))
                except Exception:  # noqa: BLE001 - one odd file must not stop the index
                    log.exception("gallery: cannot index %s", path)
            self._upsert(rows)
        return self.count()

    def add(self, path: Path) -> GalleryItem | None:
        """Index one file now (a new output) without rescanning; None if it is not an image."""
        p = os.path.abspath(path)
        try:
            st = os.stat(p)
        except OSError:
            return None
        if os.path.splitext(p)[1].lower() not in IMAGE_SUFFIXES:
            return None
        self._upsert([_describe(p, st.st_mtime, st.st_size)])
        return self.get(Path(p))

    _UPSERT = ("INSERT OR REPLACE INTO images (path, name, mtime, size, prompt, negative, params,"
               " width, height, source, search) VALUES (?,?,?,?,?,?,?,?,?,?,?)")

    def _upsert(self, rows: list[tuple]) -> None:
        if not rows:
            return
        try:
            with self._lock, self._conn:
                self._conn.executemany(self._UPSERT, rows)
        except (sqlite3.DataError, sqlite3.InterfaceError, ValueError, OverflowError):
            # one row SQLite refuses must not lose the batch: save the others one by one
            for row in rows:
                try:
                    with self._lock, self._conn:
                        self._conn.execute(self._UPSERT, row)
                except (sqlite3.DataError, sqlite3.InterfaceError, ValueError,
                        OverflowError) as exc:
                    log.warning("gallery: cannot index %r: %s", _unkey(row[0]), exc)

    def remove(self, path: Path) -> None:
        """Delete the image file and forget it (the gallery's "Delete")."""
        p = os.path.abspath(path)
        try:
            os.unlink(p)
        except FileNotFoundError:
            pass
        with self._lock, self._conn:
            self._conn.execute("DELETE FROM images WHERE path = ?", (_key(p),))

    # -- reading -------------------------------------------------------------------------------
    _COLUMNS = "path, mtime, prompt, width, height, source, negative, params"

    @staticmethod
    def _item(row: tuple) -> GalleryItem:
        try:
            params = json.loads(row[7]) if row[7] else {}
        except ValueError:
            params = {}
        return GalleryItem(Path(_unkey(row[0])), row[1], row[2] or "", row[3] or 0, row[4] or 0,
                           row[5] or "none", row[6] or "", params)

    def list(self, query: str = "", limit: int | None = None) -> list[GalleryItem]:
        """Images newest first; ``query`` keeps those whose prompt or negative prompt contains
        every word of it (case-insensitive)."""
        sql = f"SELECT {self._COLUMNS} FROM images"
        args: list[Any] = []
        words = _fold(query).split()
        if words:
            sql += " WHERE " + " AND ".join("search LIKE ? ESCAPE '\\'" for _ in words)
            for word in words:
                escaped = word.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
                args.append(f"%{escaped}%")
        sql += " ORDER BY mtime DESC, name DESC"
        if limit is not None:
            sql += " LIMIT ?"
            args.append(int(limit))
        with self._lock:
            rows = self._conn.execute(sql, args).fetchall()
        return [self._item(r) for r in rows]

    def get(self, path: Path) -> GalleryItem | None:
        with self._lock:
            row = self._conn.execute(f"SELECT {self._COLUMNS} FROM images WHERE path = ?",
                                     (_key(os.path.abspath(path)),)).fetchone()
        return self._item(row) if row else None

    def count(self) -> int:
        with self._lock:
            return self._conn.execute("SELECT COUNT(*) FROM images").fetchone()[0]

    def files(self) -> dict[str, tuple[float, int]]:
        """Every indexed image → (mtime, size), as the last refresh saw it."""
        with self._lock:
            rows = self._conn.execute("SELECT path, mtime, size FROM images").fetchall()
        return {_unkey(p): (m, s) for p, m, s in rows}



# -- image vectors (search by meaning) -------------------------------------------------------------
GALLERY_DB = "gallery.db"  # in the data folder: the index above and the vectors below


class ImageVectors(_Database):
    """One vector per image file and model (CLIP / SigLIP image embeddings, float32 bytes) in
    the gallery's database, next to the index. A row remembers the file's mtime and size, so
    :meth:`stale` names exactly the files that are new or changed since they were embedded.
    Same threading rule as :class:`GalleryIndex` (one connection, one lock). No numpy here."""

    def __init__(self, db_path: Path) -> None:
        super().__init__(db_path)
        with self._lock, self._conn:
            self._conn.execute("""
                CREATE TABLE IF NOT EXISTS image_vectors (
                    path TEXT NOT NULL, model TEXT NOT NULL, mtime REAL, size INTEGER,
                    vector BLOB NOT NULL, PRIMARY KEY (path, model))""")

    def _known(self, model: str) -> dict[str, tuple[float, int]]:
        with self._lock:
            rows = self._conn.execute(
                "SELECT path, mtime, size FROM image_vectors WHERE model = ?", (model,)).fetchall()
        return {_unkey(p): (m, s) for p, m, s in rows}

    def stale(self, files: dict[str, tuple[float, int]], model: str) -> list[str]:
        """The paths of ``files`` (path → (mtime, size)) that have no vector from ``model`` for
        their current content; vectors of files no longer in ``files`` are dropped."""
        known = self._known(model)
        gone = [(_key(p), model) for p in known if p not in files]
        if gone:
            with self._lock, self._conn:
                self._conn.executemany(
                    "DELETE FROM image_vectors WHERE path = ? AND model = ?", gone)
        return [p for p, ms in files.items() if known.get(p) != ms]

    def put(self, model: str, rows: list[tuple[str, float, int, bytes]]) -> None:
        """Store ``(path, mtime, size, vector bytes)`` rows for ``model``."""
        if rows:
            with self._lock, self._conn:
                self._conn.executemany(
                    "INSERT OR REPLACE INTO image_vectors (path, model, mtime, size, vector) "
                    "VALUES (?,?,?,?,?)", [(_key(p), model, m, s, v) for p, m, s, v in rows])

    def vectors(self, model: str) -> list[tuple[str, bytes]]:
        """Every ``(path, vector bytes)`` stored for ``model``."""
        with self._lock:
            rows = self._conn.execute("SELECT path, vector FROM image_vectors WHERE model = ?",
                                      (model,)).fetchall()
        return [(_unkey(p), v) for p, v in rows]

    def count(self, model: str) -> int:
        with self._lock:
            return self._conn.execute("SELECT COUNT(*) FROM image_vectors WHERE model = ?",
                                      (model,)).fetchone()[0]


# -- thumbnails ---------------------------------------------------------------------------------

def default_thumbnail_dir() -> Path:
    """``data_dir/cache/thumbs`` (under ``$STUDIO_HOME`` when set)."""
    from studio.core.config import default_paths

    return default_paths().data_dir / "cache" / "thumbs"


def _thumb_path(cache_dir: Path, path: Path, st: os.stat_result, size: int) -> Path:
    key = f"{os.path.abspath(path)}|{st.st_mtime_ns}|{st.st_size}|{size}"
    digest = hashlib.sha1(key.encode("utf-8", "surrogatepass")).hexdigest()
    return cache_dir / digest[:2] / digest


def make_thumbnail(path: str | Path, size: int = 256,
                   cache_dir: Path | None = None) -> PILImage:
    """A PIL image of ``path`` fitting ``size``×``size``, from the disk cache when it is there.

    The cache is keyed by path, mtime and file size, so an edited file gets a new thumbnail.
    JPEGs decode at reduced scale (``draft``); the result is RGB, or RGBA when the image has alpha.
    Raises OSError / PIL errors for unreadable images (the caller shows a "broken" tile).
    """
    from PIL import Image

    path = Path(path)
    st = os.stat(path)
    cache_dir = Path(cache_dir) if cache_dir is not None else default_thumbnail_dir()
    base = _thumb_path(cache_dir, path, st, size)
    for suffix in (".jpg", ".png"):
        cached = base.with_suffix(suffix)
        if cached.exists():
            try:
                with Image.open(cached) as im:
                    im.load()
                    return im.copy()
            except Exception:  # noqa: BLE001 - a damaged cache entry is rebuilt below
                break
    with Image.open(path) as im:
        im.draft("RGB", (size, size))
        im.thumbnail((size, size), Image.Resampling.LANCZOS)
        has_alpha = im.mode in ("RGBA", "LA", "PA") or (im.mode == "P" and
                                                         "transparency" in im.info)
        thumb = im.convert("RGBA" if has_alpha else "RGB")
    # JPEG keeps the cache small (10,000 thumbnails ≈ 150 MB); PNG only where alpha matters.
    suffix, fmt, opts = ((".png", "PNG", {"compress_level": 1}) if has_alpha
                         else (".jpg", "JPEG", {"quality": 88}))
    try:
        atomic_write(base.with_suffix(suffix), lambda fh: thumb.save(fh, format=fmt, **opts))
    except OSError as exc:  # a read-only or full disk only costs speed
        log.debug("thumbnail cache write failed for %s: %s", path, exc)
    return thumb
