"""The remote chat backend against a fake OpenAI-compatible server in this process.

The fake server picks its behaviour from the model name, so each test states what the server does:
stream normally, stall, fail mid-stream, hang up, or reject non-standard fields.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from studio.jobs import CancelToken, UserFacingError
from studio.pipelines.chat.remote import RemoteChatBackend, parse_model_spec
from studio.pipelines.chat.types import ChatRequest

GOOD_KEY = "sk-good"
WORDS = ["Hello", ",", " world", "!"]


class FakeOpenAI(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.0"  # the response ends when the connection closes
    bodies: list = []
    require_key = True

    def log_message(self, *args) -> None:
        pass

    def _json(self, status: int, body: dict) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _authorized(self) -> bool:
        if self.require_key and self.headers.get("Authorization") != f"Bearer {GOOD_KEY}":
            self._json(401, {"error": {"message": "Incorrect API key provided.",
                                       "type": "invalid_request_error", "param": None,
                                       "code": "invalid_api_key"}})
            return False
        return True

    def do_GET(self) -> None:  # noqa: N802
        if not self._authorized():
            return
        if self.path == "/v1/models":
            self._json(200, {"object": "list", "data": [{"id": "m1", "object": "model"},
                                                        {"id": "m2", "object": "model"}]})
        else:
            self._json(404, {"error": {"message": "not found"}})

    def _event(self, obj) -> None:
        self.wfile.write(b"data: " + (obj if isinstance(obj, bytes) else json.dumps(obj).encode())
                         + b"\n\n")
        self.wfile.flush()

    def do_POST(self) -> None:  # noqa: N802
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        type(self).bodies.append(body)
        if not self._authorized():
            return
        model = body["model"]
        if model == "missing":
            self._json(404, {"error": {"message": "The model 'missing' does not exist",
                                       "code": "model_not_found"}})
            return
        if model == "strict" and "top_k" in body:
            self._json(400, {"error": {"message": "Unrecognized request argument supplied: "
                                                  "top_k"}})
            return
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.end_headers()
        if model == "silent":  # headers, then nothing at all
            time.sleep(5)
            return
        self.wfile.write(b": keep-alive comment\n\n")
        for i, word in enumerate(WORDS):
            self._event({"choices": [{"index": 0, "delta": {"content": word},
                                      "finish_reason": None}]})
            if model == "stall" and i == 1:
                time.sleep(5)
                return
            if model == "error-mid" and i == 1:
                self._event({"error": {"message": "CUDA out of memory", "type": "server_error"}})
                return
            if model == "hangup" and i == 1:
                return
        self._event({"choices": [{"index": 0, "delta": {}, "finish_reason": "length"
                                  if body.get("max_tokens") == 4 else "stop"}]})
        if body.get("stream_options", {}).get("include_usage"):
            self._event({"choices": [], "usage": {"prompt_tokens": 7, "completion_tokens": 4,
                                                  "total_tokens": 11}})
        self._event(b"[DONE]")


@pytest.fixture(scope="module")
def fake_server():
    FakeOpenAI.bodies = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), FakeOpenAI)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                              daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def request(**kw) -> ChatRequest:
    return ChatRequest(model="openai:x#y", messages=[{"role": "user", "content": "hi"}], **kw)


def backend(base: str, model: str = "m1", key: str | None = GOOD_KEY, **kw) -> RemoteChatBackend:
    return RemoteChatBackend(base + "/v1", model, api_key=key, **kw)


def test_parse_model_spec():
    assert parse_model_spec("openai:http://localhost:11434/v1#llama3.2:3b") == (
        "http://localhost:11434/v1", "llama3.2:3b")
    assert parse_model_spec(" openai:https://gpu.example.org/#org/Model ") == (
        "https://gpu.example.org", "org/Model")
    for bad in ("http://x#m", "openai:http://x", "openai:http://x#", "openai:ftp://x#m",
                "openai:localhost:8000#m"):
        with pytest.raises(ValueError):
            parse_model_spec(bad)


def test_list_models_accepts_base_with_or_without_v1(fake_server):
    assert backend(fake_server).list_models() == ["m1", "m2"]
    assert RemoteChatBackend(fake_server, "m1", api_key=GOOD_KEY).list_models() == ["m1", "m2"]


def test_stream_maps_sampling_and_yields_text_then_finish(fake_server):
    FakeOpenAI.bodies.clear()
    chunks = list(backend(fake_server).stream(
        request(temperature=0.3, top_p=0.9, top_k=20, repetition_penalty=1.1,
                max_new_tokens=64, seed=5), CancelToken()))
    assert "".join(c.text for c in chunks) == "Hello, world!"
    assert [c.finish_reason for c in chunks] == [None] * 4 + ["stop"]
    assert chunks[-1].completion_tokens == 4 and chunks[-1].prompt_tokens == 7
    sent = FakeOpenAI.bodies[-1]
    assert sent["stream"] is True and sent["model"] == "m1"
    assert (sent["temperature"], sent["top_p"], sent["max_tokens"], sent["seed"]) == (
        0.3, 0.9, 64, 5)
    assert (sent["top_k"], sent["repetition_penalty"]) == (20, 1.1)
    assert sent["messages"] == [{"role": "user", "content": "hi"}]


def test_length_finish_and_neutral_extras_not_sent(fake_server):
    FakeOpenAI.bodies.clear()
    chunks = list(backend(fake_server).stream(request(max_new_tokens=4, top_k=0), CancelToken()))
    assert chunks[-1].finish_reason == "length"
    assert "top_k" not in FakeOpenAI.bodies[-1]
    assert "repetition_penalty" not in FakeOpenAI.bodies[-1]


def test_strict_server_gets_the_request_again_without_extras(fake_server):
    FakeOpenAI.bodies.clear()
    chunks = list(backend(fake_server, "strict").stream(request(top_k=40), CancelToken()))
    assert "".join(c.text for c in chunks) == "Hello, world!"
    assert len(FakeOpenAI.bodies) == 2 and "top_k" not in FakeOpenAI.bodies[1]
    assert chunks[-1].completion_tokens == 4  # counted from the pieces: no usage was asked


def test_wrong_key_is_a_clear_error(fake_server):
    with pytest.raises(UserFacingError, match="refused the API key.*401"):
        list(backend(fake_server, key="sk-wrong").stream(request(), CancelToken()))
    with pytest.raises(UserFacingError, match="refused the API key"):
        backend(fake_server, key=None).list_models()


def test_unknown_model_is_named(fake_server):
    with pytest.raises(UserFacingError, match="no model 'missing'"):
        list(backend(fake_server, "missing").stream(request(), CancelToken()))


def test_unreachable_port():
    with socket.socket() as s:  # a port that was free a moment ago and has no listener
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(UserFacingError) as info:
        list(RemoteChatBackend(f"http://127.0.0.1:{port}/v1", "m").stream(request(),
                                                                           CancelToken()))
    assert str(info.value) == (f"Cannot reach http://127.0.0.1:{port}/v1: connection refused — "
                               "is the server running?")


def test_error_mid_stream_keeps_the_text(fake_server):
    chunks = list(backend(fake_server, "error-mid").stream(request(), CancelToken()))
    assert "".join(c.text for c in chunks) == "Hello,"
    assert chunks[-1].finish_reason == "error"
    assert "CUDA out of memory" in chunks[-1].error


def test_hangup_mid_stream_is_an_error_that_keeps_the_text(fake_server):
    chunks = list(backend(fake_server, "hangup").stream(request(), CancelToken()))
    assert "".join(c.text for c in chunks) == "Hello,"
    assert chunks[-1].finish_reason == "error" and "closed the connection" in chunks[-1].error


def test_slow_server_times_out(fake_server):
    started = time.monotonic()
    with pytest.raises(UserFacingError, match="sent nothing for 0.5 s"):
        list(backend(fake_server, "silent", timeout=0.5).stream(request(), CancelToken()))
    chunks = list(backend(fake_server, "stall", timeout=0.5).stream(request(), CancelToken()))
    assert "".join(c.text for c in chunks) == "Hello,"
    assert chunks[-1].finish_reason == "error" and "sent nothing" in chunks[-1].error
    assert time.monotonic() - started < 3


def test_cancel_wakes_a_read_blocked_on_a_stalled_server(fake_server):
    cancel = CancelToken()
    stream = backend(fake_server, "stall", timeout=30).stream(request(), cancel)
    texts = [next(stream).text, next(stream).text]
    threading.Timer(0.2, cancel.cancel).start()
    started = time.monotonic()
    rest = list(stream)  # blocked in a read until the cancel shuts the socket
    assert time.monotonic() - started < 1.5
    assert texts == ["Hello", ","]
    assert [c.finish_reason for c in rest] == ["cancelled"]


def test_cancel_between_chunks_stops_at_once(fake_server):
    cancel = CancelToken()
    got = []
    for chunk in backend(fake_server).stream(request(), cancel):
        got.append(chunk)
        if chunk.text == ",":
            cancel.cancel()
    assert "".join(c.text for c in got) == "Hello,"
    assert got[-1].finish_reason == "cancelled"
