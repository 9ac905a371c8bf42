"""Issue 20's crash suite: SIGKILL at seeded random moments during PNG save, chat streaming into
the store, a training checkpoint save, a model import (copy) and a download, 20 kills each.

For each operation one child process imports what the operation needs once, then forks a worker
per round that repeats the operation in a tight loop and logs each one that returned
(tests/security/crash_child.py); the worker is killed after a seeded delay, so kills land at every
stage of a write. After each kill: everything logged earlier is intact, and nothing half-written
is visible (no truncated PNG in the folder listing, the previous checkpoint loads, the chat
database opens with every committed message, no partial model file in the library listing).
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="SIGKILL and fork are POSIX")

ROOT = Path(__file__).resolve().parents[2]
CHILD = Path(__file__).with_name("crash_child.py")
KILLS = 20


class Zygote:
    """The operation's child process; ``kill_once`` runs a worker and SIGKILLs it."""

    def __init__(self, op: str, work: Path, args: dict | None = None) -> None:
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        self.work = work
        self.proc = subprocess.Popen(
            [sys.executable, str(CHILD), op, str(work), json.dumps(args or {})],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env)
        assert self._line() == "ready"

    def _line(self) -> str:
        line = self.proc.stdout.readline().strip()
        if not line:
            raise AssertionError(f"the crash child died: {self._worker_error()}")
        return line

    def _worker_error(self) -> str:
        error = self.work / "worker-error.txt"
        return error.read_text() if error.exists() else ""

    def kill_once(self, delay: float, after_one_more: bool = False) -> None:
        """Start a worker and SIGKILL it ``delay`` seconds later — counted, with
        ``after_one_more``, from when it has finished one more operation (a loaded machine can
        be too slow for any to finish within a delay alone)."""
        before = len(self.done())
        self.proc.stdin.write("go\n")
        self.proc.stdin.flush()
        pid = int(self._line())
        if after_one_more:
            deadline = time.monotonic() + 120  # a worker that never finishes one: asserted below
            while len(self.done()) == before and time.monotonic() < deadline:
                time.sleep(0.005)
        time.sleep(delay)
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:  # it ended by itself: the status below says so
            pass
        status = self._line()
        code = int(status.split()[1])
        # killed by the signal, not ended by an error of its own
        assert os.WIFSIGNALED(code) and os.WTERMSIG(code) == signal.SIGKILL, \
            self._worker_error()

    def close(self) -> None:
        self.proc.stdin.close()
        self.proc.wait(30)

    def done(self) -> list[str]:
        try:
            return (self.work / "done.log").read_text(encoding="utf-8").splitlines()
        except FileNotFoundError:
            return []


def _kills(op: str, work: Path, check, args: dict | None = None) -> list[str]:
    """Run ``KILLS`` rounds (delays seeded by the operation's name); ``check(done)`` after each."""
    rnd = random.Random(f"crash-{op}")
    zygote = Zygote(op, work, args)
    try:
        for i in range(KILLS):
            # The first round lets one operation finish before its kill, so the checks always
            # have something finished to find intact, however slow the machine.
            zygote.kill_once(rnd.uniform(0.01, 0.12), after_one_more=i == 0)
            check(zygote.done())
    finally:
        zygote.close()
    done = zygote.done()
    assert done, f"no {op} finished between kills: the loop never ran"
    return done


def test_png_save(tmp_path):
    from PIL import Image

    folder = tmp_path / "outputs"

    def check(done: list[str]) -> None:
        listed = sorted(p for p in folder.iterdir() if p.suffix == ".png"
                        and not p.name.startswith(".")) if folder.is_dir() else []
        assert set(done) <= {p.name for p in listed}
        for path in listed:  # every listed PNG is whole, with its text
            with Image.open(path) as image:
                image.load()
                assert image.text["parameters"].startswith("image ")

    _kills("png", tmp_path, check)


def test_chat_streaming_into_the_store(tmp_path):
    from studio.pipelines.chat.store import ConversationStore

    def check(done: list[str]) -> None:
        store = ConversationStore(tmp_path / "chat.db")
        try:
            assert store._run("PRAGMA integrity_check").fetchone()[0] == "ok"
            for line in done:
                user_id, reply_id, text = json.loads(line)
                reply = store.message(reply_id)
                assert reply.complete and reply.content == text and reply.parent_id == user_id
                assert store.message(user_id).role == "user"
        finally:
            store.close()

    _kills("chat", tmp_path, check)


def test_training_checkpoint_save(tmp_path):
    import torch

    from studio.pipelines.train.checkpoint import load_folder

    folder = tmp_path / "checkpoint"

    def check(done: list[str]) -> None:
        if not done:
            return
        state, doc = load_folder(folder)  # also puts back a folder a kill left aside
        assert doc["step"] >= int(done[-1]) and state["i"] == doc["step"]
        assert torch.equal(state["w"], torch.full((256, 256), float(doc["step"])))
        assert [p.name for p in tmp_path.iterdir() if p.name.startswith("checkpoint")] \
            == ["checkpoint"]

    _kills("checkpoint", tmp_path, check)


def _weights(tmp_path: Path, name: str) -> tuple[Path, bytes]:
    import numpy as np
    from safetensors.numpy import save

    key = ("lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn2_to_k."
           "lora_down.weight")
    data = save({key: np.ones((256, 768), dtype=np.float32)})  # 768 KiB
    path = tmp_path / "outside" / name
    path.parent.mkdir(exist_ok=True)
    path.write_bytes(data)
    return path, data


def _library_is_whole(data: bytes, done: list[str]) -> None:
    """Every model of the library listing under the models folder is a whole copy of ``data``,
    and every name in ``done`` is listed."""
    from studio.core.config import Settings, default_paths
    from studio.library.catalog import list_models

    paths = default_paths()
    listed = [e for e in list_models(Settings(), paths)
              if paths.models_dir in Path(e.path).parents]
    for entry in listed:
        assert Path(entry.path).read_bytes() == data, f"{entry.path} is listed half-written"
    assert set(done) <= {Path(e.path).name for e in listed}


def test_model_import_copy(tmp_path):
    source, data = _weights(tmp_path, "ink.safetensors")
    _kills("import", tmp_path / "work", lambda done: _library_is_whole(data, done),
           {"source": str(source)})


def test_download(tmp_path):
    from tests.fixtures.fake_hub import FakeHub, FakeRepo

    _source, data = _weights(tmp_path, "model.safetensors")
    hub = FakeHub({"me/tiny": FakeRepo({"model.safetensors": data})})
    try:
        _kills("download", tmp_path / "work", lambda done: _library_is_whole(data, done),
               {"url": f"{hub.url}/me/tiny/resolve/main/model.safetensors",
                "sha256": hashlib.sha256(data).hexdigest()})
    finally:
        hub.close()
