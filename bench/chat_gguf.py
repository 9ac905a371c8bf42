"""Benchmark: a GGUF chat model through Studio against llama-cpp-python called directly.

    python bench/chat.py --gguf                       # random llama GGUF, hidden 512, 8 layers, Q8_0
    python bench/chat.py --gguf --hidden 1024 --layers 16 --tokens 256 --f32

Side by side in one process on the same random-weight GGUF (written by the ``gguf`` package;
nothing is downloaded), each with its own ``llama_cpp.Llama`` of the same context:
studio = ``ChatService.run`` as a ``chat`` job on a ``JobRunner`` (the GGUF's chat template,
the context fitting, one ``progress.partial`` per token, incremental UTF-8 decoding, Stop
checked per token, the queue); raw = ``Llama.create_chat_completion(stream=True)`` the way
llama-cpp-python's docs stream a chat, its chunks counted as tokens; generate = the bare
``Llama.generate`` loop over the same prompt ids (the ceiling). All greedy; runs alternate after
a warm-up each; medians of tokens/s over the whole call (prompt included) and of the time to
the first token are compared (target: studio / generate ≥ 0.95). The random model writes bytes
that are not UTF-8, which ``create_chat_completion`` holds back while it waits for a character
to complete, so its first-token time and rate understate llama.cpp: generate is the fair raw.
Needs llama-cpp-python (the optional ``gguf`` extra).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.chat import MESSAGES, FirstToken, studio_once  # noqa: E402


def raw_once(llm, tokens: int) -> tuple[float, float, int]:
    """(tokens/s, time to first token, tokens) for one streamed chat completion."""
    start = time.perf_counter()
    first, n = 0.0, 0
    for chunk in llm.create_chat_completion(MESSAGES, stream=True, temperature=0.0, top_k=1,
                                            top_p=1.0, min_p=0.0, max_tokens=tokens):
        if "content" in chunk["choices"][0]["delta"]:
            n += 1
            first = first or time.perf_counter() - start
    seconds = time.perf_counter() - start
    return n / seconds, first, n


def generate_once(llm, ids: list[int], tokens: int) -> tuple[float, float, int]:
    """The bare ``Llama.generate`` loop: tokens only, no text."""
    import llama_cpp

    start = time.perf_counter()
    first, n = 0.0, 0
    vocab = llm._model.vocab
    for token in llm.generate(ids, temp=0.0, top_k=1, top_p=1.0, min_p=0.0):
        if llama_cpp.llama_vocab_is_eog(vocab, token):
            break
        n += 1
        first = first or time.perf_counter() - start
        if n == tokens:
            break
    seconds = time.perf_counter() - start
    return n / seconds, first, n


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--hidden", type=int, default=512)
    p.add_argument("--layers", type=int, default=8)
    p.add_argument("--tokens", type=int, default=64)
    p.add_argument("--runs", type=int, default=5)
    p.add_argument("--f32", action="store_true", help="f32 matrices instead of Q8_0")
    args = p.parse_args(argv)
    try:
        import llama_cpp
    except ImportError:
        print("llama-cpp-python is not installed: pip install llama-cpp-python==0.3.36")
        return 1
    from studio.core.config import Settings, default_paths
    from studio.core.lanes import JobRunner
    from studio.pipelines.chat.service import ChatService
    from tests.fixtures.tiny_gguf import write_tiny_gguf

    with tempfile.TemporaryDirectory(prefix="studio-bench-gguf-") as tmp:
        os.environ["STUDIO_HOME"] = str(Path(tmp) / "home")  # never the user's real folders
        path = write_tiny_gguf(Path(tmp) / "bench.gguf", hidden=args.hidden, layers=args.layers,
                               ffn=args.hidden * 3, q8=not args.f32, endless=True,
                               context=max(512, args.tokens * 2))
        settings = Settings(device="cpu")
        first = FirstToken()
        service = ChatService(lambda: settings, default_paths)
        runner = JobRunner({"chat": service.run}, first)
        studio_once(runner, first, str(path), args.tokens)  # warm-up: loads Studio's copy
        n_ctx = service.local.load(str(path)).context_length
        llm = llama_cpp.Llama(str(path), n_ctx=n_ctx, verbose=False)
        ids = service.local.load(str(path)).tokenizer.apply_chat_template(MESSAGES)
        ids = llm.tokenize(ids.encode(), add_bos=False, special=True)
        raw_once(llm, args.tokens)
        generate_once(llm, ids, args.tokens)
        studio, raw, bare = [], [], []
        for _ in range(args.runs):
            studio.append(studio_once(runner, first, str(path), args.tokens))
            raw.append(raw_once(llm, args.tokens))
            bare.append(generate_once(llm, ids, args.tokens))
        runner.shutdown()
        llm.close()
    s_rate, r_rate, g_rate = (statistics.median(r[0] for r in rows)
                              for rows in (studio, raw, bare))
    s_ttft, r_ttft = (statistics.median(r[1] for r in rows) for rows in (studio, raw))
    quant = "f32" if args.f32 else "Q8_0"
    print(f"model: random llama GGUF ({quant}) hidden {args.hidden}, {args.layers} layers, "
          f"context {n_ctx}, CPU; {args.tokens} new tokens at most, greedy; llama-cpp-python "
          f"{llama_cpp.__version__}")
    print(f"tokens per reply: studio {studio[0][2]}, raw {raw[0][2]}, generate {bare[0][2]}")
    print(f"tokens/s          studio {s_rate:8.1f}   raw Llama.generate {g_rate:8.1f}   "
          f"ratio {s_rate / g_rate:.3f}  (target >= 0.95)")
    print(f"                  raw chat stream {r_rate:8.1f}   studio/stream {s_rate / r_rate:.3f}")
    print(f"first token (ms)  studio {s_ttft * 1e3:8.1f}   raw {r_ttft * 1e3:8.1f}   "
          f"ratio {r_ttft / s_ttft:.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
