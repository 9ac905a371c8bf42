"""API keys for remote model servers, one per base URL. No Qt here.

Keys go to the system keyring (macOS Keychain, Windows Credential Locker, Secret Service on Linux)
when the optional ``keyring`` package is installed and has a working backend. Otherwise they go to
``api_keys.json`` in the config folder, readable by the user only (mode 0600, written atomically),
and :func:`key_storage` says so, so the Settings dialog can tell the user the key is on disk in
plain text. ``keyring`` is optional on purpose: headless Linux boxes often have no Secret Service,
and a chat with a local server must not depend on one.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

from studio.core.config import Paths, default_paths
from studio.core.files import atomic_write_text

log = logging.getLogger(__name__)

SERVICE = "Studio"  # the keyring "service" name; the username is the server's base URL
FILE_NAME = "api_keys.json"
FILE_NOTE = ("API keys for remote model servers, in plain text because no system keyring was "
             "available. Only your user account can read this file. Install the 'keyring' "
             "package to keep them in the system keyring instead.")


def _normalize(base_url: str) -> str:
    return str(base_url).strip().rstrip("/")


def _keyring():
    """The keyring module when a real backend is usable, else None."""
    if os.environ.get("STUDIO_NO_KEYRING"):  # tests and portable installs keep keys in the file
        return None
    try:
        import keyring
        from keyring.backends import fail
    except Exception:  # noqa: BLE001 - not installed, or broken at import: use the file
        return None
    try:
        backend = keyring.get_keyring()
        if isinstance(backend, fail.Keyring) or getattr(backend, "priority", 1) <= 0:
            return None
    except Exception:  # noqa: BLE001
        return None
    return keyring


def _file(paths: Paths | None) -> Path:
    return (paths or default_paths()).config_dir / FILE_NAME


def _read_file(path: Path) -> dict[str, str]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        log.warning("cannot read %s: %s", path, exc)
        return {}
    keys = data.get("keys", {}) if isinstance(data, dict) else {}
    return {str(k): str(v) for k, v in keys.items()} if isinstance(keys, dict) else {}


def _write_file(path: Path, keys: dict[str, str]) -> None:
    # atomic_write's temp file is created by mkstemp with mode 0600, and os.replace keeps it.
    atomic_write_text(path, json.dumps({"note": FILE_NOTE, "keys": keys}, indent=2) + "\n")
    os.chmod(path, 0o600)


def key_storage(paths: Paths | None = None) -> str:
    """Where keys are kept, in words for the Settings dialog."""
    ring = _keyring()
    if ring is not None:
        return f"the system keyring ({ring.get_keyring().__class__.__name__})"
    return f"{_file(paths)} (plain text, readable only by you — no system keyring available)"


def get_api_key(base_url: str, paths: Paths | None = None) -> str | None:
    """The key stored for ``base_url``, or None."""
    url = _normalize(base_url)
    ring = _keyring()
    if ring is not None:
        try:
            value = ring.get_password(SERVICE, url)
            if value:
                return value
        except Exception as exc:  # noqa: BLE001 - a locked keyring: fall back to the file
            log.warning("keyring lookup failed: %s", exc)
    return _read_file(_file(paths)).get(url) or None


def set_api_key(base_url: str, key: str, paths: Paths | None = None) -> str:
    """Store ``key`` for ``base_url`` (an empty key deletes it); returns where it went."""
    url = _normalize(base_url)
    if not key:
        delete_api_key(url, paths)
        return key_storage(paths)
    ring = _keyring()
    if ring is not None:
        try:
            ring.set_password(SERVICE, url, key)
            _drop_from_file(url, paths)  # never leave an old copy on disk
            return key_storage(paths)
        except Exception as exc:  # noqa: BLE001
            log.warning("keyring refused the key (%s); keeping it in the file", exc)
    path = _file(paths)
    keys = _read_file(path)
    keys[url] = key
    _write_file(path, keys)
    return f"{path} (plain text, readable only by you — no system keyring available)"


def _drop_from_file(url: str, paths: Paths | None) -> None:
    path = _file(paths)
    keys = _read_file(path)
    if url in keys:
        del keys[url]
        _write_file(path, keys)


def delete_api_key(base_url: str, paths: Paths | None = None) -> None:
    """Forget the key for ``base_url`` wherever it is kept."""
    url = _normalize(base_url)
    ring = _keyring()
    if ring is not None:
        try:
            ring.delete_password(SERVICE, url)
        except Exception:  # noqa: BLE001 - nothing stored there
            pass
    _drop_from_file(url, paths)
