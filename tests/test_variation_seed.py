"""Variation seed and strength (A1111's "Variation seed"): the slerp, the seeds of a batch, the
noise diffusers draws, txt2img and img2img results, the infotext and reuse, the CLI and the form."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from diffusers.utils.torch_utils import randn_tensor

from studio.core.config import Settings, default_paths
from studio.core.jobs import CancelToken
from studio.core.requests import Img2ImgRequest, Txt2ImgRequest
from studio.media.metadata import (
    build_parameters,
    metadata_from_text,
    read_image_metadata,
    to_request,
)
from studio.pipelines.diffusion.variation import (
    image_seeds,
    slerp,
    variation_infotext,
    varied_noise,
)
from tests.fixtures.sinks import RecordingSink


# -- the math ----------------------------------------------------------------------------------
def _slerp_by_hand(t: float, low: np.ndarray, high: np.ndarray) -> np.ndarray:
    """Textbook slerp of every (channel, column) vector along the height axis, in float64."""
    out = np.empty_like(low, dtype=np.float64)
    channels, _, width = low.shape
    for c in range(channels):
        for x in range(width):
            u, v = low[c, :, x].astype(np.float64), high[c, :, x].astype(np.float64)
            theta = math.acos(float(u @ v / (np.linalg.norm(u) * np.linalg.norm(v))))
            out[c, :, x] = (math.sin((1 - t) * theta) * u + math.sin(t * theta) * v) \
                / math.sin(theta)
    return out


@pytest.mark.parametrize("t", [0.1, 0.35, 0.5, 0.9])
def test_slerp_matches_the_textbook_formula_per_column(t):
    g = torch.Generator().manual_seed(0)
    low, high = torch.randn(4, 8, 6, generator=g), torch.randn(4, 8, 6, generator=g)
    got = slerp(t, low, high)
    assert got.dtype == low.dtype and got.shape == low.shape
    np.testing.assert_allclose(got.numpy(), _slerp_by_hand(t, low.numpy(), high.numpy()),
                               rtol=1e-4, atol=1e-5)
    # A batch dimension in front changes nothing (diffusers' latents are (1, C, H, W)).
    assert torch.equal(slerp(t, low[None], high[None])[0], got)


def test_slerp_ends_are_the_two_noises_exactly_and_equal_noises_stay_put():
    g = torch.Generator().manual_seed(1)
    low, high = torch.randn(1, 4, 8, 8, generator=g), torch.randn(1, 4, 8, 8, generator=g)
    assert torch.equal(slerp(0.0, low, high), low)
    assert torch.equal(slerp(1.0, low, high), high)
    same = slerp(0.4, low, low.clone())  # the linear fallback: no division by sin(0)
    assert not same.isnan().any() and torch.allclose(same, low)
    half = slerp(1.0, low.half(), high.half())
    assert half.dtype == torch.float16 and torch.equal(half, high.half())


def test_batch_seeds_follow_a1111():
    plain = Txt2ImgRequest(model="m", seed=10, variation_seed=500)
    assert [image_seeds(plain, i) for i in range(3)] == [(10, None), (11, None), (12, None)]
    assert variation_infotext(plain, 1) == {}
    varied = Txt2ImgRequest(model="m", seed=10, variation_seed=500, variation_strength=0.3)
    assert [image_seeds(varied, i) for i in range(3)] == [(10, 500), (10, 501), (10, 502)]
    assert variation_infotext(varied, 2) == {"Variation seed": 502,
                                             "Variation seed strength": "0.3"}


@pytest.mark.parametrize("fields,needle", [
    ({"variation_strength": 1.5}, "Variation strength must be between 0 (off) and 1"),
    ({"variation_strength": -0.1}, "Variation strength must be between 0 (off) and 1"),
    ({"variation_seed": -1}, "Variation seed must be a whole number between 0 and"),
    ({"variation_seed": 2**32}, "Variation seed must be a whole number between 0 and"),
])
def test_requests_refuse_bad_variations_with_a_sentence(fields, needle):
    for request in (Txt2ImgRequest(model="m", **fields),
                    Img2ImgRequest(model="m", image="x.png", **fields)):
        with pytest.raises(ValueError, match=None) as info:
            request.validate()
        assert needle in str(info.value)


# -- the noise diffusers draws -------------------------------------------------------------------
class _Pipe:
    """Stands for a diffusers pipeline: its prepare_latents calls this module's randn_tensor."""

    def prepare_latents(self, generator):
        return randn_tensor((1, 4, 8, 8), generator=generator, dtype=torch.float32)


def test_varied_noise_slerps_the_first_draw_and_leaves_the_generator_where_it_was():
    plain_gen = torch.Generator().manual_seed(7)
    plain = _Pipe().prepare_latents(plain_gen)
    other = _Pipe().prepare_latents(torch.Generator().manual_seed(99))
    gen = torch.Generator().manual_seed(7)
    with varied_noise(_Pipe(), 99, 0.25):
        varied = _Pipe().prepare_latents(gen)
        later = _Pipe().prepare_latents(torch.Generator().manual_seed(3))
    assert torch.equal(varied, slerp(0.25, plain, other))
    # The job's generator advanced exactly as without a variation: an ancestral sampler's
    # later noise is the same.
    assert torch.equal(gen.get_state(), plain_gen.get_state())
    assert torch.equal(later, _Pipe().prepare_latents(torch.Generator().manual_seed(3)))
    assert globals()["randn_tensor"] is randn_tensor  # put back on leaving
    with varied_noise(_Pipe(), None, 0.5):  # off: nothing swapped
        assert torch.equal(_Pipe().prepare_latents(torch.Generator().manual_seed(7)), plain)


# -- txt2img and img2img -----------------------------------------------------------------------
def _txt2img(req):
    from studio.pipelines.diffusion.txt2img import Txt2ImgService

    settings = Settings(device="cpu", precision="fp32", preview_mode="off")
    return Txt2ImgService(lambda: settings, default_paths).run(req, RecordingSink(),
                                                               CancelToken())


def test_txt2img_strength_one_is_the_variation_seeds_image_and_reuse_restores_it(
        tiny_sd15_dir):
    base = Txt2ImgRequest(model=str(tiny_sd15_dir), prompt="a fox", steps=2, cfg=5.0,
                          width=64, height=64, seed=1234, scheduler="euler")
    plain = _txt2img(Txt2ImgRequest(**{**base.__dict__, "seed": 77, "count": 2}))
    full = _txt2img(Txt2ImgRequest(**{**base.__dict__, "count": 2, "variation_seed": 77,
                                      "variation_strength": 1.0}))
    # A1111: at strength 1 the noise is the variation seed's alone; with a deterministic sampler
    # the image is the one that seed makes. Every image keeps the seed; the variation seed counts.
    assert [r.seed for r in full] == [1234, 1234]
    for got, want in zip(full, plain, strict=True):
        assert np.array_equal(np.asarray(got.image), np.asarray(want.image))
    assert "Variation seed: 78, Variation seed strength: 1," in full[1].parameters
    assert "Variation seed" not in plain[0].parameters

    half = _txt2img(Txt2ImgRequest(**{**base.__dict__, "variation_seed": 77,
                                      "variation_strength": 0.5}))[0]
    assert not np.array_equal(np.asarray(half.image), np.asarray(plain[0].image))
    assert "Variation seed: 77, Variation seed strength: 0.5" in half.parameters
    reused = to_request(read_image_metadata(half.path), "")
    assert (reused.seed, reused.variation_seed, reused.variation_strength) == (1234, 77, 0.5)
    second = to_request(read_image_metadata(full[1].path), "")
    assert (second.seed, second.variation_seed, second.count) == (1234, 78, 1)


def test_img2img_varies_the_noise_added_to_the_image(tiny_sd15_dir, tmp_path):
    from PIL import Image

    from studio.pipelines.diffusion.img2img import Img2ImgService

    picture = tmp_path / "in.png"
    Image.fromarray((np.random.default_rng(0).random((64, 64, 3)) * 255).astype(np.uint8)
                    ).save(picture)
    settings = Settings(device="cpu", precision="fp32", preview_mode="off")
    service = Img2ImgService(lambda: settings, default_paths)
    req = Img2ImgRequest(model=str(tiny_sd15_dir), image=str(picture), prompt="a fox",
                         strength=0.8, steps=2, cfg=5.0, seed=5, scheduler="euler")
    plain = service.run(req, RecordingSink(), CancelToken())[0]
    req.variation_seed, req.variation_strength = 9, 0.6
    varied = service.run(req, RecordingSink(), CancelToken())[0]
    assert not np.array_equal(np.asarray(varied.image), np.asarray(plain.image))
    assert "Variation seed: 9, Variation seed strength: 0.6, Denoising strength: 0.8" \
        in varied.parameters


def test_a1111_infotext_round_trip():
    text = build_parameters(Txt2ImgRequest(model="m", prompt="cat", seed=3), 3,
                            sampler="Euler", schedule_type="Automatic", model_name="m",
                            model_hash="", version="x",
                            extra={"Variation seed": 42, "Variation seed strength": 0.25})
    assert "Seed: 3, Size: 512x512, Model: m, Variation seed: 42, " \
           "Variation seed strength: 0.25, Version: x" in text
    request = to_request(metadata_from_text({"parameters": text}), "model")
    assert (request.seed, request.variation_seed, request.variation_strength) == (3, 42, 0.25)
    plain = build_parameters(Txt2ImgRequest(model="m", prompt="cat"), 0, sampler="Euler",
                             schedule_type="", model_name="m", model_hash="", version="x")
    request = to_request(metadata_from_text({"parameters": plain}), "model")
    assert request.variation_strength == 0.0


# -- the CLI -------------------------------------------------------------------------------------
@pytest.mark.parametrize("command", ["generate", "img2img"])
def test_cli_flags_reach_the_request_and_bad_ones_exit_2_with_one_line(command, tmp_path):
    import argparse

    from studio.cli import UsageError
    from studio.cli.common import add_diffusion_arguments, variation_fields

    parser = argparse.ArgumentParser()
    add_diffusion_arguments(parser, prompt_help="p")
    help_text = " ".join(parser.format_help().split())
    assert "--variation-seed N" in help_text and "--variation-strength X" in help_text
    args = parser.parse_args(["--prompt", "x", "--variation-seed", "5",
                              "--variation-strength", "0.4"])
    assert variation_fields(args) == {"variation_seed": 5, "variation_strength": 0.4}
    off = variation_fields(parser.parse_args(["--prompt", "x"]))
    assert off == {"variation_seed": 0, "variation_strength": 0.0}
    rolled = variation_fields(parser.parse_args(["--prompt", "x", "--variation-strength", "1"]))
    assert 0 <= rolled["variation_seed"] < 2**32

    from tests.test_cli_conventions import _one_error_line, run_studio

    picture = tmp_path / "in.png"
    from PIL import Image

    Image.new("RGB", (8, 8)).save(picture)
    extra = ["--image", str(picture)] if command == "img2img" else []
    proc = run_studio(command, "--model", "nosuch", "--prompt", "x", *extra,
                      "--variation-strength", "2")
    assert proc.returncode == 2 and proc.stdout == ""
    assert "Variation strength must be between 0 (off) and 1" in _one_error_line(proc)
    with pytest.raises(UsageError):
        variation_fields(parser.parse_args(["--prompt", "x", "--variation-seed", "-3",
                                            "--variation-strength", "0.5"]))
