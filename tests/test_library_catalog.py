"""Model library index: every kind, every source (studio folder, HF cache, extra, single files),
unknown files with their reason, precision from headers, last use."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from safetensors.torch import save_file

from studio.core.config import Settings, default_paths
from studio.core.jobs import UserFacingError
from studio.library import usage
from studio.library.catalog import find_entry, list_models
from studio.library.classify import classify_file, lora_base
from tests.fixtures.hub_cache import add_to_hub_cache


def st(path, tensors):
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(path))
    return path


def kohya_sd1_lora(path, dtype=torch.float16):
    k = "lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn2_to_k"
    return st(path, {f"{k}.lora_down.weight": torch.zeros(4, 768, dtype=dtype),
                     f"{k}.lora_up.weight": torch.zeros(320, 4, dtype=dtype),
                     f"{k}.alpha": torch.tensor(4.0, dtype=dtype),
                     "lora_te_text_model_encoder_layers_0_mlp_fc1.lora_down.weight":
                         torch.zeros(4, 768, dtype=dtype)})


def peft_sdxl_lora(path):
    k = "unet.down_blocks.1.attentions.0.transformer_blocks.0.attn2.to_k"
    return st(path, {f"{k}.lora_A.weight": torch.zeros(8, 2048),
                     f"{k}.lora_B.weight": torch.zeros(640, 8)})


def taesd_folder(folder):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps({"_class_name": "AutoencoderTiny"}))
    st(folder / "diffusion_pytorch_model.safetensors",
       {"decoder.layers.0.weight": torch.zeros(64, 4, 3, 3, dtype=torch.float16)})
    return folder


@pytest.fixture
def library(tmp_path, monkeypatch, tiny_sd15_dir, tiny_sd15_file, tiny_llama_dir):
    """A library with something of every kind in every source."""
    from tests.fixtures.tiny_cyclegan import tiny_generator

    paths = default_paths()
    models = paths.models_dir
    shutil.copytree(tiny_sd15_dir, models / "tiny-sd15")
    kohya_sd1_lora(models / "loras" / "ink.safetensors")
    taesd_folder(models / "taesd")
    st(models / "mystery.safetensors", {"foo.weight": torch.zeros(2)})
    (models / "broken.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{\"a\"")
    (models / "cyclegan" / "h2z").mkdir(parents=True)
    torch.save(tiny_generator(6, 4).state_dict(), models / "cyclegan" / "h2z" / "latest_net_G.pth")
    torch.save(tiny_generator(6, 4).state_dict(), models / "style_ink.pth")  # outside cyclegan/

    a1111 = tmp_path / "a1111"
    (a1111 / "models" / "Stable-diffusion").mkdir(parents=True)
    shutil.copy(tiny_sd15_file, a1111 / "models" / "Stable-diffusion" / "dreamy.safetensors")
    peft_sdxl_lora(a1111 / "models" / "Lora" / "xl-style.safetensors")
    comfy = tmp_path / "ComfyUI"
    st(comfy / "models" / "vae_approx" / "taesdxl_decoder.safetensors",
       {"1.weight": torch.zeros(64, 4, 3, 3), "3.conv.0.weight": torch.zeros(64, 64, 3, 3)})
    kohya_sd1_lora(comfy / "models" / "loras" / "comfy-ink.safetensors")

    hf_home = tmp_path / "hf-home"
    monkeypatch.setenv("HF_HOME", str(hf_home))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    add_to_hub_cache(hf_home, "tiny/llama-chat", tiny_llama_dir)
    add_to_hub_cache(hf_home, "madebyollin/taesdxl", taesd_folder(tmp_path / "src-taesdxl"))
    bert = tmp_path / "src-bert"
    bert.mkdir()
    (bert / "config.json").write_text(json.dumps({"architectures": ["BertModel"]}))
    add_to_hub_cache(hf_home, "someone/bert-tiny", bert)

    loose = kohya_sd1_lora(tmp_path / "downloads" / "loose-lora.safetensors")
    settings = Settings(extra_model_dirs=[str(a1111), str(comfy)], added_models=[str(loose)])
    return settings, paths, hf_home


def test_every_kind_and_source_is_listed(library):
    settings, paths, hf_home = library
    entries = list_models(settings, paths)
    by = {e.name: e for e in entries}
    got = {(e.name, e.kind, e.source) for e in entries}
    assert {("tiny-sd15", "image", "studio"), ("dreamy", "image", "extra"),
            ("ink", "lora", "studio"), ("xl-style", "lora", "extra"),
            ("comfy-ink", "lora", "extra"), ("loose-lora", "lora", "file"),
            ("taesd", "preview", "studio"), ("taesdxl_decoder", "preview", "extra"),
            ("madebyollin/taesdxl", "preview", "hf-cache"), ("h2z", "transform", "studio"),
            ("style_ink", "transform", "studio"),
            ("tiny/llama-chat", "chat", "hf-cache"), ("mystery", "unknown", "studio"),
            ("broken", "unknown", "studio"),
            ("someone/bert-tiny", "unknown", "hf-cache")} <= got
    assert len(entries) == len({e.path.resolve() for e in entries}), "a model listed twice"
    # kinds come grouped, in the library's order
    kinds = [e.kind for e in entries]
    assert kinds == sorted(kinds, key=["image", "transform", "chat", "preview", "lora",
                                       "unknown"].index)
    # LoRA bases, formats and precision from the header
    assert (by["ink"].family, by["ink"].format, by["ink"].precision) == ("sd1", "LoRA (kohya)",
                                                                         "fp16")
    assert (by["xl-style"].family, by["xl-style"].format) == ("sdxl", "LoRA (diffusers)")
    assert by["xl-style"].precision == "fp32"
    # the HF cache is used in place: the chat model's path is the snapshot under HF_HOME
    chat = by["tiny/llama-chat"]
    assert chat.path.is_relative_to(hf_home / "hub") and chat.workspaces == ("Chat",)
    assert chat.size_bytes > 0 and chat.spec == "tiny/llama-chat"
    # unknowns carry the reason
    assert "corrupt" in by["broken"].detail or "truncated" in by["broken"].detail
    assert "BertModel" in by["someone/bert-tiny"].detail
    assert "UNet" in by["mystery"].detail
    # which workspaces can use what
    assert by["tiny-sd15"].workspaces == ("Generate", "Transform")
    assert by["taesd"].workspaces == ("Generate",) and by["taesdxl_decoder"].workspaces == ()
    assert by["madebyollin/taesdxl"].workspaces == ("Generate",)
    assert by["h2z"].workspaces == ("Transform",)
    assert by["ink"].workspaces == ("Generate", "Transform")
    assert by["tiny-sd15"].size_bytes > 0 and by["tiny-sd15"].precision == "fp32"


def test_last_used_comes_from_the_model_cache(library):
    from studio.pipelines.model_cache import ModelCache, loaded_model_paths

    settings, paths, _ = library
    image = find_entry("tiny-sd15", list_models(settings, paths))
    assert image.last_used is None
    cache = ModelCache(loader=lambda entry, device, dtype, **kw: object())
    cache.get(image, "cpu", "float32")
    assert image.path.resolve() in loaded_model_paths()
    again = find_entry("tiny-sd15", list_models(settings, paths))
    assert again.last_used is not None
    assert set(usage.last_used(paths)) == {str(image.path.resolve())}
    cache.unload_all()
    assert image.path.resolve() not in loaded_model_paths()


def test_usage_is_throttled(tmp_path):
    paths = default_paths()
    f = tmp_path / "m.safetensors"
    assert usage.record_use(f, paths, now=1000.0)
    assert not usage.record_use(f, paths, now=1010.0)
    assert usage.record_use(f, paths, now=1100.0)
    assert usage.last_used(paths)[str(f.resolve())] == 1100.0


def test_find_entry_by_name_repo_and_path_and_ambiguity(library):
    settings, paths, _ = library
    entries = list_models(settings, paths)
    assert find_entry("TINY/LLAMA-CHAT", entries).kind == "chat"
    ink = find_entry("ink", entries)
    assert find_entry(str(ink.path), entries) is ink
    with pytest.raises(UserFacingError, match="No model called"):
        find_entry("nope", entries)
    dup = [e for e in entries if e.name == "ink"] * 2
    with pytest.raises(UserFacingError, match="names 2 models"):
        find_entry("ink", dup)


def test_lora_base_from_keys_and_metadata(tmp_path):
    sd2 = st(tmp_path / "sd2.safetensors", {
        "lora_unet_up_blocks_1_attentions_0_transformer_blocks_0_attn2_to_k.lora_down.weight":
            torch.zeros(4, 1024)})
    assert classify_file(sd2).family == "sd2"
    te2 = st(tmp_path / "te2.safetensors", {
        "lora_te2_text_model_encoder_layers_0_mlp_fc1.lora_down.weight": torch.zeros(4, 1280)})
    assert classify_file(te2).family == "sdxl"
    assert lora_base({"lora_unet_x.lora_down.weight": {"shape": [4, 7]},
                      "__metadata__": {"ss_base_model_version": "sdxl_base_v1-0"}})[0] == "sdxl"
    lyco = st(tmp_path / "l.safetensors", {"lora_unet_a.hada_w1_a": torch.zeros(2, 2)})
    assert classify_file(lyco).format == "LoHa"


def test_scan_is_header_only(library, monkeypatch):
    """No weights are read: loading a tensor file would go through safetensors/torch."""
    import safetensors.torch

    def boom(*a, **k):
        raise AssertionError("weights were loaded during a scan")

    monkeypatch.setattr(safetensors.torch, "load_file", boom)
    monkeypatch.setattr(torch, "load", boom)
    settings, paths, _ = library
    assert len(list_models(settings, paths)) >= 14


def test_hub_repos_of_loose_files_are_listed_and_usable(library, tmp_path, monkeypatch):
    """A hub repo of single files (a checkpoint, a LoRA, a CycleGAN generator — no
    model_index.json) is listed by what its files are, and the pickers can use them."""
    from studio.library.cyclegan_models import find_cyclegan_models
    from studio.library.models import find_txt2img_models, resolve_model
    from tests.fixtures.tiny_cyclegan import tiny_generator

    settings, paths, hf_home = library
    src = tmp_path / "src-files"
    src.mkdir()
    add_to_hub_cache(hf_home, "someone/dreamy-ckpt",
                     shutil.copy(next(p for p in [*(tmp_path / "a1111").rglob("dreamy*")]),
                                 src / "dreamy-v2.safetensors"))
    add_to_hub_cache(hf_home, "someone/ink-lora", kohya_sd1_lora(src / "hub-ink.safetensors"))
    gen = src / "latest_net_G.pth"
    torch.save(tiny_generator(6, 4).state_dict(), gen)
    add_to_hub_cache(hf_home, "someone/horse2zebra", gen)

    by = {e.name: e for e in list_models(settings, paths)}
    ckpt = by["someone/dreamy-ckpt/dreamy-v2.safetensors"]
    assert (ckpt.kind, ckpt.source, ckpt.family) == ("image", "hf-cache", "sd1")
    assert ckpt.spec == str(ckpt.path)  # a file of a repo is named by its path
    assert (by["hub-ink"].kind, by["hub-ink"].family, by["hub-ink"].repo_id) == (
        "lora", "sd1", "someone/ink-lora")
    assert by["someone/horse2zebra"].kind == "transform"
    assert not {"someone/dreamy-ckpt", "someone/ink-lora"} & set(by), "repo listed as unknown"
    # …and the workspaces' pickers read the same: Generate, Transform, and a request by repo id
    assert ckpt.path in {m.path for m in find_txt2img_models(settings, paths)}
    assert "someone/horse2zebra" in {m.name for m in find_cyclegan_models(settings, paths)}
    assert resolve_model("someone/dreamy-ckpt", settings, paths).path == ckpt.path


def test_a_model_of_the_wrong_kind_is_named_for_what_it_is(tmp_path, tiny_llama_dir,
                                                           tiny_sd15_dir):
    """A chat model picked for images, an image model for chat or CycleGAN, a LoRA as a
    checkpoint: the message says what the file is and where it is used."""
    from studio.library.chat_models import resolve_chat_model
    from studio.library.cyclegan_models import resolve_cyclegan
    from studio.library.models import resolve_model

    settings, paths = Settings(), default_paths()
    lora = kohya_sd1_lora(tmp_path / "ink.safetensors")
    with pytest.raises(UserFacingError, match=r"is a Chat model.*use it in Chat.*Generate needs"):
        resolve_model(str(tiny_llama_dir), settings, paths)
    with pytest.raises(UserFacingError, match=r"is a LoRA model.*LoRA section"):
        resolve_model(str(lora), settings, paths)
    with pytest.raises(UserFacingError, match=r"Image generation model.*Chat needs"):
        resolve_chat_model(str(tiny_sd15_dir), settings, paths)
    with pytest.raises(UserFacingError, match=r"Image generation model.*Transform needs"):
        resolve_cyclegan(str(tiny_sd15_dir))
    with pytest.raises(UserFacingError, match=r"is a LoRA model.*Transform needs"):
        resolve_cyclegan(str(lora))
