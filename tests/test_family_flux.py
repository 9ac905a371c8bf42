"""FLUX.1 through Studio's code path (issue 15): a tiny random FLUX folder (the real classes, a
T5 tokenizer trained here) is detected and generates bit for bit what plain diffusers'
FluxPipeline makes, with its guidance, previews of its packed latents, img2img, the hires fix and
LoRAs; a negative prompt or a latent hires upscaler is said not to apply."""

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


def service():
    settings = Settings(device="cpu", precision="fp32", preview_mode="fast")
    return Txt2ImgService(lambda: settings, default_paths)


def plain_flux(folder, req, seed, lora=None):
    from diffusers import FluxPipeline

    pipe = FluxPipeline.from_pretrained(str(folder), local_files_only=True)
    pipe.set_progress_bar_config(disable=True)
    if lora is not None:
        pipe.load_lora_weights(str(lora.parent), weight_name=lora.name, adapter_name="x")
        pipe.set_adapters(["x"], [0.8])
    return pipe(req.prompt, num_inference_steps=req.steps, guidance_scale=req.cfg,
                width=req.width, height=req.height,
                generator=torch.Generator("cpu").manual_seed(seed)).images[0]


def request(folder, prompt="a lighthouse at dusk", **kw):
    base = dict(model=str(folder), prompt=prompt, steps=2, cfg=3.5, width=64, height=64, seed=5,
                count=1)
    return Txt2ImgRequest(**{**base, **kw})


def test_detected_and_bit_equal_with_guidance_and_previews(tiny_flux_dir):
    assert detect_diffusers_folder(tiny_flux_dir).family == "flux"
    req = request(tiny_flux_dir, count=2)
    sink = RecordingSink()
    results = service().run(req, sink, CancelToken())
    for result in results:
        expected = plain_flux(tiny_flux_dir, req, result.seed)
        assert np.array_equal(np.asarray(result.image), np.asarray(expected))
        assert "CFG scale: 3.5" in result.parameters
    assert not np.array_equal(np.asarray(results[0].image), np.asarray(results[1].image))
    previews = [p for _, _, p in sink.steps if p is not None]
    assert previews and previews[0].shape == (8, 8, 3)  # packed tokens → 16×8×8 → RGB


def test_a_negative_prompt_is_said_to_be_unused(tiny_flux_dir):
    req = request(tiny_flux_dir, negative_prompt="blurry")
    (result,) = service().run(req, RecordingSink(), CancelToken())
    assert any("no negative prompt" in w for w in result.warnings)
    assert np.array_equal(np.asarray(result.image),
                          np.asarray(plain_flux(tiny_flux_dir, req, 5)))


def test_hires_fix_with_lanczos_and_a_sentence_for_latent(tiny_flux_dir):
    svc = service()
    (result,) = svc.run(request(tiny_flux_dir, hires=True, hires_scale=1.5,
                                hires_upscaler="Lanczos", hires_denoise=0.5),
                        RecordingSink(), CancelToken())
    assert result.image.size == (96, 96)
    with pytest.raises(UserFacingError, match="Lanczos"):
        svc.run(request(tiny_flux_dir, hires=True, hires_upscaler="Latent"), RecordingSink(),
                CancelToken())


def test_a_lora_applies_as_diffusers_applies_it(tiny_flux_dir, tmp_path):
    from diffusers import FluxPipeline
    from peft import LoraConfig, get_peft_model_state_dict

    pipe = FluxPipeline.from_pretrained(str(tiny_flux_dir), local_files_only=True)
    torch.manual_seed(0)
    pipe.transformer.add_adapter(LoraConfig(r=4, lora_alpha=4,
                                            target_modules=["to_q", "to_k", "to_v"]))
    layers = {k: torch.randn_like(v) * 0.5
              for k, v in get_peft_model_state_dict(pipe.transformer).items()}
    FluxPipeline.save_lora_weights(tmp_path, transformer_lora_layers=layers,
                                   weight_name="ink.safetensors")
    lora = tmp_path / "ink.safetensors"
    svc = service()
    (plain,) = svc.run(request(tiny_flux_dir), RecordingSink(), CancelToken())
    (styled,) = svc.run(request(tiny_flux_dir, prompt=f"a lighthouse at dusk <lora:{lora}:0.8>"),
                        RecordingSink(), CancelToken())
    expected = plain_flux(tiny_flux_dir, request(tiny_flux_dir), 5, lora=lora)
    assert np.array_equal(np.asarray(styled.image), np.asarray(expected))
    assert not np.array_equal(np.asarray(styled.image), np.asarray(plain.image))


def test_generate_names_guidance_and_greys_the_negative_prompt(qtbot, qapp):
    from studio.ui.panels.generate.controls import GenerateControls

    controls = GenerateControls()
    qtbot.addWidget(controls)
    controls.negative.setPlainText("blurry")
    controls.set_family("flux")
    assert controls.cfg_label.text() == "Guidance" and not controls.negative.isEnabled()
    assert controls.negative.toPlainText() == "blurry"  # kept for the next model
    assert controls.scheduler.currentData() == "default"
    controls.set_family("sdxl")
    assert controls.cfg_label.text() == "CFG scale" and controls.negative.isEnabled()
