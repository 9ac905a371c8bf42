"""Scheduler switching without drift, A1111 sampler names, latent previews (fast and TAESD)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from studio.core.config import Settings, default_paths
from studio.core.jobs import CancelToken
from studio.core.requests import SCHEDULERS, Txt2ImgRequest
from studio.pipelines.diffusion.previews import find_taesd, latents_to_rgb, make_previewer
from studio.pipelines.diffusion.schedulers import a1111_sampler_names, apply_scheduler
from studio.pipelines.diffusion.txt2img import Txt2ImgService
from tests.fixtures.sinks import RecordingSink as Sink


@pytest.fixture(scope="module")
def sd15_pipe(tiny_sd15_dir):
    from diffusers import StableDiffusionPipeline

    return StableDiffusionPipeline.from_pretrained(str(tiny_sd15_dir), safety_checker=None,
                                                   local_files_only=True)


EXPECTED = {
    "default": ("PNDMScheduler", ("PLMS", "")),
    "euler": ("EulerDiscreteScheduler", ("Euler", "")),
    "euler_a": ("EulerAncestralDiscreteScheduler", ("Euler a", "")),
    "dpmpp_2m": ("DPMSolverMultistepScheduler", ("DPM++ 2M", "")),
    "dpmpp_2m_karras": ("DPMSolverMultistepScheduler", ("DPM++ 2M", "Karras")),
    "ddim": ("DDIMScheduler", ("DDIM", "")),
    "unipc": ("UniPCMultistepScheduler", ("UniPC", "")),
    "lcm": ("LCMScheduler", ("LCM", "")),
}


def test_every_scheduler_key_is_covered():
    assert set(EXPECTED) == set(SCHEDULERS)


@pytest.mark.parametrize("key", list(EXPECTED))
def test_apply_scheduler_and_names(sd15_pipe, key):
    scheduler = apply_scheduler(sd15_pipe, key)
    assert sd15_pipe.scheduler is scheduler
    assert type(scheduler).__name__ == EXPECTED[key][0]
    assert a1111_sampler_names(key, scheduler) == EXPECTED[key][1]


def test_switching_back_and_forth_never_drifts(sd15_pipe):
    original = dict(apply_scheduler(sd15_pipe, "default").config)
    apply_scheduler(sd15_pipe, "dpmpp_2m_karras")
    assert sd15_pipe.scheduler.config.use_karras_sigmas is True
    plain = apply_scheduler(sd15_pipe, "dpmpp_2m")
    assert plain.config.use_karras_sigmas is False  # Karras did not stick
    euler = apply_scheduler(sd15_pipe, "euler")
    assert euler.config.use_karras_sigmas is False
    back = apply_scheduler(sd15_pipe, "default")
    assert type(back).__name__ == "PNDMScheduler" and dict(back.config) == original
    assert back.config.beta_schedule == "scaled_linear" and back.config.steps_offset == 1


def test_default_name_follows_the_model_scheduler(sd15_pipe):
    from diffusers import EulerAncestralDiscreteScheduler

    turbo_like = EulerAncestralDiscreteScheduler.from_config(sd15_pipe.scheduler.config,
                                                             timestep_spacing="trailing")
    assert a1111_sampler_names("default", turbo_like) == ("Euler a", "SGM Uniform")


@pytest.mark.parametrize("key", ["euler_a", "dpmpp_2m_karras", "unipc", "lcm"])
def test_generation_runs_with_scheduler(tiny_sd15_dir, key):
    settings = Settings(device="cpu", precision="fp32", preview_mode="off")
    service = Txt2ImgService(lambda: settings, default_paths)
    req = Txt2ImgRequest(model=str(tiny_sd15_dir), prompt="x", steps=2, width=64, height=64,
                         scheduler=key)
    (result,) = service.run(req, Sink(), CancelToken())
    assert result.image.size == (64, 64)
    assert f"Sampler: {EXPECTED[key][1][0]}" in result.parameters


# -- previews ---------------------------------------------------------------------------------


def test_fast_preview_shape_range_and_family():
    gen = torch.Generator().manual_seed(0)
    latents = torch.randn(2, 4, 12, 16, generator=gen)
    sd = latents_to_rgb(latents, "sd1")
    xl = latents_to_rgb(latents, "sdxl")
    assert sd.shape == xl.shape == (12, 16, 3) and sd.dtype == np.uint8
    assert np.array_equal(sd, latents_to_rgb(latents, "sd2"))  # SD1/SD2 share a latent space
    assert not np.array_equal(sd, xl)
    assert sd.std() > 5  # not a flat image
    # The first image of the batch is shown; a known latent maps through the published factors.
    one = torch.zeros(1, 4, 1, 1)
    one[0, 3] = 1.0  # channel 4 of SD: (-0.2120, -0.2616, -0.7177)
    r, g, b = latents_to_rgb(one, "sd1")[0, 0]
    assert (r, g, b) == tuple(int((v + 1) * 127.5) for v in (-0.2120, -0.2616, -0.7177))


def test_fast_preview_is_per_pixel_and_does_not_touch_rng_or_latents():
    """The fast preview stays at latent resolution and maps each latent pixel on its own (no VAE,
    no upscaling, no neighbourhood): a cost linear in the latent's pixels. What it costs next to
    a step is measured by bench/txt2img.py."""
    latents = torch.randn(1, 4, 128, 128, generator=torch.Generator().manual_seed(0))  # 1024 px
    before = latents.clone()
    rng = torch.get_rng_state()
    rgb = latents_to_rgb(latents, "sdxl")
    assert torch.equal(torch.get_rng_state(), rng)
    assert torch.equal(latents, before)
    assert rgb.shape == (128, 128, 3)  # one RGB pixel per latent pixel: nothing decoded
    poked = latents.clone()
    poked[0, :, 40, 77] = torch.tensor([0.5, -0.5, 0.25, -0.25])
    changed = np.argwhere((latents_to_rgb(poked, "sdxl") != rgb).any(axis=2))
    assert changed.tolist() == [[40, 77]]  # each pixel depends on its own latent alone


@pytest.fixture
def installed_taesd():
    """A tiny random AutoencoderTiny installed where Studio looks for madebyollin/taesd."""
    from diffusers import AutoencoderTiny

    torch.manual_seed(0)
    model = AutoencoderTiny(encoder_block_out_channels=(8, 8, 8, 8),
                            decoder_block_out_channels=(8, 8, 8, 8),
                            num_encoder_blocks=(1, 1, 1, 1), num_decoder_blocks=(1, 1, 1, 1),
                            latent_channels=4)
    folder = default_paths().models_dir / "taesd"
    model.save_pretrained(str(folder))
    return folder


def test_find_taesd(installed_taesd, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty"))
    assert find_taesd("sd1", default_paths()) == installed_taesd
    assert find_taesd("sd2", default_paths()) == installed_taesd
    assert find_taesd("sdxl", default_paths()) is None


def test_taesd_previews_every_n_steps_and_same_image(tiny_sd15_dir, installed_taesd):
    req = Txt2ImgRequest(model=str(tiny_sd15_dir), prompt="fox", steps=4, width=64, height=64,
                         seed=5, scheduler="euler")
    images, sinks = {}, {}
    for mode in ("taesd", "off"):
        settings = Settings(device="cpu", precision="fp32", preview_mode=mode, taesd_every=2)
        sinks[mode] = Sink()
        (result,) = Txt2ImgService(lambda s=settings: s, default_paths).run(
            req, sinks[mode], CancelToken())
        images[mode] = np.asarray(result.image)
    previews = [p for _, _, p in sinks["taesd"].steps]
    assert [p is not None for p in previews] == [False, True, False, True]
    assert previews[1].shape == (64, 64, 3) and previews[1].dtype == np.uint8
    assert np.array_equal(images["taesd"], images["off"])


def test_taesd_mode_falls_back_to_fast_when_not_installed(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty"))
    previewer = make_previewer("taesd", "sdxl", 4, default_paths(), "cpu", torch.float32)
    assert previewer.mode == "fast"
    assert previewer(1, 10, torch.zeros(1, 4, 8, 8)).shape == (8, 8, 3)
