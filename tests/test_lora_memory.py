"""LoRA training's memory options (#18): cached latents and text-encoder outputs give the same
loss as making them at every step, SDPA or not, bf16 on the CPU where it runs, fp16 refused on a
CPU with the reason, 8-bit AdamW on a CPU through bitsandbytes' CPU backend, and the estimate
before starting moves with each option."""

from __future__ import annotations

import math

import pytest

from studio.core.config import default_paths
from studio.core.jobs import UserFacingError
from studio.pipelines.train.lora_config import device_problems
from studio.pipelines.train.lora_estimate import GB, estimate_memory
from studio.pipelines.train.lora_sd import LoraTrainer
from tests.test_lora_train import SETTINGS, config, make_folder

# SDXL-sized counts (UNet 2.57 B, both text encoders 0.82 B, VAE 84 M)
SDXL = {"unet": 2_567_463_684, "text": 817_720_320, "vae": 83_653_863,
        "lora_unet": 2_900_000, "lora_text": 700_000}


def _trained_losses(data, model, steps=2, **kw):
    trainer = LoraTrainer(config(data, model, steps=steps, **kw), SETTINGS, default_paths())
    trainer.prepare()
    trainer.run()
    return trainer


def test_cached_latents_and_prompts_give_the_same_loss_as_uncached(studio_home, tmp_path,
                                                                   tiny_sd15_dir):
    data = make_folder(tmp_path / "data")
    cached = _trained_losses(data, tiny_sd15_dir, name="cached")
    fresh = _trained_losses(data, tiny_sd15_dir, name="fresh", cache_latents=False,
                            cache_text=False)
    assert not fresh.latents and not fresh.texts  # nothing was cached
    assert fresh.losses == cached.losses
    plain = _trained_losses(data, tiny_sd15_dir, name="plain", sdpa=False)
    assert plain.losses == pytest.approx(cached.losses, rel=1e-4)


def test_cpu_refuses_fp16_and_trains_bf16_where_it_runs(studio_home, tmp_path, tiny_sd15_dir):
    data = make_folder(tmp_path / "data")
    problems = device_problems("cpu")
    assert "CUDA GPU" in problems["mixed_precision"]["fp16"]
    with pytest.raises(UserFacingError, match="CUDA GPU"):
        LoraTrainer(config(data, tiny_sd15_dir, mixed_precision="fp16"), SETTINGS,
                    default_paths())
    if "bf16" in problems.get("mixed_precision", {}):
        pytest.skip(problems["mixed_precision"]["bf16"])
    trainer = _trained_losses(data, tiny_sd15_dir, steps=1, name="half", mixed_precision="bf16",
                              gradient_checkpointing=True, sample_prompts=["inkstyle"],
                              sample_steps=1)
    assert math.isfinite(trainer.losses[0]) and trainer.samples[-1][1][0].is_file()
    assert all(p.dtype.is_floating_point and p.element_size() == 4 for p in trainer.params)
    assert "bf16" in trainer.estimate().sentence and "On the CPU" in trainer.estimate().sentence


def test_8bit_adamw_on_the_cpu_follows_the_bitsandbytes_installed(monkeypatch):
    """bitsandbytes 0.50's CPU backend has the 8-bit optimizers: 8-bit AdamW is offered on a CPU
    with it, greyed out with the reason with an older one or none."""
    from studio.pipelines.train import lora_config

    monkeypatch.setattr(lora_config, "_bnb_version", lambda: (0, 50, 2))
    assert "optimizer" not in device_problems("cpu")
    monkeypatch.setattr(lora_config, "_bnb_version", lambda: (0, 45, 5))
    why = device_problems("cpu")["optimizer"]["adamw8bit"]
    assert "0.50 or newer (this is 0.45.5)" in why and "pip install -U bitsandbytes" in why
    monkeypatch.setattr(lora_config, "_bnb_version", lambda: None)
    assert "pip install bitsandbytes" in device_problems("cpu")["optimizer"]["adamw8bit"]


def test_8bit_adamw_trains_on_the_cpu_with_8bit_moments(studio_home, tmp_path, tiny_sd15_dir):
    """A few steps of tiny SD LoRA training with bitsandbytes' AdamW8bit on the CPU: the loss on
    a fixed batch falls, and the moments of every LoRA weight of 4096 elements or more (what
    bitsandbytes keeps in 8 bits; smaller ones stay 32-bit) are uint8."""
    bnb = pytest.importorskip("bitsandbytes")
    if "adamw8bit" in device_problems("cpu").get("optimizer", {}):
        pytest.skip(device_problems("cpu")["optimizer"]["adamw8bit"])
    import torch

    data = make_folder(tmp_path / "data")
    trainer = LoraTrainer(config(data, tiny_sd15_dir, name="ink8", optimizer="adamw8bit",
                                 rank=64, alpha=64.0, lr=2e-2, steps=8),
                          SETTINGS, default_paths())
    trainer.prepare()
    assert isinstance(trainer.optimizer.optimizer, bnb.optim.AdamW8bit)
    before = trainer.fixed_loss()
    trainer.run()
    assert trainer.fixed_loss() < before
    big = [p for p in trainer.params if p.numel() >= 4096]
    assert big  # rank 64 × the tiny UNet's 64-wide layers
    states = [trainer.optimizer.optimizer.state[p] for p in big]
    assert all(s["state1"].dtype == torch.uint8 and s["state2"].dtype == torch.uint8
               for s in states)
    assert "8-bit AdamW" in trainer.estimate().sentence


def test_the_estimate_moves_with_each_option():
    def size(**kw):
        return estimate_memory("sdxl", SDXL, 1024, 16, **kw).total

    base = size()
    assert size(gradient_checkpointing=True) < base
    assert size(mixed_precision="bf16") < base
    assert size(optimizer="adamw8bit") < base
    assert size(cache_latents=False) > base
    assert size(train_text_encoder=True) > base
    assert size(cache_text=False) > base
    assert estimate_memory("sdxl", SDXL, 512, 16).total < base
    usual = estimate_memory("sdxl", SDXL, 1024, 16, mixed_precision="bf16",
                            gradient_checkpointing=True)
    assert usual.sentence.startswith("SDXL LoRA at 1024 px, rank 16: ~")
    assert "with checkpointing, bf16" in usual.sentence
    assert 9 * GB < usual.total < 14 * GB  # the usual "~11 GB with checkpointing"
    small = estimate_memory("sdxl", SDXL, 1024, 16, device_memory=12 * GB)
    assert "more than this GPU's" in small.sentence and "To fit:" in small.sentence
    assert "gradient checkpointing" in small.sentence
    cpu = estimate_memory("sd1", {**SDXL, "unet": 859_520_964}, 512, 8, device="cpu")
    assert "slow" in cpu.sentence and "256–512 px" in cpu.sentence


def test_the_trainer_counts_weights_from_the_headers_as_the_planner_does(tiny_sd15_dir):
    """One size model: the LoRA estimate's UNet / text encoder / VAE counts are read from the
    base folder's safetensors headers as the image planner reads them, and equal the loaded
    model's parameters."""
    from diffusers import StableDiffusionPipeline

    from studio.library.models import ModelEntry
    from studio.pipelines.diffusion.planner import components_of
    from studio.pipelines.train.lora_sd import model_counts

    pipe = StableDiffusionPipeline.from_pretrained(str(tiny_sd15_dir), local_files_only=True)
    read = model_counts(pipe, "sd1", tiny_sd15_dir)
    counted = model_counts(pipe, "sd1")
    assert read == counted
    planner = {c.key: c.bytes for c in components_of(
        ModelEntry("tiny", tiny_sd15_dir, "file", "diffusers", "sd1"), 1)}
    assert (read["unet"], read["text"], read["vae"]) == (
        planner["unet"], planner["text_encoder"], planner["vae"])


#: FLUX.1-dev's and SD 3.5 Large's counts (their transformers built on the meta device; the
#: LoRA per rank over lora_flow's targets; T5-XXL + CLIP(s))
FLUX = {"unet": 11_901_408_320, "text": 4_883_000_000, "vae": 83_600_000,
        "lora_unet": 2_918_400, "lora_text": 0}
SD35 = {"unet": 8_056_627_520, "text": 5_578_000_000, "vae": 83_600_000,
        "lora_unet": 1_473_792, "lora_text": 0}


def test_the_estimate_covers_flux_and_sd35_and_says_it_is_an_estimate():
    flux = estimate_memory("flux", FLUX, 1024, 16, mixed_precision="bf16",
                           gradient_checkpointing=True, device_memory=24 * GB)
    assert flux.sentence.startswith("FLUX.1 LoRA at 1024 px, rank 16: ~")
    assert "(an estimate)" in flux.sentence and "more than this GPU's 24 GB" in flux.sentence
    assert "transformer" in flux.parts and "unet" not in flux.parts
    assert 28 * GB < flux.total < 40 * GB  # unquantized FLUX LoRAs want a 40 GB-class GPU
    sd35 = estimate_memory("sd3", SD35, 1024, 16, mixed_precision="bf16",
                           gradient_checkpointing=True, device_memory=80 * GB)
    assert sd35.sentence.startswith("SD 3.5 LoRA at 1024 px, rank 16: ~")
    assert "fits this GPU's 80 GB" in sd35.sentence and sd35.total < flux.total
    cpu = estimate_memory("flux", FLUX, 512, 8, device="cpu")
    assert "FLUX.1 wants a GPU with 40 GB" in cpu.sentence
