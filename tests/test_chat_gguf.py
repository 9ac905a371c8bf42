"""GGUF chat models (issue 21): a tiny llama-architecture GGUF written by the ``gguf`` package.

Listing, metadata and the missing-extra sentence always run; generating needs llama-cpp-python
(an optional extra CI does not install), so those tests are skipped with the reason there.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from studio.core.config import Settings, default_paths
from studio.core.jobs import UserFacingError
from tests.fixtures.tiny_gguf import write_tiny_gguf
from tests.fixtures.tiny_llama import CHAT_TEMPLATE, CONTEXT_LENGTH

needs_llama_cpp = pytest.mark.skipif(
    importlib.util.find_spec("llama_cpp") is None,
    reason="llama-cpp-python (the optional 'gguf' extra) is not installed")
SYSTEM = {"role": "system", "content": "You are a helpful assistant."}


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
