"""Qwen-Image, Z-Image and FLUX.2 through Studio's code path (issue 15): tiny random folders
(the real classes, a Qwen tokenizer trained here) are detected and generate bit for bit what the
plain diffusers pipeline makes — Qwen-Image's CFG as ``true_cfg_scale`` with the negative
prompt, Z-Image's CFG, FLUX.2 klein's guidance — with a preview each step; FLUX.2's hires fix and
image to image are refused with the reason."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from studio.core.config import Settings, default_paths
from studio.core.jobs import CancelToken, UserFacingError
from studio.core.requests import Img2ImgRequest, Txt2ImgRequest
from studio.library.detect import detect_diffusers_folder
from studio.pipelines.diffusion.txt2img import Txt2ImgService
from tests.fixtures.sinks import RecordingSink

CASES = {  # family → (fixture, plain pipeline class, how diffusers is told the CFG number)
    "qwen-image": ("tiny_qwen_image_dir", "QwenImagePipeline", "true_cfg_scale"),
    "z-image": ("tiny_z_image_dir", "ZImagePipeline", "guidance_scale"),
    "flux2": ("tiny_flux2_dir", "Flux2KleinPipeline", "guidance_scale"),
}


def service():
    settings = Settings(device="cpu", precision="fp32", preview_mode="fast")
    return Txt2ImgService(lambda: settings, default_paths)


def request(folder, **kw):
    base = dict(model=str(folder), prompt="a lighthouse at dusk", steps=2, cfg=4.0, width=64,
                height=64, seed=5, count=1)
    return Txt2ImgRequest(**{**base, **kw})


def plain(cls_name, cfg_argument, folder, req, seed, negative=True):
    import diffusers

    pipe = getattr(diffusers, cls_name).from_pretrained(str(folder), local_files_only=True)
    pipe.set_progress_bar_config(disable=True)
    kwargs = {cfg_argument: req.cfg}
    if negative:
        kwargs["negative_prompt"] = req.negative_prompt
    return pipe(prompt=req.prompt, num_inference_steps=req.steps, width=req.width,
                height=req.height, generator=torch.Generator("cpu").manual_seed(seed),
                **kwargs).images[0]


@pytest.mark.parametrize("key", list(CASES))
def test_detected_and_bit_equal_with_previews(key, request_fixture):
    fixture, cls_name, cfg_argument = CASES[key]
    folder = request_fixture(fixture)
    assert detect_diffusers_folder(folder).family == key
    req = request(folder, negative_prompt="" if key == "flux2" else "blurry fog")
    sink = RecordingSink()
    (result,) = service().run(req, sink, CancelToken())
    expected = plain(cls_name, cfg_argument, folder, req, 5, negative=key != "flux2")
    assert np.array_equal(np.asarray(result.image), np.asarray(expected))
    assert "CFG scale: 4" in result.parameters
    previews = [p for _, _, p in sink.steps if p is not None]
    assert len(previews) == 2 and previews[0].shape == (8, 8, 3)  # 64 px / 8: one latent a pixel


def test_flux2_refuses_hires_and_image_to_image_with_the_reason(tiny_flux2_dir, tmp_path):
    from PIL import Image

    from studio.pipelines.diffusion.img2img import Img2ImgService

    with pytest.raises(UserFacingError, match="no image-to-image pipeline"):
        service().run(request(tiny_flux2_dir, hires=True, hires_upscaler="Lanczos"),
                      RecordingSink(), CancelToken())
    picture = tmp_path / "in.png"
    Image.new("RGB", (64, 64), "teal").save(picture)
    settings = Settings(device="cpu", precision="fp32")
    with pytest.raises(UserFacingError, match="Generate"):
        Img2ImgService(lambda: settings, default_paths).run(
            Img2ImgRequest(model=str(tiny_flux2_dir), image=str(picture), prompt="snow",
                           steps=2, strength=0.5),
            RecordingSink(), CancelToken())


@pytest.fixture
def request_fixture(request):
    return request.getfixturevalue


def test_generate_names_guidance_and_greys_what_does_not_apply(qtbot, qapp):
    from studio.ui.panels.generate.controls import GenerateControls

    controls = GenerateControls()
    qtbot.addWidget(controls)
    controls.hires.enabled.setChecked(True)
    controls.set_family("flux2")
    controls.set_pixel_model(None)  # what the panel does next for a diffusion model
    assert controls.cfg_label.text() == "Guidance" and not controls.negative.isEnabled()
    assert not controls.hires.isEnabled() and "not for FLUX.2" in controls.hires.enabled.text()
    assert not controls.controlnet.isEnabled()
    assert controls.request("m").hires is False  # kept ticked for the next model, not sent
    controls.set_family("qwen-image")
    controls.set_pixel_model(None)
    assert controls.cfg_label.text() == "CFG scale" and controls.negative.isEnabled()
    assert "Qwen-Image" in controls.cfg.toolTip() and controls.request("m").hires is True
    assert controls.hires.isEnabled() and not controls.controlnet.isEnabled()
    controls.set_family("z-image")
    assert "Turbo" in controls.cfg.toolTip() and controls.scheduler.currentData() == "default"


@pytest.mark.parametrize("key", ["qwen-image", "z-image"])
def test_image_to_image_is_the_familys_img2img_pipeline(key, request_fixture, tmp_path):
    import diffusers
    from PIL import Image

    from studio.pipelines.diffusion.img2img import Img2ImgService

    fixture, cls_name, cfg_argument = CASES[key]
    folder = request_fixture(fixture)
    picture = tmp_path / "in.png"
    Image.fromarray(np.random.default_rng(3).integers(0, 255, (64, 64, 3), np.uint8)).save(
        picture)
    req = Img2ImgRequest(model=str(folder), image=str(picture), prompt="snow",
                         negative_prompt="fog", steps=3, cfg=4.0, strength=0.6, seed=5)
    settings = Settings(device="cpu", precision="fp32", preview_mode="fast")
    (result,) = Img2ImgService(lambda: settings, default_paths).run(req, RecordingSink(),
                                                                    CancelToken())
    plain = getattr(diffusers, cls_name.replace("Pipeline", "Img2ImgPipeline")).from_pretrained(
        str(folder), local_files_only=True)
    plain.set_progress_bar_config(disable=True)
    expected = plain(prompt="snow", negative_prompt="fog", image=Image.open(picture), width=64,
                     height=64, strength=0.6, num_inference_steps=3,
                     generator=torch.Generator("cpu").manual_seed(5),
                     **{cfg_argument: 4.0}).images[0]
    assert np.array_equal(np.asarray(result.image), np.asarray(expected))


def test_serve_generates_with_the_familys_own_guidance(tiny_flux2_dir):
    import base64
    import io

    from PIL import Image

    from studio.pipelines.services import build_engine
    from studio.server.app import make_server
    from studio.server.catalog import Catalog, classify
    from tests.fixtures.asgi import asgi_call

    settings = Settings(device="cpu", precision="fp32", preview_mode="fast")
    spec = classify(str(tiny_flux2_dir), settings, default_paths())
    engine = build_engine(lambda: settings, default_paths)
    server = make_server("127.0.0.1", 0, engine, Catalog([spec]))
    try:
        r = asgi_call(server, "POST", "/v1/images/generations",
                      json={"model": spec.id, "prompt": "a lighthouse at dusk", "steps": 2,
                            "seed": 5, "size": "64x64"})
        assert r.status_code == 200, r.text
        served = Image.open(io.BytesIO(base64.b64decode(r.json()["data"][0]["b64_json"])))
    finally:
        server.server_close()
        engine.shutdown(timeout=120)
    assert "CFG scale: 4" in served.text["parameters"]  # FLUX.2's guidance, not SD's 7
    (direct,) = service().run(request(tiny_flux2_dir), RecordingSink(), CancelToken())
    assert np.array_equal(np.asarray(served.convert("RGB")), np.asarray(direct.image))


def test_cli_generates_with_the_familys_own_guidance(tiny_flux2_dir, tmp_path):
    import json

    from PIL import Image

    from tests.fixtures.cli_run import studio_in_process

    proc = studio_in_process("generate", "--model", str(tiny_flux2_dir), "--prompt",
                             "a lighthouse at dusk", "--steps", "2", "--width", "64",
                             "--height", "64", "--seed", "5", "--device", "cpu", "--out",
                             str(tmp_path / "o"), "--json")
    assert proc.returncode == 0, proc.stderr
    (line,) = [json.loads(x) for x in proc.stdout.splitlines()]
    assert "CFG scale: 4" in Image.open(line["path"]).text["parameters"]  # not SD's 7
