"""Atomic file writes: a crash never leaves half a file (DESIGN rule 9); small readers every
layer shares (a JSON object file, a cache of what a file says while it is unchanged). No Qt here."""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import tempfile
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, BinaryIO, Generic, TypeVar

log = logging.getLogger(__name__)

T = TypeVar("T")


def atomic_write(path: Path, write: Callable[[BinaryIO], object]) -> Path:
    """Call ``write(fileobj)`` on a temp file beside ``path``, then move it into place."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    return path


def read_json_dict(path: Path) -> dict[str, Any]:
    """The JSON object in ``path``; {} when the file is absent, unreadable or not an object."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def first_per_path(items: Iterable[T], path_of: Callable[[T], Path],
                   resolve: Callable[[Path], Path] = Path.resolve) -> list[T]:
    """``items`` in order, less each one whose path resolves to an earlier one's (a model found
    twice: through a link, or under two folders the library scans). ``resolve``: how a path is
    resolved (the library's scan passes its memo of resolved paths)."""
    unique: dict[Path, T] = {}
    for item in items:
        unique.setdefault(resolve(path_of(item)), item)
    return list(unique.values())


class StatCache(Generic[T]):
    """What ``read(path, stat)`` made of a file, kept while the file is unchanged (same size,
    modification time and inode): the newest ``size`` files, least recently used dropped first.
    Thread-safe; two threads asking at once for a new file may both read it (same answer)."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._items: OrderedDict[tuple, T] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, path: Path, read: Callable[[Path, os.stat_result], T]) -> T:
        st = path.stat()
        key = (str(path), st.st_size, st.st_mtime_ns, st.st_ino)
        with self._lock:
            cached = self._items.get(key)
            if cached is not None:
                self._items.move_to_end(key)
                return cached
        value = read(path, st)
        with self._lock:
            self._items[key] = value
            while len(self._items) > self.size:
                self._items.popitem(last=False)
        return value

    def clear(self) -> None:
        with self._lock:
            self._items.clear()

    def __len__(self) -> int:
        return len(self._items)


def atomic_write_bytes(path: Path, data: bytes) -> Path:
    return atomic_write(path, lambda fh: fh.write(data))


def atomic_write_text(path: Path, text: str) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"))


# -- what a crash leaves behind ------------------------------------------------------------------
#: Work files of an image save (``.saving-<pid>-….png.part``) and a model import
#: (``.<name>.importing-<pid>-<hex>``); names from before the pid was added have none.
_WORK_FILE = re.compile(r"^\.(?:saving-(?:(\d+)-)?.*\.png\.part|.+\.importing-(?:(\d+)-)?[0-9a-f]+)$")
#: A work file untouched this long, whose writer is not a live process here, is left by a crash.
STALE_AFTER_S = 3600.0


def work_file_tag() -> str:
    """The ``<pid>-`` part of a work file's name: who is writing it."""
    return f"{os.getpid()}-"


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    if os.name != "posix":
        return True  # no safe signal-0 probe on Windows: the age alone decides (see below)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True  # exists, owned by someone else
    return True


def _newest_mtime(path: Path) -> float:
    """The latest modification under ``path`` (a copy in progress touches the file it writes)."""
    newest = path.lstat().st_mtime
    if path.is_dir() and not path.is_symlink():
        for root, dirs, files in os.walk(path):
            for name in dirs + files:
                try:
                    newest = max(newest, os.lstat(os.path.join(root, name)).st_mtime)
                except OSError:
                    continue
    return newest


def clean_stale_work_files(folders: list[Path], depth: int = 2,
                           stale_after: float = STALE_AFTER_S) -> list[Path]:
    """Remove what crashed image saves and model imports left in ``folders`` (and ``depth``
    levels of sub-folders); returns what was removed.

    A work file is stale when nothing wrote to it for ``stale_after`` seconds and the process
    named in it is not alive on this machine (on Windows, and for names without a pid, the age
    alone). A file another running Studio is writing is never touched. Errors are logged, never
    raised: this runs at start-up.
    """
    removed: list[Path] = []
    now = time.time()
    stack = [(Path(f), depth) for f in folders]
    while stack:
        folder, level = stack.pop()
        try:
            entries = list(os.scandir(folder))
        except OSError:
            continue
        for entry in entries:
            try:
                match = _WORK_FILE.match(entry.name)
                if not match:
                    if level > 0 and entry.is_dir(follow_symlinks=False):
                        stack.append((Path(entry.path), level - 1))
                    continue
                pid = match.group(1) or match.group(2)
                path = Path(entry.path)
                if now - _newest_mtime(path) < stale_after or (pid and _alive(int(pid))):
                    continue
                if entry.is_dir(follow_symlinks=False):
                    shutil.rmtree(path)
                else:
                    path.unlink()
                removed.append(path)
                log.info("removed %s, left by an interrupted save or import", path)
            except OSError as exc:
                log.warning("cannot remove the stale work file %s: %s", entry.path, exc)
    return removed
