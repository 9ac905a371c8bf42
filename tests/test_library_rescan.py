"""A library scan lists each folder once and works out what a file is once while it is unchanged
(hf_cache.entries_below / has_file, detect.header_fact); a file added, removed or rewritten
between scans still shows at the next scan."""

from __future__ import annotations

import os

import pytest
import torch
from safetensors.torch import save_file

from studio.core.config import Settings, default_paths
from studio.library import detect
from studio.library.catalog import list_models
from studio.library.classify import classify_file, files_precision
from studio.library.hf_cache import entries_below, has_file, one_hf_cache_scan
from tests.fixtures.hub_cache import add_to_hub_cache

_K = "lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn2_to_k"


def sd1_lora(path, dtype=torch.float16):
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file({f"{_K}.lora_down.weight": torch.zeros(4, 768, dtype=dtype),
               f"{_K}.lora_up.weight": torch.zeros(320, 4, dtype=dtype)}, str(path))
    return path


def sdxl_lora(path):
    k = "unet.down_blocks.1.attentions.0.transformer_blocks.0.attn2.to_k"
    save_file({f"{k}.lora_A.weight": torch.zeros(8, 2048),
               f"{k}.lora_B.weight": torch.zeros(640, 8)}, str(path))
    return path


@pytest.fixture
def hub(tmp_path, monkeypatch):
    """An HF cache with one repo of loose LoRA files; (settings, paths, its snapshot)."""
    hf_home = tmp_path / "hf-home"
    monkeypatch.setenv("HF_HOME", str(hf_home))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    src = tmp_path / "src"
    sd1_lora(src / "ink.safetensors")
    snap = add_to_hub_cache(hf_home, "someone/loras", src)
    return Settings(), default_paths(), snap


def _by_name(settings, paths):
    return {e.name: e for e in list_models(settings, paths)}


def test_a_file_added_or_removed_between_scans_shows_at_the_next_scan(hub):
    settings, paths, snap = hub
    assert set(_by_name(settings, paths)) == {"ink"}
    sd1_lora(snap / "styles" / "ink-2.safetensors")  # one folder down, as hf_loose_files looks
    sd1_lora(paths.models_dir / "loras" / "local.safetensors")
    by = _by_name(settings, paths)
    assert set(by) == {"ink", "ink-2", "local"}
    assert (by["ink-2"].kind, by["ink-2"].repo_id) == ("lora", "someone/loras")
    (snap / "ink.safetensors").unlink()
    (paths.models_dir / "loras" / "local.safetensors").unlink()
    assert set(_by_name(settings, paths)) == {"ink-2"}


def test_a_file_rewritten_in_place_is_read_again(hub):
    """Its header and what was worked out from it (kind, family, precision) are kept only while
    the file's size, modification time and inode are the same."""
    settings, paths, snap = hub
    ink = _by_name(settings, paths)["ink"]
    assert (ink.kind, ink.family, ink.precision) == ("lora", "sd1", "fp16")
    target = (snap / "ink.safetensors").resolve()  # the blob the snapshot links to
    target.unlink()
    sdxl_lora(target)
    ink = _by_name(settings, paths)["ink"]
    assert (ink.kind, ink.family, ink.precision) == ("lora", "sdxl", "fp32")


def test_what_a_file_is_is_worked_out_once_while_it_is_unchanged(tmp_path, monkeypatch):
    path = sd1_lora(tmp_path / "a.safetensors")
    first = classify_file(path)
    assert files_precision([path]) == "fp16"
    calls = []
    real = detect._read_header
    monkeypatch.setattr(detect, "_read_header", lambda *a: calls.append(a) or real(*a))
    for _ in range(3):
        assert classify_file(path) == first and files_precision([path]) == "fp16"
    assert calls == []  # …and no header read again either
    sd1_lora(path, torch.float32)  # rewritten: a new size
    assert files_precision([path]) == "fp32" and len(calls) == 1
    assert classify_file(path).precision == "fp32" and len(calls) == 1


def test_files_precision_adds_the_files_bytes_up(tmp_path):
    """Several files: each dtype's bytes over all of them, the largest share first (an fp32 file
    five times the size of an fp16 one), and unreadable files left out."""
    small = tmp_path / "small.safetensors"
    save_file({"a": torch.zeros(40, dtype=torch.float16)}, str(small))
    big = tmp_path / "big.safetensors"
    save_file({"b": torch.zeros(100)}, str(big))
    broken = tmp_path / "broken.safetensors"
    broken.write_bytes(b"\x10" + b"\x00" * 7 + b"{")
    assert files_precision([small, broken, big]) == "fp32 + fp16"
    assert files_precision([small]) == "fp16"
    assert files_precision([broken]) == "" == files_precision([])


def _tree(root):
    """Files and folders (hidden ones, a link to a folder, an empty folder) three levels deep."""
    for rel in ("a.safetensors", ".hidden.gguf", "sub/b.GGUF", "sub/deeper/c.pth",
                ".cache/d.safetensors", "sub/.e/f.gguf", "other/g.bin"):
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(b"x")
    (root / "empty").mkdir()
    os.symlink(root / "sub", root / "linked")
    return root


@pytest.mark.parametrize("level", [0, 1, 2, 3])
def test_entries_below_finds_what_glob_finds(tmp_path, level):
    root = _tree(tmp_path / "root")
    expected = sorted(root.glob("*/" * level + "*"))
    assert sorted(entries_below(root, level)) == expected
    with one_hf_cache_scan():
        assert sorted(entries_below(root, level)) == expected
        assert sorted(entries_below(root, level)) == expected  # from the scan's listing
    assert entries_below(tmp_path / "missing", level) == []
    assert entries_below(root / "a.safetensors", level) == []


def test_a_folder_is_listed_once_per_scan_and_again_at_the_next(tmp_path):
    root = _tree(tmp_path / "root")
    with one_hf_cache_scan():
        before = sorted(entries_below(root, 1))
        assert not has_file(root, "config.json")
        (root / "sub" / "new.safetensors").write_bytes(b"x")
        (root / "config.json").write_text("{}")
        assert sorted(entries_below(root, 1)) == before  # the same scan: one listing
        assert not has_file(root, "config.json")
    with one_hf_cache_scan():  # the next scan lists again
        assert root / "sub" / "new.safetensors" in entries_below(root, 1)
        assert has_file(root, "config.json") and not has_file(root, "sub")
        assert not has_file(root / "a.safetensors", "x") and not has_file(root / "nope", "x")
    assert has_file(root, "config.json")  # outside a scan: asked of the disk
