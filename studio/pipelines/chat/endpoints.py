"""The user's OpenAI-compatible servers (Settings' ``remote_endpoints``): their keys and models.

No Qt here: the Servers dialog and the Chat panel call these on a background thread (they touch
the network and the keyring). An endpoint is a dict ``{"name", "base_url", "models"}``; its API
key is never in it — keys live in :mod:`studio.library.secrets`, stored under the base URL, which
is also where :func:`studio.pipelines.chat.remote.backend_for_spec` looks, so a spec picked in the
GUI and the same spec typed on the command line find the same key.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from studio.core.config import Paths
from studio.core.jobs import UserFacingError, describe_error
from studio.pipelines.chat.remote import RemoteChatBackend, make_spec, resolve_api_key

TEST_TIMEOUT = 10.0  # seconds: a server that lists no models within this is reported as slow


@dataclass
class ModelList:
    """What ``GET /v1/models`` gave: the model ids, or a message saying why there are none."""

    models: list[str] = field(default_factory=list)
    error: str = ""

    @property
    def ok(self) -> bool:
        return not self.error


def normalize_url(base_url: str) -> str:
    return str(base_url).strip().rstrip("/")


def check_url(base_url: str) -> str:
    """``""`` for a usable http(s) base URL, else what is wrong with it, in words."""
    url = normalize_url(base_url)
    if not url:
        return "Enter the server's base URL, e.g. http://localhost:11434/v1"
    if "#" in url:
        return "A base URL cannot contain '#'."
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return f"{url!r} is not an http(s) URL, e.g. http://localhost:11434/v1"
    return ""


def display_name(endpoint: dict) -> str:
    """The endpoint's name, or its host:port when it has none."""
    name = str(endpoint.get("name") or "").strip()
    if name:
        return name
    parts = urlsplit(normalize_url(endpoint.get("base_url", "")))
    return parts.netloc or normalize_url(endpoint.get("base_url", "")) or "Server"


def endpoint_key(endpoint: dict, paths: Paths | None = None) -> str:
    """The stored API key of an endpoint ("" when none)."""
    return resolve_api_key(endpoint, paths) or ""


def fetch_models(base_url: str, api_key: str | None,
                 timeout: float = TEST_TIMEOUT) -> ModelList:
    """Ask a server for its models (blocking; call it off the GUI thread). Never raises."""
    problem = check_url(base_url)
    if problem:
        return ModelList(error=problem)
    try:
        backend = RemoteChatBackend(normalize_url(base_url), "", api_key=api_key or None,
                                    timeout=timeout, connect_timeout=timeout)
        return ModelList(sorted(backend.list_models(), key=str.lower))
    except UserFacingError as exc:
        return ModelList(error=str(exc))
    except Exception as exc:  # noqa: BLE001 - a test of a server ends in a message, always
        return ModelList(error=describe_error(exc))


def refresh_models(endpoints: list[dict], paths: Paths | None = None,
                   timeout: float = TEST_TIMEOUT) -> tuple[list[dict], list[str]]:
    """Re-query every endpoint's models. Returns the endpoints with fresh ``models`` (an endpoint
    that failed keeps the list it had) and one message per failure."""
    fresh, errors = [], []
    for endpoint in endpoints:
        result = fetch_models(endpoint.get("base_url", ""), endpoint_key(endpoint, paths),
                              timeout)
        updated = dict(endpoint)
        if result.ok:
            updated["models"] = result.models
        else:
            errors.append(f"{display_name(endpoint)}: {result.error}")
        fresh.append(updated)
    return fresh, errors


def model_specs(endpoints: list[dict]) -> list[tuple[str, str, str]]:
    """(server name, model id, spec) for every model listed under an endpoint, in order."""
    out = []
    for endpoint in endpoints:
        base = normalize_url(endpoint.get("base_url", ""))
        if check_url(base):
            continue
        for model in endpoint.get("models") or []:
            out.append((display_name(endpoint), str(model), make_spec(base, str(model))))
    return out


def save_keys(old: list[dict], new: list[dict], keys: dict[str, str],
              paths: Paths | None = None) -> None:
    """Store ``keys`` (base URL → key; "" deletes) and forget the keys of URLs no longer used.

    ``old``/``new`` are the endpoint lists before and after an edit; a key whose URL was renamed
    or removed is deleted so it does not linger in the keyring or the key file.
    """
    from studio.library.secrets import delete_api_key, set_api_key

    kept = {normalize_url(e.get("base_url", "")) for e in new}
    for url, key in keys.items():
        set_api_key(normalize_url(url), key, paths)
    for endpoint in old:
        url = normalize_url(endpoint.get("base_url", ""))
        if url and url not in kept:
            delete_api_key(url, paths)
        ref = str(endpoint.get("api_key_ref") or "").strip()
        if ref and ref != url and not any(e.get("api_key_ref") == ref for e in new):
            delete_api_key(ref, paths)


def clean(endpoint: dict[str, Any]) -> dict[str, Any]:
    """What Settings keeps of an endpoint: name, base URL, models — never a key."""
    out: dict[str, Any] = {"name": str(endpoint.get("name") or "").strip(),
                           "base_url": normalize_url(endpoint.get("base_url", "")),
                           "models": [str(m) for m in endpoint.get("models") or []]}
    return out
