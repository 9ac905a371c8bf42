"""Images in ``studio serve``'s chat requests: OpenAI's ``image_url`` content parts with a data
URL reach a vision-language model (the tiny random LLaVA) and the answer equals the engine's
for the same picture; web URLs, text-only models, too many or broken images are refused with a
sentence; the images are not left behind."""

from __future__ import annotations

import base64
import io

import pytest
from PIL import Image

from studio.core.config import Settings, default_paths
from studio.core.jobs import CancelToken
from studio.pipelines.chat.types import ChatRequest


@pytest.fixture(scope="module")
def tiny_llava(tmp_path_factory):
    from tests.fixtures.tiny_vlm import build_tiny_llava

    return build_tiny_llava(tmp_path_factory.mktemp("vlm") / "tiny-llava")


@pytest.fixture(scope="module")
def server(tiny_llava, tiny_llama_dir):
    from studio.pipelines.services import build_engine
    from studio.server.app import make_server
    from studio.server.catalog import CHAT, Catalog, ServedModel

    engine = build_engine(lambda: Settings(device="cpu"), default_paths)
    served = make_server("127.0.0.1", 0, engine, Catalog([
        ServedModel("tiny-llava", CHAT, str(tiny_llava)),
        ServedModel("tiny-chat", CHAT, str(tiny_llama_dir))]))
    yield served
    served.server_close()
    engine.shutdown(timeout=120)


def _png() -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (48, 40), (200, 90, 20)).save(buf, format="PNG")
    return buf.getvalue()


def _ask(model: str, url: str, **kw) -> dict:
    return {"model": model, "temperature": 0, "max_tokens": 8, "messages": [
        {"role": "user", "content": [{"type": "text", "text": "Describe this image."},
                                     {"type": "image_url", "image_url": {"url": url}}]}], **kw}


DATA_URL = "data:image/png;base64," + base64.b64encode(_png()).decode()


def test_an_image_in_a_served_chat_reaches_the_vision_model(server, tiny_llava, tmp_path,
                                                             monkeypatch):
    import tempfile

    from studio.pipelines.chat.local import LocalChatBackend
    from tests.fixtures.asgi import asgi_call

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # where the server writes them
    picture = tmp_path / "fox.png"
    picture.write_bytes(_png())
    settings = Settings(device="cpu")
    local = LocalChatBackend(lambda: settings, default_paths).generate(ChatRequest(
        model=str(tiny_llava), temperature=0, max_new_tokens=8, messages=[
            {"role": "user", "content": "Describe this image.", "images": [str(picture)]}]),
        CancelToken())

    r = asgi_call(server, "POST", "/v1/chat/completions", json=_ask("tiny-llava", DATA_URL))
    assert r.status_code == 200, r.text
    answer = r.json()
    assert answer["choices"][0]["message"]["content"] == local.text
    assert answer["usage"]["prompt_tokens"] == local.prompt_tokens  # the image's tokens too
    streamed = asgi_call(server, "POST", "/v1/chat/completions",
                         json=_ask("tiny-llava", DATA_URL, stream=True))
    assert streamed.status_code == 200 and "[DONE]" in streamed.text
    assert not list(tmp_path.glob("studio-serve-images-*"))  # removed once answered


@pytest.mark.parametrize("model,url,count,needle,code", [
    ("tiny-llava", "https://example.com/fox.png", 1, "does not fetch images",
     "image_url_not_supported"),
    ("tiny-chat", DATA_URL, 1, "reads text only.*SmolVLM.*Served here: tiny-llava",
     "model_cannot_see"),
    ("tiny-llava", DATA_URL, 9, "up to 8", "too_many_images"),
    ("tiny-llava", "data:image/png;base64,!!!", 1, "not valid base64", None),
    ("tiny-llava", "data:image/png;base64," + base64.b64encode(b"not a png").decode(), 1,
     "not an image Studio can read", None),
])
def test_bad_images_are_refused_with_a_sentence(server, model, url, count, needle, code):
    from tests.fixtures.asgi import asgi_call

    body = _ask(model, url)
    body["messages"][0]["content"] += [body["messages"][0]["content"][1]] * (count - 1)
    r = asgi_call(server, "POST", "/v1/chat/completions", json=body)
    assert r.status_code == 400, r.text
    error = r.json()["error"]
    import re

    assert re.search(needle, error["message"]), error["message"]
    assert error["code"] == code
    assert "/tmp" not in error["message"]  # no server paths in the answer
