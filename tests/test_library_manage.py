"""Import (register in place / atomic copy), hashing, and removal (incl. the HF cache API)."""

from __future__ import annotations

import errno
import hashlib
import shutil

import pytest
import torch
from safetensors.torch import save_file

from studio.core.config import Settings, default_paths
from studio.core.jobs import CancelToken, JobCancelled, UserFacingError
from studio.library import manage
from studio.library.catalog import find_entry, list_models
from tests.fixtures.hub_cache import add_to_hub_cache

LORA_KEY = "lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn2_to_k.lora_down.weight"


@pytest.fixture
def lora(tmp_path):
    path = tmp_path / "outside" / "ink.safetensors"
    path.parent.mkdir()
    save_file({LORA_KEY: torch.ones(4, 768)}, str(path))
    return path


def test_register_in_place_adds_to_settings_and_library(lora):
    paths = default_paths()
    result = manage.import_model(lora, Settings(), paths)
    assert not result.copied and result.settings.added_models == [str(lora.resolve())]
    entry = find_entry("ink", list_models(result.settings, paths))
    assert (entry.kind, entry.source, entry.path) == ("lora", "file", lora)
    again = manage.import_model(lora, result.settings, paths)
    assert "already" in again.message and again.settings.added_models == [str(lora.resolve())]


def test_copy_is_atomic_and_lands_in_the_scanned_folder(tiny_sd15_dir, lora):
    paths = default_paths()
    seen = []
    result = manage.import_model(tiny_sd15_dir, Settings(), paths, copy=True,
                                 progress=lambda d, t: seen.append((d, t)))
    dest = paths.models_dir / tiny_sd15_dir.name
    assert result.copied and result.entry.path == dest and result.entry.kind == "image"
    assert seen and seen[-1][0] == seen[-1][1] == manage._size(tiny_sd15_dir)
    assert not [p for p in paths.models_dir.iterdir() if p.name.startswith(".")]
    lora_result = manage.import_model(lora, Settings(), paths, copy=True)
    assert lora_result.entry.path == paths.models_dir / "loras" / "ink.safetensors"
    names = {e.name for e in list_models(Settings(), paths)}
    assert {"tiny-sd15", "ink"} <= names
    with pytest.raises(UserFacingError, match="already exists"):
        manage.import_model(lora, Settings(), paths, copy=True)


def test_import_refuses_unknown_and_empty(tmp_path):
    paths = default_paths()
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(UserFacingError, match="empty folder"):
        manage.import_model(empty, Settings(), paths)
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"\xff" * 20)
    with pytest.raises(UserFacingError, match="truncated or corrupt"):
        manage.import_model(junk, Settings(), paths, copy=True)


def test_copy_to_unwritable_folder_is_refused(lora, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    paths = default_paths()
    paths.models_dir = blocker / "models"  # below a file: cannot be created
    with pytest.raises(UserFacingError, match="cannot be written"):
        manage.import_model(lora, Settings(), paths, copy=True)


def test_disk_full_refused_up_front_and_midway(lora, monkeypatch):
    paths = default_paths()
    usage = shutil.disk_usage(lora.parent)
    monkeypatch.setattr(manage.shutil, "disk_usage",
                        lambda p: usage._replace(free=10))
    with pytest.raises(UserFacingError, match="Not enough disk space"):
        manage.import_model(lora, Settings(), paths, copy=True)
    monkeypatch.undo()

    real_copy = manage._copy_tree

    def fills_up(src, dst, progress, cancel, total):
        dst.write_bytes(b"partial")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(manage, "_copy_tree", fills_up)
    with pytest.raises(UserFacingError, match="disk is full.*partial copy was removed"):
        manage.import_model(lora, Settings(), paths, copy=True)
    assert list((paths.models_dir / "loras").iterdir()) == []
    monkeypatch.setattr(manage, "_copy_tree", real_copy)

    token = CancelToken()
    token.cancel()
    with pytest.raises(JobCancelled):
        manage.import_model(lora, Settings(), paths, copy=True, cancel=token)
    assert list((paths.models_dir / "loras").iterdir()) == []


def test_hash_is_the_files_sha256_and_a1111_model_hash(lora, tiny_sd15_dir):
    paths = default_paths()
    entry = manage.import_model(lora, Settings(), paths).entry
    result = manage.model_sha256(entry, paths)
    assert result.sha256 == hashlib.sha256(lora.read_bytes()).hexdigest()
    assert result.model_hash == result.sha256[:10] and result.file == lora
    image = manage.import_model(tiny_sd15_dir, Settings(), paths).entry
    unet = manage.model_sha256(image, paths)
    assert unet.file.parent.name == "unet"


def test_remove_deletes_studio_files_and_forgets_registered(lora):
    paths = default_paths()
    copied = manage.import_model(lora, Settings(), paths, copy=True).entry
    plan = manage.plan_removal(copied, Settings())
    assert plan.action == "delete" and plan.freed_bytes == lora.stat().st_size
    assert "frees" in plan.summary
    manage.remove_model(plan, Settings(), paths)
    assert not copied.path.exists()

    reg = manage.import_model(lora, Settings(), paths)
    entry = find_entry("ink", list_models(reg.settings, paths))
    plan = manage.plan_removal(entry, reg.settings)
    assert plan.action == "forget" and plan.freed_bytes == 0
    settings = manage.remove_model(plan, reg.settings, paths)
    assert settings.added_models == [] and lora.exists()


def test_remove_refused_while_loaded(lora):
    from studio.pipelines.model_cache import ModelCache

    paths = default_paths()
    entry = manage.import_model(lora, Settings(), paths, copy=True).entry
    cache = ModelCache(loader=lambda *a, **k: object())
    cache.get(entry, "cpu", "float32")
    with pytest.raises(UserFacingError, match="loaded right now"):
        manage.plan_removal(entry, Settings())
    cache.unload_all()
    manage.remove_model(manage.plan_removal(entry, Settings()), Settings(), paths)
    assert not entry.path.exists()


def test_remove_from_hf_cache_uses_the_cache_api(tmp_path, monkeypatch, tiny_llama_dir):
    from huggingface_hub import scan_cache_dir

    hf_home = tmp_path / "hf"
    monkeypatch.setenv("HF_HOME", str(hf_home))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    add_to_hub_cache(hf_home, "tiny/llama-chat", tiny_llama_dir)
    add_to_hub_cache(hf_home, "tiny/other", tiny_llama_dir / "config.json", "b" * 40)
    paths = default_paths()
    entry = find_entry("tiny/llama-chat", list_models(Settings(), paths))
    plan = manage.plan_removal(entry, Settings())
    before = scan_cache_dir(hf_home / "hub")
    repo = next(r for r in before.repos if r.repo_id == "tiny/llama-chat")
    assert plan.action == "hf-cache" and plan.freed_bytes == repo.size_on_disk > 0
    manage.remove_model(plan, Settings(), paths)
    after = scan_cache_dir(hf_home / "hub")
    assert [r.repo_id for r in after.repos] == ["tiny/other"]
