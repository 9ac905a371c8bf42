"""One parser for ``openai:BASE_URL#MODEL`` everywhere, and API keys found for remote specs whether
or not the server is listed in Settings (the job handler, and ``studio chat`` in a subprocess)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from studio.core.config import Settings, default_paths
from studio.core.jobs import CancelToken, UserFacingError
from studio.library.secrets import set_api_key
from studio.pipelines.chat.remote import make_spec, parse_model_spec
from studio.pipelines.chat.service import ChatService
from studio.pipelines.chat.types import ChatRequest
from tests.fixtures.fake_openai import GOOD_KEY, WORDS, serve_fake_openai
from tests.fixtures.sinks import RecordingSink

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def fake_server():
    with serve_fake_openai() as base:
        yield base


@pytest.fixture(autouse=True)
def file_keys(monkeypatch):
    """Keys go to the 0600 file under STUDIO_HOME, never to a real keyring."""
    monkeypatch.setenv("STUDIO_NO_KEYRING", "1")


def _service(settings: Settings) -> ChatService:
    return ChatService(lambda: settings, default_paths)


def test_the_first_hash_ends_the_url_and_the_model_may_contain_more():
    assert parse_model_spec("openai:http://gpu:8000/v1#org/model#v2") == (
        "http://gpu:8000/v1", "org/model#v2")
    spec = make_spec("http://gpu:8000/v1/", "a#b")
    assert spec == "openai:http://gpu:8000/v1#a#b"
    assert parse_model_spec(spec) == ("http://gpu:8000/v1", "a#b")


def test_the_job_handler_uses_the_same_parser():
    backend = _service(Settings()).remote_backend("openai:http://gpu:8000/v1#org/model#v2")
    assert (backend.base_url, backend.model) == ("http://gpu:8000/v1", "org/model#v2")
    for bad in ("openai:no-url-here", "openai:http://gpu:8000/v1", "openai:http://gpu#"):
        with pytest.raises(UserFacingError, match="openai:BASE_URL#MODEL"):
            _service(Settings()).remote_backend(bad)


def test_a_key_saved_by_url_is_used_without_an_endpoint_in_settings(fake_server):
    base = fake_server + "/v1"
    assert _service(Settings()).remote_backend(f"openai:{base}#m1").api_key is None
    set_api_key(base, GOOD_KEY)
    backend = _service(Settings()).remote_backend(f"openai:{base}/#m1")
    assert backend.api_key == GOOD_KEY
    # And the whole job runs: without the key the fake server would answer 401.
    request = ChatRequest(model=f"openai:{base}#m1", temperature=0, max_new_tokens=16,
                          messages=[{"role": "user", "content": "hi"}])
    reply = _service(Settings()).run(request, RecordingSink(), CancelToken())
    assert reply.text == "".join(WORDS)


def test_a_listed_endpoint_key_wins_and_a_missing_one_falls_back_to_the_url(fake_server):
    base = fake_server + "/v1"
    set_api_key("ref-gpu", "sk-from-ref")
    set_api_key(base, GOOD_KEY)
    listed = Settings(remote_endpoints=[{"name": "GPU", "base_url": base,
                                         "api_key_ref": "ref-gpu"}])
    assert _service(listed).remote_backend(f"openai:{base}#m1").api_key == "sk-from-ref"
    dangling = Settings(remote_endpoints=[{"name": "GPU", "base_url": base,
                                           "api_key_ref": "ref-gone"}])
    assert _service(dangling).remote_backend(f"openai:{base}#m1").api_key == GOOD_KEY


def test_studio_chat_cli_uses_the_key_saved_for_the_url(fake_server, studio_home):
    base = fake_server + "/v1"
    set_api_key(base, GOOD_KEY)
    env = dict(os.environ, STUDIO_HOME=str(studio_home), PYTHONPATH=str(ROOT),
               STUDIO_NO_KEYRING="1", HF_HUB_OFFLINE="1")
    out = subprocess.run([sys.executable, "-m", "studio", "chat", "--model", f"openai:{base}#m1",
                          "--prompt", "hi"], capture_output=True, text=True, env=env,
                         timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "".join(WORDS)
    assert "Traceback" not in out.stderr
