"""``studio serve`` in a subprocess with the tiny Llama and the tiny SD 1.5, driven by the official
``openai`` client and by the studio's own remote backend, as a user's other apps would use it."""

from __future__ import annotations

import base64
import io
import os
import re
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import openai
import pytest
from PIL import Image

from studio.core.config import Settings, default_paths
from studio.core.jobs import CancelToken, UserFacingError
from studio.pipelines.chat.remote import RemoteChatBackend
from studio.pipelines.chat.types import ChatRequest

ROOT = Path(__file__).resolve().parents[1]
KEY = "sk-test-serve"
MESSAGES = [{"role": "system", "content": "You are a helpful assistant."},
            {"role": "user", "content": "Paint the sky"}]


def start_serve(home: Path, *args: str) -> tuple[subprocess.Popen, str]:
    env = dict(os.environ, STUDIO_HOME=str(home), HF_HUB_OFFLINE="1")
    proc = subprocess.Popen([sys.executable, "-m", "studio", "serve", "--port", "0", *args],
                            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    line = proc.stdout.readline()
    match = re.search(r"on (http://\S+/v1)", line)
    if not match:
        proc.kill()
        raise AssertionError(f"serve did not start: {line!r} {proc.stderr.read()}")
    return proc, match.group(1)


@pytest.fixture(scope="module")
def serve(tiny_llama_dir, tiny_sd15_dir, tmp_path_factory):
    home = tmp_path_factory.mktemp("serve-home")
    (home / "config").mkdir()
    (home / "config" / "settings.json").write_text('{"device": "cpu"}')
    (home / "key").write_text(KEY + "\n")  # from a file: the key never shows in `ps`
    proc, url = start_serve(home, "--api-key-file", str(home / "key"), "--model",
                            str(tiny_llama_dir), "--model", str(tiny_sd15_dir))
    assert KEY not in " ".join(proc.args)
    yield url
    proc.terminate()  # SIGTERM: the graceful path, like Ctrl+C
    try:
        assert proc.wait(timeout=120) == 0
    finally:
        if proc.poll() is None:
            proc.kill()


@pytest.fixture(scope="module")
def local_greedy(tiny_llama_dir):
    """The local backend's greedy reply, computed in this process."""
    from studio.pipelines.chat.local import LocalChatBackend

    settings = Settings(device="cpu")
    backend = LocalChatBackend(lambda: settings, default_paths)
    request = ChatRequest(model=str(tiny_llama_dir), messages=MESSAGES, temperature=0,
                          max_new_tokens=20)
    return backend.generate(request, CancelToken())


def client(url: str, key: str = KEY) -> openai.OpenAI:
    return openai.OpenAI(base_url=url, api_key=key, max_retries=0, timeout=300)


def test_models_and_greedy_chat_equal_the_local_backend(serve, local_greedy):
    c = client(serve)
    assert sorted((m.id, m.model_extra["kind"]) for m in c.models.list()) == [
        ("tiny-llama", "chat"), ("tiny-sd15", "txt2img")]
    reply = c.chat.completions.create(model="tiny-llama", messages=MESSAGES, temperature=0,
                                      max_tokens=20)
    assert local_greedy.text  # the comparison below means something
    assert reply.choices[0].message.content == local_greedy.text
    assert reply.usage.completion_tokens == local_greedy.completion_tokens
    assert reply.usage.prompt_tokens == local_greedy.prompt_tokens
    assert reply.choices[0].finish_reason == ("length" if local_greedy.finish_reason == "length"
                                              else "stop")

    stream = c.chat.completions.create(model="tiny-llama", messages=MESSAGES, temperature=0,
                                       max_tokens=20, stream=True,
                                       stream_options={"include_usage": True})
    chunks = list(stream)
    pieces = [ch.choices[0].delta.content for ch in chunks if ch.choices
              and ch.choices[0].delta.content]
    assert len(pieces) > 1 and "".join(pieces) == local_greedy.text
    assert chunks[-1].usage.completion_tokens == local_greedy.completion_tokens


def test_remote_backend_against_serve(serve, local_greedy):
    """End to end: RemoteChatBackend → studio serve → LocalChatBackend."""
    backend = RemoteChatBackend(serve, "tiny-llama", api_key=KEY)
    assert backend.list_models() == ["tiny-llama", "tiny-sd15"]
    request = ChatRequest(model=f"openai:{serve}#tiny-llama", messages=MESSAGES,
                          temperature=0, max_new_tokens=20)
    chunks = list(backend.stream(request, CancelToken()))
    assert "".join(c.text for c in chunks) == local_greedy.text
    assert chunks[-1].finish_reason == local_greedy.finish_reason
    assert chunks[-1].completion_tokens == local_greedy.completion_tokens
    with pytest.raises(UserFacingError, match="refused the API key"):
        list(RemoteChatBackend(serve, "tiny-llama", api_key="nope").stream(request,
                                                                           CancelToken()))


def test_image_generation_returns_a_png(serve):
    result = client(serve).images.generate(model="tiny-sd15", prompt="a lighthouse",
                                           size="64x64", extra_body={"steps": 2, "seed": 3})
    data = base64.b64decode(result.data[0].b64_json)
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    image = Image.open(io.BytesIO(data))
    image.load()
    assert image.size == (64, 64)


def test_bad_requests_and_wrong_key(serve):
    c = client(serve)
    with pytest.raises(openai.BadRequestError) as info:
        c.chat.completions.create(model="tiny-llama", messages=MESSAGES, top_p=3)
    assert info.value.body["param"] == "top_p"
    with pytest.raises(openai.BadRequestError):
        c.images.generate(model="tiny-sd15", prompt="x", size="big")
    with pytest.raises(openai.NotFoundError):
        c.chat.completions.create(model="gpt-4o", messages=MESSAGES)
    with pytest.raises(openai.AuthenticationError):
        client(serve, "sk-wrong").models.list()


def test_eight_concurrent_streaming_clients_all_complete(serve, local_greedy):
    c = client(serve)

    def one(i: int) -> str:
        stream = c.chat.completions.create(model="tiny-llama", messages=MESSAGES, temperature=0,
                                           max_tokens=20, stream=True)
        return "".join(ch.choices[0].delta.content or "" for ch in stream if ch.choices)

    with ThreadPoolExecutor(8) as pool:  # how long they take together: bench/chat.py, part 2
        replies = list(pool.map(one, range(8)))
    assert replies == [local_greedy.text] * 8


def test_non_loopback_without_key_is_refused(tmp_path):
    env = dict(os.environ, STUDIO_HOME=str(tmp_path))
    proc = subprocess.run([sys.executable, "-m", "studio", "serve", "--host", "0.0.0.0",
                           "--port", "0"], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 2
    assert proc.stdout == ""
    assert "without an API key" in proc.stderr and "--api-key" in proc.stderr
