"""Images in chat: a tiny random LLaVA found as a vision chat model and answering about an image
exactly as transformers' ``generate`` does (greedy), a text-only model refusing an image with the
models that can see, and images forwarded to an OpenAI-compatible server as data URLs."""

from __future__ import annotations

import pytest
from PIL import Image

from studio.core.config import Settings, default_paths
from studio.core.jobs import CancelToken, UserFacingError
from studio.pipelines.chat.types import ChatRequest


@pytest.fixture(scope="module")
def tiny_llava(tmp_path_factory):
    from tests.fixtures.tiny_vlm import build_tiny_llava

    return build_tiny_llava(tmp_path_factory.mktemp("vlm") / "tiny-llava")


@pytest.fixture(scope="module")
def backend():
    from studio.pipelines.chat.local import LocalChatBackend

    settings = Settings(device="cpu")
    return LocalChatBackend(lambda: settings, default_paths)


@pytest.fixture
def picture(tmp_path):
    path = tmp_path / "fox.png"
    Image.new("RGB", (48, 40), (200, 90, 20)).save(path)
    return path


def ask(model, picture, text="Describe this image.") -> ChatRequest:
    return ChatRequest(model=str(model), temperature=0, max_new_tokens=8, messages=[
        {"role": "user", "content": text, "images": [str(picture)]}])


def test_a_vision_language_model_is_listed_as_a_chat_model_that_sees(tiny_llava):
    from studio.library.chat_models import chat_entry_for_folder

    entry = chat_entry_for_folder(tiny_llava, "file")
    assert entry is not None and entry.vision
    assert entry.architecture == "LlavaForConditionalGeneration"


def test_the_reply_about_an_image_equals_plain_transformers_generate(backend, tiny_llava,
                                                                    picture):
    import torch
    from transformers import AutoModelForImageTextToText, AutoProcessor

    reply = backend.generate(ask(tiny_llava, picture), CancelToken())
    processor = AutoProcessor.from_pretrained(tiny_llava)
    model = AutoModelForImageTextToText.from_pretrained(tiny_llava).eval()
    messages = [{"role": "user", "content": [{"type": "image"},
                                             {"type": "text", "text": "Describe this image."}]}]
    text = processor.apply_chat_template(messages, add_generation_prompt=True)
    inputs = processor(text=[text], images=[Image.open(picture).convert("RGB")],
                       return_tensors="pt")
    with torch.inference_mode():
        out = model.generate(**inputs, max_new_tokens=8, do_sample=False)
    new = out[0, inputs["input_ids"].shape[1]:].tolist()
    assert reply.completion_tokens == len(new)
    assert reply.text == processor.tokenizer.decode(new, skip_special_tokens=True)
    assert reply.prompt_tokens == inputs["input_ids"].shape[1]


def test_a_text_only_model_says_it_cannot_see_and_which_models_can(backend, tiny_llama_dir,
                                                                   picture):
    with pytest.raises(UserFacingError, match="reads text only.*SmolVLM"):
        backend.generate(ask(tiny_llama_dir, picture), CancelToken())


def test_an_image_goes_to_a_remote_server_as_a_data_url(picture):
    from studio.pipelines.chat.remote import message_content

    parts = message_content({"role": "user", "content": "What is it?",
                             "images": [str(picture)]})
    assert parts[0] == {"type": "text", "text": "What is it?"}
    assert parts[1]["image_url"]["url"].startswith("data:image/png;base64,")
    assert message_content({"role": "user", "content": "plain"}) == "plain"


def test_a_message_with_bad_images_is_refused():
    request = ChatRequest(model="m", messages=[{"role": "user", "content": "x", "images": "a"}])
    with pytest.raises(ValueError, match="images must be a list"):
        request.validate()
