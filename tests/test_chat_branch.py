"""Branching a chat reply at a token: the conversation in the chat template with the reply's
beginning (up to the chosen token, then the chosen alternative) continued — transformers'
``continue_final_message`` — locally, through ``studio serve`` (vLLM's fields) and through the
studio's remote backend talking to it; greedy equals transformers' ``generate`` on the same
continued prompt."""

from __future__ import annotations

import pytest

from studio.core.config import Settings, default_paths
from studio.core.jobs import CancelToken, UserFacingError
from studio.pipelines.chat.types import ChatRequest

QUESTION = [{"role": "user", "content": "Hello there"}]
PREFIX = "Well, I"


@pytest.fixture(scope="module")
def backend():
    from studio.pipelines.chat.local import LocalChatBackend

    settings = Settings(device="cpu")
    return LocalChatBackend(lambda: settings, default_paths)


def _continued(folder, prefix: str, new: int, ids_out: list[int] | None = None,
               system: str = "") -> tuple[list[int], str]:
    """Plain transformers: the chat (after ``system``) with the reply's beginning continued,
    greedy (the prompt's ids and the new text; the new ids go into ``ids_out``)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForCausalLM.from_pretrained(folder).eval()
    chat = ([{"role": "system", "content": system}] if system else []) + QUESTION + [
        {"role": "assistant", "content": prefix}]
    text = tokenizer.apply_chat_template(chat, tokenize=False, continue_final_message=True)
    ids = tokenizer(text, add_special_tokens=False, return_tensors="pt")["input_ids"]
    with torch.inference_mode():
        out = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids),
                             max_new_tokens=new, do_sample=False,
                             pad_token_id=tokenizer.eos_token_id)
    if ids_out is not None:
        ids_out.extend(out[0, ids.shape[1]:].tolist())
    return ids[0].tolist(), tokenizer.decode(out[0, ids.shape[1]:], skip_special_tokens=True)


def branch(folder, prefix: str = PREFIX, **kw) -> ChatRequest:
    return ChatRequest(model=str(folder), temperature=0, max_new_tokens=6, continue_reply=True,
                       messages=QUESTION + [{"role": "assistant", "content": prefix}], **kw)


def test_a_branched_reply_equals_generate_on_the_continued_chat(backend, tiny_llama_dir):
    prompt, expected = _continued(tiny_llama_dir, PREFIX, 6)
    reply = backend.generate(branch(tiny_llama_dir, logprobs=0), CancelToken())
    assert reply.text == expected
    assert reply.prompt_ids == prompt  # the reply's beginning is read, no new turn opened
    fresh = backend.generate(ChatRequest(model=str(tiny_llama_dir), messages=QUESTION,
                                         temperature=0, max_new_tokens=6, logprobs=0),
                             CancelToken())
    # the same prompt as a fresh reply's, the beginning after it in the open assistant turn
    assert prompt[:len(fresh.prompt_ids)] == fresh.prompt_ids and len(prompt) > len(
        fresh.prompt_ids)


@pytest.mark.parametrize("messages,complete", [
    (QUESTION, False),  # nothing to continue
    (QUESTION + [{"role": "assistant", "content": PREFIX}], True),  # Complete mode has no turns
])
def test_only_an_assistant_beginning_in_a_chat_is_continued(backend, tiny_llama_dir, messages,
                                                            complete):
    with pytest.raises(UserFacingError, match="beginning of an assistant"):
        backend.generate(ChatRequest(model=str(tiny_llama_dir), messages=messages,
                                     continue_reply=True, complete=complete), CancelToken())


# -- studio serve: vLLM's continue_final_message, and the studio as its client -----------------
@pytest.fixture(scope="module")
def server(tiny_llama_dir):
    from studio.pipelines.services import build_engine
    from studio.server.app import make_server
    from studio.server.catalog import CHAT, Catalog, ServedModel

    engine = build_engine(lambda: Settings(device="cpu"), default_paths)
    served = make_server("127.0.0.1", 0, engine,
                         Catalog([ServedModel("tiny-chat", CHAT, str(tiny_llama_dir))]))
    yield served
    served.server_close()
    engine.shutdown(timeout=120)


def test_served_continue_final_message_and_the_remote_branch(server, tiny_llama_dir):
    import threading

    from studio.pipelines.chat.remote import RemoteChatBackend
    from tests.fixtures.asgi import asgi_call

    _prompt, expected = _continued(tiny_llama_dir, PREFIX, 6)
    body = {"model": "tiny-chat", "temperature": 0, "max_tokens": 6,
            "messages": QUESTION + [{"role": "assistant", "content": PREFIX}],
            "continue_final_message": True, "add_generation_prompt": False}
    r = asgi_call(server, "POST", "/v1/chat/completions", json=body)
    assert r.status_code == 200, r.text
    assert r.json()["choices"][0]["message"]["content"] == expected

    for bad, field in [({"add_generation_prompt": True}, "add_generation_prompt"),
                       ({"messages": QUESTION}, "continue_final_message")]:
        r = asgi_call(server, "POST", "/v1/chat/completions", json=body | bad)
        assert r.status_code == 400 and r.json()["error"]["param"] == field

    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                              daemon=True)
    thread.start()
    try:
        remote = RemoteChatBackend.from_spec(f"openai:{server.url}#tiny-chat")
        chunks = list(remote.stream(branch("x"), CancelToken()))
    finally:
        server.shutdown()
        thread.join(60)
    assert "".join(c.text for c in chunks) == expected


def test_a_server_without_continuation_says_so():
    from studio.pipelines.chat.remote import RemoteChatBackend

    remote = RemoteChatBackend("http://127.0.0.1:9/v1", "m")
    error = remote._http_error(400, b'{"error": {"message": "Unrecognized request argument '
                                    b'supplied: continue_final_message"}}', "chat")
    assert "cannot continue a reply" in str(error) and "local model" in str(error)
    assert remote.payload(branch("x"))["continue_final_message"] is True


# -- the window: "branch here" in a chat ---------------------------------------------------------
@pytest.mark.gui
def test_chat_window_branches_a_chat_reply_at_an_alternative_token(studio_home, tiny_llama_dir,
                                                                   request, qtbot):
    from PySide6.QtCore import Qt, QUrl

    from studio.ui.panels.chat.model import MessageRole
    from tests.fixtures.chat_window import open_chat

    _window, panel = open_chat(request, qtbot, tiny_llama_dir, 6)
    panel.controls.probabilities.setChecked(True)
    panel.input.setPlainText(QUESTION[0]["content"])
    qtbot.keyClick(panel.input, Qt.Key.Key_Return)
    qtbot.waitUntil(lambda: panel.job is None, timeout=180_000)
    reply = panel.model.last_message()
    entries = reply.meta["logprobs"]

    def open_view():
        index = panel.model.index(panel.model.rowCount() - 1)
        lay = panel.delegate._layout(panel.view.visualRect(index), index.data(MessageRole))
        button = next(rect for name, rect, _t in lay["buttons"] if name == "probabilities")
        qtbot.mouseClick(panel.view.viewport(), Qt.MouseButton.LeftButton, pos=button.center())
        return panel.token_view

    view = open_view()
    view._clicked(QUrl("tok:1"))
    alt = next(j for j, (t, _lp) in enumerate(entries[1]["top"]) if t != entries[1]["token"])
    assert f'href="alt:{alt}"' in view.alternatives.text()  # offered in a chat too
    view.alternatives.linkActivated.emit(f"alt:{alt}")  # as a click on the link does
    qtbot.waitUntil(lambda: panel.job is None and panel.token_view is None, timeout=180_000)

    prefix = entries[0]["text"] + entries[1]["top"][alt][0]
    rows = panel.store.path(panel.conv_id)
    assert [m.role for m in rows] == ["user", "assistant"]  # a sibling reply, not a new turn
    branch = rows[1]
    assert branch.parent_id == reply.parent_id and branch.id != reply.id
    assert panel.store.children(panel.conv_id, reply.parent_id) == [reply.id, branch.id]
    new_ids: list[int] = []
    prompt, _text = _continued(tiny_llama_dir, prefix, 6, new_ids,
                               panel.controls.system.toPlainText().strip())
    assert [e["id"] for e in branch.meta["logprobs"]] == new_ids  # greedy: generate's tokens
    assert branch.meta["prompt_ids"] == prompt
    written = "".join(e["text"] for e in branch.meta["logprobs"])
    assert branch.content == prefix + written  # stored with the conversation
    assert branch.meta["prefix"] == prefix and branch.meta["branched_from"] == reply.id

    view = open_view()  # the beginning shows uncoloured, before the new tokens
    assert view.text.toPlainText().startswith(prefix)
    assert view.text.toHtml().count("tok:") == len([e for e in branch.meta["logprobs"]
                                                    if e["text"]])
    view.close()
