"""The remote chat backend against a fake OpenAI-compatible server in this process
(:mod:`tests.fixtures.fake_openai`, which picks its behaviour from the model name)."""

from __future__ import annotations

import socket
import sys
import threading
import time

import pytest

from studio.core.jobs import CancelToken, UserFacingError
from studio.pipelines.chat.remote import RemoteChatBackend, parse_model_spec
from studio.pipelines.chat.types import ChatRequest
from tests.fixtures.fake_openai import GOOD_KEY, FakeOpenAI, serve_fake_openai

PATIENCE_S = 120  # what a passing run waits for is there at once; a loaded machine may lag


def wait_for(condition, message: str) -> None:
    deadline = time.monotonic() + PATIENCE_S
    while not condition():
        assert time.monotonic() < deadline, message
        time.sleep(0.01)


def _in_socket_read(thread: threading.Thread) -> bool:
    """Whether ``thread`` is inside a socket read (blocked there: the server sends nothing)."""
    frame = sys._current_frames().get(thread.ident)
    while frame is not None:
        if frame.f_code.co_name == "readinto" and frame.f_code.co_filename.endswith("socket.py"):
            return True
        frame = frame.f_back
    return False


@pytest.fixture(scope="module")
def fake_server():
    with serve_fake_openai() as base:
        yield base


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
    """The client's read timeout ends the wait: the fake server stalls far longer than it."""
    with pytest.raises(UserFacingError, match="sent nothing for 2 s"):
        list(backend(fake_server, "silent", timeout=2).stream(request(), CancelToken()))
    chunks = list(backend(fake_server, "stall", timeout=2).stream(request(), CancelToken()))
    assert "".join(c.text for c in chunks) == "Hello,"
    assert chunks[-1].finish_reason == "error" and "sent nothing for 2 s" in chunks[-1].error


def test_cancel_wakes_a_read_blocked_on_a_stalled_server(fake_server):
    """The server stalls (for minutes) and the read timeout is longer still: only the cancel
    shutting the socket can end the read, so the stream ending at all is what shows it. How fast
    it ends is measured in bench/chat.py."""
    cancel = CancelToken()
    stream = backend(fake_server, "stall", timeout=3600).stream(request(), cancel)
    texts = [next(stream).text, next(stream).text]
    rest: list = []
    reader = threading.Thread(target=lambda: rest.extend(stream), daemon=True)
    reader.start()
    wait_for(lambda: _in_socket_read(reader), "the reader never blocked in a read")
    cancel.cancel()
    reader.join(PATIENCE_S)
    assert not reader.is_alive(), "the cancel did not wake the blocked read"
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


# -- the same backend on asyncio (the I/O lane) ------------------------------------------------
def _run_async(coroutine_fn):
    """``asyncio.run`` on a thread of its own: a GUI test earlier in this process leaves Qt's
    event loop registered as the running loop of the main thread (qasync)."""
    import asyncio
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(1) as pool:
        return pool.submit(lambda: asyncio.run(coroutine_fn())).result()


def _astream(base: str, model: str, timeout: float = 10.0, **kw) -> list:

    from studio.pipelines.chat.remote_async import AsyncRemoteChat

    async def collect() -> list:
        chat = AsyncRemoteChat(backend(base, model, timeout=timeout))
        return [c async for c in chat.stream(request(**kw))]

    return _run_async(collect)


def test_async_stream_gives_the_same_chunks_as_the_thread_backend(fake_server):
    sync = list(backend(fake_server).stream(request(), CancelToken()))
    chunks = _astream(fake_server, "m1")
    assert chunks == sync
    assert "".join(c.text for c in chunks) == "Hello, world!"
    assert chunks[-1].finish_reason == "stop" and chunks[-1].completion_tokens == 4


def test_async_stream_retries_without_extras_and_keeps_text_on_errors(fake_server):
    assert "".join(c.text for c in _astream(fake_server, "strict", top_k=5)) == "Hello, world!"
    for model, words in (("error-mid", "reported an error"), ("hangup", "closed the connection"),
                         ("stall", "sent nothing")):
        chunks = _astream(fake_server, model, timeout=1.0)
        assert "".join(c.text for c in chunks) == "Hello,"
        assert chunks[-1].finish_reason == "error" and words in chunks[-1].error
    with pytest.raises(UserFacingError, match="has no model 'missing'"):
        _astream(fake_server, "missing")


def test_async_model_list_and_connection_errors(fake_server):

    from studio.pipelines.chat.remote_async import AsyncRemoteChat

    def models(base: str, key: str | None = GOOD_KEY) -> list[str]:
        return _run_async(lambda: AsyncRemoteChat(backend(base, key=key)).list_models())

    assert models(fake_server) == ["m1", "m2"]
    with pytest.raises(UserFacingError, match="refused the API key"):
        models(fake_server, key="wrong")
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(UserFacingError, match="connection refused"):
        models(f"http://127.0.0.1:{port}")


def test_async_stream_stops_at_once_when_its_task_is_cancelled(fake_server):
    import asyncio

    from studio.pipelines.chat.remote_async import AsyncRemoteChat

    async def run() -> list:
        seen: list = []
        chat = AsyncRemoteChat(backend(fake_server, "stall", timeout=60))

        async def consume() -> None:
            async for chunk in chat.stream(request()):
                seen.append(chunk)

        task = asyncio.create_task(consume())
        while len(seen) < 2:  # the server stalls after two words
            await asyncio.sleep(0.01)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        return seen

    assert "".join(c.text for c in _run_async(run)) == "Hello,"
