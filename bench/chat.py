"""Benchmark: the studio's local chat path against plain transformers, and ``studio serve`` under
8 concurrent streaming clients.

    python bench/chat.py                    # CPU: random Llama, hidden 512, 8 layers, 64 tokens
    python bench/chat.py --device cuda --hidden 2048 --layers 16 --tokens 256
    python bench/chat.py --gguf             # a GGUF through Studio vs llama-cpp-python (chat_gguf.py)

Part 1, side by side in one process on the same random-weight model (nothing is downloaded):
studio = ``ChatService.run`` as a ``chat`` job on a ``JobRunner`` (template, tokenization, the
per-token stopping hook, incremental decoding, ``progress.partial`` per token, the queue);
raw = ``model.generate`` with a ``TextIteratorStreamer`` on a helper thread, the way the
transformers docs stream; plain = ``model.generate`` with no streamer at all (the ceiling). All
greedy, same prompt. Runs alternate after a warm-up each; medians of tokens/s (whole call, prompt
included) and of time to first token (the first token handed to a listener / streamer) are
compared (target ≥ 0.95). "studio+probs" is the same job with token probabilities on (each
token's log-softmax and top-5 alternatives, as the Chat window's toggle asks): its rate against
studio's with them off (target ≥ 0.95; off, no hook is attached, so off costs nothing).

Part 2: ``studio serve`` in a subprocess; 8 clients (the studio's own remote backend, one thread
each) stream at once. Requests queue on one GPU worker, so the aggregate rate is about one
stream's rate and time to first token grows with the queue position — p50/p95 show that.

Part 3, no model: the remote backend against the tests' fake OpenAI server — how long after its
read timeout a silent server's request ends, and how soon Stop ends a read blocked on a server
that stalled mid-reply (the tests check that both end, not when).

Part 4 (``--no-gui`` skips it): the Chat workspace (offscreen) opens a 10,000-message
conversation and scrolls up through it a page at a time, loading older pages on the way: the time
to open and paint, and the median and longest scroll step.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

MESSAGES = [{"role": "system", "content": "You are a helpful assistant."},
            {"role": "user", "content": "Write a poem about the sea and the sky."}]


def build_model(folder: Path, hidden: int, layers: int) -> Path:
    """A random Llama with the tiny fixture's BPE tokenizer and chat template."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from tests.fixtures.tiny_llama import build_tiny_llama

    build_tiny_llama(folder)  # tokenizer, template, then the weights are replaced below
    for f in folder.glob("*.safetensors"):
        f.unlink()
    small = LlamaConfig.from_pretrained(folder)
    config = LlamaConfig(
        vocab_size=small.vocab_size, hidden_size=hidden, intermediate_size=hidden * 11 // 4,
        num_hidden_layers=layers, num_attention_heads=max(1, hidden // 64),
        num_key_value_heads=max(1, hidden // 64), max_position_embeddings=2048,
        eos_token_id=small.eos_token_id, pad_token_id=small.pad_token_id, bos_token_id=None,
        tie_word_embeddings=False)
    torch.manual_seed(0)
    model = LlamaForCausalLM(config)
    with torch.no_grad():  # as in the fixture: peaked logits, EOS unlikely, so replies run long
        model.lm_head.weight.mul_(40.0)
        model.lm_head.weight[config.eos_token_id].mul_(0.0)
    model.generation_config.eos_token_id = config.eos_token_id
    model.generation_config.pad_token_id = config.pad_token_id
    model.save_pretrained(folder)
    return folder


def rate(tokens: int, seconds: float, ttft: float) -> float:
    """Tokens per second over the whole call, first token (prefill) included."""
    return tokens / seconds if seconds > 0 else 0.0


class FirstToken:
    """A job listener noting when the first token's chunk arrives (as the GUI would see it)."""

    def __init__(self) -> None:
        self.at = 0.0

    def job_changed(self, job) -> None:
        pass

    def job_progress(self, job, step, total, preview) -> None:
        pass

    def job_partial(self, job, chunk) -> None:
        # The first token, as raw's first streamer.put; its text may be "" (half a character).
        if chunk.completion_tokens and not self.at:
            self.at = time.perf_counter()


def studio_once(runner, first: FirstToken, model: str, tokens: int,
                logprobs: int | None = None) -> tuple[float, float, int]:
    """(tokens/s, time to first token, tokens) for one chat job; times as a caller sees them."""
    from studio.pipelines.chat.types import ChatRequest

    request = ChatRequest(model=model, messages=MESSAGES, temperature=0, max_new_tokens=tokens,
                          logprobs=logprobs)
    first.at = 0.0
    start = time.perf_counter()
    job = runner.submit("chat", request)
    runner.wait(job)
    end = time.perf_counter()
    if job.error:
        raise SystemExit(job.error)
    ttft = first.at - start
    n = job.result.completion_tokens
    return rate(n, end - start, ttft), ttft, n


def raw_once(model, tokenizer, tokens: int) -> tuple[float, float, int]:
    import torch
    from transformers import TextIteratorStreamer

    start = time.perf_counter()
    ids = tokenizer.apply_chat_template(MESSAGES, add_generation_prompt=True,
                                        return_tensors="pt", return_dict=True)
    stamps: list[float] = []

    class Streamer(TextIteratorStreamer):
        # TextIteratorStreamer hands out text at word boundaries only; the time a token is
        # available to a caller is when generate puts it into the streamer.
        def put(self, value):
            stamps.append(time.perf_counter())
            super().put(value)

    streamer = Streamer(tokenizer, skip_prompt=True, skip_special_tokens=True)
    out: dict = {}

    def work():
        with torch.inference_mode():
            out["ids"] = model.generate(**ids.to(model.device), max_new_tokens=tokens,
                                        do_sample=False, streamer=streamer)

    thread = threading.Thread(target=work)
    thread.start()
    for _text in streamer:
        pass
    thread.join()
    ttft = stamps[1] - start  # stamps[0] is the prompt
    end = time.perf_counter()
    n = out["ids"].shape[1] - ids["input_ids"].shape[1]
    return rate(n, end - start, ttft), ttft, n


def plain_once(model, tokenizer, tokens: int) -> tuple[float, float, int]:
    """``generate`` without any streamer: the ceiling (nothing is seen until the end)."""
    import torch

    start = time.perf_counter()
    ids = tokenizer.apply_chat_template(MESSAGES, add_generation_prompt=True,
                                        return_tensors="pt", return_dict=True)
    with torch.inference_mode():
        out = model.generate(**ids.to(model.device), max_new_tokens=tokens, do_sample=False)
    end = time.perf_counter()
    n = out.shape[1] - ids["input_ids"].shape[1]
    return rate(n, end - start, 0.0), end - start, n


def bench_local(folder: Path, device: str, tokens: int, runs: int) -> tuple[float, float, int]:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from studio.core.config import Settings, default_paths
    from studio.core.lanes import JobRunner
    from studio.pipelines.chat.service import ChatService

    settings = Settings(device=device, precision="fp32")
    first = FirstToken()
    runner = JobRunner({"chat": ChatService(lambda: settings, default_paths).run}, first)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).to(device).eval()
    studio_once(runner, first, str(folder), tokens)  # warm-up: loads the studio's copy
    raw_once(model, tokenizer, tokens)
    plain_once(model, tokenizer, tokens)
    studio_once(runner, first, str(folder), tokens, logprobs=5)
    studio, raw, plain, probs = [], [], [], []
    for _ in range(runs):
        studio.append(studio_once(runner, first, str(folder), tokens))
        probs.append(studio_once(runner, first, str(folder), tokens, logprobs=5))
        raw.append(raw_once(model, tokenizer, tokens))
        plain.append(plain_once(model, tokenizer, tokens))
    runner.shutdown()
    p_rate = statistics.median(r[0] for r in plain)
    s_rate = statistics.median(r[0] for r in studio)
    r_rate = statistics.median(r[0] for r in raw)
    s_ttft = statistics.median(r[1] for r in studio)
    r_ttft = statistics.median(r[1] for r in raw)
    print(f"tokens per reply: studio {studio[0][2]}, raw {raw[0][2]}, plain {plain[0][2]}   "
          f"({runs} runs each, medians)")
    print(f"tokens/s          studio {s_rate:8.1f}   raw+streamer {r_rate:8.1f}   "
          f"ratio {s_rate / r_rate:.3f}  (target >= 0.95)")
    print(f"                  plain generate, no streaming {p_rate:8.1f}   "
          f"studio/plain {s_rate / p_rate:.3f}")
    print(f"first token (ms)  studio {s_ttft * 1e3:8.1f}   raw {r_ttft * 1e3:8.1f}   "
          f"ratio {r_ttft / s_ttft:.3f}")
    pr_rate = statistics.median(r[0] for r in probs)
    print(f"token probs on    studio+probs {pr_rate:8.1f}   studio (off) {s_rate:8.1f}   "
          f"ratio {pr_rate / s_rate:.3f}  (target >= 0.95; off attaches nothing)")
    return s_rate, s_ttft, studio[0][2]


def bench_serve(folder: Path, device: str, tokens: int, clients: int,
                single: tuple[float, float, int]) -> None:
    from studio.core.jobs import CancelToken
    from studio.pipelines.chat.remote import RemoteChatBackend
    from studio.pipelines.chat.types import ChatRequest

    home = Path(tempfile.mkdtemp(prefix="studio-bench-serve-"))
    (home / "config").mkdir()
    (home / "config" / "settings.json").write_text(f'{{"device": "{device}"}}')
    env = dict(os.environ, STUDIO_HOME=str(home), HF_HUB_OFFLINE="1")
    proc = subprocess.Popen([sys.executable, "-m", "studio", "serve", "--port", "0", "--model",
                             str(folder)], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True)
    try:
        url = re.search(r"on (http://\S+/v1)", proc.stdout.readline()).group(1)
        backend = RemoteChatBackend(url, folder.name)
        request = ChatRequest(model=f"openai:{url}#{folder.name}", messages=MESSAGES,
                              temperature=0, max_new_tokens=tokens)

        def one(_: int) -> tuple[float, int]:
            start = time.perf_counter()
            ttft, n = 0.0, 0
            for chunk in backend.stream(request, CancelToken()):
                if chunk.text and not ttft:
                    ttft = time.perf_counter() - start
                n = chunk.completion_tokens or n
            return ttft, n

        one(0)  # warm-up: the server loads the model
        singles = []
        for _ in range(3):  # one client alone, in the same conditions as the 8 below
            t0 = time.perf_counter()
            singles.append(one(0)[1] / (time.perf_counter() - t0))
        start = time.perf_counter()
        with ThreadPoolExecutor(clients) as pool:
            results = list(pool.map(one, range(clients)))
        wall = time.perf_counter() - start
    finally:
        proc.terminate()
        proc.wait(20)
    ttfts = sorted(r[0] for r in results)
    total = sum(r[1] for r in results)
    p95 = ttfts[min(len(ttfts) - 1, round(0.95 * (len(ttfts) - 1)))]
    local = single[0]  # one local reply end to end, first token included
    alone = statistics.median(singles)
    print(f"serve, 1 client:  {alone:8.1f} tokens/s   (local job {local:.1f}; "
          f"ratio {alone / local:.3f})")
    print(f"serve, {clients} concurrent streams: {total} tokens in {wall:.2f} s = "
          f"{total / wall:.1f} tokens/s aggregate ({total / wall / alone:.2f}× one client alone)")
    print(f"first token (ms)  p50 {statistics.median(ttfts) * 1e3:8.1f}   p95 {p95 * 1e3:8.1f}"
          f"   (queued on one worker)")


def bench_remote_stalls(read_timeout: float = 0.5, rounds: int = 5) -> None:
    """Part 3: a silent server's timeout, and Stop on a stalled one (fake server, no model)."""
    from studio.core.jobs import CancelToken, UserFacingError
    from studio.pipelines.chat.remote import RemoteChatBackend
    from studio.pipelines.chat.types import ChatRequest
    from tests.fixtures.fake_openai import GOOD_KEY, serve_fake_openai

    request = ChatRequest(model="openai:x#y", messages=[{"role": "user", "content": "hi"}])
    timed_out, stopped = [], []
    with serve_fake_openai() as base:
        for _ in range(rounds):
            silent = RemoteChatBackend(f"{base}/v1", "silent", api_key=GOOD_KEY,
                                       timeout=read_timeout)
            start = time.perf_counter()
            try:
                list(silent.stream(request, CancelToken()))
            except UserFacingError:
                timed_out.append(time.perf_counter() - start)
            cancel = CancelToken()
            stall = RemoteChatBackend(f"{base}/v1", "stall", api_key=GOOD_KEY, timeout=3600)
            stream = stall.stream(request, cancel)
            next(stream), next(stream)  # the two words before the stall
            clicked: list[float] = []
            timer = threading.Timer(0.2, lambda c=clicked, t=cancel: (c.append(time.perf_counter()),
                                                                      t.cancel()))
            timer.start()
            list(stream)  # blocked in a read until the cancel shuts the socket
            stopped.append(time.perf_counter() - clicked[0])
    print(f"remote backend, silent server, read timeout {read_timeout:g} s: the request ended "
          f"after {statistics.median(timed_out):.2f} s (median of {rounds})")
    print(f"remote backend, server stalled mid-reply: Stop ended the blocked read "
          f"{statistics.median(stopped) * 1e3:.0f} ms after it was pressed "
          f"(median; max {max(stopped) * 1e3:.0f} ms)")


def bench_long_conversation(messages: int = 10_000) -> None:
    """Part 4: open and scroll a conversation of ``messages`` messages in the real window."""
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from PySide6.QtGui import QGuiApplication
    from PySide6.QtWidgets import QApplication

    from studio.app import build_main_window

    app = QApplication.instance() or QApplication(sys.argv)
    window = build_main_window()
    try:
        window.resize(1320, 840)
        window.show()
        panel = window.show_workspace("chat")
        store = panel.store
        conv = store.create_conversation("Ten thousand")
        with store.transaction():
            parent = None
            for i in range(messages):
                role = "user" if i % 2 == 0 else "assistant"
                text = (f"Message {i}: " + "some words here " * (1 + i % 7)
                        + (f"\n\n```python\nprint({i})\n```" if i % 50 == 1 else ""))
                cur = store._db.execute(
                    "INSERT INTO messages (conversation_id, parent_id, role, content, created) "
                    "VALUES (?, ?, ?, ?, ?)", (conv.id, parent, role, text, time.time()))
                parent = cur.lastrowid
            store._db.execute("UPDATE conversations SET current_leaf = ? WHERE id = ?",
                              (parent, conv.id))
        app.processEvents()
        t0 = time.perf_counter()
        panel.open_conversation(conv.id)
        panel.view.viewport().repaint()
        QGuiApplication.processEvents()
        opened = time.perf_counter() - t0
        bar = panel.view.verticalScrollBar()
        steps = []
        for _ in range(40):  # a page at a time, loading older pages on the way
            t = time.perf_counter()
            bar.setValue(bar.value() - panel.view.viewport().height())
            panel.view.viewport().repaint()
            steps.append(time.perf_counter() - t)
        rows = panel.model.rowCount()
    finally:
        window.shutdown()
        window.close()
    steps.sort()
    print(f"chat window, {messages:,} messages: open + first paint {opened * 1e3:.0f} ms; "
          f"scroll step median {steps[len(steps) // 2] * 1e3:.1f} ms, max {steps[-1] * 1e3:.1f} ms"
          f" ({rows} rows loaded after 40 pages; targets: open < 3 s, median step < 100 ms)")


def main() -> int:
    if "--gguf" in sys.argv[1:]:  # the GGUF path: bench/chat_gguf.py, with the other options
        from bench.chat_gguf import main as gguf_main

        return gguf_main([a for a in sys.argv[1:] if a != "--gguf"])
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cpu")
    p.add_argument("--hidden", type=int, default=512)
    p.add_argument("--layers", type=int, default=8)
    p.add_argument("--tokens", type=int, default=64)
    p.add_argument("--runs", type=int, default=5)
    p.add_argument("--clients", type=int, default=8)
    p.add_argument("--no-gui", action="store_true", help="skip part 4 (the chat window)")
    p.add_argument("--local-only", action="store_true",
                   help="part 1 only (studio, raw, plain, token probabilities on)")
    p.add_argument("--only-quick", action="store_true",
                   help="parts 3 and 4 only (no model is built)")
    p.add_argument("--threads", type=int, default=0,
                   help="torch CPU threads, here and in the server (default: torch's choice). "
                        "On a CPU shared with other work, 1 gives steady numbers: an OpenMP "
                        "pool waiting for a preempted thread stalls every token")
    args = p.parse_args()
    if args.threads:
        os.environ["OMP_NUM_THREADS"] = str(args.threads)  # the serve subprocess inherits it
        import torch

        torch.set_num_threads(args.threads)
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    with tempfile.TemporaryDirectory(prefix="studio-bench-chat-") as tmp:
        os.environ["STUDIO_HOME"] = str(Path(tmp) / "home")  # never the user's real folders
        if not args.only_quick:
            folder = build_model(Path(tmp) / "bench-llama", args.hidden, args.layers)
            import torch

            print(f"model: random Llama hidden {args.hidden}, {args.layers} layers, on "
                  f"{args.device} ({torch.get_num_threads()} threads); {args.tokens} new tokens, "
                  f"greedy")
            single = bench_local(folder, args.device, args.tokens, args.runs)
            if args.local_only:
                return 0
            bench_serve(folder, args.device, args.tokens, args.clients, single)
        bench_remote_stalls()
        if not args.no_gui:
            bench_long_conversation()
    return 0


if __name__ == "__main__":
    sys.exit(main())
