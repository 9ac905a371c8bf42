"""LoRA training for FLUX.1 and SD 3.5 (#18): tiny random FLUX and SD3 pipelines train a LoRA by
flow matching on a few images; the loss on a fixed batch falls, the file is diffusers' PEFT layout
(``transformer.….lora_A.weight``) with kohya's ss_ metadata and loads in plain diffusers'
``load_lora_weights`` (changing the image), resuming equals an uninterrupted run, the CLI trains
one headless, and text-encoder training is refused with the reason."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from safetensors import safe_open

from studio.core.config import Settings, default_paths
from studio.core.jobs import UserFacingError
from studio.pipelines.train.lora_flow import FlowLoraTrainer, trainer_for
from tests.test_lora_train import config, make_folder

SETTINGS = Settings(device="cpu", precision="fp32", preview_mode="off")


def plain(pipe, **kw) -> np.ndarray:
    pipe.set_progress_bar_config(disable=True)
    return np.asarray(pipe("inkstyle fox", num_inference_steps=2, width=64, height=64,
                           generator=torch.Generator("cpu").manual_seed(5), **kw).images[0])


def test_flux_lora_learns_and_loads_in_plain_diffusers(studio_home, tmp_path, tiny_flux_dir):
    from diffusers import FluxPipeline

    data = make_folder(tmp_path / "data")
    paths = default_paths()
    trainer = trainer_for(config(data, tiny_flux_dir, name="inkflux", steps=12, lr=2e-2,
                                 rank=4, alpha=2.0, sample_prompts=["inkstyle fox"],
                                 sample_steps=2), SETTINGS, paths)
    assert isinstance(trainer, FlowLoraTrainer)
    trainer.prepare()
    assert trainer.family == "flux" and trainer.guidance_embeds
    adapted = {k.split(".", 1)[1].rsplit(".lora_", 1)[0] for k in trainer.peft_state()}
    assert {"single_transformer_blocks.0.proj_mlp", "single_transformer_blocks.0.proj_out",
            "transformer_blocks.0.attn.add_q_proj", "single_transformer_blocks.0.attn.to_q",
            "transformer_blocks.0.attn.to_out.0"} <= adapted
    assert "proj_out" not in adapted  # the final output layer stays as it was
    before = trainer.fixed_loss()
    out = trainer.run()
    assert trainer.fixed_loss() < before
    assert out.with_suffix(".preview.png").is_file()
    from studio.library.classify import lora_base
    from studio.library.detect import read_safetensors_header

    assert lora_base(read_safetensors_header(out))[0] == "flux"  # Generate offers it for FLUX.1
    with safe_open(str(out), "pt") as f:
        keys, meta = list(f.keys()), f.metadata()
    assert keys and all(k.startswith("transformer.") for k in keys)
    assert any(k.endswith(".attn.to_q.lora_A.weight") for k in keys)
    assert any(k.endswith(".lora_B.weight") for k in keys)
    assert meta["ss_base_model_version"] == "flux1" and meta["ss_network_dim"] == "4"
    assert meta["ss_network_alpha"] == "2.0" and meta["ss_steps"] == "12"
    assert meta["modelspec.architecture"] == "flux-1-dev/lora"
    assert json.loads(meta["ss_tag_frequency"])["data"]["inkstyle"] == 3

    pipe = FluxPipeline.from_pretrained(str(tiny_flux_dir), local_files_only=True)
    without = plain(pipe)
    pipe.load_lora_weights(str(out.parent), weight_name=out.name, adapter_name="ink")
    assert list(pipe.get_list_adapters()) == ["transformer"]
    with_lora = plain(pipe)
    assert not np.array_equal(with_lora, without)
    # alpha / rank is in lora_B: diffusers' result equals the trained (PEFT-scaled) adapter
    trainer.pipe.transformer.eval()
    ours = plain(trainer.pipe)
    np.testing.assert_allclose(ours.astype(int), with_lora.astype(int), atol=1)


def test_flux_resume_from_checkpoint_equals_an_uninterrupted_run(studio_home, tmp_path,
                                                                tiny_flux_dir):
    data = make_folder(tmp_path / "data")
    paths = default_paths()
    full = trainer_for(config(data, tiny_flux_dir, name="full", steps=4), SETTINGS, paths)
    full.prepare()
    full.run()
    first = trainer_for(config(data, tiny_flux_dir, name="half", steps=4), SETTINGS, paths)
    first.prepare()
    first.run(should_stop=lambda: first.step >= 2)
    assert first.step == 2 and (paths.models_dir / "loras" / "half.safetensors").is_file()
    again = trainer_for(config(data, tiny_flux_dir, name="half", steps=4), SETTINGS, paths)
    again.prepare()
    again.run(resume=True)
    assert again.step == 4 and again.losses == full.losses
    a, b = full.file_state_dict(), again.file_state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_sd3_lora_learns_and_loads_in_plain_diffusers(studio_home, tmp_path, tiny_sd3_dir):
    from diffusers import StableDiffusion3Pipeline

    data = make_folder(tmp_path / "data")
    trainer = trainer_for(config(data, tiny_sd3_dir, name="ink3", steps=12, lr=2e-2, rank=4,
                                 alpha=4.0), SETTINGS, default_paths())
    trainer.prepare()
    assert trainer.family == "sd3" and trainer.texts[0][1] is not None  # both CLIPs' pooled
    before = trainer.fixed_loss()
    out = trainer.run()
    assert trainer.fixed_loss() < before
    with safe_open(str(out), "pt") as f:
        keys, meta = list(f.keys()), f.metadata()
    assert keys and all(k.startswith("transformer.transformer_blocks.") for k in keys)
    assert any(".attn.add_k_proj.lora_A." in k for k in keys)
    assert meta["ss_base_model_version"] == "sd3"
    assert meta["modelspec.architecture"] == "stable-diffusion-3/lora"
    pipe = StableDiffusion3Pipeline.from_pretrained(str(tiny_sd3_dir), local_files_only=True,
                                                    text_encoder_3=None, tokenizer_3=None)
    without = plain(pipe)
    pipe.load_lora_weights(str(out.parent), weight_name=out.name)
    assert not np.array_equal(plain(pipe), without)


def test_text_encoder_training_is_refused_with_the_reason(studio_home, tmp_path, tiny_flux_dir):
    data = make_folder(tmp_path / "data")
    trainer = trainer_for(config(data, tiny_flux_dir, train_text_encoder=True), SETTINGS,
                          default_paths())
    with pytest.raises(UserFacingError, match="train the transformer only.*T5"):
        trainer.prepare()


def test_cli_trains_a_flux_lora_headless(studio_home, tmp_path, tiny_flux_dir):
    from tests.fixtures.cli_run import studio_in_process

    data = make_folder(tmp_path / "data")
    done = studio_in_process("train-lora", str(data), "--base", str(tiny_flux_dir), "--name",
                             "cflux", "--steps", "2", "--resolution", "64", "--rank", "2",
                             "--json", "--device", "cpu")
    assert done.returncode == 0, done.stderr
    lines = [json.loads(line) for line in done.stdout.splitlines()]
    assert [line["step"] for line in lines[:-1]] == [1, 2]
    out = default_paths().models_dir / "loras" / "cflux.safetensors"
    assert lines[-1] == {"lora": str(out), "steps": 2}
    with safe_open(str(out), "pt") as f:
        assert all(k.startswith("transformer.") for k in f.keys())


@pytest.mark.parametrize("family", ["flux", "sd3", "qwen_image"])
def test_cached_latents_and_prompts_give_the_same_loss_as_uncached(studio_home, tmp_path,
                                                                   family, request):
    """Also with two images a step: Qwen-Image's cached prompts of different lengths are
    padded and masked as its encode_prompt pads a batch."""
    model = request.getfixturevalue(f"tiny_{family}_dir")
    data = make_folder(tmp_path / "data")
    (data / "img0.txt").write_text("a much longer caption of the first red square pattern",
                                   encoding="utf-8")

    def losses(**kw):
        trainer = trainer_for(config(data, model, steps=3, batch_size=2, **kw), SETTINGS,
                              default_paths())
        trainer.prepare()
        trainer.run()
        return trainer

    cached, fresh = losses(name="cached"), losses(name="fresh", cache_latents=False,
                                                  cache_text=False)
    assert not fresh.latents and not fresh.texts  # nothing was cached
    assert fresh.losses == pytest.approx(cached.losses, rel=1e-5)


def test_qwen_image_lora_learns_batches_its_masked_prompts_and_loads_in_diffusers(
        studio_home, tmp_path, tiny_qwen_image_dir):
    from diffusers import QwenImagePipeline

    data = make_folder(tmp_path / "data")
    (data / "img0.txt").write_text("a much longer caption of the first red square pattern",
                                   encoding="utf-8")
    trainer = trainer_for(config(data, tiny_qwen_image_dir, name="inkqwen", steps=12, lr=2e-2,
                                 rank=4, alpha=4.0, batch_size=2), SETTINGS, default_paths())
    trainer.prepare()
    assert trainer.family == "qwen-image"
    lengths = {int(embeds.shape[0]) for embeds, _ in trainer.texts}
    assert len(lengths) > 1  # prompts of different lengths, padded per batch with their mask
    before = trainer.fixed_loss()
    out = trainer.run()
    assert trainer.fixed_loss() < before
    with safe_open(str(out), "pt") as f:
        keys, meta = list(f.keys()), f.metadata()
    assert keys and all(k.startswith("transformer.transformer_blocks.") for k in keys)
    assert meta["ss_base_model_version"] == "qwen_image"
    assert meta["modelspec.architecture"] == "qwen-image/lora"
    pipe = QwenImagePipeline.from_pretrained(str(tiny_qwen_image_dir), local_files_only=True)
    without = plain(pipe)
    pipe.load_lora_weights(str(out.parent), weight_name=out.name)
    assert not np.array_equal(plain(pipe), without)
