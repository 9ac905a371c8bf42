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


def _continued(folder, prefix: str, new: int) -> tuple[list[int], str]:
    """Plain transformers: the chat with the reply's beginning continued, greedy."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForCausalLM.from_pretrained(folder).eval()
    text = tokenizer.apply_chat_template(QUESTION + [{"role": "assistant", "content": prefix}],
                                         tokenize=False, continue_final_message=True)
    ids = tokenizer(text, add_special_tokens=False, return_tensors="pt")["input_ids"]
    with torch.inference_mode():
        out = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids),
                             max_new_tokens=new, do_sample=False,
                             pad_token_id=tokenizer.eos_token_id)
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
