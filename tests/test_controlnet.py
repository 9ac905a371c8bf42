"""ControlNet (issue 14): a tiny random ControlNet in the library guides text to image exactly as
plain diffusers' ControlNet pipeline does (one and two units, with start/end and weights), the
preprocessors make the maps they promise, the A1111 ControlNet keys are written and read back,
and bad units are refused with a sentence."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image, ImageDraw

from studio.core.config import Settings, default_paths
from studio.core.control import from_infotext, parse_cli, units
from studio.core.jobs import CancelToken, UserFacingError
from studio.core.requests import Txt2ImgRequest
from studio.media.infotext import parse_infotext
from studio.media.metadata import read_image_metadata
from studio.pipelines.diffusion import controlnet as cn
from studio.pipelines.diffusion.txt2img import Txt2ImgService
from tests.fixtures.torch_threads import one_torch_thread  # noqa: F401


class Sink:
    def __init__(self) -> None:
        self.messages: list[str] = []

    def __call__(self, step, total, preview=None):
        pass

    def partial(self, result):
        pass

    def message(self, text):
        self.messages.append(text)


def _controlnet(unet_dir, dest, seed):
    """A ControlNet built from the tiny UNet with random (not zero) output convolutions, so it
    changes the image."""
    import torch
    from diffusers import ControlNetModel, UNet2DConditionModel

    unet = UNet2DConditionModel.from_pretrained(str(unet_dir))
    torch.manual_seed(seed)
    model = ControlNetModel.from_unet(unet, conditioning_embedding_out_channels=(8, 8, 8, 8))
    with torch.no_grad():
        for block in [*model.controlnet_down_blocks, model.controlnet_mid_block]:
            block.weight.normal_(0, 0.5)
    model.save_pretrained(str(dest), safe_serialization=True)
    return dest


@pytest.fixture
def controlnets(tiny_sd15_dir):
    folder = default_paths().models_dir / "controlnet"
    return [_controlnet(tiny_sd15_dir / "unet", folder / f"tiny-cn-{i}", i) for i in (1, 2)]


@pytest.fixture
def drawing(tmp_path):
    image = Image.new("RGB", (64, 48), "white")
    ImageDraw.Draw(image).ellipse((10, 8, 50, 40), outline="black", width=3)
    path = tmp_path / "drawing.png"
    image.save(path)
    return path


def _service():
    settings = Settings(preview_mode="fast", device="cpu")
    return Txt2ImgService(lambda: settings, default_paths)


def _request(model, controlnets, **kw):
    return Txt2ImgRequest(model=str(model), prompt="a cat", negative_prompt="blurry", steps=3,
                          cfg=6.0, width=32, height=24, seed=11, controlnets=controlnets, **kw)


def _plain(base, folders, images, **control):
    import torch
    from diffusers import ControlNetModel, StableDiffusionControlNetPipeline

    models = [ControlNetModel.from_pretrained(str(f)) for f in folders]
    pipe = StableDiffusionControlNetPipeline(
        **{k: v for k, v in base.components.items() if k != "controlnet"},
        controlnet=models[0] if len(models) == 1 else models)
    pipe.set_progress_bar_config(disable=True)
    return pipe(prompt="a cat", negative_prompt="blurry", num_inference_steps=3,
                guidance_scale=6.0, width=32, height=24, image=images[0] if len(images) == 1
                else images, generator=torch.Generator("cpu").manual_seed(11),
                **control).images[0]


def test_one_controlnet_equals_plain_diffusers_and_is_written_as_a1111_does(
        tiny_sd15_dir, controlnets, drawing):
    service = _service()
    unit = {"model": "tiny-cn-1", "image": str(drawing), "preprocess": "invert",
            "weight": 0.8, "start": 0.0, "end": 0.7}
    [result] = service.run(_request(tiny_sd15_dir, [unit]), Sink(), CancelToken())
    control = cn.preprocess("invert", cn.crop_and_resize(Image.open(drawing), 32, 24))
    expected = _plain(service.cache.current, controlnets[:1], [control],
                      controlnet_conditioning_scale=0.8, control_guidance_start=0.0,
                      control_guidance_end=0.7)
    assert np.array_equal(np.asarray(result.image), np.asarray(expected))
    plain = service.run(_request(tiny_sd15_dir, []), Sink(), CancelToken())[0]
    assert not np.array_equal(np.asarray(result.image), np.asarray(plain.image))  # it guides

    parsed = parse_infotext(result.parameters)
    assert parsed["ControlNet 0"] == ("Module: invert (from white bg & black line), "
                                      "Model: tiny-cn-1, Weight: 0.8, Resize Mode: Crop and "
                                      "Resize, Guidance Start: 0, Guidance End: 0.7")
    assert from_infotext(parsed) == [{"model": "tiny-cn-1", "image": "",
                                         "preprocess": "invert", "weight": 0.8, "start": 0.0,
                                         "end": 0.7}]
    meta = read_image_metadata(result.path)  # a Studio image keeps the whole request
    assert meta.request.controlnets == [unit]


def test_two_controlnets_equal_plain_diffusers(tiny_sd15_dir, controlnets, drawing):
    service = _service()
    units_ = [{"model": "tiny-cn-1", "image": str(drawing), "preprocess": "canny"},
              {"model": str(controlnets[1]), "image": str(drawing), "preprocess": "lineart",
               "weight": 0.5, "start": 0.3}]
    [result] = service.run(_request(tiny_sd15_dir, units_), Sink(), CancelToken())
    base = cn.crop_and_resize(Image.open(drawing), 32, 24)
    images = [cn.preprocess("canny", base), cn.preprocess("lineart", base)]
    expected = _plain(service.cache.current, controlnets, images,
                      controlnet_conditioning_scale=[1.0, 0.5],
                      control_guidance_start=[0.0, 0.3], control_guidance_end=[1.0, 1.0])
    assert np.array_equal(np.asarray(result.image), np.asarray(expected))
    # the next plain job runs the cached model without them
    plain = service.run(_request(tiny_sd15_dir, []), Sink(), CancelToken())[0]
    assert "ControlNet 0" not in plain.parameters


def test_preprocessors_make_the_maps_they_promise(drawing):
    image = cn.crop_and_resize(Image.open(drawing), 64, 48)
    inverted = np.asarray(cn.preprocess("invert", image))
    assert inverted[0, 0].tolist() == [0, 0, 0] and inverted.max() == 255  # white lines on black
    for name in ("canny", "softedge", "lineart"):
        edges = np.asarray(cn.preprocess(name, image).convert("L"), dtype=float)
        assert edges.shape == (48, 64)
        assert edges[0, 0] == 0 and edges[24, 30] == 0, name  # the paper and the inside: dark
        assert edges[24, 10:14].max() > 60, name  # the circle's left edge: bright
    assert cn.crop_and_resize(Image.new("RGB", (100, 50)), 32, 32).size == (32, 32)


@pytest.mark.parametrize(("raw", "words"), [
    ([{"model": "x"}], "has no control image"),
    ([{"image": "a.png"}], "names no model"),
    ([{"model": "x", "image": "a.png", "preprocess": "zoe"}], "unknown preprocessor 'zoe'"),
    ([{"model": "x", "image": "a.png", "weight": 3}], "between 0 and 2"),
    ([{"model": "x", "image": "a.png", "start": 0.8, "end": 0.2}], "start before it ends"),
    ([{"model": "x", "image": "a.png", "strength": 1}], "unknown fields: strength"),
    ([{"model": "x", "image": "a.png"}] * 4, "At most 3 ControlNets"),
])
def test_a_bad_unit_gets_a_sentence(raw, words):
    with pytest.raises(ValueError, match=words):
        units(raw)


def test_the_cli_form_and_refusals(tiny_sd15_dir, controlnets, drawing):
    assert parse_cli("canny-sd15:/tmp/a.png:0.6", "canny") == {
        "model": "canny-sd15", "image": "/tmp/a.png", "preprocess": "canny", "weight": 0.6}
    assert parse_cli("lllyasviel/x:C:/pics/a.png")["image"] == "C:/pics/a.png"
    service = _service()
    with pytest.raises(UserFacingError, match="No ControlNet called 'nope'.*hf download"):
        service.run(_request(tiny_sd15_dir, [{"model": "nope", "image": str(drawing)}]),
                    Sink(), CancelToken())
    with pytest.raises(UserFacingError, match="is not a ControlNet"):
        service.run(_request(tiny_sd15_dir, [{"model": str(tiny_sd15_dir),
                                              "image": str(drawing)}]), Sink(), CancelToken())


def test_the_library_lists_controlnets_with_their_family(controlnets, tiny_sdxl_dir):
    from studio.library.catalog import describe_path, list_models

    entries = {e.name: e for e in list_models(Settings(), default_paths())}
    assert entries["tiny-cn-1"].kind == "controlnet"
    assert describe_path(controlnets[0], "file", default_paths()).kind == "controlnet"
    # the family comes from the cross-attention width (SDXL: 2048)
    import json

    config = json.loads((controlnets[1] / "config.json").read_text())
    config["cross_attention_dim"] = 2048
    (controlnets[1] / "config.json").write_text(json.dumps(config))
    entries = {e.name: e for e in list_models(Settings(), default_paths())}
    assert entries["tiny-cn-2"].family == "sdxl" and "SDXL" in entries["tiny-cn-2"].detail
    with pytest.raises(UserFacingError, match="for SDXL models and the model is SD 1.x"):
        cn.resolve_units(_request("m", [{"model": "tiny-cn-2", "image": "a.png"}]), "sd1",
                         Settings(), default_paths())
    with pytest.raises(UserFacingError, match="FLUX.* need their own ControlNets"):
        cn.resolve_units(_request("m", [{"model": "tiny-cn-1", "image": "a.png"}]), "flux",
                         Settings(), default_paths())


def test_studio_generate_with_a_controlnet(tiny_sd15_dir, controlnets, drawing, capsys,
                                           tmp_path):
    from studio.cli import _main

    out = tmp_path / "out"
    args = ["generate", "--model", str(tiny_sd15_dir), "--prompt", "a cat", "--steps", "2",
            "--width", "32", "--height", "24", "--seed", "3", "--out", str(out)]
    assert _main(args + ["--controlnet", f"tiny-cn-1:{drawing}:0.7", "--control-preprocess",
                         "canny", "--control-end", "0.5"]) == 0
    [png] = list(out.glob("*.png"))
    assert read_image_metadata(png).request.controlnets == [
        {"model": "tiny-cn-1", "image": str(drawing), "preprocess": "canny", "weight": 0.7,
         "start": 0.0, "end": 0.5}]
    capsys.readouterr()
    assert _main(args + ["--control-preprocess", "canny"]) == 2
    assert "--control-preprocess needs --controlnet" in capsys.readouterr().err
    assert _main(args + ["--controlnet", "tiny-cn-1"]) == 2
    assert "write MODEL:IMAGE" in capsys.readouterr().err


def test_an_a1111_image_with_controlnet_says_reuse_leaves_it_out(tmp_path):
    from PIL.PngImagePlugin import PngInfo

    info = PngInfo()
    info.add_text("parameters", 'a house\nSteps: 20, Sampler: Euler a, CFG scale: 7, Seed: 1, '
                                'Size: 512x512, ControlNet 0: "Module: canny, Model: '
                                'control_v11p_sd15_canny [d14c016b], Weight: 1, Resize Mode: '
                                'Crop and Resize, Guidance Start: 0, Guidance End: 1"')
    path = tmp_path / "a1111.png"
    Image.new("RGB", (8, 8)).save(path, pnginfo=info)
    meta = read_image_metadata(path)
    assert any("ControlNet guided this image (control_v11p_sd15_canny)" in n for n in meta.notes)
    assert from_infotext(parse_infotext(meta.raw["parameters"]))[0]["preprocess"] == "canny"


def test_the_generate_form_s_controlnet_group(qtbot, drawing):
    from studio.ui.panels.generate.controls import GenerateControls

    controls = GenerateControls()
    qtbot.addWidget(controls)
    group = controls.controlnet
    assert controls.request(model="m").controlnets == []
    assert "hf download lllyasviel/control_v11p_sd15_canny" in group.empty.text()
    assert not group.add.isEnabled()  # nothing to add without a ControlNet in the library
    group.set_models([("canny-15", "sd1"), ("canny-xl", "sdxl")])
    group.set_current_result(lambda: str(drawing))
    group.enabled.setChecked(True)  # opens the group with one unit
    assert group.body.isVisibleTo(group) and len(group.rows) == 1
    row = group.rows[0]
    assert row.model.itemText(1) == "canny-xl (SDXL)"
    row.use_result.click()
    row.preprocess.setCurrentIndex(row.preprocess.findData("canny"))
    row.weight.setValue(0.6)
    group.add.click()
    group.add.click()
    assert len(group.rows) == 3 and not group.add.isEnabled()  # at most three
    group.rows[2].remove.click()
    unit = {"model": "canny-15", "image": str(drawing), "preprocess": "canny", "weight": 0.6,
            "start": 0.0, "end": 1.0}
    request = controls.request(model="m")
    assert request.controlnets[0] == unit and len(request.controlnets) == 2
    # reuse fills the group back, a model not in the library stays named
    other = dict(unit, model="gone-cn", end=0.5)
    fresh = GenerateControls()
    qtbot.addWidget(fresh)
    fresh.set_request(Txt2ImgRequest(model="m", controlnets=[other]))
    assert fresh.request(model="m").controlnets == [other]
    fresh.controlnet.enabled.setChecked(False)
    assert fresh.request(model="m").controlnets == []


def test_the_group_is_greyed_out_for_families_it_does_not_run(qtbot):
    from studio.ui.panels.generate.controls import GenerateControls

    controls = GenerateControls()
    qtbot.addWidget(controls)
    controls.controlnet.set_models([("canny-15", "sd1")])
    controls.controlnet.enabled.setChecked(True)
    controls.set_family("flux")
    assert not controls.controlnet.isEnabled()
    assert "FLUX.1 models need their own ControlNets" in controls.controlnet.enabled.toolTip()
    assert controls.controlnet.enabled.text() == "ControlNet (not for FLUX.1)"
    assert controls.request(model="m").controlnets == []  # greyed out: not applied
    controls.set_family("sdxl")
    assert controls.controlnet.isEnabled() and len(controls.request(model="m").controlnets) == 1
    assert controls.controlnet.enabled.text() == "ControlNet"
