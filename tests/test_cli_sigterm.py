"""SIGTERM during a running job (issue 20 item 14): the job is cancelled, the GPU worker joined,
one clear line said, and the process exits 143 (128 + SIGTERM) — no C++ abort, no traceback.
``studio train`` (steps on the main thread) keeps its run as Ctrl+C does."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.test_cli_basics import ROOT

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="SIGTERM is POSIX")


def _start(*argv: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen([sys.executable, "-m", "studio", *argv], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _terminate(proc: subprocess.Popen, started) -> str:
    """Wait until ``started(proc)`` says the job runs, send SIGTERM; stderr once it exited 143
    with no abort and the closing line."""
    try:
        assert started(proc), proc.stderr.read()
        proc.send_signal(signal.SIGTERM)
        _out, err = proc.communicate(timeout=120)
    finally:
        proc.kill()
    assert proc.returncode == 143, err
    assert "Traceback" not in err and "terminate called" not in err and "Aborted" not in err
    assert err.strip().splitlines()[-1] == "studio: stopped by SIGTERM", err
    return err


def test_sigterm_during_a_chat_reply_cancels_it_and_exits_143(studio_home, tiny_llama_dir):
    from studio.core.config import Settings, save_settings

    save_settings(Settings(added_models=[str(tiny_llama_dir)]),
                  studio_home / "config" / "settings.json")
    proc = _start("chat", "--model", "tiny-llama", "--prompt", "hi", "--temperature", "0",
                  "--max-new-tokens", "100000")
    _terminate(proc, lambda p: p.stdout.read(1))  # the reply is streaming on the GPU worker


def test_sigterm_during_training_keeps_the_run_and_exits_143(tmp_path):
    proc = _start("train", "classifier-2d", "--steps", "100000000", "--out",
                  str(tmp_path / "run"), "--json")
    err = _terminate(proc, lambda p: p.stdout.readline().startswith("{"))  # training has begun
    assert "the run is saved in" in err
    assert (Path(tmp_path) / "run" / "checkpoint" / "checkpoint.json").is_file()


def test_a_job_that_outlives_the_shutdown_wait_ends_the_process_without_finalising(
        monkeypatch, capsys):
    """Python finalising around a worker still inside torch aborts in C++; the command leaves
    with os._exit instead, after saying so. An idle or joined worker changes nothing."""
    import threading

    import studio.cli as cli
    from studio.core.lanes import JobRunner

    exits: list[int] = []
    monkeypatch.setattr(cli.os, "_exit", exits.append)
    started, release = threading.Event(), threading.Event()

    def stuck(request, sink, cancel):
        started.set()
        release.wait(30)

    runner = JobRunner({"stuck": stuck}, name="test-gpu-worker")
    try:
        assert cli._leave_if_a_job_is_stuck(0) == 0 and exits == []  # idle: a normal exit
        runner.submit("stuck", None)
        assert started.wait(30)
        runner.shutdown(wait=True, timeout=0.05)  # the job ignores its cancel
        cli._leave_if_a_job_is_stuck(143)
        assert exits == [143]
        assert "did not stop in time" in capsys.readouterr().err
    finally:
        release.set()
        runner.shutdown(wait=True, timeout=30)
    assert not runner.busy
