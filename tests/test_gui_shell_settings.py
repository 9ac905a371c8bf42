"""The settings dialog saves what the user picked, Cancel discards it, corrupt files are noticed."""

from __future__ import annotations

import json

import pytest
from PySide6.QtCore import Qt

from studio.core.config import default_paths
from studio.ui import theme
from tests.gui_fixtures import press

pytestmark = pytest.mark.gui


def test_settings_round_trip_saves_theme_and_device(shell_window, qtbot, screenshot):
    shell_window.show()
    dialog = shell_window.open_settings()
    qtbot.waitExposed(dialog)
    screenshot(dialog, "settings_dialog")
    assert str(default_paths().settings_file) in dialog.where_label.text()
    heard = []
    shell_window.ctx.settingsChanged.connect(heard.append)

    dialog.theme.setCurrentIndex(dialog.theme.findData("light"))
    assert theme.colors().name == "light"  # previewed at once
    dialog.device.setCurrentIndex(dialog.device.findData("cpu"))
    dialog.precision.setCurrentIndex(dialog.precision.findData("bf16"))
    dialog.preview_mode.setCurrentIndex(dialog.preview_mode.findData("taesd"))
    assert dialog.taesd_every.isEnabled()
    dialog.taesd_every.setValue(7)
    dialog.add_extra_dir("/models/a1111")
    dialog.add_extra_dir("/models/old")
    dialog.extra_dirs.setCurrentRow(1)
    qtbot.mouseClick(dialog.remove_button, Qt.MouseButton.LeftButton)
    dialog.output_dir.setText("  /pictures/out  ")
    qtbot.mouseClick(dialog.ok_button, Qt.MouseButton.LeftButton)

    saved = json.loads(default_paths().settings_file.read_text(encoding="utf-8"))
    assert saved["theme"] == "light"
    assert saved["device"] == "cpu"
    assert saved["precision"] == "bf16"
    assert saved["preview_mode"] == "taesd" and saved["taesd_every"] == 7
    assert saved["extra_model_dirs"] == ["/models/a1111"]
    assert saved["output_dir"] == "/pictures/out"
    assert len(heard) == 1 and heard[0].theme == "light"
    assert shell_window.ctx.settings.device == "cpu"
    assert theme.colors().name == "light"
    screenshot(shell_window, "window_light")


def test_cancel_discards_changes_and_restores_the_theme(shell_window, qtbot):
    dialog = shell_window.open_settings()
    dialog.theme.setCurrentIndex(dialog.theme.findData("light"))
    dialog.device.setCurrentIndex(dialog.device.findData("cuda"))
    assert theme.colors().name == "light"
    qtbot.mouseClick(dialog.cancel_button, Qt.MouseButton.LeftButton)
    assert theme.colors().name == "dark"
    assert shell_window.ctx.settings.device == "auto"
    assert not default_paths().settings_file.exists()


def test_the_folders_page_fits_in_the_dialog(shell_window, qtbot):
    """The Hugging Face note wraps to four lines; the page's minimum height did not count them,
    so the Folders group was squeezed and the extra-folders list stuck out of its frame."""
    shell_window.show()
    dialog = shell_window.open_settings()
    qtbot.waitExposed(dialog)
    dialog.tabs.setCurrentIndex(1)
    groups = [dialog.extra_dirs.parentWidget(), dialog.token_note.parentWidget()]

    def fits() -> bool:
        note = dialog.token_note
        return ("saved in" in note.text()
                and all(g.height() >= g.minimumSizeHint().height() for g in groups)
                and groups[0].rect().contains(dialog.extra_dirs.geometry())
                and note.height() >= note.heightForWidth(note.width()))

    qtbot.waitUntil(fits, timeout=60_000)
    dialog.reject()


def test_ctrl_comma_opens_settings(shell_window, qtbot):
    from studio.ui.settings_dialog import SettingsDialog

    shell_window.show()
    qtbot.waitExposed(shell_window)
    press(shell_window, Qt.Key.Key_Comma)
    dialogs = shell_window.findChildren(SettingsDialog)
    assert len(dialogs) == 1 and dialogs[0].isVisible()
    dialogs[0].reject()


def test_corrupt_settings_file_gives_a_banner_and_a_backup(studio_home, qtbot, screenshot):
    from studio.app import build_main_window

    settings_file = default_paths().settings_file
    settings_file.parent.mkdir(parents=True)
    settings_file.write_text("{ this is not json", encoding="utf-8")
    window = build_main_window()
    qtbot.addWidget(window)
    try:
        window.show()
        banners = window.banners.banners()
        assert len(banners) == 1 and banners[0].kind == "warning"
        assert "could not be read" in banners[0].text
        backups = list(settings_file.parent.glob("settings.corrupt-*.json"))
        assert len(backups) == 1
        assert backups[0].read_text(encoding="utf-8") == "{ this is not json"
        assert backups[0].name in banners[0].text
        assert window.ctx.settings.theme == "dark"
        screenshot(window, "banner_corrupt_settings")
        qtbot.mouseClick(banners[0].close_button, Qt.MouseButton.LeftButton)
        assert window.banners.banners() == []
    finally:
        window.shutdown()


def test_mistyped_settings_and_a_failed_save_give_banners(studio_home, qtbot, monkeypatch):
    """A wrong type falls back for that field alone; a save that fails (full disk) is a banner
    and the new settings stay in force for the session."""
    import errno
    import json as _json

    from studio.app import build_main_window
    from studio.core import config

    settings_file = default_paths().settings_file
    settings_file.parent.mkdir(parents=True)
    settings_file.write_text(_json.dumps({"output_dir": 5, "theme": "light"}), encoding="utf-8")
    window = build_main_window()
    qtbot.addWidget(window)
    try:
        (banner,) = window.banners.banners()
        assert "output_dir" in banner.text and banner.kind == "warning"
        assert window.ctx.settings.theme == "light" and window.ctx.settings.output_dir == ""

        def full(path, text):
            raise OSError(errno.ENOSPC, "No space left on device")

        monkeypatch.setattr(config, "atomic_write_text", full)
        window.ctx.update_settings(config.Settings(theme="dark"))
        texts = [b.text for b in window.banners.banners() if b.key == "settings-save"]
        assert len(texts) == 1 and texts[0].startswith("The disk is full: the settings")
        assert window.ctx.settings.theme == "dark"
    finally:
        window.shutdown()
