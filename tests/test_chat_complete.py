"""Complete mode: raw text continuation with no chat template — the local engine equals plain
transformers greedy generate from the raw prompt (a GPT-2 base model and a Llama chat model),
long texts lose their beginning with a warning, the remote backend uses /v1/completions, and the
CLI's --complete."""

from __future__ import annotations

import json

import pytest

from studio.core.config import Settings, default_paths
from studio.core.jobs import CancelToken, UserFacingError
from studio.pipelines.chat.types import ChatChunk, ChatRequest

TEXT = "The quick brown fox"


@pytest.fixture(scope="module")
def backend():
    from studio.pipelines.chat.local import LocalChatBackend

    settings = Settings(device="cpu")
    return LocalChatBackend(lambda: settings, default_paths)


def _plain_greedy(folder, text, n):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(folder))
    model = AutoModelForCausalLM.from_pretrained(str(folder))
    ids = tok(text, return_tensors="pt")["input_ids"]
    with torch.inference_mode():
        out = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids),
                             max_new_tokens=n, do_sample=False)
    return ids, tok.decode(out[0, ids.shape[1]:], skip_special_tokens=True)


@pytest.mark.parametrize("which", ["tiny_gpt2_dir", "tiny_llama_dir"])
def test_complete_mode_continues_the_raw_text_as_plain_generate(backend, request, which):
    folder = request.getfixturevalue(which)
    chunks: list[ChatChunk] = []
    reply = backend.generate(ChatRequest(model=str(folder), complete=True, temperature=0,
                                         max_new_tokens=12,
                                         messages=[{"role": "system", "content": "ignored"},
                                                   {"role": "user", "content": TEXT}]),
                             CancelToken(), chunks.append)
    ids, plain = _plain_greedy(folder, TEXT, 12)
    assert reply.prompt_tokens == ids.shape[1]  # no template, no system prompt
    assert reply.text == plain == "".join(c.text for c in chunks)
    assert reply.warnings == []  # no "no chat template" warning: none is used


def test_continue_sends_the_text_so_far_joined_as_written(backend, tiny_gpt2_dir):
    first = backend.generate(ChatRequest(model=str(tiny_gpt2_dir), complete=True, temperature=0,
                                         max_new_tokens=6,
                                         messages=[{"role": "user", "content": TEXT}]),
                             CancelToken())
    messages = [{"role": "user", "content": TEXT}, {"role": "assistant", "content": first.text}]
    request = ChatRequest(model=str(tiny_gpt2_dir), complete=True, temperature=0,
                          max_new_tokens=6, messages=messages)
    assert request.prompt_text() == TEXT + first.text
    more = backend.generate(request, CancelToken())
    assert more.completion_tokens == 6 and more.prompt_tokens > first.prompt_tokens


def test_a_text_longer_than_the_context_loses_its_beginning_and_says_so(backend, tiny_gpt2_dir):
    long_text = "The quick brown fox jumps over the lazy dog. " * 40
    reply = backend.generate(ChatRequest(model=str(tiny_gpt2_dir), complete=True, temperature=0,
                                         max_new_tokens=8,
                                         messages=[{"role": "user", "content": long_text}]),
                             CancelToken())
    assert reply.completion_tokens == 8 and reply.prompt_tokens < 256
    assert any("were left out to fit the model's context" in w for w in reply.warnings)


def test_an_empty_text_is_refused_with_a_sentence(backend, tiny_gpt2_dir):
    with pytest.raises(UserFacingError, match="no text to continue"):
        backend.generate(ChatRequest(model=str(tiny_gpt2_dir), complete=True,
                                     messages=[{"role": "user", "content": "  "}]),
                         CancelToken())


def test_remote_complete_mode_posts_the_prompt_to_v1_completions():
    from studio.pipelines.chat.remote import EventParser, RemoteChatBackend

    remote = RemoteChatBackend("http://127.0.0.1:9/v1", "m")
    request = ChatRequest(model="openai:http://127.0.0.1:9/v1#m", complete=True, logprobs=2,
                          messages=[{"role": "system", "content": "x"},
                                    {"role": "user", "content": "Once upon"}])
    body = remote.payload(request)
    assert remote.route(request) == "/completions" and "messages" not in body
    assert body["prompt"] == "Once upon" and body["logprobs"] == 2
    chat = ChatRequest(model="m", messages=[{"role": "user", "content": "hi"}], logprobs=3)
    assert remote.route(chat) == "/chat/completions"
    assert remote.payload(chat)["top_logprobs"] == 3 and remote.payload(chat)["logprobs"] is True
    assert "logprobs" not in remote.payload(chat, extras=False)

    parser = EventParser(remote)
    event = {"choices": [{"index": 0, "text": " a time", "finish_reason": None,
                          "logprobs": {"tokens": [" a time"], "token_logprobs": [-0.5],
                                       "top_logprobs": [{" a time": -0.5, " the": -1.5}]}}]}
    chunks = parser.feed("data: " + json.dumps(event)) + parser.feed("")
    assert [c.text for c in chunks] == [" a time"]
    assert chunks[0].logprobs[0].logprob == -0.5
    assert chunks[0].logprobs[0].top == [(" a time", -0.5), (" the", -1.5)]


def test_studio_chat_complete_prints_what_plain_generate_continues(tiny_gpt2_dir, capsys):
    from studio.cli import _main

    assert _main(["chat", "--model", str(tiny_gpt2_dir), "--complete", "--prompt", TEXT,
                  "--temperature", "0", "--max-new-tokens", "8"]) == 0
    out = capsys.readouterr().out
    assert out.rstrip("\n") == _plain_greedy(tiny_gpt2_dir, TEXT, 8)[1].rstrip("\n")


def test_studio_chat_complete_refuses_what_needs_a_chat(tiny_gpt2_dir, capsys):
    from studio.cli import _main

    assert _main(["chat", "--model", str(tiny_gpt2_dir), "--complete", "--prompt", TEXT,
                  "--system", "be nice"]) == 2
    assert "--complete continues a raw text" in capsys.readouterr().err


# -- the Chat window: the Complete toggle, remembered per conversation ----------------------------
@pytest.mark.gui
def test_chat_window_complete_mode_continues_and_is_remembered(studio_home, tiny_gpt2_dir,
                                                               request, qtbot):
    from PySide6.QtCore import Qt

    from tests.fixtures.chat_window import open_chat

    _window, panel = open_chat(request, qtbot, tiny_gpt2_dir, 6)
    panel.controls.complete.setChecked(True)
    assert panel.send_button.text() == "Continue" and not panel.controls.system.isEnabled()

    panel.input.setPlainText(TEXT)
    qtbot.keyClick(panel.input, Qt.Key.Key_Return)
    qtbot.waitUntil(lambda: panel.job is None, timeout=180_000)
    first = panel.model.last_message()
    assert first.role == "assistant" and first.content == _plain_greedy(tiny_gpt2_dir, TEXT, 6)[1]

    qtbot.mouseClick(panel.send_button, Qt.MouseButton.LeftButton)  # nothing typed: go on
    qtbot.waitUntil(lambda: panel.job is None, timeout=180_000)
    rows = panel.store.path(panel.conv_id)
    assert [m.role for m in rows] == ["user", "assistant", "assistant"]
    assert rows[2].content == _plain_greedy(tiny_gpt2_dir, TEXT + first.content, 6)[1]
    complete_chat = panel.conv_id

    panel.new_conversation()  # a new chat starts with the toggle as it was; turn it off
    panel.controls.complete.setChecked(False)
    assert panel.send_button.text() == "Send" and panel.controls.system.isEnabled()
    assert panel.store.conversation(panel.conv_id).settings["complete"] is False
    panel.open_conversation(complete_chat)
    assert panel.controls.complete.isChecked() and panel.send_button.text() == "Continue"


@pytest.mark.gui
def test_chat_window_branches_a_completion_at_an_alternative_token(studio_home, tiny_gpt2_dir,
                                                                   request, qtbot):
    from PySide6.QtCore import Qt, QUrl

    from studio.ui.panels.chat.model import MessageRole
    from tests.fixtures.chat_window import open_chat

    _window, panel = open_chat(request, qtbot, tiny_gpt2_dir, 4)
    panel.controls.complete.setChecked(True)
    panel.controls.probabilities.setChecked(True)
    panel.input.setPlainText(TEXT)
    qtbot.keyClick(panel.input, Qt.Key.Key_Return)
    qtbot.waitUntil(lambda: panel.job is None, timeout=180_000)
    reply = panel.model.last_message()
    entries = reply.meta["logprobs"]
    index = panel.model.index(panel.model.rowCount() - 1)
    lay = panel.delegate._layout(panel.view.visualRect(index), index.data(MessageRole))
    button = next(rect for name, rect, _t in lay["buttons"] if name == "probabilities")
    qtbot.mouseClick(panel.view.viewport(), Qt.MouseButton.LeftButton, pos=button.center())
    view = panel.token_view
    view._clicked(QUrl("tok:1"))
    alt = next(j for j, (t, _lp) in enumerate(entries[1]["top"]) if t != entries[1]["token"])
    assert f'href="alt:{alt}"' in view.alternatives.text()
    view.alternatives.linkActivated.emit(f"alt:{alt}")  # as a click on the link does
    qtbot.waitUntil(lambda: panel.job is None and panel.token_view is None, timeout=180_000)

    rows = panel.store.path(panel.conv_id)
    branch_text = entries[0]["text"] + entries[1]["top"][alt][0]
    assert [m.role for m in rows] == ["user", "assistant", "assistant"]
    assert rows[1].content == branch_text and rows[1].parent_id == reply.parent_id
    assert panel.store.children(panel.conv_id, reply.parent_id) == [reply.id, rows[1].id]
    assert rows[2].content == _plain_greedy(tiny_gpt2_dir, TEXT + branch_text, 4)[1]


def test_studio_chat_complete_conversation_goes_on_at_an_empty_line(tiny_gpt2_dir, capsys,
                                                                    monkeypatch):
    import io

    from studio.cli import _main

    monkeypatch.setattr("sys.stdin", io.StringIO(TEXT + "\n\n/exit\n"))
    assert _main(["chat", "--model", str(tiny_gpt2_dir), "--complete", "--temperature", "0",
                  "--max-new-tokens", "4"]) == 0
    first = _plain_greedy(tiny_gpt2_dir, TEXT, 4)[1]
    second = _plain_greedy(tiny_gpt2_dir, TEXT + first, 4)[1]
    assert capsys.readouterr().out == first + "\n" + second + "\n"
