"""When Qt cannot open any window, the user gets a dialog (without Qt) saying why and what to
install, instead of a silent exit after a double-click."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from studio.ui.startup_failure import LINUX_HINT, TITLE, failure_text

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="a fake zenity on PATH")
def test_a_window_that_cannot_open_is_explained_in_a_dialog(tmp_path):
    # A fake zenity records what it was asked to show; the platform plugin does not exist.
    said = tmp_path / "said.txt"
    zenity = tmp_path / "bin" / "zenity"
    zenity.parent.mkdir()
    zenity.write_text(f"#!/bin/sh\nprintf '%s\\n' \"$@\" > '{said}'\n")
    zenity.chmod(0o755)
    env = dict(os.environ, PATH=f"{zenity.parent}{os.pathsep}{os.environ['PATH']}",
               QT_QPA_PLATFORM="no-such-platform", STUDIO_HOME=str(tmp_path / "home"),
               PYTHONPATH=str(ROOT))
    proc = subprocess.run([sys.executable, "-c", "from studio.app import main; main()"], env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0  # Qt still ends the process
    assert "no-such-platform" in proc.stderr  # Qt's message is still printed
    text = said.read_text()
    assert "--error" in text and TITLE in text and '"no-such-platform"' in text
    assert "sudo apt install" not in text  # not an xcb problem: no library advice
    assert not (tmp_path / "home").exists()  # nothing was written before the window


def test_a_missing_xcb_library_is_explained_with_what_to_install(monkeypatch):
    monkeypatch.setattr(sys, "platform", "linux")
    text = failure_text([
        "From 6.5.0, xcb-cursor0 or libxcb-cursor0 is needed to load the Qt xcb platform plugin.",
        'Could not load the Qt platform plugin "xcb" in "" even though it was found.',
        "This application failed to start because no Qt platform plugin could be initialized. "
        "Reinstalling the application may fix this problem.\n\nAvailable platform plugins are: "
        "minimal, offscreen, xcb, wayland."])
    assert text.startswith(TITLE) and "libxcb-cursor0 is needed" in text
    assert text.endswith(LINUX_HINT) and "libxcb-cursor0" in LINUX_HINT
    assert "Reinstalling" not in text and "Available platform plugins" not in text
