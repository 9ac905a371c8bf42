"""``/v1/images/edits`` and ``/v1/embeddings`` with the tiny SD 1.5 and the tiny Llama, through the
FastAPI app in-process (httpx's ASGI transport) and the real engine.

An edit is the img2img job the CLI runs (same handler, same pixels for the same request); an
embedding is the model's last hidden state mean-pooled over the tokens, as plain transformers
computes it."""

from __future__ import annotations

import base64
import io
import struct

import numpy as np
import pytest
from PIL import Image

from studio.core.config import Settings, default_paths
from studio.core.jobs import JobState
from studio.core.requests import Img2ImgRequest
from studio.pipelines.services import build_engine
from studio.server.app import make_server
from studio.server.catalog import CHAT, IMAGE, Catalog, ServedModel
from tests.fixtures.asgi import asgi_call

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def server(tiny_sd15_dir, tiny_llama_dir, tmp_path_factory):
    engine = build_engine(lambda: Settings(device="cpu"), default_paths)
    catalog = Catalog([ServedModel("tiny-sd", IMAGE, str(tiny_sd15_dir)),
                       ServedModel("tiny-chat", CHAT, str(tiny_llama_dir)),
                       ServedModel("far-chat", CHAT, "openai:http://127.0.0.1:9/v1#m"),
                       ServedModel("a-gan", IMAGE, str(tmp_path_factory.mktemp("gan")), True)])
    served = make_server("127.0.0.1", 0, engine, catalog)
    yield served
    served.server_close()
    engine.shutdown(timeout=120)


call = asgi_call


def png(image: Image.Image) -> bytes:
    out = io.BytesIO()
    image.save(out, "PNG")
    return out.getvalue()


def test_an_inpaint_edit_is_the_img2img_job_of_the_engine(server, tiny_sd15_dir, tmp_path):
    source = Image.new("RGB", (64, 48), (200, 30, 30))
    mask = Image.new("RGBA", (64, 48), (0, 0, 0, 255))
    mask.paste((0, 0, 0, 0), (16, 16, 48, 32))  # OpenAI's convention: transparent = edit
    r = call(server, "POST", "/v1/images/edits",
             files={"image": ("in.png", png(source), "image/png"),
                    "mask": ("mask.png", png(mask), "image/png")},
             data={"model": "tiny-sd", "prompt": "a (blue:1.2) square", "steps": "2",
                   "seed": "7", "strength": "0.8", "mask_blur": "0"})
    assert r.status_code == 200, r.text
    served = r.json()["data"][0]
    sent = base64.b64decode(served["b64_json"])
    assert b"studio-serve-" not in sent and str(tiny_sd15_dir).encode() not in sent
    served_image = np.asarray(Image.open(io.BytesIO(sent)).convert("RGB"))
    assert served_image.shape == (48, 64, 3) and served["seed"] == 7

    # the same request made directly on the engine, as `studio img2img` makes it
    (tmp_path / "in.png").write_bytes(png(source))
    white = Image.new("L", (64, 48), 0)
    white.paste(255, (16, 16, 48, 32))
    white.save(tmp_path / "mask.png")
    request = Img2ImgRequest(model=str(tiny_sd15_dir), image=str(tmp_path / "in.png"),
                             mask=str(tmp_path / "mask.png"), prompt="a (blue:1.2) square",
                             steps=2, seed=7, strength=0.8, width=64, height=48)
    job = server.engine.submit(request, title="direct")
    assert job.wait(600) and job.state is JobState.DONE, job.error
    direct = np.asarray(Image.open(job.result[0].path).convert("RGB"))
    assert np.array_equal(served_image, direct)
    # outside the mask the source stays (keep_unmasked)
    assert (served_image[:8, :8] == [200, 30, 30]).all()


def test_edit_errors_are_sentences(server):
    good = png(Image.new("RGB", (64, 64)))
    r = call(server, "POST", "/v1/images/edits", data={"model": "tiny-sd", "prompt": "x"},
             files={"other": ("x.png", good, "image/png")})
    assert r.status_code == 400 and r.json()["error"]["param"] == "other"
    r = call(server, "POST", "/v1/images/edits", files={"image": ("x.png", b"not a png", "i/p")},
             data={"model": "tiny-sd", "prompt": "x"})
    assert r.status_code == 400 and "not an image" in r.json()["error"]["message"]
    assert "studio-serve-" not in r.json()["error"]["message"]
    r = call(server, "POST", "/v1/images/edits", files={"image": ("x.png", good, "image/png")},
             data={"model": "tiny-sd", "prompt": "x", "strength": "0"})
    assert r.status_code == 400 and r.json()["error"]["param"] == "strength"
    r = call(server, "POST", "/v1/images/edits", files={"image": ("x.png", good, "image/png")},
             data={"model": "a-gan", "prompt": "x"})  # refused before the queue: a 400, not 500
    assert r.status_code == 400 and "cannot change an image" in r.json()["error"]["message"]
    r = call(server, "POST", "/v1/images/edits", json={"model": "tiny-sd", "prompt": "x"})
    assert r.status_code == 415 and "multipart/form-data" in r.json()["error"]["message"]


def test_embeddings_are_the_mean_pooled_last_hidden_state(server, tiny_llama_dir):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    texts = ["a cat sat", "on the mat, twice over"]
    r = call(server, "POST", "/v1/embeddings", json={"model": "tiny-chat", "input": texts})
    assert r.status_code == 200, r.text
    body = r.json()
    assert [d["index"] for d in body["data"]] == [0, 1] and body["model"] == "tiny-chat"
    tokenizer = AutoTokenizer.from_pretrained(tiny_llama_dir)
    model = AutoModelForCausalLM.from_pretrained(tiny_llama_dir).eval()
    tokens = 0
    for text, item in zip(texts, body["data"], strict=True):
        ids = tokenizer(text, return_tensors="pt")["input_ids"]
        tokens += ids.shape[1]
        with torch.no_grad():
            hidden = model(input_ids=ids, output_hidden_states=True).hidden_states[-1][0]
        assert np.allclose(item["embedding"], hidden.mean(0).numpy(), atol=1e-5)
    assert body["usage"]["prompt_tokens"] == tokens

    r = call(server, "POST", "/v1/embeddings",
             json={"model": "tiny-chat", "input": "a cat sat", "encoding_format": "base64"})
    packed = base64.b64decode(r.json()["data"][0]["embedding"])
    assert np.allclose(struct.unpack(f"<{len(packed) // 4}f", packed),
                       body["data"][0]["embedding"], atol=1e-6)


@pytest.mark.parametrize("body, needle", [
    ({"model": "tiny-sd", "input": "x"}, "image model"),
    ({"model": "far-chat", "input": "x"}, "local chat models only"),
    ({"model": "tiny-chat", "input": ""}, "empty"),
    ({"model": "tiny-chat", "input": "x", "dimensions": 8}, "dimensions"),
    ({"model": "tiny-chat", "input": [[1, 2]]}, "input"),
])
def test_embeddings_refuse_what_they_cannot_do_with_a_sentence(server, body, needle):
    r = call(server, "POST", "/v1/embeddings", json=body)
    assert r.status_code == 400 and needle in r.json()["error"]["message"], r.text
