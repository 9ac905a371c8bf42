"""``"studio": {"attention": true}`` through ``studio serve``: for each reply token, the last
layer's attention (averaged over heads) over everything the model had read — the rows equal
transformers' eager attention and the window's one-token "Where it looked"; streamed as an event
of its own; refused for remote models; unknown extension fields refused."""

from __future__ import annotations

import json

import pytest

from studio.core.config import Settings, default_paths
from studio.core.jobs import CancelToken
from studio.pipelines.chat.types import AttentionRequest

PROMPT = [{"role": "user", "content": "Hello there"}]


@pytest.fixture(scope="module")
def server(tiny_llama_dir, tiny_gpt2_dir):
    from studio.pipelines.services import build_engine
    from studio.server.app import make_server
    from studio.server.catalog import CHAT, Catalog, ServedModel

    engine = build_engine(lambda: Settings(device="cpu"), default_paths)
    served = make_server("127.0.0.1", 0, engine, Catalog([
        ServedModel("tiny-chat", CHAT, str(tiny_llama_dir)),
        ServedModel("tiny-gpt2", CHAT, str(tiny_gpt2_dir)),
        ServedModel("far", CHAT, "openai:http://127.0.0.1:9/v1#m")]))
    yield served
    served.server_close()
    engine.shutdown(timeout=120)


def _eager_rows(folder, ids: list[int], generated: int) -> list[list[float]]:
    import torch
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(folder, attn_implementation="eager").eval()
    with torch.inference_mode():
        layer = model(input_ids=torch.tensor([ids]), output_attentions=True).attentions[-1][0]
    start = len(ids) - generated - 1
    return [layer[:, p, :p + 1].mean(dim=0).tolist() for p in range(start, len(ids) - 1)]


def test_served_chat_attention_equals_transformers_eager_attention(server, tiny_llama_dir):
    from studio.pipelines.chat.local import LocalChatBackend
    from tests.fixtures.asgi import asgi_call

    body = {"model": "tiny-chat", "messages": PROMPT, "temperature": 0, "max_tokens": 5,
            "studio": {"attention": True}}
    r = asgi_call(server, "POST", "/v1/chat/completions", json=body)
    assert r.status_code == 200, r.text
    answer = r.json()
    assert answer["choices"][0]["logprobs"] is None  # not asked: not sent
    seen = answer["studio_attention"]
    settings = Settings(device="cpu")
    backend = LocalChatBackend(lambda: settings, default_paths)
    from studio.pipelines.chat.types import ChatRequest

    reply = backend.generate(ChatRequest(model=str(tiny_llama_dir), messages=PROMPT,
                                         temperature=0, max_new_tokens=5, logprobs=0),
                             CancelToken())
    ids = reply.prompt_ids + [t.id for t in reply.logprobs]
    assert seen["prompt_tokens"] == len(reply.prompt_ids) and seen["left_out"] == 0
    assert len(seen["tokens"]) == len(ids) and len(seen["rows"]) == len(reply.logprobs)
    expected = _eager_rows(tiny_llama_dir, ids, len(reply.logprobs))
    for row, want in zip(seen["rows"], expected, strict=True):
        assert row == pytest.approx(want, abs=1e-5) and sum(row) == pytest.approx(1, abs=1e-4)
    # row 2 is what the window's "Where it looked" shows for the third token
    third = backend.attention(AttentionRequest(model=str(tiny_llama_dir),
                                               input_ids=ids[:len(reply.prompt_ids) + 2]),
                              CancelToken())
    assert seen["rows"][2] == pytest.approx(third.weights, abs=1e-5)

    streamed = asgi_call(server, "POST", "/v1/chat/completions", json=body | {"stream": True})
    events = [json.loads(line[6:]) for line in streamed.text.splitlines()
              if line.startswith("data: {")]
    extension = [e for e in events if "studio_attention" in e]
    assert len(extension) == 1 and extension[0]["choices"] == []
    assert extension[0]["studio_attention"]["rows"] == seen["rows"]  # the same pass


def test_served_text_completion_attention(server, tiny_gpt2_dir):
    from tests.fixtures.asgi import asgi_call

    r = asgi_call(server, "POST", "/v1/completions", json={
        "model": "tiny-gpt2", "prompt": "The quick brown", "temperature": 0, "max_tokens": 3,
        "logprobs": 1, "studio": {"attention": True}})
    assert r.status_code == 200, r.text
    answer = r.json()
    seen = answer["studio_attention"]
    assert len(answer["choices"][0]["logprobs"]["tokens"]) == len(seen["rows"]) == 3
    assert [len(row) for row in seen["rows"]] == [seen["prompt_tokens"] + i for i in range(3)]


@pytest.mark.parametrize("model,studio,code,param", [
    ("far", {"attention": True}, "attention_unsupported", "studio.attention"),
    ("tiny-chat", {"attention": True, "heads": 2}, None, "studio.heads"),
])
def test_attention_refusals(server, model, studio, code, param):
    from tests.fixtures.asgi import asgi_call

    r = asgi_call(server, "POST", "/v1/chat/completions",
                  json={"model": model, "messages": PROMPT, "studio": studio})
    assert r.status_code == 400, r.text
    error = r.json()["error"]
    assert error["code"] == code and error["param"] == param, error
