"""The local chat engine with a tiny Llama: equivalence with plain transformers, Stop, seeds,
context trimming, and the bad-input messages."""

from __future__ import annotations

import shutil

import pytest

from studio.core.config import Settings, default_paths
from studio.core.jobs import CancelToken, JobState, UserFacingError
from studio.pipelines.chat.types import ChatChunk, ChatRequest

SYSTEM = {"role": "system", "content": "You are a helpful assistant."}


@pytest.fixture(scope="module")
def backend():
    from studio.pipelines.chat.local import LocalChatBackend

    settings = Settings(device="cpu")
    return LocalChatBackend(lambda: settings, default_paths)


def _request(model, text="Hello there", **kw) -> ChatRequest:
    kw.setdefault("temperature", 0)
    kw.setdefault("max_new_tokens", 24)
    return ChatRequest(model=str(model), messages=[SYSTEM, {"role": "user", "content": text}],
                       **kw)


def _spy_generate(monkeypatch, backend, model_dir):
    """Record the token ids the studio's own generate call returned."""
    loaded = backend.load(str(model_dir))
    calls = []
    real = loaded.model.generate

    def spy(*args, **kwargs):
        out = real(*args, **kwargs)
        calls.append((kwargs["input_ids"], out))
        return out

    monkeypatch.setattr(loaded.model, "generate", spy)
    return loaded, calls


def test_greedy_reply_equals_plain_generate(backend, tiny_llama_dir, monkeypatch):
    import torch

    loaded, calls = _spy_generate(monkeypatch, backend, tiny_llama_dir)
    chunks: list[ChatChunk] = []
    reply = backend.generate(_request(tiny_llama_dir), CancelToken(), chunks.append)
    prompt_ids, studio_out = calls[0]

    tok = loaded.tokenizer
    text = tok.apply_chat_template([SYSTEM, {"role": "user", "content": "Hello there"}],
                                   add_generation_prompt=True, tokenize=False)
    ids = tok(text, add_special_tokens=False, return_tensors="pt")["input_ids"]
    assert ids.tolist() == prompt_ids.tolist()
    with torch.inference_mode():
        plain = loaded.model.__class__.generate(loaded.model, input_ids=ids,
                                                attention_mask=torch.ones_like(ids),
                                                max_new_tokens=24, do_sample=False)
    assert studio_out.tolist() == plain.tolist()  # token for token
    new = plain.shape[1] - ids.shape[1]
    assert reply.completion_tokens == new == len(chunks) - 1
    assert reply.prompt_tokens == ids.shape[1]
    assert "".join(c.text for c in chunks) == reply.text
    assert chunks[-1].finish_reason == reply.finish_reason in ("stop", "length")
    assert [c.completion_tokens for c in chunks[:-1]] == list(range(1, new + 1))


@pytest.mark.parametrize("stop_after", [1, 5])
def test_stop_ends_generation_within_one_token(backend, tiny_llama_dir, monkeypatch, stop_after):
    _loaded, calls = _spy_generate(monkeypatch, backend, tiny_llama_dir)
    cancel = CancelToken()
    seen = []

    def on_chunk(chunk):
        seen.append(chunk)
        if chunk.completion_tokens == stop_after:
            cancel.cancel()

    reply = backend.generate(_request(tiny_llama_dir, max_new_tokens=200), cancel, on_chunk)
    prompt_ids, out = calls[0]
    generated = out.shape[1] - prompt_ids.shape[1]
    assert generated in (stop_after, stop_after + 1)  # the model really stopped
    assert reply.completion_tokens == generated
    assert reply.finish_reason == "cancelled" == seen[-1].finish_reason


def test_stream_iterator_matches_and_stops_when_consumer_leaves(backend, tiny_llama_dir):
    whole = backend.generate(_request(tiny_llama_dir), CancelToken())
    chunks = list(backend.stream(_request(tiny_llama_dir), CancelToken()))
    assert "".join(c.text for c in chunks) == whole.text
    assert chunks[-1].finish_reason == whole.finish_reason
    stream = backend.stream(_request(tiny_llama_dir, max_new_tokens=200), CancelToken())
    next(stream)
    stream.close()  # joins the helper thread, which only ends if generation stopped
    assert not backend._lock.locked()


def test_seed_makes_sampling_reproducible(backend, tiny_llama_dir):
    import torch

    def sample(seed):
        return backend.generate(_request(tiny_llama_dir, temperature=1.0, top_k=0, top_p=1.0,
                                         seed=seed), CancelToken()).text

    torch.manual_seed(123)
    before = torch.rand(1)
    torch.manual_seed(123)
    first = sample(7)
    assert torch.rand(1) == before  # the global random state is left as it was
    assert sample(7) == first
    assert sample(8) != first
    assert backend.generate(_request(tiny_llama_dir), CancelToken()).text != first


def test_context_trimming_keeps_system_prompt_and_reports_drops(backend, tiny_llama_dir):
    from tests.fixtures.tiny_llama import CONTEXT_LENGTH

    messages = [SYSTEM]
    for i in range(12):
        messages += [{"role": "user", "content": f"Question {i}: what is the capital of France?"},
                     {"role": "assistant", "content": f"Answer {i}: Paris, of course."}]
    messages.append({"role": "user", "content": "And the last question?"})
    chunks = []
    request = ChatRequest(model=str(tiny_llama_dir), messages=messages, temperature=0,
                          max_new_tokens=40)
    reply = backend.generate(request, CancelToken(), chunks.append)
    assert reply.dropped_messages > 0 and reply.dropped_messages % 2 == 0  # whole exchanges
    assert all(c.dropped_messages == reply.dropped_messages for c in chunks)
    assert reply.prompt_tokens + 40 <= CONTEXT_LENGTH

    from studio.pipelines.chat.prompting import fit_conversation

    loaded = backend.load(str(tiny_llama_dir))
    prompt = fit_conversation(loaded.tokenizer, messages, CONTEXT_LENGTH, 40)
    text = loaded.tokenizer.decode(prompt.input_ids)
    assert text.startswith("<|im_start|>system\nYou are a helpful assistant.")
    assert "And the last question?" in text and "Question 0:" not in text
    # Dropping one exchange fewer would not fit: only as much as needed was dropped.
    kept = [SYSTEM] + messages[1 + prompt.dropped_messages - 2:]
    assert len(fit_conversation(loaded.tokenizer, kept, 10_000, 40).input_ids) + 40 \
        > CONTEXT_LENGTH


def test_message_longer_than_the_context_is_refused(backend, tiny_llama_dir):
    with pytest.raises(UserFacingError, match="too long for this model"):
        backend.generate(_request(tiny_llama_dir, text="Paris " * 400), CancelToken())


@pytest.fixture(scope="module")
def odd_models(tmp_path_factory, tiny_llama_dir):
    from tests.fixtures.tiny_llama import build_tiny_llama

    root = tmp_path_factory.mktemp("odd-llamas")
    return {"no_template": build_tiny_llama(root / "base-model", chat_template=False),
            "no_tokenizer": build_tiny_llama(root / "weights-only", tokenizer=False)}


def test_model_without_chat_template_gets_fallback_and_warning(backend, odd_models):
    chunks = []
    reply = backend.generate(_request(odd_models["no_template"]), CancelToken(), chunks.append)
    assert reply.completion_tokens > 0
    assert any("no chat template" in w for w in reply.warnings)
    assert any("no chat template" in w for w in chunks[0].warnings)


def test_missing_tokenizer_is_a_clear_error(backend, odd_models):
    with pytest.raises(UserFacingError, match="has no tokenizer"):
        backend.generate(_request(odd_models["no_tokenizer"]), CancelToken())


def test_model_too_big_for_memory_is_refused_before_loading(tiny_llama_dir, monkeypatch):
    from studio.library.chat_models import resolve_chat_model
    from studio.pipelines.chat import loading

    entry = resolve_chat_model(str(tiny_llama_dir), Settings(), default_paths())
    assert loading.parameter_count(entry) > 30_000
    monkeypatch.setattr(loading, "available_memory", lambda device: 1000)
    with pytest.raises(UserFacingError, match=r"needs about .* GB but only"):
        loading.load_chat_model(entry, "cpu", loading.LoadOptions(__import__("torch").float32))


def test_find_chat_models_scans_folders_without_loading(tiny_llama_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-hf-cache"))
    paths = default_paths()
    shutil.copytree(tiny_llama_dir, paths.models_dir / "llm" / "tiny-llama")
    (paths.models_dir / "broken").mkdir()
    (paths.models_dir / "broken" / "config.json").write_text("{nope", encoding="utf-8")
    from studio.library.chat_models import find_chat_models, resolve_chat_model

    found = find_chat_models(Settings(), paths)
    assert [e.name for e in found] == ["tiny-llama"]
    assert found[0].architecture == "LlamaForCausalLM" and found[0].context_length == 256
    encoder = paths.models_dir / "bert"
    encoder.mkdir()
    (encoder / "config.json").write_text('{"architectures": ["BertModel"]}', encoding="utf-8")
    with pytest.raises(UserFacingError, match="not a chat .* BertModel"):
        resolve_chat_model(str(encoder), Settings(), paths)
    with pytest.raises(UserFacingError, match="hf download"):
        resolve_chat_model("someone/not-downloaded", Settings(), paths)


def test_chat_job_streams_partials_through_the_engine(tiny_llama_dir):
    from studio.pipelines.services import build_engine

    settings = Settings(device="cpu")
    seen = []

    class Listener:
        def job_changed(self, job):
            pass

        def job_progress(self, job, step, total, preview):
            seen.append(("progress", step, total))

        def job_partial(self, job, result):
            seen.append(("chunk", result))

    runner = build_engine(lambda: settings, default_paths, listener=Listener())
    try:
        job = runner.submit(_request(tiny_llama_dir, max_new_tokens=10))
        assert job.lane == "gpu" and runner.wait(job, 120)
        assert job.state is JobState.DONE, job.error
        chunks = [x[1] for x in seen if x[0] == "chunk"]
        assert "".join(c.text for c in chunks) == job.result.text
        assert ("progress", job.result.completion_tokens, 10) in seen
        bad = runner.submit(_request("openai:no-model-here"))
        assert bad.lane == "io" and runner.wait(bad, 120)
        assert bad.state is JobState.FAILED and "openai:BASE_URL#MODEL" in bad.error
    finally:
        runner.shutdown()
