"""Chat's remote servers in the GUI, against the fake OpenAI server on 127.0.0.1: the Servers
dialog (add, test connection, errors, save without the key in settings.json), the grouped model
picker, Refresh models, a reply streamed from a remote model, and Settings' 8/4-bit choice."""

from __future__ import annotations

import json
import stat

import pytest
from PySide6.QtCore import Qt

from studio.core.config import default_paths
from studio.core.devices import DeviceInfo
from studio.library.secrets import get_api_key, set_api_key
from studio.workers.device_probe import DeviceReport
from tests.fixtures.fake_openai import GOOD_KEY, WORDS, serve_fake_openai

pytestmark = pytest.mark.gui


@pytest.fixture(scope="module")
def fake_server():
    with serve_fake_openai() as base:
        yield base


@pytest.fixture(autouse=True)
def file_keys(monkeypatch):
    monkeypatch.setenv("STUDIO_NO_KEYRING", "1")


@pytest.fixture
def chat(main_window, qtbot):
    main_window.resize(1320, 840)
    main_window.show()
    panel = main_window.show_workspace("chat")
    return main_window, panel


def _click(qtbot, button) -> None:
    qtbot.mouseClick(button, Qt.MouseButton.LeftButton)


def _open_dialog(qtbot, panel):
    _click(qtbot, panel.controls.servers_button)
    dialog = panel.servers.dialog
    qtbot.waitExposed(dialog)
    return dialog


def _add(qtbot, dialog, name: str, url: str, key: str = "") -> None:
    _click(qtbot, dialog.add_button)
    qtbot.keyClicks(dialog.name, name)
    qtbot.keyClicks(dialog.base_url, url)
    if key:
        qtbot.keyClicks(dialog.api_key, key)


def _test(qtbot, dialog) -> str:
    _click(qtbot, dialog.test_button)
    assert dialog.busy() and not dialog.test_button.isEnabled()  # the answer comes later
    qtbot.waitUntil(lambda: not dialog.busy(), timeout=15_000)
    return dialog.status.text()


def _items(combo) -> list[str]:
    return [combo.itemText(i) for i in range(combo.count())]


def test_add_a_server_test_it_save_it_and_chat_with_its_model(chat, qtbot, fake_server,
                                                                screenshot):
    window, panel = chat
    base = fake_server + "/v1"
    dialog = _open_dialog(qtbot, panel)
    assert dialog.empty.isVisible() and not dialog.form_box.isVisible()
    assert "api_keys.json" in dialog.key_note.text() and "settings.json" in dialog.key_note.text()
    _add(qtbot, dialog, "GPU box", base, GOOD_KEY)
    assert dialog.form_box.title() == "GPU box"
    assert dialog.api_key.echoMode() == dialog.api_key.EchoMode.Password

    status = _test(qtbot, dialog)
    assert "Connected" in status and "2 models" in status
    assert [dialog.models.item(i).text() for i in range(dialog.models.count())] == ["m1", "m2"]
    assert "2 models" in dialog.list.item(0).text()
    screenshot(dialog, "chat_servers_dialog")
    _click(qtbot, dialog.ok_button)
    assert not dialog.isVisible()

    text = default_paths().settings_file.read_text(encoding="utf-8")
    assert GOOD_KEY not in text
    assert json.loads(text)["remote_endpoints"] == [
        {"name": "GPU box", "base_url": base, "models": ["m1", "m2"]}]
    key_file = default_paths().config_dir / "api_keys.json"
    assert get_api_key(base) == GOOD_KEY
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600

    # The picker lists the server's models under its name, headings not selectable.
    combo = panel.controls.model
    qtbot.waitUntil(lambda: f"openai:{base}#m2" in panel.controls.model_specs(), timeout=10_000)
    assert panel.controls.model_specs() == [f"openai:{base}#m1", f"openai:{base}#m2"]
    heading = _items(combo).index("GPU BOX")
    assert _items(combo)[heading + 1:] == ["m1", "m2"]
    assert not combo.model().item(heading).isEnabled()
    assert panel.controls.model_spec() == f"openai:{base}#m1"  # the first model, not the heading
    assert f"Runs on GPU box · {fake_server[7:]}" in panel.controls.model_note.text()

    # Chat with it: the reply streams from the server, with the key from the key store.
    panel.input.setPlainText("Hello there")
    qtbot.keyClick(panel.input, Qt.Key.Key_Return)
    qtbot.waitUntil(lambda: panel.job is None, timeout=20_000)
    msgs = panel.store.path(panel.conv_id)
    assert [m.content for m in msgs] == ["Hello there", "".join(WORDS)], [m.meta for m in msgs]
    combo.showPopup()
    qtbot.wait(50)
    screenshot(window, "chat_remote_models")
    screenshot(combo.view().window(), "chat_remote_models_picker")
    combo.hidePopup()


def test_connection_errors_are_readable(chat, qtbot, fake_server):
    _window, panel = chat
    dialog = _open_dialog(qtbot, panel)
    _add(qtbot, dialog, "Wrong key", fake_server + "/v1", "sk-wrong")
    status = _test(qtbot, dialog)
    assert "refused the API key" in status and "401" in status
    assert "Incorrect API key provided" in status and dialog.models.count() == 0

    with socket_closed_port() as port:
        _add(qtbot, dialog, "Down", f"http://127.0.0.1:{port}/v1")
        assert "connection refused" in _test(qtbot, dialog)

    dialog.timeout = 2  # the fake server's /slow stalls until it closes: the timeout must end it
    _add(qtbot, dialog, "Slow", fake_server + "/slow/v1", GOOD_KEY)
    assert "sent nothing for 2 s" in _test(qtbot, dialog)

    # Switching back shows that server's own result.
    dialog.list.setCurrentRow(0)
    assert "401" in dialog.status.text()
    dialog.reject()


def test_bad_or_duplicate_urls_block_ok_and_removed_servers_forget_their_key(chat, qtbot,
                                                                             fake_server):
    _window, panel = chat
    dialog = _open_dialog(qtbot, panel)
    _add(qtbot, dialog, "Typo", "localhost:8000")
    _click(qtbot, dialog.ok_button)
    assert dialog.isVisible() and "not an http(s) URL" in dialog.error.text()
    dialog.base_url.clear()
    qtbot.keyClicks(dialog.base_url, fake_server + "/v1")
    _add(qtbot, dialog, "Twice", fake_server + "/v1/")
    _click(qtbot, dialog.ok_button)
    assert dialog.isVisible() and "listed twice" in dialog.error.text()
    dialog.api_key.setText("")
    qtbot.keyClicks(dialog.api_key, GOOD_KEY)
    _click(qtbot, dialog.remove_button)
    assert dialog.list.count() == 1
    _click(qtbot, dialog.ok_button)
    assert not dialog.isVisible()

    dialog = _open_dialog(qtbot, panel)
    assert dialog.name.text() == "Typo"
    _click(qtbot, dialog.remove_button)
    assert dialog.empty.isVisible()
    _click(qtbot, dialog.ok_button)
    assert panel.ctx.settings.remote_endpoints == []
    assert get_api_key(fake_server + "/v1") is None


def test_refresh_models_requeries_every_server(chat, qtbot, fake_server):
    _window, panel = chat
    good, down = fake_server + "/v1", "http://127.0.0.1:9/v1"
    set_api_key(good, GOOD_KEY)
    settings = panel.ctx.settings
    assert not panel.controls.refresh_button.isEnabled()  # nothing to refresh yet
    panel.ctx.update_settings(settings.__class__(**{
        **settings.__dict__, "remote_endpoints": [
            {"name": "GPU", "base_url": good, "models": ["old"]},
            {"name": "Gone", "base_url": down, "models": ["kept"]}]}))
    qtbot.waitUntil(lambda: f"openai:{good}#old" in panel.controls.model_specs(),
                    timeout=10_000)
    assert panel.controls.refresh_button.isEnabled()
    _click(qtbot, panel.controls.refresh_button)
    qtbot.waitUntil(lambda: f"openai:{good}#m2" in panel.controls.model_specs(),
                    timeout=20_000)
    qtbot.waitUntil(lambda: panel.controls.refresh_button.isEnabled(), timeout=20_000)
    assert [e["models"] for e in panel.ctx.settings.remote_endpoints] == [["m1", "m2"],
                                                                          ["kept"]]
    specs = panel.controls.model_specs()
    assert specs[:3] == [f"openai:{good}#m1", f"openai:{good}#m2", f"openai:{down}#kept"]
    # The model picked before stays picked (a conversation may use it), though gone from the list.
    assert specs[3:] == [f"openai:{good}#old"] == [panel.controls.model_spec()]
    assert "Gone: Cannot reach http://127.0.0.1:9/v1" in panel.controls.model_note.text()


class socket_closed_port:
    """A port on 127.0.0.1 that nothing listens on (bound, then released)."""

    def __enter__(self) -> int:
        import socket

        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            return s.getsockname()[1]

    def __exit__(self, *exc) -> None:
        return None


# -- Settings: 8/4-bit loading ------------------------------------------------------------------


def test_load_in_is_disabled_on_this_cpu_machine_and_says_why(shell_window, qtbot):
    import importlib.util

    dialog = shell_window.open_settings()
    qtbot.waitUntil(lambda: "Checking" not in dialog.load_in.toolTip(), timeout=30_000)
    assert not dialog.load_in.isEnabled()
    if importlib.util.find_spec("bitsandbytes") is None:
        assert "bitsandbytes" in dialog.load_in.toolTip()
    else:
        assert "CUDA" in dialog.load_in.toolTip()
    assert dialog.load_in.currentData() == "auto"
    dialog.reject()


def test_load_in_follows_the_device_report(shell_window, qtbot, monkeypatch):
    import importlib.util

    from studio.ui import settings_dialog

    real = importlib.util.find_spec
    monkeypatch.setattr(settings_dialog.importlib.util, "find_spec",
                        lambda name, *a: object() if name == "bitsandbytes" else real(name, *a))
    cpu = DeviceReport(DeviceInfo("cpu", "CPU"))
    dialog = settings_dialog.SettingsDialog(shell_window.ctx, shell_window, device_report=cpu)
    assert not dialog.load_in.isEnabled() and "NVIDIA GPU with CUDA" in dialog.load_in.toolTip()
    dialog.reject()

    shell_window.device_report = DeviceReport(DeviceInfo("cuda", "CUDA · RTX 4090 · 24 GB"))
    dialog = shell_window.open_settings()
    assert dialog.load_in.isEnabled()
    dialog.load_in.setCurrentIndex(dialog.load_in.findData("4bit"))
    dialog.device.setCurrentIndex(dialog.device.findData("cpu"))
    assert not dialog.load_in.isEnabled() and "Device is set to CPU" in dialog.load_in.toolTip()
    dialog.device.setCurrentIndex(dialog.device.findData("cuda"))
    assert dialog.load_in.isEnabled()
    _click(qtbot, dialog.ok_button)
    saved = json.loads(default_paths().settings_file.read_text(encoding="utf-8"))
    assert saved["load_in"] == "4bit" and saved["device"] == "cuda"
