"""The window opens where the last run closed it, and the first time at a size that fits the
screen; windows made by tests and the self-test leave no file behind."""

from __future__ import annotations

import pytest

from studio.core.config import default_paths
from studio.ui.main_window import DEFAULT_SIZE
from studio.ui.workspaces import Workspace
from tests.gui_fixtures import RecordingPanel

pytestmark = pytest.mark.gui


def _window(qtbot):
    from studio.app import build_main_window

    window = build_main_window(
        workspaces=[Workspace("generate", "Generate", "generate", RecordingPanel("Generate"))])
    qtbot.addWidget(window)
    return window


def _geometry_file():
    return default_paths().config_dir / "window-geometry.bin"


def test_the_first_start_fits_the_screen(qtbot, studio_home):
    window = _window(qtbot)
    window.restore_geometry()
    room = window.screen().availableGeometry()
    size = window.size()
    # at most the default; within the screen unless the screen is smaller than the minimum
    assert size.width() <= DEFAULT_SIZE[0] and size.height() <= DEFAULT_SIZE[1]
    assert size.width() <= max(room.width(), window.minimumWidth())
    assert size.height() <= max(room.height(), window.minimumHeight())
    assert size.width() >= window.minimumWidth() and size.height() >= window.minimumHeight()
    if room.width() >= DEFAULT_SIZE[0] / 0.94 and room.height() >= DEFAULT_SIZE[1] / 0.92:
        assert (size.width(), size.height()) == DEFAULT_SIZE
    window.close()


def test_the_next_start_opens_at_the_size_it_was_closed_at(qtbot, studio_home):
    first = _window(qtbot)
    first.restore_geometry()
    fitted = (first.size().width(), first.size().height())
    first.show()
    # Within the offscreen test screen (800×800; Qt shrinks a restored window to its screen),
    # and unlike the fitted first-start size.
    wanted = (first.minimumWidth(), 700)
    assert wanted != fitted
    first.resize(*wanted)
    qtbot.waitUntil(lambda: first.size().height() == 700)
    first.close()  # closing saves
    assert _geometry_file().stat().st_size > 0
    second = _window(qtbot)
    second.restore_geometry()
    assert (second.size().width(), second.size().height()) == wanted
    second.close()


def test_a_damaged_geometry_file_falls_back_to_the_default(qtbot, studio_home):
    _geometry_file().parent.mkdir(parents=True, exist_ok=True)
    _geometry_file().write_bytes(b"\x00garbage")
    window = _window(qtbot)
    window.restore_geometry()  # no error; the fitted default size
    assert window.size().width() <= DEFAULT_SIZE[0]
    assert window.size().width() >= window.minimumWidth()
    window.close()


def test_windows_that_did_not_restore_leave_no_file(qtbot, studio_home):
    window = _window(qtbot)  # as tests and studio self-test build it
    window.show()
    window.close()
    assert not _geometry_file().exists()
