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


# -- the window: "Describe in Chat" from the Gallery's menu ---------------------------------------
@pytest.mark.gui
def test_describe_in_chat_attaches_the_image_and_a_vision_model_answers(
        studio_home, tiny_llama_dir, tiny_llava, request, qtbot):
    import shutil

    from studio.core.config import default_paths
    from studio.ui.widgets.image_actions import find_action

    paths = default_paths()
    shutil.copytree(tiny_llama_dir, paths.models_dir / "tiny-llama")
    shutil.copytree(tiny_llava, paths.models_dir / "tiny-llava")
    (paths.outputs_dir / "2026-01-01").mkdir(parents=True)
    picture = paths.outputs_dir / "2026-01-01" / "fox.png"
    Image.new("RGB", (48, 40), (200, 90, 20)).save(picture)
    window = request.getfixturevalue("main_window")
    window.resize(1320, 840)
    window.show()
    chat = window.show_workspace("chat")
    qtbot.waitUntil(lambda: len(chat.controls.model_specs()) >= 2)
    specs = {spec.rsplit("/", 1)[-1]: spec for spec in chat.controls.model_specs()}
    chat.controls.select_model(specs["tiny-llama"])
    chat.controls.temperature.setValue(0)
    chat.controls.max_new.setValue(6)

    gallery = window.show_workspace("gallery")
    qtbot.waitUntil(lambda: gallery.model.rowCount() == 1)
    menu = gallery.context_menu_for(gallery.model.index(0))
    find_action(menu, "describeInChat").trigger()
    # a text-only model: Chat says so and which models see; nothing is lost
    assert window.current_workspace() == "chat"
    assert "reads text only" in chat.status.text() and "tiny-llava" in chat.status.text()
    assert chat.attachment.path == picture and chat.input.toPlainText() == "Describe this image."
    assert chat.job is None and chat.model.rowCount() == 0
    # a vision-language model answers; the image is stored with the conversation and shown
    chat.controls.select_model(specs["tiny-llava"])
    chat.send()
    qtbot.waitUntil(lambda: chat.job is None and chat.model.rowCount() == 2)
    user, reply = (chat.model.message_at(r) for r in range(2))
    [kept] = user.meta["images"]
    assert kept != str(picture) and open(kept, "rb").read() == picture.read_bytes()
    assert reply.complete and reply.meta.get("finish_reason") in ("stop", "length"), reply.meta
    assert not chat.attachment.isVisible()
    doc, _ = chat.delegate._doc(user, 400)
    assert doc.toHtml().count("<img") == 1
    # an image pasted into the message box or a file dropped on it is attached, not typed
    from PySide6.QtCore import QMimeData, QPointF, Qt, QUrl
    from PySide6.QtGui import QDropEvent, QGuiApplication, QImage

    pixels = QImage(20, 10, QImage.Format.Format_RGB32)
    pixels.fill(0x3366CC)
    QGuiApplication.clipboard().setImage(pixels)
    qtbot.keyClick(chat.input, Qt.Key.Key_V, Qt.KeyboardModifier.ControlModifier)
    assert chat.attachment.path is not None and chat.attachment.path.suffix == ".png"
    assert chat.input.toPlainText() == ""
    chat.attachment.clear()
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(picture))])
    drop = QDropEvent(QPointF(10, 10), Qt.DropAction.CopyAction, mime,
                      Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier)
    # Qt delivers a Drop only inside a real drag session: the filter is given it directly
    assert chat._image_input.eventFilter(chat.input.viewport(), drop)
    assert chat.attachment.path == picture and chat.input.toPlainText() == ""


def test_studio_chat_shows_an_image_to_a_vision_model_and_refuses_one_for_text(
        studio_home, tiny_llava, tiny_llama_dir, picture, monkeypatch, tmp_path):
    from tests.fixtures.cli_run import studio_in_process

    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-hf-cache"))
    ask = ["--prompt", "Describe this image.", "--image", str(picture), "--temperature", "0",
           "--max-new-tokens", "4", "--device", "cpu"]
    proc = studio_in_process("chat", "--model", str(tiny_llava), *ask)
    assert proc.returncode == 0, proc.stderr
    proc = studio_in_process("chat", "--model", str(tiny_llama_dir), *ask)
    assert proc.returncode == 1 and "reads text only" in proc.stderr
    proc = studio_in_process("chat", "--model", str(tiny_llava), "--image", str(picture))
    assert proc.returncode == 2 and "--image goes with --prompt" in proc.stderr
    proc = studio_in_process("chat", "--model", str(tiny_llava), "--prompt", "x", "--image",
                             str(tmp_path / "missing.png"))
    assert proc.returncode == 2 and "does not exist" in proc.stderr
