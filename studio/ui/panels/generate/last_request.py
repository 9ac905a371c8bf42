"""The Generate form's last request, kept in ``data_dir/last_request.json`` across restarts."""

from __future__ import annotations

import json
import logging
from pathlib import Path

from studio.core.files import atomic_write_text
from studio.core.requests import Txt2ImgRequest

log = logging.getLogger(__name__)

LAST_REQUEST_FILE = "last_request.json"


def save_last_request(data_dir: Path, request: Txt2ImgRequest, seed_mode: str) -> None:
    """Write the request and the seed mode atomically; a failure is logged, never raised."""
    data = {"request": request.to_dict(), "seed_mode": seed_mode}
    try:
        atomic_write_text(Path(data_dir) / LAST_REQUEST_FILE, json.dumps(data, indent=2) + "\n")
    except OSError as exc:  # a read-only data folder must not stop generating
        log.warning("could not save the last request: %s", exc)


def load_last_request(data_dir: Path) -> tuple[Txt2ImgRequest, str] | None:
    """The saved request and seed mode, or None when there is none or it is unreadable."""
    path = Path(data_dir) / LAST_REQUEST_FILE
    if not path.exists():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return Txt2ImgRequest.from_dict(data["request"]), str(data.get("seed_mode", "random"))
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        log.warning("ignoring unreadable %s: %s", path, exc)
        return None
