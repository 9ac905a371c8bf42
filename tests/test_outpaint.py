"""Outpainting: the canvas extended on chosen sides, the new area (and only it, plus a feathered
seam) inpainted, the picture kept; equal to plain diffusers' inpaint call; metadata round trip."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from PIL import Image

from studio.core.config import Settings, default_paths
from studio.core.jobs import CancelToken, UserFacingError
from studio.core.requests import Img2ImgRequest
from studio.pipelines.diffusion.img2img import Img2ImgService
from studio.pipelines.diffusion.outpaint import outpaint_canvas, outpaint_mask
from tests.fixtures.sinks import RecordingSink
from tests.test_transform_gui_results import panel  # noqa: F401 - the Transform panel


@pytest.fixture(scope="module")
def picture(tmp_path_factory):
    rng = np.random.default_rng(7)
    pixels = (rng.random((32, 40, 3)) * 255).astype(np.uint8)
    path = tmp_path_factory.mktemp("outpaint") / "picture.png"
    Image.fromarray(pixels).save(path)
    return path, pixels


def _request(model: str, image: str, **kw) -> Img2ImgRequest:
    fields = dict(model=model, image=image, prompt="a wide landscape", strength=1.0, steps=3,
                  cfg=5.0, seed=9, outpaint_left=16, outpaint_bottom=8, mask_blur=4)
    fields.update(kw)
    return Img2ImgRequest(**fields)


def test_mask_covers_exactly_the_new_area_with_a_seam_inside_the_picture():
    mask = np.asarray(outpaint_mask((40 + 16 + 8, 32 + 24), (16, 8, 24, 0), feather=4))
    assert mask.shape == (56, 64)
    new = np.ones_like(mask, dtype=bool)
    new[24:, 16:56] = False  # the picture's place
    assert (mask[new] == 255).all()  # every new pixel is repainted completely
    picture = mask[24:, 16:56]
    assert (picture[4:, 4:-4] == 0).all()  # beyond the seam: untouched
    # The seam: falling from the new area across 4 px of the picture, on the padded sides only.
    assert list(picture[20, :5]) == [223, 159, 96, 32, 0]
    assert list(picture[:5, 20]) == [223, 159, 96, 32, 0]
    assert list(picture[20, -5:]) == [0, 32, 96, 159, 223]
    hard = np.asarray(outpaint_mask((64, 56), (16, 8, 24, 0), feather=0))
    assert np.array_equal(hard == 255, new) and set(np.unique(hard)) == {0, 255}


def test_canvas_keeps_the_picture_and_fills_with_edges_or_noise(picture):
    image = Image.fromarray(picture[1])
    request = _request("m", "x", outpaint_top=8)
    canvas, mask = outpaint_canvas(image, request)
    assert canvas.size == mask.size == (56, 48)
    pixels = np.asarray(canvas)
    assert np.array_equal(pixels[8:40, 16:], picture[1])
    assert np.array_equal(pixels[8:40, 0], picture[1][:, 0])  # the left edge stretched out
    assert np.array_equal(pixels[0, 16:], picture[1][0])  # the top edge stretched up
    noise, _ = outpaint_canvas(image, dataclasses.replace(request, outpaint_fill="noise"))
    again, _ = outpaint_canvas(image, dataclasses.replace(request, outpaint_fill="noise"))
    assert np.array_equal(np.asarray(noise)[8:40, 16:], picture[1])
    assert np.array_equal(np.asarray(noise), np.asarray(again))  # seeded: the same each time
    assert np.asarray(noise)[:8].std() > 50


@pytest.mark.parametrize("fields, words", [
    ({"outpaint_left": 10}, "multiple of 8"),
    ({"outpaint_top": -8}, "0 or more"),
    ({"outpaint_right": 8, "mask": "m.png"}, "makes its own mask"),
    ({"outpaint_fill": "plasma"}, "fill must be one of"),
    ({"outpaint_left": 8192}, "at most 4096"),
])
def test_bad_amounts_are_refused_with_a_sentence(fields, words):
    with pytest.raises(ValueError, match=words):
        _request("m", "x.png", **fields).validate()


def test_too_large_a_canvas_is_refused(picture):
    from studio.pipelines.diffusion.outpaint import canvas_size

    with pytest.raises(UserFacingError, match="4096"):
        canvas_size((4000, 100), _request("m", "x", outpaint_left=64, outpaint_right=64))


def test_outpaint_equals_plain_diffusers_inpaint_and_round_trips(tiny_sd15_dir, picture):
    import torch

    from studio.media.infotext import parse_infotext
    from studio.media.transform_reuse import read_transform_reuse

    settings = Settings(preview_mode="none", device="cpu")
    service = Img2ImgService(lambda: settings, default_paths)
    request = _request(str(tiny_sd15_dir), str(picture[0]))
    result = service.run(request, RecordingSink(), CancelToken())[0]
    assert result.image.size == (56, 40)

    pipe = service.cache.current
    from diffusers import StableDiffusionInpaintPipeline

    plain = StableDiffusionInpaintPipeline(**pipe.components)
    plain.set_progress_bar_config(disable=True)
    canvas, mask = outpaint_canvas(Image.fromarray(picture[1]), request)
    expected = plain(prompt="a wide landscape", image=canvas, mask_image=mask, width=56,
                     height=40, strength=1.0, num_inference_steps=3, guidance_scale=5.0,
                     generator=torch.Generator("cpu").manual_seed(9)).images[0]
    expected = plain.image_processor.apply_overlay(mask, canvas, expected)
    out = np.asarray(result.image)
    assert np.array_equal(out, np.asarray(expected))
    assert np.array_equal(out[:32 - 4, 16 + 4:], picture[1][:-4, 4:])  # kept beyond the seam
    assert not np.array_equal(out[:, :16], np.asarray(canvas)[:, :16])  # the new area painted

    parsed = parse_infotext(Image.open(result.path).text["parameters"])
    assert (parsed["Outpaint left"], parsed["Outpaint bottom"]) == ("16", "8")
    assert parsed["Outpaint fill"] == "edge" and parsed["Mask blur"] == "4"
    assert "Outpaint right" not in parsed and parsed["Size-1"] == "40"
    from studio.media.metadata import read_image_metadata

    shown = read_image_metadata(result.path).params  # what `studio params` prints
    assert (shown["outpaint_left"], shown["outpaint_bottom"], shown["outpaint_fill"]) == \
        (16, 8, "edge")
    reuse = read_transform_reuse(result.path)
    assert reuse.mode == "img2img" and not reuse.notes
    assert reuse.request.outpaint_amounts() == (16, 0, 0, 8)
    assert reuse.request == dataclasses.replace(request, width=40, height=32)


def test_an_inpainting_model_9_channel_unet_outpaints_as_plain_diffusers(tiny_sd15_dir, picture,
                                                                        tmp_path):
    import shutil

    import torch
    from diffusers import StableDiffusionInpaintPipeline, UNet2DConditionModel

    folder = shutil.copytree(tiny_sd15_dir, tmp_path / "tiny-inpainting")
    config = dict(UNet2DConditionModel.load_config(folder / "unet"), in_channels=9)
    torch.manual_seed(1)
    UNet2DConditionModel.from_config(config).save_pretrained(folder / "unet")  # + mask, image
    settings = Settings(preview_mode="none", device="cpu")
    service = Img2ImgService(lambda: settings, default_paths)
    request = _request(str(folder), str(picture[0]), outpaint_left=0, outpaint_right=16)
    result = service.run(request, RecordingSink(), CancelToken())[0]
    pipe = service.cache.current
    assert pipe.unet.config.in_channels == 9
    plain = StableDiffusionInpaintPipeline(**pipe.components)
    plain.set_progress_bar_config(disable=True)
    canvas, mask = outpaint_canvas(Image.fromarray(picture[1]), request)
    expected = plain(prompt="a wide landscape", image=canvas, mask_image=mask, width=56,
                     height=40, strength=1.0, num_inference_steps=3, guidance_scale=5.0,
                     generator=torch.Generator("cpu").manual_seed(9)).images[0]
    expected = plain.image_processor.apply_overlay(mask, canvas, expected)
    assert np.array_equal(np.asarray(result.image), np.asarray(expected))


def test_cli_outpaints_and_refuses_bad_amounts(tiny_sd15_dir, picture, tmp_path):
    import json

    from tests.fixtures.cli_run import studio_in_process

    base = ("img2img", "--model", str(tiny_sd15_dir), "--image", str(picture[0]), "--prompt",
            "sky", "--steps", "2", "--strength", "1", "--device", "cpu")
    bad = studio_in_process(*base, "--outpaint", "left=12")
    assert bad.returncode == 2 and "multiple of 8" in bad.stderr and "use 8 or 16" in bad.stderr
    odd = studio_in_process(*base, "--outpaint", "sideways=8")
    assert odd.returncode == 2 and "side=pixels" in odd.stderr
    proc = studio_in_process(*base, "--outpaint", "right=8,top=16", "--outpaint-fill", "noise",
                             "--seed", "3", "--out", str(tmp_path / "o"), "--json")
    assert proc.returncode == 0, proc.stderr
    line = json.loads(proc.stdout)
    assert (line["width"], line["height"]) == (48, 48)
    assert line["outpaint"] == {"left": 0, "right": 8, "top": 16, "bottom": 0}
    text = Image.open(line["path"]).text["parameters"]
    assert "Outpaint right: 8, Outpaint top: 16, Outpaint fill: noise, Mask blur: 4" in text


@pytest.mark.gui
def test_window_outpaints_from_the_img2img_tab_and_reuse_restores_it(panel, qtbot,  # noqa: F811
                                                                    tiny_sd15_dir, picture):
    from studio.media.transform_reuse import read_transform_reuse

    qtbot.waitUntil(lambda: not panel.sd_picker.scanning, timeout=10_000)
    panel.sd_picker.select_model(str(tiny_sd15_dir))
    panel.receive(picture[0])
    panel.set_mode("inpaint")
    assert panel.diffusion.outpaint.isHidden()  # inpainting has a mask of its own
    panel.set_mode("img2img")
    options = panel.diffusion.outpaint
    assert options.isVisible()
    panel.diffusion.steps.setValue(2)
    panel.diffusion.strength.setValue(1.0)
    options.sides["left"].setValue(12)  # not a multiple of 8: said, nothing submitted
    assert panel.run() == [] and "multiple of 8" in panel.error_label.text()
    options.sides["left"].setValue(16)
    options.sides["top"].setValue(8)
    options.fill.setCurrentIndex(options.fill.findData("noise"))
    with qtbot.waitSignal(panel.jobFinished, timeout=120_000) as done:
        assert panel.run()
    assert done.args[0].state.value == "done", done.args[0].error
    result = panel.last_result.path
    assert Image.open(result).size == (56, 40)

    options.sides["left"].setValue(0)
    options.sides["top"].setValue(0)
    panel.receive(read_transform_reuse(result))
    assert panel.mode == "img2img" and options.amounts() == (16, 0, 8, 0)
    assert options.fill.currentData() == "noise" and options.seam.value() == 8


@pytest.mark.slow
def test_server_edits_outpaint_as_the_engine_does(tiny_sd15_dir, picture):
    import base64
    import io

    from studio.pipelines.services import build_engine
    from studio.server.app import make_server
    from studio.server.catalog import IMAGE, Catalog, ServedModel
    from tests.fixtures.asgi import asgi_call

    engine = build_engine(lambda: Settings(device="cpu", preview_mode="none"), default_paths)
    served = make_server("127.0.0.1", 0, engine,
                         Catalog([ServedModel("tiny-sd", IMAGE, str(tiny_sd15_dir))]))
    try:
        form = {"model": "tiny-sd", "prompt": "a wide landscape", "steps": "3", "seed": "9",
                "strength": "1", "guidance_scale": "5", "outpaint_left": "16",
                "outpaint_bottom": "8", "mask_blur": "4"}
        files = {"image": ("picture.png", picture[0].read_bytes(), "image/png")}
        bad = asgi_call(served, "POST", "/v1/images/edits", files=files,
                        data={**form, "outpaint_left": "12"})
        assert bad.status_code == 400 and "multiple of 8" in bad.json()["error"]["message"]
        r = asgi_call(served, "POST", "/v1/images/edits", files=files, data=form)
        assert r.status_code == 200, r.text
        sent = Image.open(io.BytesIO(base64.b64decode(r.json()["data"][0]["b64_json"])))
        assert sent.size == (56, 40)
        assert "Outpaint left: 16, Outpaint bottom: 8" in sent.text["parameters"]
        direct = engine.submit(_request(str(tiny_sd15_dir), str(picture[0])), title="direct")
        assert direct.wait(600), direct.error
        assert np.array_equal(np.asarray(sent.convert("RGB")),
                              np.asarray(direct.result[0].image))
    finally:
        served.server_close()
        engine.shutdown(timeout=120)
