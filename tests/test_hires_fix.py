"""The hires fix: a first pass, an upscale, an img2img pass — equal to plain diffusers doing the
same three things with the same seeds — and its A1111 keys written, read and reused."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from PIL import Image

from studio.core.config import Settings, default_paths
from studio.core.jobs import CancelToken
from studio.core.requests import Txt2ImgRequest
from studio.media.metadata import read_image_metadata, to_request
from studio.pipelines.diffusion.txt2img import Txt2ImgService
from tests.test_gui_panels_generate import ctx  # noqa: F401 - the Generate panel's fixture


class Sink:
    def __init__(self) -> None:
        self.messages: list[str] = []
        self.partials: list = []

    def __call__(self, step, total, preview=None):
        pass

    def partial(self, result):
        self.partials.append(result)

    def message(self, text):
        self.messages.append(text)


def _service():
    settings = Settings(preview_mode="fast", device="cpu")
    return Txt2ImgService(lambda: settings, default_paths)


def _plain(pipe):
    from diffusers import StableDiffusionImg2ImgPipeline, StableDiffusionPipeline

    first = StableDiffusionPipeline(**pipe.components)
    second = StableDiffusionImg2ImgPipeline(**pipe.components)
    for p in (first, second):
        p.set_progress_bar_config(disable=True)
    return first, second


def _request(model, **hires):
    return Txt2ImgRequest(model=str(model), prompt="a red barn", negative_prompt="blurry",
                          steps=3, cfg=6.0, width=32, height=24, seed=5, hires=True,
                          **hires)


@pytest.mark.parametrize("upscaler", ["Lanczos", "Latent", "Latent (nearest)"])
def test_hires_equals_plain_txt2img_then_img2img(tiny_sd15_dir, upscaler):
    import torch
    import torch.nn.functional as F

    service = _service()
    request = _request(tiny_sd15_dir, hires_scale=1.5, hires_upscaler=upscaler, hires_steps=4,
                       hires_denoise=0.5)
    sink = Sink()
    [result] = service.run(request, sink, CancelToken())
    assert result.image.size == request.hires_size() == (48, 32)
    assert any("Hires fix" in m for m in sink.messages)
    first, second = _plain(service.cache.current)
    common = dict(prompt="a red barn", negative_prompt="blurry", guidance_scale=6.0)
    latent = upscaler.startswith("Latent")
    base = first(**common, num_inference_steps=3, width=32, height=24,
                 output_type="latent" if latent else "pil",
                 generator=torch.Generator("cpu").manual_seed(5)).images
    if latent:
        mode = "nearest" if "nearest" in upscaler else "bilinear"
        image = F.interpolate(base, size=(4, 6), mode=mode)
    else:
        image = base[0].resize((48, 32), Image.Resampling.LANCZOS)
    expected = second(**common, image=image, strength=0.5, num_inference_steps=4,
                      generator=torch.Generator("cpu").manual_seed(5)).images[0]
    assert np.array_equal(np.asarray(result.image), np.asarray(expected))


def test_hires_metadata_round_trip_and_reuse(tiny_sd15_dir):
    request = _request(tiny_sd15_dir, hires_scale=1.5, hires_upscaler="Lanczos", hires_steps=2,
                       hires_denoise=0.45)
    [result] = _service().run(request, Sink(), CancelToken())
    text = Image.open(result.path).text["parameters"]
    assert "Denoising strength: 0.45, Hires upscale: 1.5, Hires steps: 2, " \
           "Hires upscaler: Lanczos" in text
    assert "Size: 32x24" in text  # the first pass's size, as A1111 writes it
    meta = read_image_metadata(result.path)
    assert meta.params["hires_scale"] == 1.5 and meta.params["hires_steps"] == 2
    assert meta.params["hires_upscaler"] == "Lanczos"
    assert meta.params["denoising_strength"] == 0.45
    again = to_request(meta, "")
    assert again == dataclasses.replace(request, count=1)
    # The same text without Studio's own chunk (as A1111 wrote it) restores the hires fix too.
    from studio.media.metadata import metadata_from_text

    foreign = to_request(metadata_from_text({"parameters": text}), str(tiny_sd15_dir))
    assert (foreign.hires, foreign.hires_scale, foreign.hires_steps, foreign.hires_upscaler,
            foreign.hires_denoise) == (True, 1.5, 2, "Lanczos", 0.45)


def test_plain_a1111_text_without_hires_keeps_it_off():
    from studio.media.metadata import metadata_from_text

    meta = metadata_from_text({"parameters": "a cat\nSteps: 20, Sampler: Euler, Seed: 3, "
                                             "Size: 512x512, Denoising strength: 0.3"})
    assert to_request(meta, "m").hires is False


@pytest.mark.parametrize("fields, words", [
    ({"hires_scale": 1.0}, "Hires upscale must be above 1"),
    ({"hires_scale": 9}, "at most 4"),
    ({"hires_scale": 4.0, "width": 2048}, "larger than 4096 px"),
    ({"hires_steps": -1}, "Hires steps must be between 0"),
    ({"hires_denoise": 0.0}, "Denoising strength must be above 0"),
    ({"hires_upscaler": " "}, "No hires upscaler chosen"),
])
def test_hires_fields_are_checked_with_a_sentence(fields, words):
    request = dataclasses.replace(_request("m"), **fields)
    with pytest.raises(ValueError, match=words):
        request.validate()
    dataclasses.replace(request, hires=False).validate()  # off: the fields are not looked at


def test_cli_generate_hires_flags_and_studio_params(tiny_sd15_dir, tmp_path):
    import json

    from tests.test_cli_basics import run_studio

    out = run_studio("generate", "--model", str(tiny_sd15_dir), "--prompt", "a red barn",
                     "--steps", "2", "--width", "32", "--height", "24", "--seed", "5",
                     "--hires-scale", "1.5", "--hires-steps", "2", "--denoise", "0.4",
                     "--upscaler", "latent (nearest)", "--out", str(tmp_path), "--json")
    assert out.returncode == 0, out.stderr
    row = json.loads(out.stdout)
    assert (row["width"], row["height"]) == (48, 32)
    shown = run_studio("params", row["path"])
    assert shown.returncode == 0, shown.stderr
    for line in ("hires_scale: 1.5", "hires_steps: 2", "hires_upscaler: Latent (nearest)",
                 "denoising_strength: 0.4", "width: 32"):
        assert line in shown.stdout.splitlines(), shown.stdout


def test_cli_hires_options_without_the_scale_are_refused(tiny_sd15_dir):
    from tests.test_cli_basics import run_studio

    out = run_studio("generate", "--model", str(tiny_sd15_dir), "--prompt", "x",
                     "--denoise", "0.5")
    assert out.returncode == 2
    assert "--denoise only applies to the hires fix: add --hires-scale" in out.stderr
    out = run_studio("generate", "--model", str(tiny_sd15_dir), "--prompt", "x",
                     "--hires-scale", "2", "--upscaler", "bicubic")
    assert out.returncode == 2
    assert "No upscaler model called 'bicubic'" in out.stderr and "Or use one of: Latent" \
        in out.stderr



@pytest.mark.gui
def test_generate_hires_group_builds_and_restores_the_request(qtbot, ctx):  # noqa: F811
    from tests.test_gui_panels_generate import fill, make_panel
    from tests.test_upscale import TINY_COMPACT, _network, _save

    _save(_network(TINY_COMPACT), ctx.paths.models_dir / "upscalers" / "2x-compact.pth")
    panel = make_panel(qtbot, ctx)
    fill(panel, size=(512, 768))
    hires = panel.controls.hires
    panel.refresh_loras()  # the upscaler models are found with the LoRAs, off the GUI thread
    qtbot.waitUntil(lambda: hires.upscaler.findData("2x-compact") == 3, timeout=5000)
    assert not hires.body.isVisible() and panel.build_request().hires is False
    hires.enabled.setChecked(True)  # turning it on opens the group
    assert hires.body.isVisible() and hires.expand.isChecked()
    hires.scale.setValue(1.5)
    hires.upscaler.setCurrentIndex(hires.upscaler.findData("Lanczos"))
    hires.steps.setValue(12)
    hires.denoise.setValue(0.45)
    assert hires.target.text() == "Makes 512×768, then 768×1152"
    built = panel.build_request()
    assert (built.hires, built.hires_scale, built.hires_upscaler, built.hires_steps,
            built.hires_denoise) == (True, 1.5, "Lanczos", 12, 0.45)
    hires.expand.setChecked(False)  # the arrow hides the fields but keeps the hires fix on
    assert not hires.body.isVisible() and panel.build_request().hires
    panel.receive(dataclasses.replace(built, hires=False, hires_scale=2.0))
    assert not hires.enabled.isChecked() and hires.scale.value() == 2.0
    panel.receive(built)  # "reuse parameters" of a hires image
    assert panel.build_request() == built and hires.body.isVisible()
    hires.upscaler.setCurrentIndex(hires.upscaler.findData("2x-compact"))
    assert panel.build_request().hires_upscaler == "2x-compact"


def test_sdxl_hires_equals_plain_sdxl_txt2img_then_img2img(tiny_sdxl_dir):
    import torch
    from diffusers import StableDiffusionXLImg2ImgPipeline, StableDiffusionXLPipeline

    service = _service()
    request = _request(tiny_sdxl_dir, hires_scale=1.5, hires_upscaler="Lanczos", hires_steps=2,
                       hires_denoise=0.6)
    [result] = service.run(request, Sink(), CancelToken())
    components = service.cache.current.components
    first = StableDiffusionXLPipeline(**components)
    second = StableDiffusionXLImg2ImgPipeline(**components)
    common = dict(prompt="a red barn", negative_prompt="blurry", guidance_scale=6.0)
    base = first(**common, num_inference_steps=3, width=32, height=24,
                 generator=torch.Generator("cpu").manual_seed(5)).images[0]
    image = base.resize((48, 32), Image.Resampling.LANCZOS)
    expected = second(**common, image=image, strength=0.6, num_inference_steps=2,
                      generator=torch.Generator("cpu").manual_seed(5)).images[0]
    assert np.array_equal(np.asarray(result.image), np.asarray(expected))


def test_a_gan_trained_in_studio_refuses_the_hires_fix_and_the_form_greys_it(qtbot):
    from studio.core.jobs import UserFacingError
    from studio.pipelines.train.dcgan import DCGANTrainer
    from studio.pipelines.train.export import export_trainer
    from studio.ui.panels.generate.controls import GenerateControls

    trainer = DCGANTrainer(config={"batch_size": 8, "width": 4, "latent_dim": 4}, seed=0)
    exported = export_trainer(trainer, default_paths().models_dir, "digits-gan")
    request = _request(exported.path, hires_scale=2.0)
    with pytest.raises(UserFacingError, match="digits-gan is a GAN trained in Studio: it has no "
                                              "hires fix"):
        _service().run(request, Sink(), CancelToken())
    controls = GenerateControls()
    qtbot.addWidget(controls)
    controls.hires.enabled.setChecked(True)
    controls.set_family("gan")
    assert not controls.hires.isEnabled() and controls.request("gan").hires is False
    controls.set_family("sd1")  # the hires fix comes back as it was
    assert controls.hires.isEnabled() and controls.request("m").hires is True
