"""Chat fixes seen in the real window: Esc stops a reply, search results show their matches
highlighted (no raw FTS markers), counts are pluralised, the context meter and the "left out"
marker come from one rule, and with no model at all the empty state says so and offers one."""

from __future__ import annotations

import shutil

import pytest
from PySide6.QtCore import Qt
from PySide6.QtGui import QGuiApplication
from PySide6.QtWidgets import QStyleOptionViewItem

from studio.pipelines.chat.prompting import fit_conversation, history_fits, reply_reserve
from studio.pipelines.chat.store import MATCH_END, MATCH_START, ConversationStore, Message
from studio.ui.panels.chat.delegate import _tok_stats
from studio.ui.panels.chat.empty_state import NO_MODELS, READY, STARTER_COMMAND, STARTER_REPO
from studio.ui.panels.chat.sidebar import PartsRole, TitleRole
from tests.gui_fixtures import press

pytestmark = pytest.mark.gui


@pytest.fixture(autouse=True)
def empty_hub_cache(tmp_path, monkeypatch):
    """No chat model from the machine's own Hugging Face cache in these tests."""
    cache = tmp_path / "hf-hub"
    cache.mkdir()
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))


@pytest.fixture
def window(main_window, qtbot):
    main_window.resize(1366, 768)
    main_window.show()
    qtbot.waitExposed(main_window)
    return main_window


@pytest.fixture
def chat(studio_home, tiny_llama_dir, window, qtbot):
    from studio.core.config import default_paths

    shutil.copytree(tiny_llama_dir, default_paths().models_dir / "tiny-llama")
    panel = window.show_workspace("chat")
    qtbot.waitUntil(lambda: panel.controls.model.count() > 0 and not panel.controls.scanning,
                    timeout=10_000)
    panel.controls.temperature.setValue(0)
    panel.controls.max_new.setValue(40)
    return window, panel


def _send(qtbot, panel, text: str) -> None:
    panel.input.setPlainText(text)
    qtbot.keyClick(panel.input, Qt.Key.Key_Return)
    qtbot.waitUntil(lambda: panel.job is None, timeout=60_000)


def _last(panel) -> Message:
    return panel.model.message_at(panel.model.rowCount() - 1)


def test_esc_stops_a_reply_like_stop(chat, qtbot):
    window, panel = chat
    panel.controls.max_new.setValue(200)
    pressed = []

    def esc_once(job, chunk):
        if not pressed:
            pressed.append(chunk.completion_tokens)
            press(window, Qt.Key.Key_Escape, Qt.KeyboardModifier.NoModifier)

    panel.ctx.bridge.partial.connect(esc_once)
    panel.input.setFocus()
    _send(qtbot, panel, "Tell me a long story")
    panel.ctx.bridge.partial.disconnect(esc_once)
    reply = _last(panel)
    assert pressed and reply.meta["finish_reason"] == "cancelled" and reply.tokens < 200
    assert panel.send_button.isVisible() and not panel.stop_button.isVisible()
    # With no reply running, Esc leaves editing a message.
    user = panel.model.message_at(0)
    panel._on_action("edit", user, None)
    assert panel.edit_banner.isVisible()
    press(window, Qt.Key.Key_Escape, Qt.KeyboardModifier.NoModifier)
    assert not panel.edit_banner.isVisible() and panel.input.toPlainText() == ""


def test_search_highlights_matches_without_raw_markers(tmp_path, window, qtbot):
    store = ConversationStore(tmp_path / "search.db")
    try:
        conv = store.create_conversation("Poems")
        store.add_message(conv.id, "user", "Write a [note] and then a haiku about the sea")
        hits = store.search("haiku")
        assert len(hits) == 1
        parts = hits[0].parts
        assert ("haiku", True) in parts
        # Brackets the user typed are text, not a match; the markers never show.
        assert any("[note]" in text and not match for text, match in parts)
        assert not any(MATCH_START in t or MATCH_END in t for t, _m in parts)
        assert "[haiku]" in hits[0].snippet  # plain-text form for the command line
    finally:
        store.close()

    panel = window.show_workspace("chat")
    conv = panel.store.create_conversation("Poems")
    panel.store.add_message(conv.id, "user", "Write a [note] and then a haiku about the sea")
    panel.store.create_conversation("Haiku club")  # a title match is highlighted too
    panel.sidebar.search.setText("haiku")
    qtbot.waitUntil(lambda: panel.sidebar.list.count() == 2, timeout=5_000)
    view = panel.sidebar.list
    delegate = view.itemDelegate()
    for row in range(2):
        item = view.item(row)
        assert MATCH_START not in item.text() and "[haiku]" not in item.text().lower()
        runs = item.data(PartsRole) + item.data(TitleRole)
        assert any(match for _t, match in runs)
        # What is painted: the words, the match in bold on a highlight, no brackets added.
        index = view.model().index(row, 0)
        option = QStyleOptionViewItem()
        option.initFrom(view)
        option.rect = view.visualRect(index)
        doc = delegate._document(option, index)
        assert "font-weight:600" in doc.toHtml().replace(" ", "")
        assert "[haiku]" not in doc.toPlainText().lower() and MATCH_START not in doc.toPlainText()
    snippet_row = next(panel.sidebar.list.item(r) for r in range(2)
                       if "[note]" in panel.sidebar.list.item(r).text())
    assert "haiku about the sea" in snippet_row.text()


def test_counts_are_pluralised():
    one = Message(id=1, conversation_id=1, parent_id=None, role="assistant", content="Hi",
                  tokens=1, meta={"tokens_per_second": 3.0})
    assert _tok_stats(one).startswith("1 token ·")
    many = Message(id=2, conversation_id=1, parent_id=None, role="assistant", content="Hi",
                   tokens=2)
    assert _tok_stats(many) == "2 tokens"


def test_a_short_conversation_is_never_cut_for_a_big_reply_budget(chat):
    """The tester's case: 87 of 256 tokens used, yet "2 earlier messages left out" — the reply
    budget (512) alone was larger than the context. History is now only left out when it does
    not fit with a reserve the context can give."""
    from transformers import AutoTokenizer

    from tests.fixtures.tiny_llama import CONTEXT_LENGTH

    _window, panel = chat

    tok = AutoTokenizer.from_pretrained(str(panel.controls.model_spec()))
    messages = [{"role": "system", "content": "You are a helpful assistant."},
                {"role": "user", "content": "Hello"}, {"role": "assistant", "content": "Hi!"},
                {"role": "user", "content": "How are you?"}]
    prompt = fit_conversation(tok, messages, CONTEXT_LENGTH, 512)
    assert prompt.dropped_messages == 0 and prompt.conversation_tokens == len(prompt.input_ids)
    assert prompt.max_new_tokens == CONTEXT_LENGTH - len(prompt.input_ids)
    assert prompt.warnings and "were left for the reply" in prompt.warnings[0]
    assert reply_reserve(CONTEXT_LENGTH, 512) == CONTEXT_LENGTH // 4
    assert reply_reserve(8192, 512) == 512  # a large context keeps the whole budget


def test_meter_and_left_out_marker_agree(chat, qtbot):
    from tests.fixtures.tiny_llama import CONTEXT_LENGTH

    _window, panel = chat
    _send(qtbot, panel, "Hello")
    used, ctx_len, full = panel.context_use()
    reply = _last(panel)
    assert ctx_len == CONTEXT_LENGTH and not full and reply.meta["dropped_messages"] == 0
    assert used == reply.meta["conversation_tokens"] + reply.tokens
    assert panel.meter_label.text() == f"{used:,} / {ctx_len:,} tokens"

    conv = panel.store.create_conversation("Long talk", "You are a helpful assistant.")
    for i in range(12):
        panel.store.add_message(conv.id, "user", f"Question {i}: what is the capital of France?")
        panel.store.add_message(conv.id, "assistant", f"Answer {i}: Paris.")
    panel.sidebar.refresh(select=conv.id)
    panel.open_conversation(conv.id)
    panel.controls.max_new.setValue(40)
    _send(qtbot, panel, "And the last question?")
    reply = _last(panel)
    assert reply.meta["dropped_messages"] > 0
    used, ctx_len, full = panel.context_use()
    # One rule: the whole conversation does not fit with the reply's room, so the meter is full.
    assert full and not history_fits(reply.meta["conversation_tokens"], ctx_len, 40)
    assert reply.meta["conversation_tokens"] > reply.meta["prompt_tokens"]
    assert used > ctx_len - reply_reserve(ctx_len, 40)
    assert panel.meter_label.text().endswith("· full") and "left out" in panel.meter.toolTip()


def test_no_model_at_all_says_so_and_offers_one(window, qtbot):
    panel = window.show_workspace("chat")
    qtbot.waitUntil(lambda: not panel.controls.scanning, timeout=10_000)
    empty = panel.empty
    assert empty.isVisible() and empty.state == NO_MODELS
    assert empty.title.text() == "No chat model yet"
    assert "Pick a model on the right" not in empty.text.text()
    assert empty.command.text() == STARTER_COMMAND == f"hf download {STARTER_REPO}"
    # A model remembered from before that is gone is marked so, and changes nothing here.
    panel.controls.select_model("/gone/SmolLM2-360M-Instruct")
    assert panel.controls.model.currentText() == "SmolLM2-360M-Instruct (not found)"
    assert panel.controls.model_label() == "SmolLM2-360M-Instruct"
    assert empty.state == NO_MODELS
    qtbot.mouseClick(empty.copy_button, Qt.MouseButton.LeftButton)
    assert QGuiApplication.clipboard().text() == STARTER_COMMAND
    qtbot.mouseClick(empty.download_button, Qt.MouseButton.LeftButton)
    assert window.current_workspace() == "models"
    models = window.panel("models")
    dialog = models.download_dialog
    qtbot.waitExposed(dialog)
    assert dialog.repo.text() == STARTER_REPO
    dialog.close()
    models.shutdown()


def test_with_a_model_the_empty_state_says_how_to_start(chat):
    _window, panel = chat
    assert panel.empty.state == READY and "Pick a model on the right" in panel.empty.text.text()
    assert not panel.empty.download_button.isVisible()
