"""When each model was last used: a small JSON file ``<data_dir>/library/usage.json``.

:class:`~studio.pipelines.model_cache.ModelCache` calls :func:`record_use` whenever it hands out a
model, so image (txt2img, img2img, inpaint) and chat models are covered by one hook. Writes are
throttled to one per model per minute: a long session of generations must not rewrite the file on
every image. Keys are resolved absolute paths. No Qt, no torch.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from pathlib import Path

from studio.core.config import Paths, default_paths
from studio.core.files import atomic_write_text

log = logging.getLogger(__name__)

THROTTLE_S = 60.0
_lock = threading.Lock()
_last_written: dict[str, float] = {}


def usage_file(paths: Paths | None = None) -> Path:
    return (paths or default_paths()).data_dir / "library" / "usage.json"


def last_used(paths: Paths | None = None) -> dict[str, float]:
    """Resolved model path → the time (epoch seconds) it was last used."""
    try:
        data = json.loads(usage_file(paths).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    if not isinstance(data, dict):
        return {}
    return {str(k): float(v) for k, v in data.items() if isinstance(v, (int, float))}


def record_use(path: Path, paths: Paths | None = None, now: float | None = None) -> bool:
    """Note that the model at ``path`` was used now; returns False when throttled or unwritable."""
    now = time.time() if now is None else now
    key = str(Path(path).resolve())
    file = usage_file(paths)
    with _lock:
        memo = f"{file}|{key}"
        if now - _last_written.get(memo, float("-inf")) < THROTTLE_S:
            return False
        data = last_used(paths)
        data[key] = now
        try:
            atomic_write_text(file, json.dumps(data, indent=1, sort_keys=True))
        except OSError as exc:  # a read-only data folder must not fail a generation
            log.warning("cannot record model use in %s: %s", file, exc)
            return False
        _last_written[memo] = now
    return True


def forget(path: Path, paths: Paths | None = None) -> None:
    """Drop a removed model from the usage file."""
    key = str(Path(path).resolve())
    with _lock:
        data = last_used(paths)
        if data.pop(key, None) is not None:
            try:
                atomic_write_text(usage_file(paths), json.dumps(data, indent=1, sort_keys=True))
            except OSError as exc:
                log.warning("cannot update %s: %s", usage_file(paths), exc)
