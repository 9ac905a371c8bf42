"""Issue 20 item 11: a crash at any point of a checkpoint save leaves a complete checkpoint.

The save is stopped at each of its steps in turn (the tensors written, the JSON written, the old
folder moved aside, the new one moved in) by making that step raise, which leaves the disk as a
SIGKILL there would; resuming must load the previous or the new checkpoint, never fail, and leave
no leftovers. tests/security/test_crash_kills.py does the same with real SIGKILLs.
"""

from __future__ import annotations

import os

import pytest

from studio.pipelines.train import checkpoint as ckpt
from studio.pipelines.train.registry import lesson_class
from studio.pipelines.train.runs import Run


class Killed(BaseException):
    """Stands for the process dying: nothing after it runs, no cleanup either."""


def _run_with_checkpoint(tmp_path):
    cls = lesson_class("classifier-2d")
    trainer = cls(cls.validate_config({}), seed=0)
    trainer.step()
    run = Run.create(tmp_path / "runs", "classifier-2d", 0, trainer.config)
    run.save_checkpoint(trainer)
    trainer.step()
    return run, trainer


@pytest.mark.parametrize("stop_at", range(4))
def test_a_save_stopped_at_any_step_resumes_from_a_complete_checkpoint(stop_at, tmp_path,
                                                                       monkeypatch):
    run, trainer = _run_with_checkpoint(tmp_path)
    calls = {"n": 0}
    real_replace, real_rmtree = os.replace, ckpt.shutil.rmtree

    def replace(src, dst):
        if calls["n"] == stop_at:
            raise Killed
        calls["n"] += 1
        real_replace(src, dst)

    monkeypatch.setattr(ckpt.os, "replace", replace)
    # the save's own cleanup never runs after a SIGKILL, so the test keeps the new folder too
    monkeypatch.setattr(ckpt.shutil, "rmtree", lambda *a, **k: None)
    with pytest.raises(Killed):
        run.save_checkpoint(trainer)
    monkeypatch.setattr(ckpt.os, "replace", real_replace)
    monkeypatch.setattr(ckpt.shutil, "rmtree", real_rmtree)

    assert Run(run.path).has_checkpoint
    resumed = Run(run.path).resume()
    # stopped before the old one moved aside: the old (step 1); after: the new one (step 2)
    assert resumed.step_count == (1 if stop_at <= 2 else 2)
    assert sorted(p.name for p in run.path.iterdir()) == ["checkpoint", "config.json",
                                                          "metrics.jsonl"]


def test_a_run_saved_in_the_old_layout_still_resumes(tmp_path):
    """Runs saved before checkpoint/ kept the two files in the run folder itself."""
    run, trainer = _run_with_checkpoint(tmp_path)
    for name in (ckpt.TENSORS_NAME, ckpt.JSON_NAME):
        os.replace(run.path / "checkpoint" / name, run.path / name)
    (run.path / "checkpoint").rmdir()
    assert Run(run.path).has_checkpoint and Run(run.path).resume().step_count == 1
    run.save_checkpoint(trainer)  # the next save moves the run to the new layout
    assert not (run.path / ckpt.JSON_NAME).exists()
    assert Run(run.path).resume().step_count == 2
