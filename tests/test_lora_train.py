"""LoRA training (#18, core): a tiny random SD 1.5 model trains a LoRA on a few images; the file is
kohya's format with ss_ metadata, loads through Studio's Generate and plain diffusers alike (same
image), resuming equals an uninterrupted run, and bad folders are explained."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors import safe_open

from studio.core.config import Settings, default_paths
from studio.core.jobs import CancelToken, UserFacingError
from studio.core.requests import Txt2ImgRequest
from studio.pipelines.diffusion.txt2img import Txt2ImgService
from studio.pipelines.model_cache import ModelCache
from studio.pipelines.train.lora_config import LoraTrainConfig
from studio.pipelines.train.lora_data import buckets, scan_folder
from studio.pipelines.train.lora_sd import LoraTrainer
from tests.fixtures.sinks import RecordingSink

SETTINGS = Settings(device="cpu", precision="fp32", preview_mode="off")


def make_folder(root: Path, captions: bool = True) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for i, size in enumerate([(64, 64), (96, 64), (64, 64)]):
        arr = rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)
        Image.fromarray(arr).save(root / f"img{i}.png")
        if captions:
            (root / f"img{i}.txt").write_text(f"red square, pattern{i}", encoding="utf-8")
    return root


def studio_image(model: Path, lora: str | None = None) -> np.ndarray:
    """Generate's picture of "inkstyle fox" (seed 5, 2 steps) with the library LoRA ``lora``."""
    service = Txt2ImgService(lambda: SETTINGS, default_paths, cache=ModelCache())
    request = Txt2ImgRequest(model=str(model), prompt="inkstyle fox", steps=2, width=64,
                             height=64, cfg=6.0, seed=5,
                             loras=[{"name": lora, "weight": 1.0}] if lora else [])
    return np.asarray(service.run(request, RecordingSink(), CancelToken())[0].image)


def plain_image(pipe) -> np.ndarray:
    """Plain diffusers' picture with the same arguments as :func:`studio_image`."""
    pipe.set_progress_bar_config(disable=True)
    return np.asarray(pipe("inkstyle fox", num_inference_steps=2, guidance_scale=6.0, width=64,
                           height=64, generator=torch.Generator("cpu").manual_seed(5)).images[0])


def config(data: Path, model: Path, **kw) -> LoraTrainConfig:
    base = dict(data_dir=data, base=str(model), name="ink", trigger="inkstyle", rank=4,
                alpha=2.0, lr=1e-2, steps=3, resolution=64, seed=1)
    return LoraTrainConfig(**{**base, **kw})


def test_trained_lora_is_kohya_and_loads_in_studio_and_diffusers(studio_home, tmp_path,
                                                                   tiny_sd15_dir):
    data = make_folder(tmp_path / "data")
    paths = default_paths()
    trainer = LoraTrainer(config(data, tiny_sd15_dir, sample_prompts=["inkstyle fox"],
                                 sample_steps=2), SETTINGS, paths)
    trainer.prepare()
    out = trainer.run()
    assert out == paths.models_dir / "loras" / "ink.safetensors"
    assert out.with_suffix(".preview.png").is_file()
    with safe_open(str(out), "pt") as f:
        keys, meta = list(f.keys()), f.metadata()
        alpha = f.get_tensor(next(k for k in keys if k.endswith(".alpha")))
    assert keys and all(k.startswith("lora_unet_") for k in keys)
    assert any(k.endswith(".lora_down.weight") for k in keys) and float(alpha) == 2.0
    assert meta["ss_base_model_version"] == "sd_v1" and meta["ss_network_dim"] == "4"
    assert meta["ss_network_alpha"] == "2.0" and meta["ss_steps"] == "3"
    assert meta["ss_output_name"] == "ink"
    tags = json.loads(meta["ss_tag_frequency"])["data"]
    assert tags["inkstyle"] == 3 and tags["red square"] == 3

    # Studio's Generate applies it by name, and the image equals plain diffusers'.
    ours = studio_image(tiny_sd15_dir, "ink")
    from diffusers import StableDiffusionPipeline

    pipe = StableDiffusionPipeline.from_pretrained(str(tiny_sd15_dir), safety_checker=None,
                                                   local_files_only=True)
    without = plain_image(pipe)
    pipe.load_lora_weights(str(out.parent), weight_name=out.name)
    plain = plain_image(pipe)
    assert np.array_equal(ours, plain)
    assert not np.array_equal(plain, without)  # the LoRA learned something


def test_resume_from_checkpoint_equals_an_uninterrupted_run(studio_home, tmp_path,
                                                            tiny_sd15_dir):
    data = make_folder(tmp_path / "data")
    paths = default_paths()
    full = LoraTrainer(config(data, tiny_sd15_dir, name="full", steps=4), SETTINGS, paths)
    full.prepare()
    full.run()
    first = LoraTrainer(config(data, tiny_sd15_dir, name="half", steps=4), SETTINGS, paths)
    first.prepare()
    first.run(should_stop=lambda: first.step >= 2)  # stopped: keeps the latest
    assert first.step == 2 and (paths.models_dir / "loras" / "half.safetensors").is_file()
    again = LoraTrainer(config(data, tiny_sd15_dir, name="half", steps=4), SETTINGS, paths)
    again.prepare()
    again.run(resume=True)
    assert again.step == 4 and again.losses == full.losses
    a, b = full.kohya_state_dict(), again.kohya_state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_bad_folders_are_explained(tmp_path):
    with pytest.raises(UserFacingError, match="does not exist"):
        scan_folder(tmp_path / "nope", "", 64)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(UserFacingError, match="no readable images"):
        scan_folder(empty, "", 64)
    (empty / "broken.png").write_bytes(b"not a png")
    with pytest.raises(UserFacingError, match="1 file\\(s\\) could not be read"):
        scan_folder(empty, "", 64)
    data = make_folder(tmp_path / "nocap", captions=False)
    (data / "broken.jpg").write_bytes(b"junk")
    found = scan_folder(data, "", 64)
    assert len(found.examples) == 3 and found.skipped == {"unreadable image": 1}
    assert any("no .txt caption" in w and "no trigger word" in w for w in found.warnings)
    with_trigger = scan_folder(data, "inkstyle", 64)
    assert [e.caption for e in with_trigger.examples] == ["inkstyle"] * 3


def test_buckets_keep_area_and_aspect():
    choices = buckets(512)
    assert (512, 512) in choices and (640, 384) in choices
    assert all(w % 64 == 0 and h % 64 == 0 and w * h <= 512 * 512 for w, h in choices)


# -- command line -------------------------------------------------------------------------------
def test_cli_trains_a_lora_and_bad_folders_exit_2(studio_home, tmp_path, tiny_sd15_dir):
    from tests.fixtures.cli_run import studio_in_process

    data = make_folder(tmp_path / "data")
    done = studio_in_process("train-lora", str(data), "--base", str(tiny_sd15_dir), "--name",
                             "clink", "--steps", "2", "--resolution", "64", "--rank", "2",
                             "--json", "--device", "cpu")
    assert done.returncode == 0, done.stderr
    lines = [json.loads(line) for line in done.stdout.splitlines()]
    assert [line["step"] for line in lines[:-1]] == [1, 2]
    assert lines[-1] == {"lora": str(default_paths().models_dir / "loras" / "clink.safetensors"),
                         "steps": 2}
    empty = tmp_path / "empty"
    empty.mkdir()
    bad = studio_in_process("train-lora", str(empty), "--base", str(tiny_sd15_dir), "--name", "x",
                            "--device", "cpu")
    assert bad.returncode == 2 and "has no readable images" in bad.stderr


def test_sdxl_lora_learns_is_kohya_sdxl_and_changes_generate(studio_home, tmp_path,
                                                            tiny_sdxl_dir):
    """SDXL: two text encoders, pooled embeds and add_time_ids; the loss on a fixed batch falls;
    the file has kohya's SDXL keys (the original UNet's input/middle/output blocks) and ss_
    metadata, Generate lists it for SDXL models and applies it as plain diffusers does."""
    from studio.library.classify import lora_base
    from studio.library.detect import read_safetensors_header

    data = make_folder(tmp_path / "data")
    paths = default_paths()
    trainer = LoraTrainer(config(data, tiny_sdxl_dir, name="inkxl", steps=8, lr=2e-2, rank=4,
                                 alpha=4.0), SETTINGS, paths)
    trainer.prepare()
    assert trainer.family == "sdxl" and trainer.texts[0][1] is not None  # the pooled embed
    assert trainer.time_ids[1].tolist() == [64.0, 96.0, 0.0, 16.0, 64.0, 64.0]  # crop from 96
    before = trainer.fixed_loss()
    out = trainer.run()
    assert trainer.fixed_loss() < before
    with safe_open(str(out), "pt") as f:
        keys, meta = list(f.keys()), f.metadata()
    assert keys and all(k.startswith("lora_unet_") for k in keys)
    assert any(k.startswith("lora_unet_input_blocks_") for k in keys)
    assert any(k.startswith("lora_unet_middle_block_1_") for k in keys)
    assert any(k.startswith("lora_unet_output_blocks_") for k in keys)
    assert not any("down_blocks" in k or "up_blocks" in k for k in keys)
    assert meta["ss_base_model_version"] == "sdxl_base_v1-0"
    assert meta["modelspec.architecture"] == "stable-diffusion-xl-v1-base/lora"
    assert lora_base(read_safetensors_header(out))[0] == "sdxl"  # listed for SDXL models

    # the LoRA changes Generate's picture
    assert not np.array_equal(studio_image(tiny_sdxl_dir, "inkxl"), studio_image(tiny_sdxl_dir))
    from diffusers import StableDiffusionXLPipeline

    # plain diffusers reads kohya's SDXL names too (each path's pictures compared with its own)
    pipe = StableDiffusionXLPipeline.from_pretrained(str(tiny_sdxl_dir), local_files_only=True)
    without = plain_image(pipe)
    pipe.load_lora_weights(str(out.parent), weight_name=out.name)
    assert list(pipe.get_list_adapters()) == ["unet"]
    assert not np.array_equal(plain_image(pipe), without)


def test_sgm_names_follow_the_original_unet():
    from studio.pipelines.train.lora_kohya import sgm_unet_module

    tail = "transformer_blocks.0.attn1.to_q"
    assert sgm_unet_module(f"down_blocks.1.attentions.0.{tail}", 2) == f"input_blocks.4.1.{tail}"
    assert sgm_unet_module(f"down_blocks.2.attentions.1.{tail}", 2) == f"input_blocks.8.1.{tail}"
    assert sgm_unet_module(f"mid_block.attentions.0.{tail}", 2) == f"middle_block.1.{tail}"
    assert sgm_unet_module(f"up_blocks.0.attentions.2.{tail}", 2) == f"output_blocks.2.1.{tail}"
    assert sgm_unet_module(f"up_blocks.1.attentions.0.{tail}", 2) == f"output_blocks.3.1.{tail}"


def test_a_family_training_does_not_support_is_refused(studio_home, tmp_path, tiny_chroma_dir):
    from studio.pipelines.train.lora_flow import trainer_for

    data = make_folder(tmp_path / "data")
    trainer = trainer_for(config(data, tiny_chroma_dir), SETTINGS, default_paths())
    with pytest.raises(UserFacingError,
                       match="supports Stable Diffusion 1.x, SDXL, FLUX.1, SD 3.5 and "
                             "Qwen-Image models"):
        trainer.prepare()


def test_a_caption_that_starts_with_the_trigger_is_not_doubled(tmp_path):
    data = make_folder(tmp_path / "data")
    (data / "img0.txt").write_text("inkstyle, a cat", encoding="utf-8")
    found = scan_folder(data, "inkstyle", 64)
    assert found.examples[0].caption == "inkstyle, a cat"
    assert found.examples[1].caption == "inkstyle, red square, pattern1"


def test_text_encoder_training_saves_kohya_te_keys_that_load(studio_home, tmp_path,
                                                             tiny_sd15_dir, tiny_sdxl_dir):
    """Text-encoder LoRA layers train with their own learning rate and are saved as kohya's
    lora_te_ (SD 1.x) or lora_te1_/lora_te2_ (SDXL); Generate applies them as diffusers does."""
    from diffusers import StableDiffusionPipeline

    data = make_folder(tmp_path / "data")
    paths = default_paths()
    sd1 = LoraTrainer(config(data, tiny_sd15_dir, name="te1", steps=3, train_text_encoder=True,
                             text_encoder_lr=5e-2), SETTINGS, paths)
    sd1.prepare()
    assert [g["lr"] for g in sd1.optimizer.param_groups] == [1e-2, 5e-2]
    out = sd1.run()
    with safe_open(str(out), "pt") as f:
        keys, meta = list(f.keys()), f.metadata()
    assert any(k.startswith("lora_te_text_model_encoder_layers_0_self_attn_q_proj.") for k in keys)
    assert {k.split("_")[1] for k in keys} == {"unet", "te"}
    assert meta["ss_text_encoder_lr"] == "0.05" and meta["ss_network_train_unet_only"] == "False"
    ours = studio_image(tiny_sd15_dir, "te1")
    pipe = StableDiffusionPipeline.from_pretrained(str(tiny_sd15_dir), safety_checker=None,
                                                   local_files_only=True)
    pipe.load_lora_weights(str(out.parent), weight_name=out.name)
    assert sorted(pipe.get_list_adapters()) == ["text_encoder", "unet"]
    plain = plain_image(pipe)
    assert np.array_equal(ours, plain)

    xl = LoraTrainer(config(data, tiny_sdxl_dir, name="te2", steps=2, train_text_encoder=True),
                     SETTINGS, paths)
    xl.prepare()
    with safe_open(str(xl.run()), "pt") as f:
        prefixes = {k.split("_text_model_")[0] for k in f.keys() if "_text_model_" in k}
    assert prefixes == {"lora_te1", "lora_te2"}
