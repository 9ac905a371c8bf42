"""GGUF chat models (issue 21): a tiny llama-architecture GGUF written by the ``gguf`` package.

Listing, metadata and the missing-extra sentence always run; generating needs llama-cpp-python
(an optional extra CI does not install), so those tests are skipped with the reason there.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from studio.core.config import Settings, default_paths
from studio.core.jobs import CancelToken, UserFacingError
from studio.pipelines.chat.types import ChatChunk, ChatRequest
from tests.fixtures.tiny_gguf import write_tiny_gguf
from tests.fixtures.tiny_llama import CHAT_TEMPLATE, CONTEXT_LENGTH
from tests.test_chat_a_engine import SYSTEM, _request  # greedy, the system prompt, "Hello there"

needs_llama_cpp = pytest.mark.skipif(
    importlib.util.find_spec("llama_cpp") is None,
    reason="llama-cpp-python (the optional 'gguf' extra) is not installed")


@pytest.fixture(scope="module")
def gguf_file(tmp_path_factory) -> Path:
    return write_tiny_gguf(tmp_path_factory.mktemp("gguf") / "tiny-chat-f32.gguf")


@pytest.fixture
def in_models(gguf_file) -> Path:
    """The tiny model copied into this test's Studio models folder."""
    paths = default_paths()
    paths.models_dir.mkdir(parents=True, exist_ok=True)
    dest = paths.models_dir / "tiny-chat-f32.gguf"
    dest.write_bytes(gguf_file.read_bytes())
    return dest


def _no_llama_cpp(monkeypatch):
    from studio.library import gguf_models

    monkeypatch.setattr(gguf_models, "llama_cpp_available", lambda: False)


# -- metadata and listing (no llama-cpp) --------------------------------------------------------

def test_metadata_is_read_from_the_header(gguf_file, tmp_path):
    from studio.library.gguf_models import read_gguf_info
    from tests.fixtures import tiny_gguf as t

    info = read_gguf_info(gguf_file)
    assert (info.architecture, info.quantization, info.context_length) == ("llama", "F32",
                                                                          CONTEXT_LENGTH)
    assert info.chat_template == CHAT_TEMPLATE
    vocab = 300 + 0  # the trained tokenizer's size (specials included)
    per_layer = 2 * t.HIDDEN + 2 * t.HIDDEN * t.HIDDEN + 2 * t.HIDDEN * (t.HIDDEN // 2) \
        + 3 * t.HIDDEN * t.FFN
    assert info.parameters == 2 * vocab * t.HIDDEN + t.LAYERS * per_layer + t.HIDDEN
    half = read_gguf_info(write_tiny_gguf(tmp_path / "h.gguf", f16=True, chat_template=False))
    assert (half.quantization, half.chat_template) == ("F16", "")


def test_library_lists_gguf_with_quantization_and_size(in_models, monkeypatch):
    from studio.library.catalog import list_models

    _no_llama_cpp(monkeypatch)
    entries = [e for e in list_models(Settings(), default_paths()) if e.path == in_models]
    assert len(entries) == 1
    entry = entries[0]
    assert (entry.kind, entry.format, entry.precision, entry.workspaces) == (
        "gguf", "gguf", "F32", ("Chat",))
    assert entry.size_bytes == in_models.stat().st_size
    assert entry.detail.startswith("llama, 256 tokens context")
    # the extra is missing: the entry says the one line that installs it, not an error
    assert "pip install llama-cpp-python==0.3.36" in entry.detail


def test_a_gguf_without_vocabulary_is_not_a_chat_model(in_models):
    import gguf
    import numpy as np

    from studio.library.chat_models import find_chat_models, resolve_chat_model

    flux = in_models.with_name("flux1-dev-Q8_0.gguf")  # as ComfyUI-GGUF writes a transformer
    w = gguf.GGUFWriter(str(flux), "flux")
    w.add_tensor("img_in.weight", np.zeros((8, 4), dtype=np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    assert [e.path for e in find_chat_models(Settings(), default_paths()) if e.gguf] == [in_models]
    with pytest.raises(UserFacingError, match="no vocabulary"):
        resolve_chat_model(str(flux), Settings(), default_paths())


def test_hf_cache_gguf_repo_lists_each_file_once(gguf_file, tmp_path, monkeypatch):
    from studio.library.catalog import list_models
    from studio.library.chat_models import find_chat_models
    from tests.fixtures.hub_cache import add_to_hub_cache

    hf_home = tmp_path / "hf-home"
    monkeypatch.setenv("HF_HOME", str(hf_home))
    source = tmp_path / "repo"
    source.mkdir()
    (source / "tiny-chat-q8.gguf").write_bytes(gguf_file.read_bytes())
    write_tiny_gguf(source / "tiny-chat-f16.gguf", f16=True)
    (source / "README.md").write_text("GGUF files")
    add_to_hub_cache(hf_home, "someone/tiny-chat-GGUF", source)
    listed = [(e.name, e.kind, e.precision, e.repo_id) for e in list_models(Settings(),
                                                                             default_paths())]
    assert listed == [("tiny-chat-f16", "gguf", "F16", "someone/tiny-chat-GGUF"),
                      ("tiny-chat-q8", "gguf", "F32", "someone/tiny-chat-GGUF")]
    specs = [e.spec for e in find_chat_models(Settings(), default_paths())]
    assert len(specs) == 2 and all(s.endswith(".gguf") for s in specs)  # a file each


def test_chat_picker_and_resolver_see_it(in_models, monkeypatch):
    from studio.library.chat_models import find_chat_models, resolve_chat_model
    from studio.library.gguf_models import llama_cpp_missing
    from studio.library.resolve import resolve_named

    _no_llama_cpp(monkeypatch)
    found = [e for e in find_chat_models(Settings(), default_paths()) if e.gguf]
    assert [(e.name, e.spec, e.quantized, e.context_length) for e in found] == [
        ("tiny-chat-f32", str(in_models), "F32", CONTEXT_LENGTH)]
    assert found[0].note == llama_cpp_missing("tiny-chat-f32")
    assert resolve_chat_model(str(in_models), Settings(), default_paths()).gguf
    by_name = resolve_named("tiny-chat-f32", "chat", Settings(), default_paths())
    assert (by_name.kind, by_name.spec) == ("chat", str(in_models))


def test_choosing_it_without_the_extra_says_the_install_line(in_models, monkeypatch):
    from studio.library.gguf_models import llama_cpp_missing
    from studio.pipelines.chat.service import ChatService

    _no_llama_cpp(monkeypatch)
    service = ChatService(lambda: Settings(device="cpu"), default_paths)
    request = ChatRequest(model=str(in_models), messages=[{"role": "user", "content": "Hi"}])
    with pytest.raises(UserFacingError) as err:
        service.run(request, _Progress(), CancelToken())
    assert str(err.value) == llama_cpp_missing("tiny-chat-f32")


def test_damaged_gguf_is_listed_with_the_reason(in_models, tmp_path):
    from studio.library.catalog import describe_path, list_models
    from studio.library.chat_models import resolve_chat_model

    cut = in_models.with_name("cut.gguf")
    cut.write_bytes(in_models.read_bytes()[:200])
    notgguf = in_models.with_name("text.gguf")
    notgguf.write_bytes(b"hello, not a model")
    listed = {e.path.name: e for e in list_models(Settings(), default_paths())}
    assert listed["cut.gguf"].kind == listed["text.gguf"].kind == "unknown"
    assert "damaged GGUF" in listed["cut.gguf"].detail
    assert "not a GGUF file" in listed["text.gguf"].detail
    assert describe_path(cut, "file", default_paths()).kind == "unknown"
    with pytest.raises(UserFacingError, match="damaged GGUF"):
        resolve_chat_model(str(cut), Settings(), default_paths())


class _Progress:
    def __call__(self, *a, **k):
        pass

    def partial(self, *a):
        pass

    def message(self, *a):
        pass


# -- generating through llama.cpp (the extra installed) ---------------------------------------

@pytest.fixture(scope="module")
def backend():
    from studio.pipelines.chat.local import LocalChatBackend

    settings = Settings(device="cpu")
    return LocalChatBackend(lambda: settings, default_paths)


def _template_ids(text: str) -> str:
    from jinja2 import Template

    return Template(CHAT_TEMPLATE).render(
        messages=[SYSTEM, {"role": "user", "content": text}], add_generation_prompt=True)


def _raw_greedy(raw, ids: list[int], n: int) -> str:
    """Plain ``Llama.generate``, greedy, ``n`` tokens; the bytes decoded as UTF-8 (a random
    model writes broken byte sequences: each bad byte is one U+FFFD, as transformers does).
    Not ``create_completion``: it keeps sampling past ``max_tokens`` until its text decodes."""
    tokens = []
    for token in raw.generate(ids, temp=0.0, top_k=1, top_p=1.0, min_p=0.0):
        tokens.append(token)
        if len(tokens) == n:
            break
    return b"".join(raw.detokenize([t]) for t in tokens).decode("utf-8", errors="replace")


@needs_llama_cpp
def test_greedy_reply_equals_llama_cpp_and_transformers_gguf(backend, gguf_file):
    import llama_cpp
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    chunks: list[ChatChunk] = []
    reply = backend.generate(_request(gguf_file), CancelToken(), chunks.append)
    assert reply.completion_tokens == len(chunks) - 1 > 0
    assert [c.completion_tokens for c in chunks[:-1]] == list(range(1, len(chunks)))
    assert "".join(c.text for c in chunks) == reply.text
    assert chunks[-1].finish_reason == reply.finish_reason in ("stop", "length")

    # plain llama-cpp-python: the template rendered by hand, tokenized, greedy
    raw = llama_cpp.Llama(str(gguf_file), n_ctx=CONTEXT_LENGTH, verbose=False)
    ids = raw.tokenize(_template_ids("Hello there").encode(), add_bos=False, special=True)
    assert reply.prompt_tokens == len(ids)
    assert reply.text == _raw_greedy(raw, ids, reply.completion_tokens)
    raw.close()

    # transformers' GGUF loader (f32 weights dequantized as they are): the same greedy tokens
    folder, name = str(gguf_file.parent), gguf_file.name
    tok = AutoTokenizer.from_pretrained(folder, gguf_file=name)
    model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=torch.float32)
    assert tok(_template_ids("Hello there"), add_special_tokens=False)["input_ids"] == ids
    with torch.inference_mode():
        plain = model.generate(torch.tensor([ids]), max_new_tokens=reply.completion_tokens,
                               do_sample=False)
    assert tok.decode(plain[0, len(ids):]) == reply.text


@needs_llama_cpp
@pytest.mark.parametrize("stop_after", [1, 4])
def test_stop_ends_the_reply_after_the_token_shown(backend, gguf_file, stop_after):
    cancel = CancelToken()
    seen: list[ChatChunk] = []

    def on_chunk(chunk):
        seen.append(chunk)
        if chunk.completion_tokens == stop_after:
            cancel.cancel()

    reply = backend.generate(_request(gguf_file, max_new_tokens=40), cancel, on_chunk)
    assert reply.finish_reason == "cancelled" and reply.completion_tokens == stop_after


@needs_llama_cpp
def test_sampling_follows_the_seed_and_max_tokens(backend, gguf_file):
    def sample(seed):
        return backend.generate(_request(gguf_file, temperature=1.5, top_k=0, top_p=1.0,
                                         seed=seed, max_new_tokens=12), CancelToken())

    first, again, other = sample(1), sample(1), sample(2)
    assert first.text == again.text and first.text != other.text
    assert first.finish_reason == "length" and first.completion_tokens == 12


@needs_llama_cpp
def test_long_conversation_drops_the_oldest_turns_and_the_meter_matches(backend, gguf_file):
    from studio.library.chat_models import resolve_chat_model
    from studio.pipelines.chat.prompting import history_fits

    entry = resolve_chat_model(str(gguf_file), Settings(), default_paths())
    assert entry.context_length == CONTEXT_LENGTH  # the window's meter reads this
    turns = []
    for i in range(12):
        turns += [{"role": "user", "content": f"question {i} " + "word " * 12},
                  {"role": "assistant", "content": f"answer {i} " + "text " * 12}]
    request = ChatRequest(model=str(gguf_file), temperature=0, max_new_tokens=16,
                          messages=[SYSTEM, *turns, {"role": "user", "content": "last"}])
    reply = backend.generate(request, CancelToken())
    assert reply.dropped_messages > 0 and reply.prompt_tokens < CONTEXT_LENGTH
    assert not history_fits(reply.conversation_tokens, CONTEXT_LENGTH, 16)


@needs_llama_cpp
def test_complete_mode_continues_the_raw_text(backend, gguf_file):
    import llama_cpp

    request = ChatRequest(model=str(gguf_file), temperature=0, max_new_tokens=8, complete=True,
                          messages=[{"role": "user", "content": "The quick brown"}])
    reply = backend.generate(request, CancelToken())
    raw = llama_cpp.Llama(str(gguf_file), n_ctx=CONTEXT_LENGTH, verbose=False)
    ids = raw.tokenize(b"The quick brown")
    assert reply.prompt_tokens == len(ids)
    assert reply.text == _raw_greedy(raw, ids, 8)
    raw.close()


@needs_llama_cpp
def test_unknown_architecture_and_unsupported_jobs_say_why(backend, gguf_file, tmp_path):
    from studio.pipelines.chat.types import EmbedRequest

    odd = write_tiny_gguf(tmp_path / "odd.gguf", architecture="notallama")
    with pytest.raises(UserFacingError, match="architecture \\(notallama\\) is newer"):
        backend.generate(_request(odd), CancelToken())
    with pytest.raises(UserFacingError, match="GGUF model"):
        backend.embed(EmbedRequest(model=str(gguf_file), texts=["hi"]), CancelToken())


@needs_llama_cpp
def test_token_probabilities_are_llama_cpps_logits(backend, gguf_file):
    import llama_cpp
    import numpy as np

    reply = backend.generate(_request(gguf_file, logprobs=3, max_new_tokens=8), CancelToken())
    assert len(reply.logprobs) == reply.completion_tokens == 8
    raw = llama_cpp.Llama(str(gguf_file), n_ctx=CONTEXT_LENGTH, verbose=False,
                          logits_all=True)
    ids = raw.tokenize(_template_ids("Hello there").encode(), add_bos=False, special=True)
    tokens = [t.id for t in reply.logprobs]
    raw.eval(ids + tokens)
    for i, scored in enumerate(reply.logprobs):
        logits = raw.scores[len(ids) - 1 + i].astype(np.float64)
        logp = logits - logits.max() - np.log(np.exp(logits - logits.max()).sum())
        assert scored.logprob == pytest.approx(logp[scored.id], abs=1e-3)
        assert [t for t, _lp in scored.top][0] == scored.token  # greedy: the likeliest
        assert [lp for _t, lp in scored.top] == pytest.approx(sorted(logp)[::-1][:3], abs=1e-3)
    raw.close()


@needs_llama_cpp
def test_served_and_streamed_by_studio_serve(backend, gguf_file):
    import threading

    import openai

    from studio.pipelines.services import build_engine
    from studio.server.app import make_server
    from studio.server.catalog import build_catalog

    settings = Settings(device="cpu")
    expected = backend.generate(_request(gguf_file), CancelToken()).text
    runner = build_engine(lambda: settings, default_paths)
    catalog = build_catalog([str(gguf_file)], settings, default_paths())
    server = make_server("127.0.0.1", 0, runner, catalog, None)
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                     daemon=True).start()
    try:
        client = openai.OpenAI(base_url=server.url, api_key="none", max_retries=0, timeout=120)
        assert [m.id for m in client.models.list()] == [gguf_file.name]
        stream = client.chat.completions.create(
            model=gguf_file.name, stream=True, temperature=0, max_tokens=24,
            messages=[SYSTEM, {"role": "user", "content": "Hello there"}])
        assert "".join(ch.choices[0].delta.content or "" for ch in stream if ch.choices) \
            == expected
    finally:
        server.shutdown()
        server.server_close()
        runner.shutdown(timeout=60)


@needs_llama_cpp
def test_studio_chat_command_takes_a_gguf_file(backend, gguf_file):
    from tests.fixtures.cli_run import studio_in_process

    expected = backend.generate(ChatRequest(
        model=str(gguf_file), temperature=0, max_new_tokens=12,
        messages=[{"role": "system", "content": "Be brief."},
                  {"role": "user", "content": "Hello"}]), CancelToken()).text
    out = studio_in_process("chat", "--model", str(gguf_file), "--system", "Be brief.",
                            "--prompt", "Hello", "--temperature", "0", "--max-new-tokens", "12",
                            "--device", "cpu")
    assert out.returncode == 0, out.stderr
    assert out.stdout == expected + ("" if expected.endswith("\n") else "\n")


# -- the Chat window ------------------------------------------------------------------------------

def _open_chat_with(request, qtbot, spec: str):
    window = request.getfixturevalue("main_window")
    window.resize(1366, 768)
    window.show()
    panel = window.show_workspace("chat")
    qtbot.waitUntil(lambda: spec in panel.controls.model_specs(), timeout=10_000)
    panel.controls.select_model(spec)
    return window, panel


def test_window_lists_it_and_says_the_install_line_when_picked(in_models, request, qtbot,
                                                              monkeypatch, screenshot):
    from studio.library.gguf_models import llama_cpp_missing

    _no_llama_cpp(monkeypatch)
    window, panel = _open_chat_with(request, qtbot, str(in_models))
    assert panel.controls.model_spec() == str(in_models)
    assert panel.controls.contexts[str(in_models)] == CONTEXT_LENGTH  # the context meter's
    assert llama_cpp_missing("tiny-chat-f32") in panel.controls.model_note.text()
    qtbot.waitUntil(lambda: panel.controls.model_note.height() > 2 * panel.controls.model_note.fontMetrics().height())
    screenshot(window, "chat_gguf_missing_extra")


@needs_llama_cpp
def test_window_streams_a_gguf_reply(in_models, backend, request, qtbot):
    from PySide6.QtCore import Qt

    expected = backend.generate(ChatRequest(
        model=str(in_models), temperature=0, max_new_tokens=12,
        messages=[{"role": "user", "content": "Hello"}]), CancelToken()).text
    _window, panel = _open_chat_with(request, qtbot, str(in_models))
    assert panel.controls.model_note.text() == ""
    panel.controls.temperature.setValue(0)
    panel.controls.max_new.setValue(12)
    panel.controls.system.setPlainText("")
    panel.input.setPlainText("Hello")
    qtbot.keyClick(panel.input, Qt.Key.Key_Return)
    qtbot.waitUntil(lambda: panel.job is None, timeout=120_000)
    rows = [m for r in range(panel.model.rowCount()) if (m := panel.model.message_at(r))]
    assert rows[-1].role == "assistant" and rows[-1].content == expected


def test_models_workspace_shows_the_gguf_entry(in_models, main_window, qtbot, monkeypatch,
                                              screenshot):
    _no_llama_cpp(monkeypatch)
    main_window.resize(1366, 768)
    main_window.show()
    panel = main_window.show_workspace("models")
    qtbot.waitUntil(lambda: panel.scans >= 1, timeout=20_000)
    assert panel.tree.select_path(in_models)
    d = panel.details.values
    assert (d["Kind"].text(), d["Format"].text(), d["Precision"].text()) == (
        "GGUF chat", "gguf", "F32")
    assert "pip install llama-cpp-python==0.3.36" in d["Details"].text()
    line = d["Details"].fontMetrics().height()
    qtbot.waitUntil(lambda: d["Details"].height() > 3 * line)  # wrapped, whole
    screenshot(main_window, "models_gguf_entry")


def test_gguf_context_setting_is_checked_and_edited_in_settings(main_window, qtbot):
    from studio.library.gguf_models import run_context

    assert Settings(gguf_context=-5).validated().gguf_context == 8192
    assert Settings(gguf_context=True).validated().gguf_context == 8192
    assert (run_context(32768, 8192), run_context(256, 8192), run_context(32768, 0),
            run_context(0, 0)) == (8192, 256, 32768, 4096)
    dialog = main_window.open_settings()
    qtbot.addWidget(dialog)
    assert dialog.gguf_context.value() == 8192
    dialog.gguf_context.setValue(0)
    assert dialog.gguf_context.text() == "The model's own"
    assert dialog.settings().gguf_context == 0
    dialog.reject()
