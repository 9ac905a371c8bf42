"""The Models workspace: grouped table, search and kind filter, details with a background hash,
import (register / copy, also by drop), remove (confirmed, refused while loaded), download
dialog against the local stand-in Hub with progress and cancel."""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path

import pytest
import torch
from PySide6.QtCore import QMimeData, QPointF, Qt, QUrl
from PySide6.QtGui import QDropEvent
from safetensors.torch import save_file

from studio.library import hub_download as hd
from tests.fixtures.hub_cache import add_to_hub_cache

LORA_KEY = "lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn2_to_k.lora_down.weight"


@pytest.fixture
def models_panel(qtbot, main_window, tmp_path, monkeypatch, tiny_sd15_dir, tiny_llama_dir):
    paths = main_window.ctx.paths
    shutil.copytree(tiny_sd15_dir, paths.models_dir / "tiny-sd15")
    (paths.models_dir / "loras").mkdir(parents=True)
    save_file({LORA_KEY: torch.ones(4, 768, dtype=torch.float16)},
              str(paths.models_dir / "loras" / "ink.safetensors"))
    (paths.models_dir / "notes.safetensors").write_bytes(b"not a model at all")
    hf_home = tmp_path / "hf"
    monkeypatch.setenv("HF_HOME", str(hf_home))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    add_to_hub_cache(hf_home, "tiny/llama-chat", tiny_llama_dir)
    main_window.resize(1400, 820)
    main_window.show()
    panel = main_window.show_workspace("models")
    qtbot.waitUntil(lambda: panel.scans >= 1, timeout=20000)
    return panel


def names(panel):
    return [e.name for e in panel.tree.visible_entries()]


def test_table_groups_filters_and_details(qtbot, models_panel, screenshot):
    panel = models_panel
    groups = [panel.tree.topLevelItem(i).text(0) for i in range(panel.tree.topLevelItemCount())]
    assert groups == ["Image generation  ·  1", "Chat  ·  1", "LoRA  ·  1", "Unknown  ·  1"]
    assert set(names(panel)) == {"tiny-sd15", "tiny/llama-chat", "ink", "notes"}
    panel.search.setText("llama")
    assert names(panel) == ["tiny/llama-chat"]
    panel.search.clear()
    panel.kind.setCurrentIndex(panel.kind.findData("lora"))
    assert names(panel) == ["ink"]
    panel.kind.setCurrentIndex(0)
    assert panel.tree.select_path(panel.ctx.paths.models_dir / "loras" / "ink.safetensors")
    d = panel.details.values
    assert d["Kind"].text() == "LoRA" and d["Base"].text() == "SD 1.x"
    assert d["Precision"].text() == "fp16"
    qtbot.mouseClick(panel.details.hash_button, Qt.MouseButton.LeftButton)
    lora = panel.ctx.paths.models_dir / "loras" / "ink.safetensors"
    want = hashlib.sha256(lora.read_bytes()).hexdigest()
    qtbot.waitUntil(lambda: d["SHA-256"].text().replace("\n", "") == want, timeout=10000)
    assert d["Model hash"].text() == want[:10]
    screenshot(panel.window(), "models-workspace")


def test_import_by_drop_copy_and_remove(qtbot, models_panel, tmp_path, monkeypatch):
    panel = models_panel
    src = tmp_path / "dropped.safetensors"
    save_file({LORA_KEY: torch.zeros(4, 768)}, str(src))
    monkeypatch.setattr(panel, "ask_copy", lambda path: True)
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(src))])
    drop = QDropEvent(QPointF(10, 10), Qt.DropAction.CopyAction, mime,
                      Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier)
    panel.dropEvent(drop)
    qtbot.waitUntil(lambda: "dropped" in names(panel), timeout=10000)
    copied = panel.ctx.paths.models_dir / "loras" / "dropped.safetensors"
    assert copied.is_file() and "copied" in panel.notice.text()

    # remove: refused while loaded, then done with the space freed
    from studio.pipelines.model_cache import ModelCache

    assert panel.tree.select_path(copied)
    cache = ModelCache(loader=lambda *a, **k: object())
    cache.get(panel.tree.current_entry(), "cpu", "float32")
    panel.confirm_remove(answer=True)
    assert "loaded right now" in panel.notice.text() and copied.exists()
    cache.unload_all()
    panel.confirm_remove(answer=True)
    qtbot.waitUntil(lambda: "dropped" not in names(panel), timeout=10000)
    assert not copied.exists() and "freed" in panel.notice.text()

    # register in place: settings gain the path, the file stays where it is
    panel.import_path(src, copy=False)
    qtbot.waitUntil(lambda: "dropped" in names(panel), timeout=10000)
    assert panel.ctx.settings.added_models == [str(src.resolve())]


def test_download_dialog_plan_progress_cancel_resume(qtbot, models_panel, monkeypatch,
                                                     tiny_llama_dir, screenshot):
    from huggingface_hub import constants

    from tests.fixtures.fake_hub import FakeHub, FakeRepo

    files = {p.name: p.read_bytes() for p in tiny_llama_dir.iterdir() if p.is_file()}
    files["pytorch_model.bin"] = b"x" * 10
    hub = FakeHub({"tiny/chat-dl": FakeRepo(files)})
    monkeypatch.setenv("HF_ENDPOINT", hub.url)
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    try:
        panel = models_panel
        dialog = panel.open_download()
        assert dialog.catalog.count() == 9
        dialog.catalog.setCurrentRow(0)
        assert dialog.repo.text() == "stabilityai/sd-turbo" and "Licence" in dialog.about.text()
        dialog.repo.setText("tiny/chat-dl")
        qtbot.mouseClick(dialog.check_button, Qt.MouseButton.LeftButton)
        qtbot.waitUntil(lambda: dialog.download_button.isEnabled(), timeout=10000)
        assert "files," in dialog.plan_label.text() and "Leaving out" in dialog.plan_label.text()
        assert "pytorch_model.bin" in dialog.plan.skipped

        # cancel as soon as the first bytes arrive; the partial file stays
        first = []
        real = hd.download

        def slow(plan, paths, **kw):
            kw["progress"] = lambda s, p=kw["progress"]: (first.append(s), p(s),
                                                          dialog.job.cancel())
            return real(plan, paths, **kw)

        monkeypatch.setattr(hd, "download", slow)
        qtbot.mouseClick(dialog.download_button, Qt.MouseButton.LeftButton)
        qtbot.waitUntil(lambda: "Cancelled" in dialog.status.text(), timeout=10000)
        assert first and dialog.download_button.isEnabled()
        monkeypatch.setattr(hd, "download", real)
        qtbot.mouseClick(dialog.download_button, Qt.MouseButton.LeftButton)
        qtbot.waitUntil(lambda: "Downloaded to" in dialog.status.text(), timeout=10000)
        assert dialog.progress.value() == 1000
        qtbot.waitUntil(lambda: "chat-dl" in names(panel), timeout=10000)
        screenshot(dialog, "models-download")
        dialog.close()
    finally:
        hub.close()
    assert Path(os.environ["HF_HOME"]).is_dir()
