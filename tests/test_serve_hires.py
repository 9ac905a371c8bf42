"""The hires fix through ``studio serve`` (issue 14: a generation works in the window, the CLI
and the server alike): ``hires_scale`` and its fields on ``/v1/images/generations`` make the
image the engine makes for the same request, written as A1111 writes it."""

from __future__ import annotations

import base64
import io

import numpy as np
import pytest
from PIL import Image

from studio.core.config import Settings, default_paths
from studio.core.jobs import JobState
from studio.core.requests import Txt2ImgRequest
from studio.pipelines.services import build_engine
from studio.server.app import make_server
from studio.server.catalog import IMAGE, Catalog, ServedModel
from tests.fixtures.asgi import asgi_call as call
from tests.fixtures.torch_threads import one_torch_thread  # noqa: F401


@pytest.fixture
def server(tiny_sd15_dir):
    engine = build_engine(lambda: Settings(device="cpu", preview_mode="fast"), default_paths)
    served = make_server("127.0.0.1", 0, engine,
                         Catalog([ServedModel("tiny-sd", IMAGE, str(tiny_sd15_dir))]))
    yield served
    served.server_close()
    engine.shutdown(timeout=120)


def test_a_served_hires_fix_equals_the_engine_s_job(server, tiny_sd15_dir):
    body = {"model": "tiny-sd", "prompt": "a cat", "size": "32x32", "steps": 2, "seed": 5,
            "hires_scale": 1.5, "hires_upscaler": "Lanczos", "hires_steps": 2,
            "hires_denoise": 0.5}
    r = call(server, "POST", "/v1/images/generations", json=body)
    assert r.status_code == 200, r.text
    sent = Image.open(io.BytesIO(base64.b64decode(r.json()["data"][0]["b64_json"])))
    assert sent.size == (48, 48)
    assert "Hires upscale: 1.5" in sent.info["parameters"]
    request = Txt2ImgRequest(model=str(tiny_sd15_dir), prompt="a cat", steps=2, cfg=7.0,
                             width=32, height=32, seed=5, hires=True, hires_scale=1.5,
                             hires_upscaler="Lanczos", hires_steps=2, hires_denoise=0.5)
    job = server.engine.submit(request, title="direct")
    assert job.wait(600) and job.state is JobState.DONE, job.error
    with Image.open(job.result[0].path) as made:
        assert np.array_equal(np.asarray(made.convert("RGB")), np.asarray(sent.convert("RGB")))


@pytest.mark.parametrize(("body", "param"), [
    ({"hires_scale": 9}, "hires_scale"),
    ({"hires_scale": 2, "hires_upscaler": "/etc/passwd"}, "hires_upscaler"),
    ({"hires_scale": 1.0}, None),  # above 1, as the window asks
])
def test_served_hires_mistakes_are_sentences(server, body, param):
    r = call(server, "POST", "/v1/images/generations",
             json={"model": "tiny-sd", "prompt": "a cat", "size": "32x32"} | body)
    assert r.status_code == 400, r.text
    error = r.json()["error"]
    assert error["message"].endswith(".") and (param is None or error["param"] == param)
