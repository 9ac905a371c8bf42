"""Windowed starts (pythonw, a frozen Windows app, a .app from Finder) have no stdout/stderr:
both the app's guard and the installer's runtime hook give them writers, so tqdm and logging work."""

from __future__ import annotations

import logging
import runpy
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _writes_everywhere() -> None:
    from tqdm import tqdm

    print("hello")
    logging.getLogger("studio.test").warning("a warning with no console")
    for _ in tqdm(range(3)):
        pass


@pytest.mark.parametrize("fix", ["app", "runtime hook"])
def test_none_streams_become_writers(monkeypatch, fix):
    monkeypatch.setattr(sys, "stdout", None)
    monkeypatch.setattr(sys, "stderr", None)
    with pytest.raises(AttributeError):
        sys.stderr.write("no stream")  # what tqdm and logging hit in a windowed start
    if fix == "app":
        from studio.app import ensure_std_streams

        ensure_std_streams()
    else:
        runpy.run_path(str(ROOT / "packaging" / "hooks" / "rth_std_streams.py"))
    assert sys.stdout is not None and sys.stderr is not None
    try:
        _writes_everywhere()
    finally:
        sys.stdout.close()
        sys.stderr.close()


def test_streams_that_exist_are_left_alone(capsys):
    from studio.app import ensure_std_streams

    before = (sys.stdout, sys.stderr)
    ensure_std_streams()
    assert (sys.stdout, sys.stderr) == before
