"""Chat import under attack: a hostile conversation file is refused whole, with a sentence, and the
store stays untouched (issue: duplicate ids made the import loop forever and fill the disk)."""

from __future__ import annotations

import json
import sqlite3

import pytest

from studio.pipelines.chat import transfer
from studio.pipelines.chat.store import ConversationStore
from studio.pipelines.chat.transfer import import_json, plan_import, read_conversation_file


@pytest.fixture
def store(tmp_path):
    s = ConversationStore(tmp_path / "studio.db")
    s.create_conversation("kept")
    yield s
    s.close()


def _snapshot(store):
    rows = store._run("SELECT COUNT(*) FROM messages").fetchone()[0]
    return len(store.conversations()), rows


def _msg(id_, parent=None, role="user", content="hi", **extra):
    return {"id": id_, "parent_id": parent, "role": role, "content": content, **extra}


HOSTILE = {
    "duplicate ids": [_msg(1), _msg(1, 1, "assistant")],
    "1 and true": [_msg(1), _msg(True, 1, "assistant")],
    "1 and 1.0": [_msg(1), _msg(1.0, 1, "assistant")],
    "own parent": [_msg(1, 1)],
    "loop of two": [_msg(1, 2), _msg(2, 1)],
    "loop beside a root": [_msg(1), _msg(2, 3), _msg(3, 2)],
    "missing parent": [_msg(1), _msg(2, 99)],
    "unknown role": [_msg(1, role="wizard")],
    "content not text": [_msg(1, content=["x"])],
    "huge token count": [_msg(1, tokens=2**70)],
    "negative tokens": [_msg(1, tokens=-1)],
    "bool tokens": [_msg(1, tokens=True)],
    "bad time": [_msg(1, created="yesterday")],
    "infinite time": [_msg(1, created=float("inf"))],
    "meta not an object": [_msg(1, meta=[1, 2])],
    "complete not a bool": [_msg(1, complete="yes")],
    "lone surrogate": [_msg(1, content="a\ud800b")],
    "message not an object": [_msg(1), "hello"],
    "id an object": [_msg({"x": 1})],
    "time of 400 digits": [_msg(1, created=10**400)],  # float() raised OverflowError
    "negative time of 400 digits": [_msg(1, created=-10**400)],
    "nan time": [_msg(1, created=float("nan"))],
}


@pytest.mark.parametrize("name", list(HOSTILE))
def test_hostile_conversations_are_refused_and_nothing_is_written(store, name):
    before = _snapshot(store)
    data = {"format": "studio-conversation", "version": 1, "messages": HOSTILE[name]}
    with pytest.raises(ValueError) as err:
        import_json(store, data)
    assert str(err.value) and "\n" not in str(err.value)
    assert _snapshot(store) == before


def test_the_refusal_names_the_message():
    with pytest.raises(ValueError, match=r"message 2 has the same id \(1\) as message 1"):
        plan_import({"messages": [_msg(1), _msg(1, 1)]})
    with pytest.raises(ValueError, match="message 1's parent links form a loop"):
        plan_import({"messages": [_msg(1, 2), _msg(2, 1)]})


@pytest.mark.parametrize("top", [
    {"messages": [], "title": 5}, {"messages": [], "settings": "x"},
    {"messages": [], "system_prompt": {"a": 1}}, {"messages": [], "created": -5},
    {"messages": [], "format": "other"}, {"messages": "nope"}, 42, "text", None,
])
def test_bad_headers_are_refused(store, top):
    before = _snapshot(store)
    with pytest.raises(ValueError):
        import_json(store, top)
    assert _snapshot(store) == before


def test_size_limits(store, monkeypatch):
    monkeypatch.setattr(transfer, "MAX_MESSAGES", 3)
    with pytest.raises(ValueError, match="at most 3"):
        plan_import([{"role": "user", "content": str(i)} for i in range(4)])
    monkeypatch.setattr(transfer, "MAX_MESSAGE_CHARS", 10)
    with pytest.raises(ValueError, match="at most 10"):
        plan_import([{"role": "user", "content": "x" * 11}])


def test_files_deeply_nested_too_large_or_not_text_are_refused(tmp_path, monkeypatch):
    nested = tmp_path / "nested.json"
    nested.write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(ValueError, match="nested too deeply"):
        read_conversation_file(nested)
    binary = tmp_path / "binary.json"
    binary.write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(ValueError, match="not UTF-8"):
        read_conversation_file(binary)
    broken = tmp_path / "broken.json"
    broken.write_text('{"messages": [')
    with pytest.raises(ValueError, match="is not JSON"):
        read_conversation_file(broken)
    monkeypatch.setattr(transfer, "MAX_FILE_BYTES", 10)
    with pytest.raises(ValueError, match="MB"):
        read_conversation_file(broken)
    with pytest.raises(ValueError, match="cannot read"):
        read_conversation_file(tmp_path / "missing.json")


def test_a_branching_export_still_imports_whole(store, tmp_path):
    conv = store.create_conversation("Trip", system_prompt="Be brief.")
    q = store.add_message(conv.id, "user", "question")
    store.add_message(conv.id, "assistant", "answer 1", parent_id=q.id)
    store.add_message(conv.id, "assistant", "answer 2", parent_id=q.id)
    path = tmp_path / "trip.json"
    path.write_text(json.dumps(transfer.export_json(store, conv.id)))
    copy = transfer.write_import(store, read_conversation_file(path))
    assert store.message_count(copy.id) == 3
    assert [m.content for m in store.path(copy.id)] == [m.content for m in store.path(conv.id)]
    # string ids (another tool's export) work too
    plan = plan_import({"messages": [_msg("a"), _msg("b", "a", "assistant")]})
    assert [m.parent for m in plan.messages] == [None, 0]


@pytest.mark.gui
def test_the_window_imports_off_the_gui_thread_and_refuses_a_hostile_file(
        studio_home, main_window, qtbot, tmp_path):
    """The Chat sidebar's Import…: a hostile file gives a message and leaves the store as it
    was; a good one appears in the list, selected. Both run off the GUI thread."""
    from PySide6.QtWidgets import QMessageBox

    panel = main_window.show_workspace("chat")
    sidebar, store = panel.sidebar, panel.store
    before = _snapshot(store)
    hostile = tmp_path / "hostile.json"
    hostile.write_text(json.dumps({"messages": [_msg(1), _msg(True, 1, "assistant")] * 50}))
    with qtbot.waitSignal(sidebar.importFailed, timeout=60_000) as failed:
        sidebar.import_file(str(hostile))
        assert not sidebar.import_button.isEnabled()  # busy while the file is checked
    assert "hostile.json cannot be imported" in failed.args[0]
    assert "must be a number or text" in failed.args[0]
    assert _snapshot(store) == before
    boxes = [w for w in sidebar.findChildren(QMessageBox) if w.isVisible()]
    assert boxes and "must be a number or text" in boxes[0].text()
    boxes[0].close()

    good = tmp_path / "good.json"
    good.write_text(json.dumps([{"role": "user", "content": "hello"},
                                {"role": "assistant", "content": "hi there"}]))
    with qtbot.waitSignal(sidebar.imported, timeout=60_000) as imported:
        sidebar.import_file(str(good))
    assert [m.content for m in store.path(imported.args[0])] == ["hello", "hi there"]
    assert sidebar.import_button.isEnabled()


def test_a_number_too_long_for_python_is_refused_by_name(tmp_path):
    digits = tmp_path / "digits.json"
    digits.write_text('{"messages": [{"role": "user", "content": "x", "created": '
                      + "9" * 5000 + "}]}")
    with pytest.raises(ValueError, match="number too long"):
        read_conversation_file(digits)


class _Refusing:
    """The store's connection with every INSERT refused as SQLite refuses it."""

    def __init__(self, db, error):
        self.db, self.error = db, error

    def execute(self, sql, args=()):
        if sql.lstrip().upper().startswith("INSERT INTO MESSAGES"):
            raise self.error
        return self.db.execute(sql, args)

    def __getattr__(self, name):
        return getattr(self.db, name)


@pytest.mark.parametrize("error", [
    sqlite3.IntegrityError("FOREIGN KEY constraint failed"),
    sqlite3.OperationalError("database or disk is full"),
])
def test_a_database_that_refuses_the_write_is_a_message_and_rolls_back(store, monkeypatch,
                                                                       error):
    before = _snapshot(store)
    real = store._db
    monkeypatch.setattr(store, "_db", _Refusing(real, error))
    with pytest.raises(ValueError, match="nothing was imported") as err:
        import_json(store, [_msg(1), _msg(2, 1, "assistant")])
    assert "\n" not in str(err.value)
    monkeypatch.setattr(store, "_db", real)
    assert _snapshot(store) == before and not real.in_transaction
    assert import_json(store, [_msg(1)]).title  # the store works on afterwards


def test_seeded_random_damage_is_always_a_message(store):
    """Fields of a valid export replaced by values of every JSON type and extreme size: each
    import succeeds or raises ValueError, never TypeError, KeyError or OverflowError."""
    import copy
    import random

    rnd = random.Random(20)
    values = [None, True, 0, -1, 2**64, 10**400, -10**400, 1.5, float("nan"), float("inf"), "",
              "x", "a\ud800", "user", [], [1], {}, {"a": {"b": []}}, "\x00"]
    base = {"format": "studio-conversation", "version": 1, "title": "t", "system_prompt": "s",
            "model": "m", "settings": {}, "created": 1.0, "current_leaf": 2,
            "messages": [_msg(1, tokens=1, created=1.0, complete=True, meta={}),
                         _msg(2, 1, "assistant", tokens=2, created=2.0, complete=True, meta={})]}
    for _ in range(1500):
        data = copy.deepcopy(base)
        for _ in range(rnd.randint(1, 3)):
            if rnd.random() < 0.4:
                data[rnd.choice([*base, "extra"])] = rnd.choice(values)
            elif isinstance(data.get("messages"), list) and data["messages"]:
                target = rnd.choice(data["messages"])
                key = rnd.choice(list(base["messages"][0]))
                if not isinstance(target, dict):
                    continue
                if rnd.random() < 0.2:
                    target.pop(key, None)
                else:
                    target[key] = rnd.choice(values)
        try:
            import_json(store, data if rnd.random() < 0.8 else data.get("messages"))
        except ValueError:
            pass
