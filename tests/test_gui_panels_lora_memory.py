"""LoRAs in Generate, memory options and "Unload all" in the Models workspace and the status bar,
and the memory budget and Hugging Face token in Settings — through the real window and buttons.

Image models are the tiny SD 1.5 and SDXL pipelines (in an extra model folder); LoRAs are
header-only safetensors with kohya key names, which is all the library's classifier reads. Jobs go
to recording handlers registered on the window's own job runner.
"""

from __future__ import annotations

import dataclasses
import json
import threading
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from PySide6.QtCore import QPoint, Qt
from PySide6.QtWidgets import QLineEdit
from safetensors.torch import save_file

from studio.core.config import MemoryOptions, Settings, default_paths, save_settings
from studio.core.devices import DeviceInfo
from studio.core.jobs import JobState
from studio.core.requests import Txt2ImgRequest, UnloadRequest
from studio.library import hub_download as hd
from studio.library import secrets
from studio.workers.device_probe import DeviceReport

pytestmark = pytest.mark.gui

LORA_KEY = "lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn2_to_k.lora_down.weight"
GB = 2**30


def write_lora(path: Path, width: int) -> Path:
    """A LoRA the library sees as SD 1.x (width 768) or SDXL (2048): only the header matters."""
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file({LORA_KEY: torch.zeros(4, width, dtype=torch.float16)}, str(path))
    return path


class RecordingTxt2Img:
    """Stands in for the image engine: keeps each request, makes no image."""

    def __init__(self) -> None:
        self.requests: list[Txt2ImgRequest] = []

    def __call__(self, request, progress, cancel):
        self.requests.append(request)
        return []


@dataclass
class FakeLoaded:
    """Shaped like model_cache.LoadedModel."""

    name: str
    path: str
    kind: str
    bytes: int
    device: str


@pytest.fixture(scope="session")
def image_models(tmp_path_factory, tiny_sd15_dir, tiny_sdxl_dir):
    """An extra model folder holding the tiny SD 1.5 and SDXL pipelines (as links)."""
    root = tmp_path_factory.mktemp("image-models")
    (root / "tiny-sd15").symlink_to(tiny_sd15_dir, target_is_directory=True)
    (root / "tiny-sdxl").symlink_to(tiny_sdxl_dir, target_is_directory=True)
    return root


@pytest.fixture
def window(qtbot, studio_home, image_models, tmp_path, monkeypatch):
    """The real window over a library with two image models and three LoRAs."""
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))  # no real HF cache, no real login
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.setenv("STUDIO_NO_KEYRING", "1")  # secrets go to the test's STUDIO_HOME file
    paths = default_paths()
    write_lora(paths.models_dir / "loras" / "ink.safetensors", 768)
    write_lora(paths.models_dir / "loras" / "Paper Cut.safetensors", 768)
    write_lora(paths.models_dir / "loras" / "xl-neon.safetensors", 2048)
    save_settings(Settings(extra_model_dirs=[str(image_models)]), paths.settings_file)

    from studio.app import build_main_window

    win = build_main_window()
    qtbot.addWidget(win)
    win.recorder = RecordingTxt2Img()
    win.ctx.bridge.engine.register("txt2img", win.recorder)
    win.resize(1320, 860)
    win.show()
    yield win
    win.shutdown()


def generate_panel(window, qtbot):
    panel = window.show_workspace("generate")
    qtbot.waitUntil(lambda: panel.lora_scans >= 1 and not panel.picker.scanning
                    and panel.picker.combo.count() == 2, timeout=20000)
    return panel


def choose_model(panel, name: str) -> None:
    index = panel.picker.combo.findText(name)
    assert index >= 0, name
    panel.picker.combo.setCurrentIndex(index)


def menu_items(section) -> dict[str, tuple[bool, str]]:
    """The Add LoRA menu as {name: (enabled, note)}, as the user sees it when it opens."""
    section.menu.aboutToShow.emit()
    items = {}
    for action in section.menu.actions():
        if not action.isSeparator() and "\t" in action.text():
            name, note = action.text().split("\t")
            items[name] = (action.isEnabled(), note)
    return items


def shot(screenshot, qtbot, widget, name: str) -> None:
    qtbot.wait(50)  # let pending layout requests run, as the event loop would before painting
    screenshot(widget, name)


def pick(section, name: str) -> None:
    section.menu.aboutToShow.emit()
    action = next(a for a in section.menu.actions() if a.text().split("\t")[0] == name)
    assert action.isEnabled()
    action.trigger()


# -- LoRAs in Generate ---------------------------------------------------------------------------


def test_lora_rows_go_into_the_submitted_request(window, qtbot, screenshot):
    panel = generate_panel(window, qtbot)
    loras = panel.controls.loras
    choose_model(panel, "tiny-sd15")
    assert loras.note.isVisible() and "2 of 3 LoRAs in the library fit" in loras.note.text()
    assert menu_items(loras) == {"ink": (True, "SD 1.x"), "Paper Cut": (True, "SD 1.x"),
                                 "xl-neon": (False, "for SDXL")}
    shot(screenshot, qtbot, window, "generate-lora-empty")
    loras.menu.popup(loras.add_button.mapToGlobal(loras.add_button.rect().bottomLeft()))
    qtbot.waitExposed(loras.menu)
    shot(screenshot, qtbot, loras.menu, "generate-lora-menu")
    loras.menu.close()

    pick(loras, "ink")
    pick(loras, "Paper Cut")
    assert [r.name for r in loras.rows] == ["ink", "Paper Cut"]
    assert not loras.note.isVisible()
    assert menu_items(loras)["ink"] == (False, "added")  # not twice
    # The remove button takes a row away; the LoRA can be added again.
    qtbot.mouseClick(loras.rows[1].remove_button, Qt.MouseButton.LeftButton)
    assert [r.name for r in loras.rows] == ["ink"]
    pick(loras, "Paper Cut")

    ink, paper = loras.rows
    ink.slider.setValue(65)  # the slider is in hundredths
    assert ink.weight.value() == pytest.approx(0.65)
    paper.weight.setValue(4.0)  # beyond the slider's ±2: the box goes up to ±10
    assert paper.slider.value() == paper.slider.maximum()
    panel.controls.prompt.setPlainText("a lighthouse, ink drawing")
    panel.controls.steps.setValue(2)
    shot(screenshot, qtbot, window, "generate-loras")
    qtbot.mouseClick(panel.generate_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: len(window.recorder.requests) == 1, timeout=10000)
    request = window.recorder.requests[0]
    assert request.loras == [{"name": "ink", "weight": 0.65},
                             {"name": "Paper Cut", "weight": 4.0}]
    assert request.model.endswith("tiny-sd15")

    # The last request (kept across restarts) keeps its LoRAs: a new Generate panel shows them.
    from studio.ui.panels.generate import GeneratePanel

    again = GeneratePanel(window.ctx)
    qtbot.addWidget(again)
    try:
        assert again.controls.loras.loras() == request.loras
    finally:
        again.shutdown()


@pytest.fixture
def loha_in_library(studio_home):
    """A LyCORIS LoHa for SD 1.x in the LoRA folder (before the window scans it)."""
    key = "lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn2_to_k"
    path = default_paths().models_dir / "loras" / "wash.safetensors"
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file({f"{key}.hada_w1_a": torch.zeros(320, 2), f"{key}.hada_w1_b": torch.zeros(2, 768),
               f"{key}.hada_w2_a": torch.zeros(320, 2), f"{key}.hada_w2_b": torch.zeros(2, 768)},
              str(path))
    return path


def test_a_lycoris_lora_says_its_type_in_the_menu_and_its_row(loha_in_library, window, qtbot,
                                                              screenshot):
    panel = generate_panel(window, qtbot)
    loras = panel.controls.loras
    choose_model(panel, "tiny-sd15")
    assert menu_items(loras)["wash"] == (True, "SD 1.x · LoHa")
    assert menu_items(loras)["ink"] == (True, "SD 1.x")  # a plain LoRA needs no word
    pick(loras, "wash")
    assert loras.rows[0].tag.text() == "SD 1.x · LoHa" and loras.rows[0].status.state == "ok"
    shot(screenshot, qtbot, window, "generate-lora-loha")


def test_lora_for_another_base_model_is_not_offered_and_not_submitted(window, qtbot, screenshot):
    panel = generate_panel(window, qtbot)
    loras = panel.controls.loras
    choose_model(panel, "tiny-sd15")
    pick(loras, "ink")
    choose_model(panel, "tiny-sdxl")
    items = menu_items(loras)
    assert items == {"xl-neon": (True, "SDXL"), "ink": (False, "for SD 1.x"),
                     "Paper Cut": (False, "for SD 1.x")}
    heads = [a.text() for a in loras.menu.actions() if not a.isEnabled() and "\t" not in a.text()]
    assert "Made for other models than SDXL" in heads
    # The SD 1.x LoRA added before the switch stays, marked, and is refused before any job runs.
    row = loras.rows[0]
    assert row.status.state == "incompatible" and row.tag.text() == "for SD 1.x"
    shot(screenshot, qtbot, window, "generate-lora-incompatible")
    panel.controls.prompt.setPlainText("neon city")
    qtbot.mouseClick(panel.generate_button, Qt.MouseButton.LeftButton)
    assert panel.error_label.isVisible()
    assert "ink was made for SD 1.x" in panel.error_label.text()
    assert "SDXL" in panel.error_label.text()
    qtbot.wait(100)
    assert window.recorder.requests == []
    qtbot.mouseClick(row.remove_button, Qt.MouseButton.LeftButton)
    pick(loras, "xl-neon")
    qtbot.mouseClick(panel.generate_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: len(window.recorder.requests) == 1, timeout=10000)
    assert window.recorder.requests[0].loras == [{"name": "xl-neon", "weight": 1.0}]


def test_reuse_parameters_restores_rows_and_keeps_a_missing_lora(window, qtbot, image_models,
                                                                 screenshot):
    panel = generate_panel(window, qtbot)
    wanted = [{"name": "INK", "weight": 0.5}, {"name": "gone-style", "weight": 1.25}]
    request = Txt2ImgRequest(model=str(image_models / "tiny-sd15"), prompt="a fox", loras=wanted)
    # The gallery's "Reuse parameters" sends the request's dict (as stored in the PNG).
    window.ctx.openInWorkspace.emit("generate", request.to_dict())
    loras = panel.controls.loras
    assert [r.name for r in loras.rows] == ["INK", "gone-style"]
    ink, gone = loras.rows
    assert ink.status.state == "ok" and ink.tag.text() == "SD 1.x"  # names match any case
    assert gone.status.state == "missing" and gone.tag.text() == "missing"
    assert "not in the library" in gone.tag.toolTip()
    assert panel.build_request().loras == wanted  # nothing silently dropped or changed
    shot(screenshot, qtbot, panel.window(), "generate-lora-missing")
    # Reusing a request without LoRAs clears the rows.
    panel.receive(Txt2ImgRequest(model=str(image_models / "tiny-sd15")))
    assert loras.rows == [] and loras.note.isVisible()


# -- Models workspace: memory options and Unload all ---------------------------------------------


def models_panel(window, qtbot):
    panel = window.show_workspace("models")
    qtbot.waitUntil(lambda: panel.scans >= 1, timeout=20000)
    return panel


def test_memory_options_are_saved_per_model_and_offload_needs_cuda(window, qtbot, image_models,
                                                                   screenshot):
    panel = models_panel(window, qtbot)
    box = panel.details.memory
    sd15, sdxl = image_models / "tiny-sd15", image_models / "tiny-sdxl"
    window.on_device_detected(DeviceReport(DeviceInfo("cpu", "CPU")))
    assert panel.tree.select_path(sd15)
    assert box.isVisible()
    assert not box.offload.isEnabled()
    assert "needs an NVIDIA GPU (CUDA)" in box.offload.toolTip()
    scans = panel.scans
    qtbot.mouseClick(box.slicing, Qt.MouseButton.LeftButton)
    assert window.ctx.settings.memory_options_for(sd15) == MemoryOptions(attention_slicing=True)
    assert panel.summary.text() != "Scanning…"  # saving an option does not rescan the disk

    # On a CUDA machine offload can be chosen; it is saved with the model's other options.
    window.on_device_detected(DeviceReport(DeviceInfo("cuda", "CUDA · Test GPU · 24 GB")))
    assert box.offload.isEnabled()
    box.offload.setCurrentIndex(box.offload.findData("model"))
    qtbot.mouseClick(box.tiling, Qt.MouseButton.LeftButton)
    want = MemoryOptions(attention_slicing=True, vae_tiling=True, offload="model")
    assert window.ctx.settings.memory_options_for(sd15) == want
    saved = json.loads(default_paths().settings_file.read_text(encoding="utf-8"))
    assert saved["model_options"] == {str(sd15.resolve()): want.to_dict()}
    shot(screenshot, qtbot, window, "models-memory-options")
    window.resize(window.minimumSize())  # the details scroll rather than squeeze
    shot(screenshot, qtbot, window, "models-memory-options-small")
    window.resize(1320, 860)

    # Another model has its own (default) options; a LoRA has none to show.
    assert panel.tree.select_path(sdxl)
    assert not box.slicing.isChecked() and box.offload.currentData() == "none"
    assert window.ctx.settings.memory_options_for(sdxl) == MemoryOptions()
    assert panel.tree.select_path(default_paths().models_dir / "loras" / "ink.safetensors")
    assert not box.isVisible()
    assert panel.tree.select_path(sd15)
    assert box.slicing.isChecked() and box.tiling.isChecked()
    assert box.offload.currentData() == "model"
    # Back on the CPU the saved offload stays, shown disabled, and the tooltip says it is ignored.
    window.on_device_detected(DeviceReport(DeviceInfo("cpu", "CPU")))
    assert not box.offload.isEnabled() and "ignored" in box.offload.toolTip()
    assert panel.scans == scans


def test_nf4_weights_are_saved_per_model_and_greyed_without_bitsandbytes(window, qtbot,
                                                                          image_models,
                                                                          monkeypatch):
    import importlib.util

    panel = models_panel(window, qtbot)
    box = panel.details.memory
    sd15 = image_models / "tiny-sd15"
    window.on_device_detected(DeviceReport(DeviceInfo("cuda", "CUDA · Test GPU · 24 GB")))
    assert panel.tree.select_path(sd15)
    if importlib.util.find_spec("bitsandbytes") is not None:
        assert box.weights.isEnabled() and "NF4 (4-bit)" in box.weights.toolTip()
        box.weights.setCurrentIndex(box.weights.findData("nf4"))
        assert window.ctx.settings.memory_options_for(sd15) == MemoryOptions(quantize="nf4")
        window.on_device_detected(DeviceReport(DeviceInfo("cpu", "CPU")))
        assert box.weights.isEnabled() and "only the large text encoder" in box.weights.toolTip()
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "bitsandbytes" else real(name, *a))
    window.ctx.update_settings(window.ctx.settings.with_memory_options(
        sd15, MemoryOptions(quantize="int8")))
    assert panel.tree.select_path(image_models / "tiny-sdxl")
    assert panel.tree.select_path(sd15)
    assert not box.weights.isEnabled() and box.weights.currentData() == "int8"
    assert "pip install bitsandbytes" in box.weights.toolTip()
    assert "ignored until it is installed" in box.weights.toolTip()


def test_unload_all_from_the_models_toolbar_and_the_status_bar(window, qtbot, monkeypatch,
                                                                screenshot):
    import studio.pipelines.model_cache as model_cache

    loaded = [FakeLoaded("tiny-sd15", "/m/tiny-sd15", "image", int(1.5 * GB), "cpu")]
    monkeypatch.setattr(model_cache, "memory_report", lambda: list(loaded), raising=False)
    unloads: list = []
    released = threading.Event()

    def unload(request, progress, cancel):
        released.wait(300)  # the test releases it; a stuck one ends by itself
        unloads.append(request)
        loaded.clear()

    window.ctx.bridge.engine.register("unload", unload)
    window.ctx.update_settings(dataclasses.replace(window.ctx.settings, memory_budget_gb=8.0))
    panel = models_panel(window, qtbot)
    button = panel.unload_button
    panel.refresh_loaded()
    assert button.isEnabled() and button.text() == "Unload all · 1.5 GB"
    assert "tiny-sd15" in button.toolTip() and "8 GB (set in Settings)" in button.toolTip()
    bar = window.status
    bar.refresh_memory()
    assert not bar.unload_button.isHidden()
    tip = bar.memory_label.toolTip()
    assert "tiny-sd15" in tip and "1.5 GB" in tip and "Memory budget: 8 GB" in tip
    shot(screenshot, qtbot, window, "models-unload-all")

    qtbot.mouseClick(button, Qt.MouseButton.LeftButton)
    assert button.text() == "Unloading…" and not button.isEnabled()
    released.set()
    qtbot.waitUntil(lambda: button.text() == "Nothing loaded", timeout=10000)
    assert len(unloads) == 1 and isinstance(unloads[0], UnloadRequest)
    assert not button.isEnabled()
    assert "unloaded" in panel.notice.text()
    assert bar.unload_button.isHidden()
    assert "No model in memory" in bar.memory_label.toolTip()

    # The status bar's context menu does the same.
    loaded.append(FakeLoaded("tiny-sdxl", "/m/tiny-sdxl", "image", 3 * GB, "cpu"))
    bar.refresh_memory()
    bar._memory_menu(QPoint(2, 2))
    action = bar._menu.actions()[0]
    assert action.text() == "Unload all models" and action.isEnabled()
    action.trigger()
    qtbot.waitUntil(lambda: len(unloads) == 2 and bar.unload_button.isHidden(), timeout=10000)
    assert panel.unload_button.text() == "Nothing loaded"


def test_unload_the_engine_refuses_says_so(window, qtbot, monkeypatch):
    import studio.pipelines.model_cache as model_cache

    monkeypatch.setattr(model_cache, "memory_report",
                        lambda: [FakeLoaded("m", "/m", "image", GB, "cpu")], raising=False)

    def refuse(request, *args, **kwargs):
        raise RuntimeError("the job queue has stopped")

    monkeypatch.setattr(window.ctx.bridge.engine, "submit", refuse)
    panel = models_panel(window, qtbot)
    panel.refresh_loaded()
    assert panel.unload_all() is None
    assert panel.notice.isVisible() and "Cannot unload" in panel.notice.text()


# -- Settings: memory budget and Hugging Face token ----------------------------------------------


def open_settings(window, qtbot):
    dialog = window.open_settings()
    qtbot.waitExposed(dialog)
    qtbot.waitUntil(lambda: dialog.token.isEnabled(), timeout=10000)
    return dialog


def test_settings_save_the_memory_budget_and_the_access_token(window, qtbot, screenshot):
    paths = window.ctx.paths
    dialog = open_settings(window, qtbot)
    assert dialog.memory_budget.text() == "Automatic"
    assert dialog.token.text() == "" and dialog.token.echoMode() == QLineEdit.EchoMode.Password
    keyfile = paths.config_dir / secrets.FILE_NAME
    assert "api_keys.json" in dialog.token_note.text() and "plain text" in dialog.token_note.text()
    assert dialog.token_note.toolTip() == str(keyfile)
    assert "gated" in dialog.token_note.text()
    dialog.memory_budget.setValue(6.5)
    dialog.token.setText("hf_secret_123")
    qtbot.mouseClick(dialog.token_show, Qt.MouseButton.LeftButton)
    assert dialog.token.echoMode() == QLineEdit.EchoMode.Normal
    qtbot.mouseClick(dialog.token_show, Qt.MouseButton.LeftButton)
    shot(screenshot, qtbot, dialog, "settings-memory-budget")
    dialog.tabs.setCurrentIndex(1)  # Folders & downloads
    assert dialog.token.isVisible()
    shot(screenshot, qtbot, dialog, "settings-access-token")
    qtbot.mouseClick(dialog.ok_button, Qt.MouseButton.LeftButton)

    saved = json.loads(paths.settings_file.read_text(encoding="utf-8"))
    assert saved["memory_budget_gb"] == 6.5
    assert window.ctx.settings.memory_budget_gb == 6.5
    assert hd.access_token(paths) == "hf_secret_123"
    assert json.loads(keyfile.read_text())["keys"] == {hd.hub_endpoint(): "hf_secret_123"}

    # Opened again it shows both; emptying the token deletes it, 0 GB is automatic again.
    dialog = open_settings(window, qtbot)
    assert dialog.memory_budget.value() == 6.5
    assert dialog.token.text() == "hf_secret_123"
    assert "A token is saved in" in dialog.token_note.text()
    dialog.memory_budget.setValue(0)
    assert dialog.memory_budget.text() == "Automatic"
    dialog.token.clear()
    qtbot.mouseClick(dialog.ok_button, Qt.MouseButton.LeftButton)
    assert window.ctx.settings.memory_budget_gb == 0
    assert hd.access_token(paths) is None
    assert json.loads(keyfile.read_text())["keys"] == {}


def test_a_token_that_cannot_be_saved_keeps_the_dialog_open(window, qtbot, monkeypatch):
    dialog = open_settings(window, qtbot)

    def refuse(token, paths=None):
        raise PermissionError(13, "Permission denied", str(paths.config_dir))

    monkeypatch.setattr(hd, "save_access_token", refuse)
    dialog.token.setText("hf_x")
    dialog.memory_budget.setValue(3)
    qtbot.mouseClick(dialog.ok_button, Qt.MouseButton.LeftButton)
    assert dialog.isVisible()
    assert "could not be saved" in dialog.token_note.text()
    assert window.ctx.settings.memory_budget_gb == 0  # nothing half-saved
    dialog.reject()


def test_a_real_job_shows_its_model_loaded_until_unload_all(qtbot, studio_home, image_models,
                                                            tmp_path, monkeypatch):
    """With the real engine and cache: a tiny image job loads the model, the toolbar and the
    status bar say so, and Unload all frees it."""
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    save_settings(Settings(extra_model_dirs=[str(image_models)], preview_mode="off"),
                  default_paths().settings_file)
    from studio.app import build_main_window

    win = build_main_window()
    qtbot.addWidget(win)
    try:
        win.show()
        generate = generate_panel(win, qtbot)
        choose_model(generate, "tiny-sd15")
        generate.controls.prompt.setPlainText("a red fox")
        generate.controls.steps.setValue(1)
        generate.controls.width_box.setValue(64)
        generate.controls.height_box.setValue(64)
        with qtbot.waitSignal(generate.jobFinished, timeout=120_000) as finished:
            qtbot.mouseClick(generate.generate_button, Qt.MouseButton.LeftButton)
        assert finished.args[0].state is JobState.DONE, finished.args[0].error
        panel = models_panel(win, qtbot)
        button = panel.unload_button
        qtbot.waitUntil(lambda: button.text().startswith("Unload all · "), timeout=5000)
        assert "tiny-sd15" in button.toolTip()
        assert "tiny-sd15" in win.status.memory_label.toolTip()
        qtbot.mouseClick(button, Qt.MouseButton.LeftButton)
        qtbot.waitUntil(lambda: button.text() == "Nothing loaded", timeout=30_000)
        assert "No model in memory" in win.status.memory_label.toolTip()
    finally:
        win.shutdown()
