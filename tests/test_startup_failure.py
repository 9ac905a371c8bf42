"""When Qt cannot open any window, the user gets a dialog (without Qt) saying why and what to
install, instead of a silent exit after a double-click."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from studio.ui.startup_failure import (
    LINUX_HINT,
    NO_DISPLAY_EXIT,
    TITLE,
    display_problem,
    failure_text,
)

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
                          capture_output=True, text=True, timeout=300)
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


def _no_display_env(tmp_path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if k not in ("DISPLAY", "WAYLAND_DISPLAY", "QT_QPA_PLATFORM")}
    return dict(env, STUDIO_HOME=str(tmp_path / "home"), PYTHONPATH=str(ROOT), **extra)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="X11/Wayland variables")
@pytest.mark.parametrize("argv", [["-m", "studio"], ["-m", "studio", "gui"],
                                  ["-c", "from studio.app import main; raise SystemExit(main())"]])
def test_no_display_is_said_in_one_line_not_blamed_on_libraries(tmp_path, argv):
    proc = subprocess.run([sys.executable, *argv], env=_no_display_env(tmp_path), cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == NO_DISPLAY_EXIT != 0
    assert proc.stderr.startswith(
        "studio: error: cannot connect to a display (DISPLAY is not set)"), proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
    assert "xcb-cursor" not in proc.stderr and "sudo apt" not in proc.stderr
    assert not (tmp_path / "home").exists()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the xcb platform plugin")
def test_a_display_that_does_not_answer_is_recognised_in_qts_message(tmp_path):
    # Nothing listens on the display; Qt says "could not connect to display" and then blames
    # the xcb plugin and xcb-cursor0, which is wrong: the sentence names the display instead.
    free = next(n for n in range(731, 831) if not os.path.exists(f"/tmp/.X11-unix/X{n}")
                and not os.path.exists(f"/tmp/.X{n}-lock"))
    env = _no_display_env(tmp_path, DISPLAY=f":{free}", QT_QPA_PLATFORM="xcb")
    proc = subprocess.run([sys.executable, "-m", "studio"], env=env, cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == NO_DISPLAY_EXIT, proc.stderr
    assert proc.stderr.strip().splitlines()[-1].startswith(
        f"studio: error: cannot connect to a display (DISPLAY=:{free} does not answer)")
    assert "xcb-cursor" not in proc.stderr


def test_display_problem_only_when_qt_would_need_a_display_that_is_not_there(monkeypatch):
    monkeypatch.setattr(sys, "platform", "linux")
    monkeypatch.setattr(sys, "argv", ["studio"])
    for name in ("DISPLAY", "WAYLAND_DISPLAY", "QT_QPA_PLATFORM"):
        monkeypatch.delenv(name, raising=False)
    assert "DISPLAY is not set" in display_problem()
    monkeypatch.setenv("QT_QPA_PLATFORM", "xcb")
    assert "DISPLAY is not set" in display_problem()
    monkeypatch.setenv("DISPLAY", ":0")
    assert display_problem() == ""
    monkeypatch.delenv("DISPLAY")
    monkeypatch.setenv("QT_QPA_PLATFORM", "offscreen")  # needs no display
    assert display_problem() == ""
    monkeypatch.delenv("QT_QPA_PLATFORM")
    monkeypatch.setenv("WAYLAND_DISPLAY", "wayland-0")  # Qt picks Wayland
    assert display_problem() == ""
    monkeypatch.setattr(sys, "platform", "win32")
    monkeypatch.delenv("WAYLAND_DISPLAY")
    assert display_problem() == ""
