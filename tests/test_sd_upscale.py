"""SD upscale: enlarge (Lanczos or an upscaler model), refine in overlapping tiles with img2img,
blend — each tile plain diffusers' img2img, the blend weights summing to 1, metadata round trip."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from PIL import Image

from studio.core.config import Settings, default_paths
from studio.core.jobs import CancelToken, UserFacingError
from studio.core.requests import Img2ImgRequest
from studio.pipelines.cyclegan.model import blend_tiles
from studio.pipelines.diffusion.img2img import Img2ImgService
from studio.pipelines.diffusion.sd_upscale import sd_upscale_grid, sd_upscale_size
from tests.fixtures.sinks import RecordingSink
from tests.test_transform_gui_results import panel  # noqa: F401 - the Transform panel


@pytest.fixture(scope="module")
def picture(tmp_path_factory):
    rng = np.random.default_rng(5)
    small = (rng.random((6, 8, 3)) * 255).astype(np.uint8)
    path = tmp_path_factory.mktemp("sd-upscale") / "small.png"
    Image.fromarray(small).resize((40, 32), Image.Resampling.BICUBIC).save(path)
    return path


def _request(model: str, image: str, **kw) -> Img2ImgRequest:
    fields = dict(model=model, image=image, prompt="sharp details", strength=0.5, steps=4,
                  cfg=5.0, seed=21, sd_upscale=2.0, sd_upscale_tile=64, sd_upscale_overlap=16)
    fields.update(kw)
    return Img2ImgRequest(**fields)


def test_tiles_cover_the_image_and_their_weights_sum_to_one():
    import torch

    request = _request("m", "x", sd_upscale_tile=64, sd_upscale_overlap=16)
    grid = sd_upscale_grid(136, 80, request)
    covered = np.zeros((80, 136), dtype=int)
    for y0, x0, h, w in grid:
        assert h % 8 == 0 and w % 8 == 0 and h <= 64 and w <= 64
        covered[y0:y0 + h, x0:x0 + w] += 1
    assert covered.min() >= 1 and covered.max() > 1  # everything covered, overlaps exist
    # Blending tiles that are returned unchanged gives the image back: at every pixel the
    # tiles' weights sum to 1.
    x = torch.rand((1, 3, 80, 136))
    out = blend_tiles(x, grid, 16, lambda tile: tile, 3)
    assert torch.allclose(out, x, atol=1e-6)
    ones = blend_tiles(torch.ones((1, 1, 80, 136)), grid, 16, lambda tile: tile * 0 + 1, 1)
    assert torch.allclose(ones, torch.ones_like(ones), atol=1e-6)


def test_size_and_refusals():
    assert sd_upscale_size((40, 32), 2.0) == (80, 64)
    assert sd_upscale_size((37, 30), 1.5) == (48, 40)  # rounded down to multiples of 8
    with pytest.raises(UserFacingError, match="at most 4096"):
        sd_upscale_size((3000, 100), 2.0)
    for fields, words in (({"sd_upscale": 0.5}, "between 1 and 8"),
                          ({"sd_upscale_tile": 100}, "multiple of 8 from 64"),
                          ({"sd_upscale_overlap": 40}, "half the tile size"),
                          ({"mask": "m.png"}, "clear the mask"),
                          ({"sd_upscaler": " "}, "Lanczos or an upscaler model"),
                          ({"sd_upscaler": "Latent"}, "not latents")):
        with pytest.raises(ValueError, match=words):
            _request("m", "x", **fields).validate()


def _plain_img2img(pipe):
    from diffusers import StableDiffusionImg2ImgPipeline

    plain = StableDiffusionImg2ImgPipeline(**pipe.components)
    plain.set_progress_bar_config(disable=True)
    return plain


def test_tiles_are_plain_img2img_blended_and_the_settings_round_trip(tiny_sd15_dir, picture):
    import torch

    from studio.media.infotext import parse_infotext
    from studio.media.transform_reuse import read_transform_reuse

    settings = Settings(preview_mode="none", device="cpu")
    service = Img2ImgService(lambda: settings, default_paths)
    request = _request(str(tiny_sd15_dir), str(picture))
    sink = RecordingSink()
    result = service.run(request, sink, CancelToken())[0]
    assert result.image.size == (80, 64)
    grid = sd_upscale_grid(80, 64, request)
    assert len(grid) == 2  # two tiles across, one row
    # Progress counts the steps of both tiles and ends full.
    assert sink.steps[-1][0] == sink.steps[-1][1] and len(sink.steps) == sink.steps[-1][1]

    plain = _plain_img2img(service.cache.current)
    enlarged = Image.open(picture).convert("RGB").resize((80, 64), Image.Resampling.LANCZOS)
    x = torch.from_numpy(np.asarray(enlarged, dtype=np.float32) / 255).permute(2, 0, 1)[None]

    def tile(crop):
        pixels = (crop[0].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
        out = plain(prompt="sharp details", image=Image.fromarray(pixels), strength=0.5,
                    num_inference_steps=4, guidance_scale=5.0,
                    generator=torch.Generator("cpu").manual_seed(21)).images[0]
        return torch.from_numpy(np.asarray(out, dtype=np.float32) / 255).permute(2, 0, 1)[None]

    blended = blend_tiles(x, grid, 16, tile, 3)
    expected = (blended[0].clamp(0, 1).permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
    assert np.array_equal(np.asarray(result.image), expected)

    parsed = parse_infotext(Image.open(result.path).text["parameters"])
    assert (parsed["SD upscale"], parsed["SD upscale upscaler"], parsed["SD upscale tile"],
            parsed["SD upscale overlap"], parsed["Denoising strength"]) == \
        ("2", "Lanczos", "64", "16", "0.5")
    reuse = read_transform_reuse(result.path)
    assert reuse.request == dataclasses.replace(request, width=40, height=32)
    from studio.media.metadata import read_image_metadata

    shown = read_image_metadata(result.path).params  # what `studio params` prints
    assert (shown["sd_upscale"], shown["sd_upscaler"], shown["sd_upscale_tile"]) == \
        (2.0, "Lanczos", 64)


def test_one_tile_with_an_upscaler_model_is_plain_img2img(tiny_sd15_dir, picture, tmp_path):
    import torch

    from studio.pipelines.upscale.model import Upscaler
    from tests.test_upscale import TINY_COMPACT, _network, _save

    model = _save(_network(TINY_COMPACT), tmp_path / "2x-tiny.pth")
    settings = Settings(preview_mode="none", device="cpu")
    service = Img2ImgService(lambda: settings, default_paths)
    request = _request(str(tiny_sd15_dir), str(picture), sd_upscale=1.5, sd_upscaler=str(model),
                       sd_upscale_tile=512, steps=2)
    result = service.run(request, RecordingSink(), CancelToken())[0]
    assert result.image.size == (60 // 8 * 8, 48)

    from studio.library.safe_load import load_state_dict

    upscaler = Upscaler(load_state_dict(model), "cpu", "2x-tiny")
    enlarged = upscaler.upscale(Image.open(picture).convert("RGB")).resize(
        (56, 48), Image.Resampling.LANCZOS)
    expected = _plain_img2img(service.cache.current)(
        prompt="sharp details", image=enlarged, strength=0.5, num_inference_steps=2,
        guidance_scale=5.0, generator=torch.Generator("cpu").manual_seed(21)).images[0]
    assert np.array_equal(np.asarray(result.image), np.asarray(expected))
    assert "SD upscale upscaler: 2x-tiny," in result.parameters  # its name, never its folder


def test_cli_sd_upscale(tiny_sd15_dir, picture, tmp_path):
    import json

    from tests.fixtures.cli_run import studio_in_process

    base = ("img2img", "--model", str(tiny_sd15_dir), "--image", str(picture), "--prompt", "x",
            "--steps", "2", "--strength", "0.3", "--device", "cpu", "--sd-upscale", "2")
    bad = studio_in_process(*base, "--tile", "100")
    assert bad.returncode == 2 and "tile size must be a multiple of 8" in bad.stderr
    proc = studio_in_process(*base, "--tile", "64", "--tile-overlap", "16", "--seed", "1",
                             "--out", str(tmp_path / "o"), "--json")
    assert proc.returncode == 0, proc.stderr
    line = json.loads(proc.stdout)
    assert (line["width"], line["height"], line["sd_upscale"]) == (80, 64, 2.0)
    assert "SD upscale: 2, SD upscale upscaler: Lanczos" in Image.open(line["path"]).text[
        "parameters"]


@pytest.mark.gui
def test_window_sd_upscale_mode_and_reuse(panel, qtbot, tiny_sd15_dir, picture):  # noqa: F811
    from studio.media.transform_reuse import read_transform_reuse

    qtbot.waitUntil(lambda: not panel.sd_picker.scanning, timeout=10_000)
    panel.sd_picker.select_model(str(tiny_sd15_dir))
    panel.receive(picture)
    panel.diffusion.steps.setValue(2)
    panel.set_mode("upscale")
    up = panel.upscale
    qtbot.waitUntil(lambda: up.scans > 0, timeout=10_000)
    assert up.sd.isHidden() and not up.model_box.isHidden()
    up.method.setCurrentIndex(up.method.findData("sd"))
    assert not up.sd.isHidden() and up.model_box.isHidden()
    assert up.sd.isAncestorOf(panel.sd_picker)  # one picker, shown where it is needed
    qtbot.waitUntil(panel.sd_picker.isVisible, timeout=5_000)
    assert up.sd.upscaler.currentData() == "Lanczos"
    up.sd.tile.setValue(100)  # not a multiple of 8: said, nothing submitted
    assert panel.run() == [] and "multiple of 8" in panel.error_label.text()
    up.sd.tile.setValue(64)
    up.sd.overlap.setValue(16)
    up.sd.strength.setValue(0.35)
    with qtbot.waitSignal(panel.jobFinished, timeout=120_000) as done:
        assert panel.run()
    assert done.args[0].state.value == "done", done.args[0].error
    assert panel.compare.after() is not None  # shown in the Upscale tab
    result = panel.last_result.path
    assert Image.open(result).size == (80, 64)

    up.method.setCurrentIndex(up.method.findData("model"))
    up.sd.tile.setValue(512)
    panel.receive(read_transform_reuse(result))
    assert panel.mode == "upscale" and up.sd_mode
    assert panel.sd_picker.current_model() == str(tiny_sd15_dir)
    panel.set_mode("img2img")  # the picker goes back to the img2img page
    assert not up.isAncestorOf(panel.sd_picker)
    qtbot.waitUntil(panel.sd_picker.isVisible, timeout=5_000)  # Qt shows a moved widget soon
    assert (up.sd.tile.value(), up.sd.overlap.value(), up.sd.strength.value(),
            up.sd.scale.value()) == (64, 16, 0.35, 2.0)
