"""API keys: the system keyring when usable, else a 0600 file with a note."""

from __future__ import annotations

import json
import stat

from studio.core.config import default_paths
from studio.library import secrets
from studio.pipelines.chat.remote import resolve_api_key


def test_file_fallback_is_private_and_says_why(monkeypatch):
    monkeypatch.setenv("STUDIO_NO_KEYRING", "1")
    where = secrets.set_api_key("http://gpu:8000/v1/", "sk-1")
    path = default_paths().config_dir / secrets.FILE_NAME
    assert str(path) in where and "plain text" in where
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    data = json.loads(path.read_text())
    assert data["keys"] == {"http://gpu:8000/v1": "sk-1"} and "keyring" in data["note"]
    assert secrets.get_api_key("http://gpu:8000/v1") == "sk-1"
    assert resolve_api_key({"base_url": "http://gpu:8000/v1/"}) == "sk-1"
    assert secrets.get_api_key("http://other:8000/v1") is None
    secrets.delete_api_key("http://gpu:8000/v1")
    assert secrets.get_api_key("http://gpu:8000/v1") is None


def test_keyring_used_when_available_and_no_copy_left_on_disk(monkeypatch):
    monkeypatch.setenv("STUDIO_NO_KEYRING", "1")
    secrets.set_api_key("ref-a", "old")  # a key written while no keyring was there
    store: dict = {}

    class FakeRing:
        def get_keyring(self):
            return self

        def get_password(self, service, name):
            return store.get((service, name))

        def set_password(self, service, name, value):
            store[(service, name)] = value

        def delete_password(self, service, name):
            store.pop((service, name), None)

    monkeypatch.setattr(secrets, "_keyring", lambda: FakeRing())
    assert "system keyring" in secrets.set_api_key("ref-a", "sk-2")
    assert store == {("Studio", "ref-a"): "sk-2"}
    file_keys = json.loads((default_paths().config_dir / secrets.FILE_NAME).read_text())["keys"]
    assert file_keys == {}
    assert resolve_api_key({"base_url": "http://x", "api_key_ref": "ref-a"}) == "sk-2"
    secrets.delete_api_key("ref-a")
    assert store == {} and secrets.get_api_key("ref-a") is None
