"""The Models workspace shows a ComfyUI split diffusion model's parts (issue 15): one drop-down per
text encoder / VAE, "Automatic" naming the file Studio picked; choosing another file keeps it in
the settings and the model's details then list it; a file of the wrong kind is refused."""

from __future__ import annotations

import shutil

import pytest

from studio.core.config import Settings, default_paths, save_settings
from tests.fixtures.tiny_split import write_comfy_split


@pytest.fixture
def window(qtbot, studio_home, tmp_path, tiny_flux_dir, monkeypatch):
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    comfy = tmp_path / "ComfyUI"
    write_comfy_split(tiny_flux_dir, comfy, "flux", name="flux1-dev-tiny.safetensors")
    encoders = comfy / "models" / "text_encoders"
    shutil.copyfile(encoders / "t5xxl_fp16.safetensors", encoders / "t5xxl_fp8_e4m3fn.safetensors")
    save_settings(Settings(extra_model_dirs=[str(comfy)]), default_paths().settings_file)

    from studio.app import build_main_window

    win = build_main_window()
    qtbot.addWidget(win)
    win.resize(1366, 768)
    win.show()
    win.comfy = comfy
    yield win
    win.shutdown()


def test_the_parts_are_shown_and_a_choice_is_kept(window, qtbot, screenshot):
    panel = window.show_workspace("models")
    qtbot.waitUntil(lambda: panel.scans >= 1, timeout=20000)
    models = window.comfy / "models"
    model = models / "diffusion_models" / "flux1-dev-tiny.safetensors"
    assert panel.tree.select_path(model)
    box = panel.details.parts
    qtbot.waitUntil(box.isVisible, timeout=10000)
    assert set(box.boxes) == {"clip_l", "t5xxl", "vae"}
    t5 = box.boxes["t5xxl"]
    assert t5.itemText(0) == "Automatic (t5xxl_fp16)"  # 16-bit before fp8
    assert [t5.itemText(i) for i in range(1, t5.count())] == ["t5xxl_fp16", "t5xxl_fp8_e4m3fn"]
    assert "split files" in panel.details.values["Details"].text()
    parts = {e.name: e for e in panel.entries if e.kind == "part"}
    assert set(parts) == {"ae", "clip_l_flux", "t5xxl_fp16", "t5xxl_fp8_e4m3fn"}
    assert parts["t5xxl_fp16"].detail.startswith("T5-XXL text encoder, a part of split")
    screenshot(window, "models-split-parts")

    scans = panel.scans
    t5.setCurrentIndex(t5.findText("t5xxl_fp8_e4m3fn"))
    fp8 = models / "text_encoders" / "t5xxl_fp8_e4m3fn.safetensors"
    assert window.ctx.settings.parts_for(model) == {"t5xxl": str(fp8.resolve())}
    qtbot.waitUntil(lambda: panel.scans > scans and box.isVisible(), timeout=20000)
    assert "t5xxl: t5xxl_fp8_e4m3fn.safetensors" in panel.details.values["Details"].text()
    assert box.boxes["t5xxl"].currentText() == "t5xxl_fp8_e4m3fn"

    # a T5 file offered as the VAE (by a hand-edited choice) is refused with the reason
    panel.save_part(model, "vae", fp8)
    assert "is a T5 text encoder" in panel.notice.text()
    assert "vae" not in window.ctx.settings.parts_for(model)


def test_a_z_image_models_parts_show_its_text_encoder_and_refuse_a_t5(
        qtbot, studio_home, tmp_path, tiny_z_image_dir, tiny_flux_dir, monkeypatch):
    from tests.fixtures.tiny_split_families import write_comfy_split_family

    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    comfy = tmp_path / "ComfyUI"
    model = write_comfy_split_family(tiny_z_image_dir, comfy, "z-image")
    t5 = write_comfy_split(tiny_flux_dir, tmp_path / "flux1", "flux").parents[1] / \
        "text_encoders" / "t5xxl_fp16.safetensors"
    save_settings(Settings(extra_model_dirs=[str(comfy)]), default_paths().settings_file)
    from studio.app import build_main_window

    win = build_main_window()
    qtbot.addWidget(win)
    win.show()
    try:
        panel = win.show_workspace("models")
        qtbot.waitUntil(lambda: panel.scans >= 1, timeout=20000)
        assert panel.tree.select_path(model)
        box = panel.details.parts
        qtbot.waitUntil(box.isVisible, timeout=10000)
        assert set(box.boxes) == {"text_encoder", "vae"}
        assert box.boxes["text_encoder"].itemText(0) == "Automatic (qwen_3_4b)"
        parts = {e.name: e for e in panel.entries if e.kind == "part"}
        assert parts["qwen_3_4b"].detail.startswith("Qwen3 text encoder (Z-Image")
        panel.save_part(model, "text_encoder", t5)
        assert "is a T5 text encoder, which does not belong with a Z-Image model" in \
            panel.notice.text()
        assert not win.ctx.settings.parts_for(model)
    finally:
        win.shutdown()
