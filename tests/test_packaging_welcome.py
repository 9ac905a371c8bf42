"""First start: the welcome shows once (no settings file yet), picks the models folder, points to
models and lessons, and never comes back once dismissed."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QFileDialog

from studio.core.config import default_paths, load_settings
from studio.ui.welcome import WelcomeDialog, is_first_start, show_welcome
from studio.ui.workspaces import Workspace
from tests.gui_fixtures import RecordingPanel

pytestmark = pytest.mark.gui
ROOT = Path(__file__).resolve().parents[1]

# Runs the real ``studio.app.main``; records whether the welcome opened, dismisses it, quits.
START = r"""
import json, sys
from PySide6.QtCore import QTimer
import studio.app as app
seen = {"welcome": False}
real_show_welcome = app.show_welcome
def spy(window):
    dialog = real_show_welcome(window)
    seen["welcome"] = dialog.isVisible()
    seen["models_dir"] = dialog.models_edit.text()
    seen["network_free"] = "http" not in dialog.models_text.text()
    dialog.start_button.click()
    return dialog
app.show_welcome = spy
real_show = app.MainWindow.show
def show(self):
    real_show(self)
    QTimer.singleShot(400, self.close)
app.MainWindow.show = show
code = app.main(["studio"])
print("RESULT " + json.dumps(seen))
sys.exit(code)
"""


def _start(home: Path) -> dict:
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen", STUDIO_HOME=str(home),
               PYTHONPATH=str(ROOT), HF_HUB_OFFLINE="1", HF_HOME=str(home / "hf"))
    proc = subprocess.run([sys.executable, "-c", START], env=env, cwd=ROOT,
                          capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    line = next(x for x in proc.stdout.splitlines() if x.startswith("RESULT "))
    return json.loads(line[len("RESULT "):])


def test_the_app_welcomes_on_the_first_start_only(tmp_path):
    first = _start(tmp_path)
    assert first["welcome"] is True
    assert first["models_dir"] == str(tmp_path / "data" / "models")
    assert first["network_free"]
    assert (tmp_path / "config" / "settings.json").is_file()
    assert (tmp_path / "data" / "models").is_dir()
    assert _start(tmp_path) == {"welcome": False}


def _window(qtbot, keys: tuple[str, ...]):
    from studio.app import build_main_window

    spaces = [Workspace(k, k.title(), "generate", RecordingPanel(k.title())) for k in keys]
    window = build_main_window(workspaces=spaces)
    qtbot.addWidget(window)
    return window


def test_choose_sets_the_models_folder_and_get_started_saves_it(qtbot, studio_home, monkeypatch,
                                                                tmp_path):
    window = _window(qtbot, ("generate", "train"))
    try:
        assert is_first_start(default_paths())
        dialog = show_welcome(window)
        assert dialog.models_edit.text() == str(studio_home / "data" / "models")
        picked = tmp_path / "my models"
        monkeypatch.setattr(QFileDialog, "getExistingDirectory",
                            staticmethod(lambda *a, **k: str(picked)))
        qtbot.mouseClick(dialog.choose_button, Qt.MouseButton.LeftButton)
        assert dialog.models_edit.text() == str(picked)
        qtbot.mouseClick(dialog.start_button, Qt.MouseButton.LeftButton)
        assert not dialog.isVisible()
        assert not is_first_start(default_paths())
        assert load_settings().settings.models_dir == str(picked)
        assert window.ctx.paths.models_dir == picked
        assert picked.is_dir()
    finally:
        window.shutdown()


def test_default_keeps_the_setting_empty_and_escape_counts_as_dismissed(qtbot, studio_home,
                                                                       monkeypatch, tmp_path):
    window = _window(qtbot, ("generate", "train"))
    try:
        dialog = show_welcome(window)
        monkeypatch.setattr(QFileDialog, "getExistingDirectory",
                            staticmethod(lambda *a, **k: str(tmp_path / "elsewhere")))
        dialog.choose_button.click()
        dialog.default_button.click()
        qtbot.keyClick(dialog, Qt.Key.Key_Escape)
        assert not dialog.isVisible()
        assert not is_first_start(default_paths())
        assert load_settings().settings.models_dir == ""
    finally:
        window.shutdown()


def test_without_a_models_workspace_it_explains_downloads_and_opens_the_lessons(qtbot,
                                                                                studio_home):
    window = _window(qtbot, ("generate", "train"))
    try:
        window.show()
        dialog = show_welcome(window)
        assert dialog.models_button.isHidden()
        assert "hf download" in dialog.models_text.text()
        assert not dialog.train_button.isHidden()
        qtbot.mouseClick(dialog.train_button, Qt.MouseButton.LeftButton)
        assert not dialog.isVisible()
        assert window.current_workspace() == "train"
    finally:
        window.shutdown()


def test_with_a_models_workspace_it_opens_it(qtbot, studio_home, screenshot):
    window = _window(qtbot, ("generate", "models", "train"))
    try:
        window.show()
        dialog = WelcomeDialog(window.ctx, window.workspaces, window.show_workspace, window)
        dialog.open()
        assert not dialog.models_button.isHidden()
        assert "Models" in dialog.models_text.text()
        screenshot(dialog, "welcome")
        qtbot.mouseClick(dialog.models_button, Qt.MouseButton.LeftButton)
        assert window.current_workspace() == "models"
        assert not is_first_start(default_paths())
    finally:
        window.shutdown()
