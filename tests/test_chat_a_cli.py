"""``studio chat``: bad input and the interactive session in a real ``python -m studio`` child, as a
user runs it; the one-prompt reply and a failed load through the command line's ``main()`` in this
process (tests/fixtures/cli_run.py: the same output and exit status, without a child importing
torch and transformers again)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.fixtures.cli_run import studio_in_process

ROOT = Path(__file__).resolve().parents[1]


def _studio(*args: str, stdin: str = "", home: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, STUDIO_HOME=str(home), PYTHONPATH=str(ROOT), HF_HUB_OFFLINE="1")
    return subprocess.run([sys.executable, "-m", "studio", "chat", *args], input=stdin,
                          capture_output=True, text=True, env=env, timeout=300)


@pytest.fixture(scope="module")
def expected_reply(tiny_llama_dir):
    """What the engine answers to 'Hello' greedily, in this process."""
    from studio.core.config import Settings, default_paths
    from studio.core.jobs import CancelToken
    from studio.pipelines.chat.local import LocalChatBackend
    from studio.pipelines.chat.types import ChatRequest

    settings = Settings(device="cpu")
    backend = LocalChatBackend(lambda: settings, default_paths)
    request = ChatRequest(model=str(tiny_llama_dir), temperature=0, max_new_tokens=12,
                          messages=[{"role": "system", "content": "Be brief."},
                                    {"role": "user", "content": "Hello"}])
    return backend.generate(request, CancelToken()).text


def test_prompt_prints_only_the_reply(tiny_llama_dir, expected_reply, studio_home):
    out = studio_in_process("chat", "--model", str(tiny_llama_dir), "--system", "Be brief.",
                            "--prompt", "Hello", "--temperature", "0", "--max-new-tokens", "12",
                            "--device", "cpu")
    assert out.returncode == 0, out.stderr
    assert out.stdout == expected_reply + ("" if expected_reply.endswith("\n") else "\n")
    assert "Traceback" not in out.stderr


@pytest.mark.parametrize("args, message", [
    (["--model", "/no/such/model", "--prompt", "hi"], "does not exist"),
    (["--model", "{model}", "--prompt", "hi", "--temperature", "9"], "Temperature"),
    (["--model", "{model}", "--prompt", "hi", "--max-new-tokens", "0"], "Max new tokens"),
    (["--model", "{model}", "--prompt", "  "], "--prompt is empty"),
    (["--model", "openai:http://localhost:1", "--prompt", "hi"], "openai:BASE_URL#MODEL"),
    (["--prompt", "hi"], "--model"),
])
def test_bad_input_exits_2_with_one_line(tiny_llama_dir, studio_home, args, message):
    args = [a.replace("{model}", str(tiny_llama_dir)) for a in args]
    out = _studio(*args, home=studio_home)
    assert out.returncode == 2
    assert out.stdout == ""
    assert "studio: error:" in out.stderr and message in out.stderr
    assert "Traceback" not in out.stderr


def test_failure_while_loading_exits_1(tmp_path, studio_home):
    from tests.fixtures.tiny_llama import build_tiny_llama

    broken = build_tiny_llama(tmp_path / "weights-only", tokenizer=False)
    out = studio_in_process("chat", "--model", str(broken), "--prompt", "hi")
    assert out.returncode == 1
    assert out.stderr.strip().splitlines()[-1].startswith("studio: error: ")
    assert "no tokenizer" in out.stderr


def test_interactive_session_reads_lines_until_exit(tiny_llama_dir, expected_reply,
                                                    studio_home):
    out = _studio("--model", str(tiny_llama_dir), "--system", "Be brief.", "--temperature", "0",
                  "--max-new-tokens", "12", "--device", "cpu",
                  stdin="Hello\n/reset\nHello\n/exit\nnever read\n", home=studio_home)
    assert out.returncode == 0, out.stderr
    first = expected_reply + ("" if expected_reply.endswith("\n") else "\n")
    assert out.stdout == first * 2  # after /reset the same question gets the same answer
    assert "conversation cleared" in out.stderr
