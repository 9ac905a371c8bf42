"""Conversations: branching, search, export/import, and a process killed mid-stream."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from studio.pipelines.chat.store import ConversationStore, StreamingSaver, fts_query
from studio.pipelines.chat.transfer import export_json, export_markdown, import_json


@pytest.fixture
def store(tmp_path):
    s = ConversationStore(tmp_path / "studio.db")
    yield s
    s.close()


def _chat(store, turns=2, title="Trip"):
    conv = store.create_conversation(title, "Be brief.", "tiny", {"temperature": 0.5})
    for i in range(turns):
        store.add_message(conv.id, "user", f"question {i}")
        store.add_message(conv.id, "assistant", f"answer {i}", tokens=3)
    return conv


def test_wal_mode_and_list_rename_delete(store, tmp_path):
    assert store._run("PRAGMA journal_mode").fetchone()[0] == "wal"
    a = _chat(store, title="first")
    time.sleep(0.01)
    b = _chat(store, title="second")
    assert [c.title for c in store.conversations()] == ["second", "first"]
    store.rename(a.id, "renamed")
    assert store.conversations()[0].title == "renamed"  # renaming counts as use
    assert store.conversation(a.id).settings == {"temperature": 0.5}
    store.delete_conversation(a.id)
    assert [c.id for c in store.conversations()] == [b.id]
    assert store._run("SELECT COUNT(*) FROM messages WHERE conversation_id = ?",
                      (a.id,)).fetchone()[0] == 0
    assert store.search("question") and all(h.conversation_id == b.id
                                            for h in store.search("question"))


def test_editing_a_user_message_makes_a_branch_and_the_old_one_stays(store):
    conv = _chat(store, turns=2)
    path = store.path(conv.id)
    assert [m.content for m in path] == ["question 0", "answer 0", "question 1", "answer 1"]
    edited_parent = path[2].parent_id
    new_q = store.add_message(conv.id, "user", "question 1, edited", parent_id=edited_parent)
    store.add_message(conv.id, "assistant", "answer to the edit")
    path = store.path(conv.id)
    assert [m.content for m in path][-2:] == ["question 1, edited", "answer to the edit"]
    assert (path[2].sibling_index, path[2].sibling_count) == (1, 2)
    assert (path[0].sibling_index, path[0].sibling_count) == (0, 1)
    old = store.children(conv.id, edited_parent)[0]
    store.switch_branch(old)  # "< 1/2"
    assert [m.content for m in store.path(conv.id)][-2:] == ["question 1", "answer 1"]
    store.switch_branch(new_q.id)
    assert store.path(conv.id)[-1].content == "answer to the edit"


def test_delete_message_keeps_the_rest(store):
    conv = _chat(store, turns=2)
    path = store.path(conv.id)
    store.delete_message(path[1].id)
    assert [m.content for m in store.path(conv.id)] == ["question 0", "question 1", "answer 1"]
    store.delete_message(store.path(conv.id)[-1].id)  # the leaf: the view ends at its parent
    assert [m.content for m in store.path(conv.id)] == ["question 0", "question 1"]
    assert store.search("answer") == []  # the FTS index follows deletions


def test_full_text_search_finds_words_and_survives_odd_input(store):
    a = _chat(store, title="Cooking")
    store.add_message(a.id, "assistant", "Use a **cast-iron** skillet for the pancakes.")
    b = _chat(store, title="Travel")
    store.add_message(b.id, "user", "Which train goes to Lyon?")
    hits = store.search("skillet")
    assert [(h.conversation_id, h.title) for h in hits] == [(a.id, "Cooking")]
    assert "[skillet]" in hits[0].snippet
    assert [h.conversation_id for h in store.search("pancake")] == [a.id]  # prefix match
    assert [h.conversation_id for h in store.search("travel")] == [b.id]  # title match
    for odd in ['"', 'AND OR NOT', 'lyon"*(', "NEAR(", "-"]:
        store.search(odd)  # never an FTS syntax error
    assert [h.conversation_id for h in store.search('lyon"*(')] == [b.id]
    assert fts_query("  ") == ""
    store.update_message(store.path(b.id)[-1].id, content="Which bus goes to Nice?")
    assert store.search("lyon") == [] and store.search("nice")


def test_export_markdown_and_json_round_trip(store):
    conv = _chat(store, turns=2)
    parent = store.path(conv.id)[2].parent_id
    store.add_message(conv.id, "user", "edited | with a table", parent_id=parent)
    md = export_markdown(store, conv.id)
    assert md.startswith("# Trip\n") and "## System\n\nBe brief." in md
    assert "## User\n\nedited | with a table" in md and "question 1" not in md
    data = json.loads(json.dumps(export_json(store, conv.id)))
    copy = import_json(store, data)
    assert copy.id != conv.id and copy.title == "Trip" and copy.settings == conv.settings
    assert [(m.role, m.content) for m in store.path(copy.id)] == \
        [(m.role, m.content) for m in store.path(conv.id)]
    assert store.message_count(copy.id) == store.message_count(conv.id) == 5
    store.switch_branch(store.children(copy.id, store.path(copy.id)[2].parent_id)[0])
    assert store.path(copy.id)[-1].content == "answer 1"  # the other branch came along


def test_import_plain_openai_messages_and_reject_garbage(store):
    conv = import_json(store, [{"role": "system", "content": "sys"},
                               {"role": "user", "content": "hi"},
                               {"role": "assistant", "content": "hello"}])
    assert conv.system_prompt == "sys"
    assert [m.content for m in store.path(conv.id)] == ["hi", "hello"]
    before = len(store.conversations())
    for bad in [{}, {"messages": [{"role": "wizard", "content": "x"}]}, "text",
                {"format": "other", "messages": []}]:
        with pytest.raises(ValueError):
            import_json(store, bad)
    assert len(store.conversations()) == before  # nothing half-imported


def test_streaming_saver_writes_every_few_tokens(store):
    conv = _chat(store, turns=1)
    msg = store.add_message(conv.id, "assistant", "", complete=False)
    saver = StreamingSaver(store, msg.id, every_tokens=4, every_seconds=60)
    for i in range(1, 10):
        saver.add(f"t{i} ", i)
    assert store.message(msg.id).content == "t1 t2 t3 t4 t5 t6 t7 t8 "  # saved at 4 and 8
    assert not store.message(msg.id).complete
    saver.finish({"finish_reason": "stop"})
    m = store.message(msg.id)
    assert m.complete and m.content.endswith("t9 ") and m.meta == {"finish_reason": "stop"}


CHILD = r"""
import sys, time
from studio.pipelines.chat.store import ConversationStore, StreamingSaver
store = ConversationStore(sys.argv[1])
conv = store.create_conversation("crash test")
store.add_message(conv.id, "user", "tell me a long story")
store.add_message(conv.id, "assistant", "Once upon a time.")
store.add_message(conv.id, "user", "longer please")
msg = store.add_message(conv.id, "assistant", "", complete=False)
saver = StreamingSaver(store, msg.id, every_tokens=5, every_seconds=60)
for i in range(1, 100000):
    saver.add(f"w{i} ", i)
    if i == 40:
        print("streaming", flush=True)
    time.sleep(0.002)
"""


def test_a_process_killed_mid_stream_loses_at_most_a_moment(tmp_path):
    db = tmp_path / "crash.db"
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[1]))
    proc = subprocess.Popen([sys.executable, "-c", CHILD, str(db)], stdout=subprocess.PIPE,
                            env=env, text=True)
    try:
        assert proc.stdout.readline().strip() == "streaming"
        time.sleep(0.2)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(120)
    finally:
        if proc.poll() is None:
            proc.kill()
    store = ConversationStore(db)
    try:
        conv = store.conversations()[0]
        path = store.path(conv.id)
        assert [m.content for m in path[:3]] == ["tell me a long story", "Once upon a time.",
                                                 "longer please"]
        partial = path[3]
        assert not partial.complete and partial.tokens >= 40 and partial.tokens % 5 == 0
        words = partial.content.split()
        assert words == [f"w{i}" for i in range(1, partial.tokens + 1)]  # a clean prefix
    finally:
        store.close()
