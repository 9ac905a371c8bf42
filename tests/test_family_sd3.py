"""SD 3 / 3.5 through Studio's code path (issue 15): a tiny random SD3 folder (the real classes,
no T5) is detected, listed as "SD 3.5" and generates bit for bit what plain diffusers'
StableDiffusion3Pipeline makes; what it cannot do is said in a sentence."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from studio.core.config import Settings, default_paths
from studio.core.jobs import CancelToken, UserFacingError
from studio.core.requests import Txt2ImgRequest
from studio.library.detect import detect_diffusers_folder
from studio.pipelines.diffusion.txt2img import Txt2ImgService
from tests.fixtures.sinks import RecordingSink


def service(preview_mode="fast"):
    settings = Settings(device="cpu", precision="fp32", preview_mode=preview_mode)
    return Txt2ImgService(lambda: settings, default_paths)


def plain_sd3(folder, req, seed):
    from diffusers import StableDiffusion3Pipeline

    pipe = StableDiffusion3Pipeline.from_pretrained(
        str(folder), local_files_only=True, text_encoder_3=None, tokenizer_3=None)
    pipe.set_progress_bar_config(disable=True)
    return pipe(req.prompt, negative_prompt=req.negative_prompt, num_inference_steps=req.steps,
                guidance_scale=req.cfg, width=req.width, height=req.height,
                generator=torch.Generator("cpu").manual_seed(seed)).images[0]


def test_the_folder_is_detected_as_sd3(tiny_sd3_dir, tmp_path):
    found = detect_diffusers_folder(tiny_sd3_dir)
    assert found.family == "sd3" and "SD 3.5" in found.reason
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "model_index.json").write_text(
        '{"_class_name": "StableDiffusion3Pipeline"}', encoding="utf-8")
    assert detect_diffusers_folder(broken).family == "unknown"
    assert "transformer/config.json" in detect_diffusers_folder(broken).reason


def test_images_equal_plain_diffusers_bit_for_bit_with_16_channel_previews(tiny_sd3_dir):
    req = Txt2ImgRequest(model=str(tiny_sd3_dir), prompt="a lighthouse at dusk",
                         negative_prompt="blurry", steps=3, cfg=5.0, width=64, height=64,
                         seed=42, count=2)
    sink = RecordingSink()
    results = service().run(req, sink, CancelToken())
    for result in results:
        expected = np.asarray(plain_sd3(tiny_sd3_dir, req, result.seed))
        assert np.array_equal(np.asarray(result.image), expected)
        assert "Sampler: Euler" in result.parameters and f"Seed: {result.seed}" in result.parameters
    assert not np.array_equal(np.asarray(results[0].image), np.asarray(results[1].image))
    previews = [p for _, _, p in sink.steps if p is not None]
    assert previews and previews[0].shape == (8, 8, 3)  # 16 latent channels → RGB


def test_a1111_syntax_is_used_as_written_and_said(tiny_sd3_dir):
    req = Txt2ImgRequest(model=str(tiny_sd3_dir), prompt="a (lighthouse:1.3) at dusk", steps=2,
                         cfg=5.0, width=64, height=64, seed=1, count=1)
    (result,) = service().run(req, RecordingSink(), CancelToken())
    assert any("plain text" in w for w in result.warnings)
    expected = np.asarray(plain_sd3(tiny_sd3_dir, req, 1))
    assert np.array_equal(np.asarray(result.image), expected)


def test_another_sampler_is_refused_with_a_sentence(tiny_sd3_dir):
    req = Txt2ImgRequest(model=str(tiny_sd3_dir), prompt="cat", steps=2, width=64, height=64,
                         seed=1, count=1, scheduler="euler_a")
    with pytest.raises(UserFacingError, match="Model default"):
        service().run(req, RecordingSink(), CancelToken())


def test_generate_offers_its_sizes_and_only_its_own_sampler(qtbot, qapp):
    from studio.ui.panels.generate.controls import GenerateControls

    controls = GenerateControls()
    qtbot.addWidget(controls)
    controls.scheduler.setCurrentIndex(controls.scheduler.findData("euler_a"))
    controls.set_family("sd3")
    assert controls.scheduler.currentData() == "default"
    model = controls.scheduler.model()
    enabled = [controls.scheduler.itemData(r) for r in range(controls.scheduler.count())
               if model.item(r).isEnabled()]
    assert enabled == ["default"]
    assert controls.preset.findData("1024x1024") >= 0
    controls.set_family("sd1")  # every sampler again
    assert all(model.item(r).isEnabled() for r in range(controls.scheduler.count()))


def test_the_library_lists_it_and_the_cli_generates_with_it(tiny_sd3_dir, tmp_path):
    import json
    import shutil

    from studio.library.models import find_txt2img_models
    from tests.fixtures.cli_run import studio_in_process

    paths = default_paths()
    shutil.copytree(tiny_sd3_dir, paths.models_dir / "tiny-sd3")
    (entry,) = [e for e in find_txt2img_models(Settings(), paths) if e.name == "tiny-sd3"]
    assert entry.family == "sd3" and entry.format == "diffusers"
    out = studio_in_process("generate", "--model", "tiny-sd3", "--prompt", "cat", "--seed", "3",
                            "--steps", "2", "--width", "64", "--height", "64", "--out",
                            str(tmp_path), "--json")
    assert out.returncode == 0, out.stderr
    made = json.loads(out.stdout)
    assert made["seed"] == 3 and made["path"].endswith(".png")


def test_hires_fix_and_img2img_keep_the_size_asked_for(tiny_sd3_dir, tmp_path):
    """SD 3.5's image-to-image pipelines resize their input to a default size unless told the
    size: the hires fix's second pass and Transform give it theirs."""
    from PIL import Image

    from studio.core.requests import Img2ImgRequest
    from studio.pipelines.diffusion.img2img import Img2ImgService

    for upscaler in ("Latent", "Lanczos"):
        req = Txt2ImgRequest(model=str(tiny_sd3_dir), prompt="cat", steps=2, width=64, height=64,
                             seed=1, count=1, hires=True, hires_scale=1.5,
                             hires_upscaler=upscaler, hires_denoise=0.5)
        (result,) = service().run(req, RecordingSink(), CancelToken())
        assert result.image.size == (96, 96), upscaler
    source = tmp_path / "wide.png"
    Image.new("RGB", (96, 64), (200, 40, 40)).save(source)
    settings = Settings(device="cpu", precision="fp32")
    (out,) = Img2ImgService(lambda: settings, default_paths).run(
        Img2ImgRequest(model=str(tiny_sd3_dir), image=str(source), prompt="cat", strength=0.6,
                       steps=3, seed=1, count=1), RecordingSink(), CancelToken())
    assert out.image.size == (96, 64)


def test_a_lora_applies_as_diffusers_applies_it_and_goes_away_again(tiny_sd3_dir, tmp_path):
    from diffusers import StableDiffusion3Pipeline
    from peft import LoraConfig, get_peft_model_state_dict

    pipe = StableDiffusion3Pipeline.from_pretrained(
        str(tiny_sd3_dir), local_files_only=True, text_encoder_3=None, tokenizer_3=None)
    pipe.set_progress_bar_config(disable=True)
    torch.manual_seed(0)
    pipe.transformer.add_adapter(LoraConfig(r=4, lora_alpha=4,
                                            target_modules=["to_q", "to_k", "to_v", "to_out.0"]))
    layers = {k: torch.randn_like(v) * 0.5
              for k, v in get_peft_model_state_dict(pipe.transformer).items()}
    StableDiffusion3Pipeline.save_lora_weights(tmp_path, transformer_lora_layers=layers,
                                               weight_name="glow.safetensors")
    lora = tmp_path / "glow.safetensors"

    svc = service()  # one model cache: the LoRA is loaded into it, then unloaded again

    def run(prompt):
        req = Txt2ImgRequest(model=str(tiny_sd3_dir), prompt=prompt, steps=2, width=64,
                             height=64, seed=1, count=1)
        return svc.run(req, RecordingSink(), CancelToken())[0]

    svc_base, with_lora = run("cat"), run(f"cat <lora:{lora}:0.8>")
    plain = StableDiffusion3Pipeline.from_pretrained(
        str(tiny_sd3_dir), local_files_only=True, text_encoder_3=None, tokenizer_3=None)
    plain.set_progress_bar_config(disable=True)
    plain.load_lora_weights(str(tmp_path), weight_name="glow.safetensors", adapter_name="glow")
    plain.set_adapters(["glow"], [0.8])
    expected = plain("cat", num_inference_steps=2, width=64, height=64,
                     generator=torch.Generator("cpu").manual_seed(1)).images[0]
    assert np.array_equal(np.asarray(with_lora.image), np.asarray(expected))
    assert not np.array_equal(np.asarray(with_lora.image), np.asarray(svc_base.image))
    assert "<lora:glow:0.8>" in with_lora.parameters or "glow" in with_lora.parameters
    assert np.array_equal(np.asarray(run("cat").image), np.asarray(svc_base.image))  # unloaded
