"""LOAD TEST (bounded, loopback; marked ``slow``): ``studio serve`` on real uvicorn with the tiny
random-weight Llama, 50 concurrent streaming chats while 300 idle sockets stay open.

Issue 20's "Prove it": every stream ends with ``[DONE]`` and memory stays flat. Memory is this
process's resident size (the server runs in a thread of it) after one warm-up request versus
after the load, with a generous bound: a leak per connection or per stream (a buffered body, a
job kept alive) would grow it by far more. Nothing here measures time. About 10 CPU-seconds.
"""

from __future__ import annotations

import asyncio
import gc
import json
import socket
import threading

import httpx2
import pytest

from studio.core.config import Settings, default_paths
from studio.pipelines.services import build_engine
from studio.server.app import make_server
from studio.server.catalog import CHAT, Catalog, ServedModel
from tests.fixtures.asgi import run_async

pytestmark = pytest.mark.slow

STREAMS = 50
IDLE = 300
TOKENS = 8
GROWTH_BOUND = 150 * 2**20  # generous: 50 streams' worth of leaked buffers would be far more


def rss() -> int:
    with open("/proc/self/statm", encoding="ascii") as f:
        return int(f.read().split()[1]) * 4096


async def chat_stream(client: httpx2.AsyncClient, i: int) -> tuple[str, bool]:
    body = {"model": "tiny", "stream": True, "max_tokens": TOKENS, "temperature": 0,
            "messages": [{"role": "user", "content": f"Hello number {i}"}]}
    text, done = "", False
    async with client.stream("POST", "/v1/chat/completions", json=body) as resp:
        assert resp.status_code == 200, await resp.aread()
        async for line in resp.aiter_lines():
            if not line.startswith("data: "):
                continue
            data = line[6:]
            if data == "[DONE]":
                done = True
                continue
            chunk = json.loads(data)
            assert "error" not in chunk, chunk
            if chunk["choices"]:
                text += chunk["choices"][0]["delta"].get("content") or ""
    return text, done


async def load(base: str) -> list[tuple[str, bool]]:
    limits = httpx2.Limits(max_connections=STREAMS, max_keepalive_connections=0)
    async with httpx2.AsyncClient(base_url=base, limits=limits, timeout=600) as client:
        return await asyncio.gather(*(chat_stream(client, i) for i in range(STREAMS)))


def test_fifty_streams_and_three_hundred_idle_sockets_memory_flat(tiny_llama_dir):
    engine = build_engine(lambda: Settings(device="cpu"), default_paths)
    server = make_server("127.0.0.1", 0, engine,
                         Catalog([ServedModel("tiny", CHAT, str(tiny_llama_dir))]))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    base = server.url.removesuffix("/v1")
    idle: list[socket.socket] = []
    try:
        assert run_async(load_one(base))  # warm-up: the model loads once
        gc.collect()
        before = rss()
        host, port = server.server_address[:2]
        for i in range(IDLE):  # open, some half a request line, and never finish
            s = socket.create_connection((host, port), timeout=60)
            if i % 2:
                s.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\n")
            idle.append(s)
        results = run_async(load(base))
        assert len(results) == STREAMS
        assert all(done and text for text, done in results), results
        for s in idle:
            s.close()
        idle.clear()
        gc.collect()
        grown = rss() - before
        print(f"resident memory: {before / 2**20:.0f} MiB before, grew {grown / 2**20:.1f} MiB")
        assert grown < GROWTH_BOUND, f"resident memory grew {grown / 2**20:.0f} MiB"
    finally:
        for s in idle:
            s.close()
        server.shutdown()
        server.server_close()
        engine.shutdown(timeout=120)


async def load_one(base: str) -> bool:
    async with httpx2.AsyncClient(base_url=base, timeout=600) as client:
        text, done = await chat_stream(client, 0)
    return done and bool(text)
