"""The ``studio serve`` HTTP API in this process, with scripted job handlers (no models).

Covers the protocol: the official ``openai`` client, OpenAI-style errors, API keys, stop strings,
a client that hangs up mid-stream, and concurrent streams queueing on one worker.
"""

from __future__ import annotations

import base64
import http.client
import io
import json
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import openai
import pytest
from PIL import Image

from studio.core.config import Settings, default_paths
from studio.core.requests import GeneratedImage
from studio.pipelines.chat.types import ChatChunk, ChatReply
from studio.pipelines.services import build_engine
from studio.server.app import is_loopback, make_server
from studio.server.catalog import CHAT, IMAGE, Catalog, ServedModel

WORDS = ["The", " cat", " sat", " on", " the", " mat", "."]
PATIENCE_S = 120  # waits end as soon as their condition holds; a loaded machine may lag


def wait_until(condition, message: str) -> None:
    deadline = time.monotonic() + PATIENCE_S
    while not condition():
        assert time.monotonic() < deadline, message
        time.sleep(0.02)


class Handlers:
    """Scripted chat and image handlers; ``delay`` slows the chat to one word per delay."""

    def __init__(self, tmp_path) -> None:
        self.tmp_path = tmp_path
        self.delay = 0.0
        self.requests: list = []
        self.replies: list = []
        self.fail_after: int | None = None
        self.hold_after: int | None = None  # after this many words: wait until cancelled

    def chat(self, request, progress, cancel):
        self.requests.append(request)
        words = WORDS[:request.max_new_tokens]
        text = ""
        for i, word in enumerate(words, 1):
            if cancel.cancelled:
                progress.partial(ChatChunk(finish_reason="cancelled", completion_tokens=i - 1))
                self.replies.append(ChatReply(text, i - 1, 5, "cancelled"))
                return self.replies[-1]
            if self.fail_after is not None and i > self.fail_after:
                raise RuntimeError("the GPU fell over")
            time.sleep(self.delay)
            text += word
            progress.partial(ChatChunk(text=word, completion_tokens=i, prompt_tokens=5))
            if self.hold_after is not None and i >= self.hold_after:
                wait_until(lambda: cancel.cancelled, "the job was never cancelled")
        reason = "length" if len(words) < len(WORDS) else "stop"
        progress.partial(ChatChunk(finish_reason=reason, completion_tokens=len(words),
                                   prompt_tokens=5))
        self.replies.append(ChatReply(text, len(words), 5, reason))
        return self.replies[-1]

    def txt2img(self, request, progress, cancel):
        self.requests.append(request)
        results = []
        for i in range(request.count):
            path = self.tmp_path / f"img-{request.seed + i}.png"
            Image.new("RGB", (request.width, request.height), (i * 40, 0, 0)).save(path)
            results.append(GeneratedImage(request=request, seed=request.seed + i, index=i,
                                          path=path))
            progress.partial(results[-1])
        return results


@pytest.fixture
def served(tmp_path):
    handlers = Handlers(tmp_path)
    runner = build_engine(Settings, default_paths,
                          handlers={"chat": handlers.chat, "txt2img": handlers.txt2img})
    catalog = Catalog([ServedModel("tiny-chat", CHAT, "/models/tiny-chat"),
                       ServedModel("tiny-sd", IMAGE, "/models/tiny-sd")])
    servers = []

    def start(api_key=None):
        server = make_server("127.0.0.1", 0, runner, catalog, api_key)
        threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                         daemon=True).start()
        servers.append(server)
        return server

    yield start, handlers, runner
    for server in servers:
        server.shutdown()
        server.server_close()
    runner.shutdown(timeout=PATIENCE_S)


def client(server, key="none") -> openai.OpenAI:
    return openai.OpenAI(base_url=server.url, api_key=key, max_retries=0, timeout=PATIENCE_S)


def raw_post(server, path: str, body: bytes, headers: dict | None = None):
    host, port = server.server_address[:2]
    conn = http.client.HTTPConnection(host, port, timeout=PATIENCE_S)
    conn.request("POST", path, body=body, headers={"Content-Type": "application/json",
                                                   **(headers or {})})
    resp = conn.getresponse()
    data = json.loads(resp.read())
    conn.close()
    return resp.status, data


def test_models_chat_and_stream_with_the_openai_client(served):
    start, handlers, _ = served
    c = client(start())
    assert [(m.id, m.owned_by) for m in c.models.list()] == [("tiny-chat", "studio"),
                                                             ("tiny-sd", "studio")]
    reply = c.chat.completions.create(model="tiny-chat", temperature=0, seed=3, max_tokens=100,
                                      messages=[{"role": "developer", "content": "Be brief."},
                                                {"role": "user", "content": "Hi"}])
    assert reply.choices[0].message.content == "The cat sat on the mat."
    assert reply.choices[0].finish_reason == "stop"
    assert (reply.usage.prompt_tokens, reply.usage.completion_tokens) == (5, 7)
    sent = handlers.requests[-1]
    assert sent.model == "/models/tiny-chat" and sent.temperature == 0 and sent.seed == 3
    assert sent.messages[0] == {"role": "system", "content": "Be brief."}

    stream = c.chat.completions.create(model="tiny-chat", stream=True, max_tokens=3,
                                       stream_options={"include_usage": True},
                                       messages=[{"role": "user", "content": "Hi"}])
    chunks = list(stream)
    text = "".join(ch.choices[0].delta.content or "" for ch in chunks if ch.choices)
    assert text == "The cat sat"
    assert [ch.choices[0].finish_reason for ch in chunks if ch.choices][-1] == "length"
    assert chunks[-1].usage.completion_tokens == 3 and not chunks[-1].choices


def test_stop_strings_cut_the_reply_and_end_the_job(served):
    start, handlers, runner = served
    c = client(start())
    reply = c.chat.completions.create(model="tiny-chat", stop=[" on"],
                                      messages=[{"role": "user", "content": "Hi"}])
    assert reply.choices[0].message.content == "The cat sat"
    assert reply.choices[0].finish_reason == "stop"
    stream = c.chat.completions.create(model="tiny-chat", stop="at on", stream=True,
                                       messages=[{"role": "user", "content": "Hi"}])
    assert "".join(ch.choices[0].delta.content or "" for ch in stream) == "The cat s"


def test_images_generate_returns_pngs(served):
    start, handlers, _ = served
    c = client(start())
    result = c.images.generate(model="tiny-sd", prompt="a red square", n=2, size="64x32",
                               extra_body={"steps": 3, "seed": 11, "negative_prompt": "blue"})
    images = [Image.open(io.BytesIO(base64.b64decode(d.b64_json))) for d in result.data]
    assert [im.size for im in images] == [(64, 32), (64, 32)]
    sent = handlers.requests[-1]
    assert (sent.steps, sent.seed, sent.count, sent.negative_prompt) == (3, 11, 2, "blue")
    with pytest.raises(openai.BadRequestError, match="multiple of 8"):
        c.images.generate(model="tiny-sd", prompt="x", size="65x64")
    with pytest.raises(openai.BadRequestError, match="b64_json"):
        c.images.generate(model="tiny-sd", prompt="x", response_format="url")
    with pytest.raises(openai.BadRequestError, match="chat model"):
        c.images.generate(model="tiny-chat", prompt="x")


def test_images_take_the_variation_seed_and_a1111_prompt_syntax_as_the_cli_does(served):
    start, handlers, _ = served
    c = client(start())
    prompt = "a (red:1.3) square BREAK [cat:dog:0.5], <lora:ink:0.5>"
    c.images.generate(model="tiny-sd", prompt=prompt, size="64x32",
                      extra_body={"steps": 3, "seed": 11, "variation_seed": 99,
                                  "variation_strength": 0.25})
    sent = handlers.requests[-1]
    # verbatim: the pipeline reads weights, BREAK, editing and tags as for the CLI's request
    assert sent.prompt == prompt
    assert (sent.seed, sent.variation_seed, sent.variation_strength) == (11, 99, 0.25)
    c.images.generate(model="tiny-sd", prompt="x", size="64x32",
                      extra_body={"steps": 3, "variation_strength": 0.5})
    assert 0 <= handlers.requests[-1].variation_seed <= 2**32 - 1  # random, as in the CLI
    c.images.generate(model="tiny-sd", prompt="x", size="64x32", extra_body={"steps": 3})
    assert (handlers.requests[-1].variation_seed,
            handlers.requests[-1].variation_strength) == (0, 0.0)
    with pytest.raises(openai.BadRequestError, match="variation_strength"):
        c.images.generate(model="tiny-sd", prompt="x", extra_body={"variation_strength": 2})


def test_bad_requests_get_openai_style_errors(served):
    start, _, _ = served
    server = start()
    status, body = raw_post(server, "/v1/chat/completions", b"{not json")
    assert status == 400 and body["error"]["type"] == "invalid_request_error"
    assert set(body["error"]) == {"message", "type", "param", "code"}
    status, body = raw_post(server, "/v1/chat/completions",
                            json.dumps({"model": "tiny-chat", "messages": []}).encode())
    assert (status, body["error"]["param"]) == (400, "messages")
    status, body = raw_post(server, "/v1/chat/completions", json.dumps(
        {"model": "tiny-chat", "messages": [{"role": "user", "content": "x"}],
         "temperature": 7}).encode())
    assert (status, body["error"]["param"]) == (400, "temperature")
    status, body = raw_post(server, "/v1/nothing", b"{}")
    assert status == 404 and "/v1/chat/completions" in body["error"]["message"]
    c = client(server)
    with pytest.raises(openai.NotFoundError) as info:
        c.chat.completions.create(model="gpt-9", messages=[{"role": "user", "content": "x"}])
    assert info.value.body["code"] == "model_not_found"
    with pytest.raises(openai.BadRequestError, match="n=1"):
        c.chat.completions.create(model="tiny-chat", n=2,
                                  messages=[{"role": "user", "content": "x"}])
    with pytest.raises(openai.BadRequestError, match="Unsupported role"):
        c.chat.completions.create(model="tiny-chat", messages=[{"role": "tool", "content": "x",
                                                                "tool_call_id": "1"}])


def test_api_key_required_when_set(served):
    start, _, _ = served
    server = start(api_key="sk-serve")
    with pytest.raises(openai.AuthenticationError) as info:
        client(server, "sk-wrong").models.list()
    assert info.value.status_code == 401 and info.value.body["code"] == "invalid_api_key"
    assert [m.id for m in client(server, "sk-serve").models.list()] == ["tiny-chat", "tiny-sd"]


def test_non_loopback_needs_a_key():
    assert is_loopback("127.0.0.1") and is_loopback("localhost") and is_loopback("::1")
    assert not is_loopback("0.0.0.0") and not is_loopback("")
    runner = build_engine(Settings, default_paths)
    try:
        with pytest.raises(PermissionError, match="without an API key"):
            make_server("0.0.0.0", 0, runner, Catalog([]))
    finally:
        runner.shutdown()


def test_failure_mid_stream_is_reported_after_the_text(served):
    start, handlers, _ = served
    handlers.fail_after = 2
    c = client(start())
    stream = c.chat.completions.create(model="tiny-chat", stream=True,
                                       messages=[{"role": "user", "content": "Hi"}])
    texts = []
    with pytest.raises(openai.APIError, match="GPU fell over"):
        for ch in stream:
            texts.append(ch.choices[0].delta.content or "")
    assert "".join(texts) == "The cat"
    with pytest.raises(openai.InternalServerError, match="GPU fell over"):
        c.chat.completions.create(model="tiny-chat", messages=[{"role": "user", "content": "x"}])


def test_client_hanging_up_cancels_its_job(served):
    """The model holds after its first word until its job is cancelled: only the server noticing
    the hang-up can end the reply early, however slow the machine."""
    start, handlers, runner = served
    handlers.hold_after = 1
    server = start()
    body = json.dumps({"model": "tiny-chat", "stream": True,
                       "messages": [{"role": "user", "content": "Hi"}]}).encode()
    sock = socket.create_connection(server.server_address[:2], timeout=PATIENCE_S)
    sock.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: "
                 b"application/json\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
    received = b""
    while b'"The"' not in received:
        received += sock.recv(4096)
    sock.close()
    wait_until(lambda: handlers.replies, "the job did not end after the client hung up")
    assert handlers.replies[-1].finish_reason == "cancelled"
    assert handlers.replies[-1].completion_tokens == 1
    wait_until(lambda: not runner.queue_length, "the queue did not empty")
    handlers.hold_after = None
    start_again = client(server).chat.completions.create(
        model="tiny-chat", messages=[{"role": "user", "content": "x"}])
    assert start_again.choices[0].message.content == "The cat sat on the mat."
    assert runner.jobs() == []  # finished jobs do not pile up in a long-running server


def test_eight_concurrent_streams_all_complete(served):
    start, handlers, runner = served
    handlers.delay = 0.005
    c = client(start())

    def one(i: int) -> str:
        stream = c.chat.completions.create(model="tiny-chat", stream=True, seed=i,
                                           messages=[{"role": "user", "content": str(i)}])
        return "".join(ch.choices[0].delta.content or "" for ch in stream)

    with ThreadPoolExecutor(8) as pool:
        assert list(pool.map(one, range(8))) == ["The cat sat on the mat."] * 8
    assert sorted(r.seed for r in handlers.requests) == list(range(8))


def test_server_and_remote_backend_import_without_qt_or_torch():
    import subprocess
    import sys

    code = ("import sys, studio.server.app, studio.cli.serve, studio.pipelines.chat.remote, "
            "studio.library.secrets; "
            "bad = [m for m in sys.modules if m.split('.')[0] in ('torch', 'PySide6', "
            "'transformers', 'diffusers')]; print(bad); sys.exit(1 if bad else 0)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_a_reply_cut_short_by_shutdown_says_so(served):
    start, handlers, runner = served
    handlers.hold_after = 1  # the reply waits after its first word until it is cancelled
    c = client(start())
    stream = c.chat.completions.create(model="tiny-chat", stream=True,
                                       messages=[{"role": "user", "content": "Hi"}])
    texts = []
    with pytest.raises(openai.APIError, match="shutting down"):
        for ch in stream:
            texts.append(ch.choices[0].delta.content or "")
            if "".join(texts) == "The":
                runner.cancel_all()  # what Ctrl+C does to running jobs
    assert "".join(texts) == "The"


def test_an_unexpected_server_error_is_a_500_with_a_message(served, monkeypatch):
    start, handlers, _ = served
    server = start()
    monkeypatch.setattr(Path, "read_bytes", lambda self: 1 / 0)  # a bug while answering
    with pytest.raises(openai.InternalServerError, match="ZeroDivisionError"):
        client(server).images.generate(model="tiny-sd", prompt="x", size="64x64")
    assert [m.id for m in client(server).models.list()] == ["tiny-chat", "tiny-sd"]
