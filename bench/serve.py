"""Benchmark: tokens/s of a chat model streamed through ``studio serve`` (FastAPI + uvicorn on
loopback) against the local chat pipeline called directly, side by side in one process.

    python bench/serve.py                     # CPU: random Llama, hidden 512, 8 layers, 64 tokens
    python bench/serve.py --hidden 1024 --layers 12 --tokens 128 --runs 7

api = one streamed ``/v1/chat/completions`` request (greedy) read to ``[DONE]`` by an HTTP client
in this process: JSON parsing, the job queue, Server-Sent Events, the socket. local =
``LocalChatBackend.generate`` with the same request and a per-token callback, as ``studio chat``
runs it. Same random-weight model (nothing is downloaded; see bench/chat.py's build_model), same
prompt, runs alternate after a warm-up each; medians of tokens/s (whole call, prompt included)
and the ratio api/local (issue 20's target: ≥ 0.95).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.chat import MESSAGES, build_model  # noqa: E402


def api_once(base: str, tokens: int) -> tuple[float, int]:
    """(tokens/s, tokens) of one streamed request, read to [DONE]."""
    import httpx2

    body = {"model": "bench", "messages": MESSAGES, "temperature": 0, "max_tokens": tokens,
            "stream": True, "stream_options": {"include_usage": True}}

    async def go() -> tuple[float, int]:
        async with httpx2.AsyncClient(base_url=base, timeout=600) as client:
            start = time.perf_counter()
            count = 0
            async with client.stream("POST", "/v1/chat/completions", json=body) as resp:
                resp.raise_for_status()
                async for line in resp.aiter_lines():
                    if line.startswith("data: {"):
                        chunk = json.loads(line[6:])
                        if chunk.get("usage"):
                            count = chunk["usage"]["completion_tokens"]
            seconds = time.perf_counter() - start
        return count / seconds, count

    return asyncio.run(go())


def local_once(backend, model: str, tokens: int) -> tuple[float, int]:
    from studio.core.jobs import CancelToken
    from studio.pipelines.chat.types import ChatRequest

    request = ChatRequest(model=model, messages=MESSAGES, temperature=0, max_new_tokens=tokens)
    seen = []
    start = time.perf_counter()
    reply = backend.generate(request, CancelToken(), seen.append)
    seconds = time.perf_counter() - start
    return reply.completion_tokens / seconds, reply.completion_tokens


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--hidden", type=int, default=512)
    parser.add_argument("--layers", type=int, default=8)
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()

    from studio.core.config import Settings, default_paths
    from studio.pipelines.chat.local import LocalChatBackend
    from studio.pipelines.services import build_engine
    from studio.server.app import make_server
    from studio.server.catalog import CHAT, Catalog, ServedModel

    with tempfile.TemporaryDirectory() as tmp:
        folder = build_model(Path(tmp) / "bench-llama", args.hidden, args.layers)
        settings = Settings(device=args.device)
        engine = build_engine(lambda: settings, default_paths)
        server = make_server("127.0.0.1", 0, engine,
                             Catalog([ServedModel("bench", CHAT, str(folder))]))
        threading.Thread(target=server.serve_forever, daemon=True).start()
        base = server.url.removesuffix("/v1")
        local = LocalChatBackend(lambda: settings, default_paths)
        try:
            api_once(base, args.tokens)  # warm-up: load the model in the server's cache
            local_once(local, str(folder), args.tokens)
            api, direct = [], []
            for run in range(args.runs):  # alternate which goes first: a busy machine's
                if run % 2:                   # slow moments fall on both alike
                    rate, n_local = local_once(local, str(folder), args.tokens)
                    direct.append(rate)
                rate, n_api = api_once(base, args.tokens)
                api.append(rate)
                if not run % 2:
                    rate, n_local = local_once(local, str(folder), args.tokens)
                    direct.append(rate)
                if n_api != n_local:
                    print(f"warning: {n_api} tokens through the API, {n_local} locally")
        finally:
            server.shutdown()
            server.server_close()
            engine.shutdown(timeout=60)
    a, d = statistics.median(api), statistics.median(direct)
    print(f"model: random Llama hidden {args.hidden}, {args.layers} layers, {args.tokens} tokens, "
          f"device {args.device}, {args.runs} runs each (medians)")
    print(f"  api   (streamed over loopback): {a:8.1f} tokens/s")
    print(f"  local (LocalChatBackend):       {d:8.1f} tokens/s")
    print(f"  ratio api/local: {a / d:.3f} (target >= 0.95)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
