"""Model library: family detection, scanning (studio folder, extra folders, HF cache), resolving."""

from __future__ import annotations

import json
import logging
import os
import shutil
import struct

import pytest
import torch
from safetensors.torch import save_file

from studio.core.config import Settings, default_paths
from studio.core.jobs import UserFacingError
from studio.library.detect import (
    detect_diffusers_folder,
    detect_single_file,
    read_safetensors_header,
)
from studio.library.models import find_txt2img_models, resolve_model

U = "model.diffusion_model."


def write_checkpoint(path, keys):
    """A safetensors file with the given {name: shape} (zeros); only names/shapes matter here."""
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file({k: torch.zeros(shape) for k, shape in keys.items()}, str(path))
    return path


SD1_KEYS = {U + "input_blocks.1.1.transformer_blocks.0.attn2.to_k.weight": (320, 768),
            "cond_stage_model.transformer.text_model.final_layer_norm.weight": (768,)}
SD2_KEYS = {U + "input_blocks.1.1.transformer_blocks.0.attn2.to_k.weight": (320, 1024),
            "cond_stage_model.model.ln_final.weight": (1024,)}
SDXL_KEYS = {U + "label_emb.0.0.weight": (4, 2816),
             "conditioner.embedders.1.model.ln_final.weight": (1280,),
             "conditioner.embedders.0.transformer.text_model.final_layer_norm.weight": (768,)}
LORA_KEYS = {"lora_unet_down_blocks_0_attentions_0_proj_in.lora_down.weight": (4, 320)}


@pytest.mark.parametrize("keys,family", [(SD1_KEYS, "sd1"), (SD2_KEYS, "sd2"),
                                         (SDXL_KEYS, "sdxl"), (LORA_KEYS, "unknown")])
def test_detect_family_from_header(tmp_path, keys, family):
    det = detect_single_file(write_checkpoint(tmp_path / "m.safetensors", keys))
    assert det.family == family
    assert det.reason
    if family == "sd2":
        assert "v-prediction" in det.note or "predict v" in det.note


def test_context_dim_alone_decides_sd1_vs_sd2(tmp_path):
    only_unet = {k: v for k, v in SD2_KEYS.items() if k.startswith(U)}
    assert detect_single_file(write_checkpoint(tmp_path / "a.safetensors", only_unet)).family \
        == "sd2"


def test_tiny_fixture_files_are_detected(tiny_sd15_file, tiny_sdxl_file, tiny_sd15_dir,
                                         tiny_sdxl_dir):
    assert detect_single_file(tiny_sd15_file).family == "sd1"
    assert detect_single_file(tiny_sdxl_file).family == "sdxl"
    assert detect_diffusers_folder(tiny_sd15_dir).family == "sd1"
    assert detect_diffusers_folder(tiny_sdxl_dir).family == "sdxl"


def test_truncated_file_is_reported(tmp_path):
    path = write_checkpoint(tmp_path / "cut.safetensors", SD1_KEYS)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - 100])
    with pytest.raises(UserFacingError, match="truncated or corrupt"):
        read_safetensors_header(path)
    bogus = tmp_path / "bogus.safetensors"
    bogus.write_bytes(struct.pack("<Q", 10**12) + b"{}")
    with pytest.raises(UserFacingError, match="truncated or corrupt"):
        read_safetensors_header(bogus)


@pytest.mark.parametrize("unet,cls,family", [
    ({"cross_attention_dim": 768}, "StableDiffusionPipeline", "sd1"),
    ({"cross_attention_dim": 1024}, "StableDiffusionPipeline", "sd2"),
    ({"cross_attention_dim": 2048, "addition_embed_type": "text_time"},
     "StableDiffusionXLPipeline", "sdxl"),
    ({"cross_attention_dim": 768}, "StableDiffusionImg2ImgPipeline", "unknown"),
    ({"cross_attention_dim": 768}, "FluxPipeline", "unknown"),
])
def test_detect_diffusers_folder(tmp_path, unet, cls, family):
    (tmp_path / "unet").mkdir()
    (tmp_path / "model_index.json").write_text(json.dumps({"_class_name": cls}))
    (tmp_path / "unet" / "config.json").write_text(json.dumps(unet))
    assert detect_diffusers_folder(tmp_path).family == family


def _fake_hf_cache(root, repo_id, source_dir):
    repo = root / f"models--{repo_id.replace('/', '--')}"
    snap = repo / "snapshots" / ("a" * 40)
    shutil.copytree(source_dir, snap)
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text("a" * 40)
    (repo / "blobs").mkdir()
    return snap


def test_scan_finds_studio_extra_a1111_comfy_and_hf_cache(tmp_path, tiny_sd15_dir, tiny_sdxl_dir,
                                                         tiny_sd15_file, tiny_sdxl_file,
                                                         monkeypatch, caplog):
    paths = default_paths()
    paths.models_dir.mkdir(parents=True)
    os.symlink(tiny_sd15_dir, paths.models_dir / "my-sd15")
    (paths.models_dir / "nested").mkdir()
    shutil.copy(tiny_sdxl_file, paths.models_dir / "nested" / "xl.safetensors")
    write_checkpoint(paths.models_dir / "a-lora.safetensors", LORA_KEYS)
    broken = write_checkpoint(paths.models_dir / "broken.safetensors", SD1_KEYS)
    broken.write_bytes(broken.read_bytes()[:-50])

    a1111 = tmp_path / "stable-diffusion-webui"
    (a1111 / "models" / "Stable-diffusion").mkdir(parents=True)
    shutil.copy(tiny_sd15_file, a1111 / "models" / "Stable-diffusion" / "a1111.safetensors")
    comfy = tmp_path / "ComfyUI"
    (comfy / "models" / "checkpoints").mkdir(parents=True)
    shutil.copy(tiny_sd15_file, comfy / "models" / "checkpoints" / "comfy.safetensors")
    hf = tmp_path / "hf-cache"
    snap = _fake_hf_cache(hf, "tiny/sdxl-pipe", tiny_sdxl_dir)
    # A non-pipeline repo in the cache (e.g. a tokenizer) must be ignored.
    other = hf / "models--tiny--tokenizer" / "snapshots" / ("b" * 40)
    other.mkdir(parents=True)
    (other / "tokenizer.json").write_text("{}")
    monkeypatch.setenv("HF_HUB_CACHE", str(hf))

    settings = Settings(extra_model_dirs=[str(a1111), str(comfy), str(tmp_path / "missing")])
    with caplog.at_level(logging.INFO):
        found = find_txt2img_models(settings, paths)
    by_name = {e.name: e for e in found}
    assert set(by_name) == {"my-sd15", "xl", "a1111", "comfy", "tiny/sdxl-pipe"}
    assert (by_name["my-sd15"].source, by_name["my-sd15"].format, by_name["my-sd15"].family) \
        == ("studio", "diffusers", "sd1")
    assert (by_name["xl"].format, by_name["xl"].family) == ("single-file", "sdxl")
    assert by_name["a1111"].source == by_name["comfy"].source == "extra"
    hf_entry = by_name["tiny/sdxl-pipe"]
    assert (hf_entry.source, hf_entry.family, hf_entry.repo_id) == ("hf-cache", "sdxl",
                                                                    "tiny/sdxl-pipe")
    assert hf_entry.path == snap  # used in place, not copied
    assert all(e.size_bytes > 0 for e in found)
    assert "broken.safetensors" in caplog.text  # skipped with a log line, not a crash

    assert resolve_model("tiny/sdxl-pipe", settings, paths).path == snap


def test_scan_without_hf_cache_or_models_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "no-cache-here"))
    assert find_txt2img_models(Settings(), default_paths()) == []


def test_resolve_model(tmp_path, tiny_sd15_dir, tiny_sdxl_file, monkeypatch):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    settings, paths = Settings(), default_paths()
    entry = resolve_model(str(tiny_sd15_dir), settings, paths)
    assert (entry.format, entry.family, entry.source) == ("diffusers", "sd1", "file")
    entry = resolve_model(str(tiny_sdxl_file), settings, paths)
    assert (entry.format, entry.family) == ("single-file", "sdxl")

    (tmp_path / "not-a-model").mkdir()
    with pytest.raises(UserFacingError, match="is not a Stable Diffusion model: no model_index"):
        resolve_model(str(tmp_path / "not-a-model"), settings, paths)
    with pytest.raises(UserFacingError, match="does not exist"):
        resolve_model(str(tmp_path / "nope.safetensors"), settings, paths)
    with pytest.raises(UserFacingError, match="not in your Hugging Face cache.*offline"):
        resolve_model("stabilityai/sdxl-turbo", settings, paths)
    lora = write_checkpoint(tmp_path / "lora.safetensors", LORA_KEYS)
    with pytest.raises(UserFacingError, match="LoRA"):
        resolve_model(str(lora), settings, paths)
