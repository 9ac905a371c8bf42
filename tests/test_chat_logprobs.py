"""Token probabilities: each generated token's log-probability and its top-k alternatives equal
transformers' log_softmax of the raw logits of the same greedy run; no hook without them; bad
values refused; the CLI's --logprobs."""

from __future__ import annotations

import pytest

from studio.core.config import Settings, default_paths
from studio.core.jobs import CancelToken, UserFacingError
from studio.pipelines.chat.types import ChatChunk, ChatRequest

PROMPT = [{"role": "user", "content": "Hello there"}]


@pytest.fixture(scope="module")
def backend():
    from studio.pipelines.chat.local import LocalChatBackend

    settings = Settings(device="cpu")
    return LocalChatBackend(lambda: settings, default_paths)


@pytest.mark.parametrize("which,complete", [("tiny_llama_dir", False), ("tiny_gpt2_dir", True)])
def test_logprobs_equal_log_softmax_of_the_logits_of_plain_generate(backend, request, which,
                                                                     complete):
    import torch

    folder = request.getfixturevalue(which)
    loaded = backend.load(str(folder))
    calls = []
    real = loaded.model.generate

    def spy(*args, **kwargs):
        calls.append(kwargs["input_ids"])
        return real(*args, **kwargs)

    loaded.model.generate = spy
    try:
        chunks: list[ChatChunk] = []
        reply = backend.generate(ChatRequest(model=str(folder), messages=PROMPT, temperature=0,
                                             max_new_tokens=10, logprobs=5, complete=complete),
                                 CancelToken(), chunks.append)
    finally:
        del loaded.model.generate
    ids = calls[0]
    with torch.inference_mode():
        plain = loaded.model.generate(input_ids=ids, attention_mask=torch.ones_like(ids),
                                      max_new_tokens=10, do_sample=False, output_logits=True,
                                      return_dict_in_generate=True)
    new = plain.sequences[0, ids.shape[1]:].tolist()
    assert len(reply.logprobs) == len(new) == reply.completion_tokens
    assert [t for c in chunks for t in c.logprobs] == reply.logprobs  # streamed as they come
    tok = loaded.tokenizer
    for scored, token, logits in zip(reply.logprobs, new, plain.logits, strict=True):
        logp = torch.log_softmax(logits[0].float(), dim=-1)
        assert scored.token == tok.decode([token])
        assert scored.logprob == pytest.approx(float(logp[token]), abs=1e-5)
        values, top_ids = torch.topk(logp, 5)
        assert [t for t, _ in scored.top] == [tok.decode([i]) for i in top_ids.tolist()]
        assert [lp for _, lp in scored.top] == pytest.approx(values.tolist(), abs=1e-5)
        assert scored.top[0][1] == pytest.approx(scored.logprob, abs=1e-5)  # greedy: the best


def test_without_logprobs_no_hook_is_attached(backend, tiny_llama_dir, monkeypatch):
    loaded = backend.load(str(tiny_llama_dir))
    hooked = []
    real = loaded.model.register_forward_hook
    monkeypatch.setattr(loaded.model, "register_forward_hook",
                        lambda *a, **k: hooked.append(1) or real(*a, **k))
    reply = backend.generate(ChatRequest(model=str(tiny_llama_dir), messages=PROMPT,
                                         temperature=0, max_new_tokens=3), CancelToken())
    assert reply.logprobs == [] and hooked == []
    backend.generate(ChatRequest(model=str(tiny_llama_dir), messages=PROMPT, temperature=0,
                                 max_new_tokens=3, logprobs=0), CancelToken())
    assert hooked == [1] and not loaded.model._forward_hooks  # removed after the reply


@pytest.mark.parametrize("bad", [-1, 21, True, 2.5])
def test_bad_numbers_of_alternatives_are_refused(backend, tiny_llama_dir, bad):
    with pytest.raises(UserFacingError, match="number of alternatives must be 0 to 20"):
        backend.generate(ChatRequest(model=str(tiny_llama_dir), messages=PROMPT, logprobs=bad),
                         CancelToken())


def test_studio_chat_logprobs_prints_the_tokens_on_stderr(tiny_gpt2_dir, capsys):
    from studio.cli import _main

    assert _main(["chat", "--model", str(tiny_gpt2_dir), "--complete", "--prompt", "The quick",
                  "--temperature", "0", "--max-new-tokens", "3", "--logprobs", "2"]) == 0
    captured = capsys.readouterr()
    lines = [line for line in captured.err.splitlines() if "(top: " in line]
    assert len(lines) == 3 and all(line.count("%") == 3 for line in lines)
    assert _main(["chat", "--model", str(tiny_gpt2_dir), "--prompt", "x", "--logprobs",
                  "30"]) == 2
    assert "0 to 20" in capsys.readouterr().err


# -- studio serve: OpenAI's logprobs on /v1/chat/completions and /v1/completions ----------------
@pytest.fixture(scope="module")
def server(tiny_llama_dir, tiny_gpt2_dir):
    from studio.pipelines.services import build_engine
    from studio.server.app import make_server
    from studio.server.catalog import CHAT, Catalog, ServedModel

    engine = build_engine(lambda: Settings(device="cpu"), default_paths)
    catalog = Catalog([ServedModel("tiny-chat", CHAT, str(tiny_llama_dir)),
                       ServedModel("tiny-gpt2", CHAT, str(tiny_gpt2_dir))])
    served = make_server("127.0.0.1", 0, engine, catalog)
    yield served
    served.server_close()
    engine.shutdown(timeout=120)


@pytest.fixture(scope="module")
def serving(server):
    """The same server listening on its loopback port (for the studio's own remote backend)."""
    import threading

    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                              daemon=True)
    thread.start()
    yield server.url
    server.shutdown()
    thread.join(60)


def test_remote_complete_mode_with_logprobs_through_studio_serve(serving, backend,
                                                                 tiny_gpt2_dir):
    """Studio as the client of another server: Complete mode goes to /v1/completions and the
    token probabilities come back in its shape, equal to the local engine's."""
    from studio.pipelines.chat.remote import RemoteChatBackend

    text = [{"role": "user", "content": "The quick brown"}]
    remote = RemoteChatBackend.from_spec(f"openai:{serving}#tiny-gpt2")
    chunks = list(remote.stream(ChatRequest(model="x", messages=text, complete=True,
                                            temperature=0, max_new_tokens=5, logprobs=2),
                                CancelToken()))
    local = backend.generate(ChatRequest(model=str(tiny_gpt2_dir), messages=text, complete=True,
                                         temperature=0, max_new_tokens=5, logprobs=2),
                             CancelToken())
    assert "".join(c.text for c in chunks) == local.text
    scored = [t for c in chunks for t in c.logprobs]
    assert [t.token for t in scored] == [t.token for t in local.logprobs]
    assert [t.logprob for t in scored] == pytest.approx([t.logprob for t in local.logprobs])
    assert chunks[-1].finish_reason in ("stop", "length")

    # the window's path for remote models: the I/O lane's asyncio client
    from studio.pipelines.chat.remote_async import AsyncRemoteChat
    from tests.fixtures.asgi import run_async

    async def collect():
        return [c async for c in AsyncRemoteChat(remote).stream(
            ChatRequest(model="x", messages=text, complete=True, temperature=0,
                        max_new_tokens=5, logprobs=2))]

    streamed = run_async(collect())
    assert "".join(c.text for c in streamed) == local.text
    assert [t.token for c in streamed for t in c.logprobs] == [t.token for t in scored]


def _sse(text: str) -> list:
    import json

    events = [line[6:] for line in text.splitlines() if line.startswith("data: ")]
    assert events[-1] == "[DONE]"
    return [json.loads(e) for e in events[:-1]]


def test_served_chat_logprobs_are_the_engines(server, backend, tiny_llama_dir):
    from tests.fixtures.asgi import asgi_call

    body = {"model": "tiny-chat", "messages": PROMPT, "temperature": 0, "max_tokens": 6,
            "logprobs": True, "top_logprobs": 3}
    r = asgi_call(server, "POST", "/v1/chat/completions", json=body)
    assert r.status_code == 200, r.text
    choice = r.json()["choices"][0]
    local = backend.generate(ChatRequest(model=str(tiny_llama_dir), messages=PROMPT,
                                         temperature=0, max_new_tokens=6, logprobs=3),
                             CancelToken())
    content = choice["logprobs"]["content"]
    assert [e["token"] for e in content] == [t.token for t in local.logprobs]
    assert [e["logprob"] for e in content] == pytest.approx([t.logprob for t in local.logprobs])
    assert all(len(e["top_logprobs"]) == 3 and e["bytes"] == list(e["token"].encode())
               for e in content)
    assert choice["message"]["content"] == local.text
    plain = asgi_call(server, "POST", "/v1/chat/completions",
                      json={k: v for k, v in body.items() if "logprobs" not in k}).json()
    assert plain["choices"][0]["logprobs"] is None  # not asked: not computed

    streamed = _sse(asgi_call(server, "POST", "/v1/chat/completions",
                              json=body | {"stream": True}).text)
    tokens = [e["token"] for ev in streamed for e in (ev["choices"][0]["logprobs"] or {}).get(
        "content", [])]
    assert tokens == [t.token for t in local.logprobs]


def test_served_text_completion_continues_the_prompt_with_logprobs(server, backend,
                                                                    tiny_gpt2_dir):
    from tests.fixtures.asgi import asgi_call

    body = {"model": "tiny-gpt2", "prompt": "The quick brown", "temperature": 0,
            "max_tokens": 5, "logprobs": 2}
    r = asgi_call(server, "POST", "/v1/completions", json=body)
    assert r.status_code == 200, r.text
    answer = r.json()
    local = backend.generate(ChatRequest(model=str(tiny_gpt2_dir), complete=True, temperature=0,
                                         max_new_tokens=5, logprobs=2,
                                         messages=[{"role": "user", "content": "The quick brown"}]),
                             CancelToken())
    choice = answer["choices"][0]
    assert answer["object"] == "text_completion" and answer["id"].startswith("cmpl-")
    assert choice["text"] == local.text
    assert answer["usage"]["prompt_tokens"] == local.prompt_tokens
    lp = choice["logprobs"]
    assert lp["tokens"] == [t.token for t in local.logprobs]
    assert lp["token_logprobs"] == pytest.approx([t.logprob for t in local.logprobs])
    assert all(len(alts) <= 2 for alts in lp["top_logprobs"])
    assert lp["text_offset"][0] == 0

    streamed = _sse(asgi_call(server, "POST", "/v1/completions",
                              json=body | {"stream": True}).text)
    assert "".join(ev["choices"][0]["text"] for ev in streamed) == local.text
    assert streamed[-1]["choices"][0]["finish_reason"] in ("stop", "length")


@pytest.mark.parametrize("path,body,param", [
    ("/v1/chat/completions", {"logprobs": True, "top_logprobs": 21}, "top_logprobs"),
    ("/v1/chat/completions", {"top_logprobs": 2}, "top_logprobs"),
    ("/v1/chat/completions", {"logprobs": "yes"}, "logprobs"),
    ("/v1/completions", {"logprobs": 6}, "logprobs"),
    ("/v1/completions", {"logprobs": -1}, "logprobs"),
    ("/v1/completions", {"echo": True}, "echo"),
    ("/v1/completions", {"prompt": ["a", "b"]}, "prompt"),
    ("/v1/completions", {"prompt": " "}, "prompt"),
])
def test_bad_logprobs_and_completion_fields_are_refused_with_a_sentence(server, path, body,
                                                                        param):
    from tests.fixtures.asgi import asgi_call

    base = {"model": "tiny-gpt2", "max_tokens": 2}
    base |= {"messages": PROMPT} if "chat" in path else {"prompt": "The"}
    r = asgi_call(server, "POST", path, json=base | body)
    assert r.status_code == 400, r.text
    error = r.json()["error"]
    assert error["param"] == param and error["message"].endswith(".")


# -- the Chat window: the token-probability view ---------------------------------------------------
@pytest.mark.gui
def test_chat_window_shows_token_probabilities_in_colour_with_alternatives(
        studio_home, tiny_llama_dir, request, qtbot, backend):
    from PySide6.QtCore import Qt, QUrl

    from studio.pipelines.chat.types import AttentionRequest
    from studio.ui.panels.chat.model import MessageRole
    from tests.fixtures.chat_window import open_chat

    _window, panel = open_chat(request, qtbot, tiny_llama_dir, 5)

    def reply_buttons():
        row = panel.model.rowCount() - 1
        index = panel.model.index(row)
        lay = panel.delegate._layout(panel.view.visualRect(index), index.data(MessageRole))
        return {name: rect for name, rect, _t in lay["buttons"]}

    panel.input.setPlainText("Hello")
    qtbot.keyClick(panel.input, Qt.Key.Key_Return)
    qtbot.waitUntil(lambda: panel.job is None, timeout=180_000)
    assert "logprobs" not in panel.model.last_message().meta  # off: nothing kept
    assert "probabilities" not in reply_buttons()

    panel.controls.probabilities.setChecked(True)
    assert panel.store.conversation(panel.conv_id).settings["probabilities"] is True
    panel.input.setPlainText("Hello")
    qtbot.keyClick(panel.input, Qt.Key.Key_Return)
    qtbot.waitUntil(lambda: panel.job is None, timeout=180_000)
    reply = panel.model.last_message()
    stored = panel.store.message(reply.id).meta["logprobs"]  # saved with the reply
    assert len(stored) == reply.tokens and "".join(e["text"] for e in stored) == reply.content
    assert all(len(e["top"]) == 5 for e in stored)

    qtbot.mouseClick(panel.view.viewport(), Qt.MouseButton.LeftButton,
                     pos=reply_buttons()["probabilities"].center())
    view = panel.token_view
    assert view is not None and view.isVisible()
    html_text = view.text.toHtml()
    shown = [e for e in stored if e["text"]]  # a token ending inside a character shows later
    assert html_text.count("tok:") == len(shown) and "background-color:" in html_text
    view._clicked(QUrl("tok:0"))
    assert view.alternatives.text().count("%") == 1 + len(stored[0]["top"])
    assert "average probability" in view.summary.text()

    # where the model looked when it wrote the third token: the prompt and the first two
    view._clicked(QUrl("tok:2"))
    assert view.look.isVisible() and view.look.isEnabled()
    qtbot.mouseClick(view.look, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: "Reading" not in view.attention.toPlainText(), timeout=60_000)
    prompt_ids = panel.store.message(reply.id).meta["prompt_ids"]
    seen = backend.attention(AttentionRequest(model=str(tiny_llama_dir), input_ids=prompt_ids
                                              + [e["id"] for e in stored[:2]]), CancelToken())
    assert view.attention.toPlainText() == "".join(seen.tokens)
    view.close()


# -- look inside: the last layer's attention for a chosen token --------------------------------------
@pytest.mark.parametrize("which", ["tiny_llama_dir", "tiny_gpt2_dir"])
def test_attention_for_a_token_equals_transformers_eager_attention(backend, request, which):
    import torch
    from transformers import AutoModelForCausalLM

    from studio.pipelines.chat.types import AttentionRequest

    folder = request.getfixturevalue(which)
    reply = backend.generate(ChatRequest(model=str(folder), messages=PROMPT, temperature=0,
                                         max_new_tokens=4, logprobs=0, complete=True),
                             CancelToken())
    ids = reply.prompt_ids + [t.id for t in reply.logprobs[:2]]  # what the 3rd token read
    own = backend.load(str(folder)).model.config._attn_implementation
    seen = backend.attention(AttentionRequest(model=str(folder), input_ids=ids), CancelToken())
    assert backend.load(str(folder)).model.config._attn_implementation == own  # put back

    plain = AutoModelForCausalLM.from_pretrained(str(folder), attn_implementation="eager")
    with torch.inference_mode():
        out = plain(input_ids=torch.tensor([ids]), output_attentions=True)
    expected = out.attentions[-1][0, :, -1, :].mean(dim=0)
    assert seen.weights == pytest.approx(expected.tolist(), abs=1e-5)
    assert sum(seen.weights) == pytest.approx(1.0, abs=1e-4) and len(seen.tokens) == len(ids)
    assert seen.heads == out.attentions[-1].shape[1]


def test_attention_is_refused_for_remote_models_and_empty_input(backend, tiny_llama_dir):
    from studio.pipelines.chat.service import AttentionService
    from studio.pipelines.chat.types import AttentionRequest

    class Progress:
        def message(self, text):
            pass

    service = AttentionService(type("Chat", (), {"local": backend})())
    with pytest.raises(UserFacingError, match="local chat models only"):
        service.run(AttentionRequest(model="openai:http://127.0.0.1:9/v1#m", input_ids=[1]),
                    Progress(), CancelToken())
    with pytest.raises(UserFacingError, match="at least one"):
        backend.attention(AttentionRequest(model=str(tiny_llama_dir)), CancelToken())
