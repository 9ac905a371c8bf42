"""ControlNet through ``studio serve`` (issue 14): Studio's ``controlnets`` extension of
``/v1/images/generations`` (control images inline as base64, library names, weight, steps,
preprocess) gives the image the engine gives for the same request, hides the upload's path, and
refuses paths, bad images and unknown preprocessors with a sentence before the queue."""

from __future__ import annotations

import base64
import io

import numpy as np
import pytest
from PIL import Image, ImageDraw

from studio.core.config import Settings, default_paths
from studio.core.jobs import JobState
from studio.core.requests import Txt2ImgRequest
from studio.pipelines.services import build_engine
from studio.server.app import make_server
from studio.server.catalog import IMAGE, Catalog, ServedModel
from tests.fixtures.asgi import asgi_call as call
from tests.fixtures.tiny_controlnet import build_tiny_controlnet
from tests.fixtures.torch_threads import one_torch_thread  # noqa: F401


@pytest.fixture
def server(tiny_sd15_dir):
    build_tiny_controlnet(tiny_sd15_dir / "unet",
                          default_paths().models_dir / "controlnet" / "tiny-cn", 4)
    engine = build_engine(lambda: Settings(device="cpu", preview_mode="fast"), default_paths)
    served = make_server("127.0.0.1", 0, engine,
                         Catalog([ServedModel("tiny-sd", IMAGE, str(tiny_sd15_dir))]))
    yield served
    served.server_close()
    engine.shutdown(timeout=120)


def _drawing() -> bytes:
    image = Image.new("RGB", (64, 48), "white")
    ImageDraw.Draw(image).ellipse((10, 8, 50, 40), outline="black", width=3)
    out = io.BytesIO()
    image.save(out, "PNG")
    return out.getvalue()


def _body(**unit):
    control = {"model": "tiny-cn", "image": base64.b64encode(_drawing()).decode(),
               "preprocess": "invert", "weight": 0.8, "end": 0.7} | unit
    return {"model": "tiny-sd", "prompt": "a cat", "size": "32x24", "steps": 3, "seed": 11,
            "controlnets": [control]}


def test_a_served_controlnet_equals_the_engine_s_job(server, tiny_sd15_dir, tmp_path):
    r = call(server, "POST", "/v1/images/generations", json=_body())
    assert r.status_code == 200, r.text
    sent = base64.b64decode(r.json()["data"][0]["b64_json"])
    assert b"studio-serve-" not in sent and b"ControlNet 0" in sent
    served = np.asarray(Image.open(io.BytesIO(sent)).convert("RGB"))

    (tmp_path / "drawing.png").write_bytes(_drawing())
    unit = {"model": "tiny-cn", "image": str(tmp_path / "drawing.png"), "preprocess": "invert",
            "weight": 0.8, "start": 0.0, "end": 0.7}
    request = Txt2ImgRequest(model=str(tiny_sd15_dir), prompt="a cat", steps=3, seed=11,
                             width=32, height=24, controlnets=[unit])
    job = server.engine.submit(request, title="direct")
    assert job.wait(600) and job.state is JobState.DONE, job.error
    assert np.array_equal(served, np.asarray(Image.open(job.result[0].path).convert("RGB")))


@pytest.mark.parametrize("unit, param, needle", [
    ({"model": "/etc/tiny-cn"}, "controlnets[0].model", "never by a path"),
    ({"image": "not base64!"}, "controlnets[0].image", "base64-encoded image"),
    ({"image": base64.b64encode(b"not a png").decode()}, "controlnets[0].image", "not an image"),
    ({"preprocess": "zoe"}, None, "unknown preprocessor 'zoe'"),
    ({"weight": 3}, "controlnets[0].weight", ""),
])
def test_served_controlnet_mistakes_are_sentences(server, unit, param, needle):
    r = call(server, "POST", "/v1/images/generations", json=_body(**unit))
    assert r.status_code == 400, r.text
    error = r.json()["error"]
    assert needle in error["message"] and "studio-serve-" not in error["message"]
    if param:
        assert error["param"] == param
