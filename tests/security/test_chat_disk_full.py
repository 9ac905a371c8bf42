"""Issue 20 item 8: a database write that fails mid-reply (disk full) never stalls Chat.

The store's writes are made to raise ``sqlite3.OperationalError("database or disk is full")`` as
SQLite does when the disk fills; the reply must stay in memory and on screen, the error be said in
the chat, Send work again, and Save again (or the next Send) write the reply once space returns.
"""

from __future__ import annotations

import sqlite3

import pytest
from PySide6.QtCore import Qt

from studio.library.secrets import set_api_key
from studio.pipelines.chat.store import ConversationStore, StreamingSaver
from tests.fixtures.fake_openai import GOOD_KEY, WORDS, serve_fake_openai

WRITES = ("INSERT", "UPDATE", "DELETE")


class FillableDisk:
    """Stands in for the store's connection: every write raises while ``full`` is set."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db
        self.full = False

    def execute(self, sql: str, args: tuple = ()) -> sqlite3.Cursor:
        if self.full and sql.lstrip().split()[0].upper() in WRITES:
            raise sqlite3.OperationalError("database or disk is full")
        return self.db.execute(sql, args)

    def __getattr__(self, name: str):
        return getattr(self.db, name)


def _fillable(store: ConversationStore, monkeypatch) -> FillableDisk:
    disk = FillableDisk(store._db)
    monkeypatch.setattr(store, "_db", disk)
    return disk


def test_the_streaming_saver_keeps_the_reply_and_saves_it_once_space_returns(tmp_path,
                                                                              monkeypatch):
    store = ConversationStore(tmp_path / "chat.db")
    conv = store.create_conversation("t")
    store.add_message(conv.id, "user", "hi")
    reply = store.add_message(conv.id, "assistant", "", complete=False)
    disk = _fillable(store, monkeypatch)
    saver = StreamingSaver(store, reply.id, every_tokens=1)
    saver.add("Hello", 1)
    disk.full = True
    saver.add(", world", 2)  # the write fails; nothing escapes
    assert saver.text == "Hello, world" and saver.error is not None
    assert saver.finish({"finish_reason": "stop"}) is False
    assert "could not be saved: the disk is full" in saver.failure
    assert "Save again" in saver.failure and "kept" in saver.failure
    assert store.message(reply.id).content == "Hello" and not store.message(reply.id).complete
    assert saver.retry() is False  # still full: still kept
    disk.full = False
    assert saver.retry() is True and saver.failure == ""
    saved = store.message(reply.id)
    assert (saved.content, saved.tokens, saved.complete) == ("Hello, world", 2, True)
    assert saved.meta == {"finish_reason": "stop"}
    store.close()
    assert ConversationStore(tmp_path / "chat.db").message(reply.id).content == "Hello, world"


@pytest.mark.gui
def test_disk_full_mid_reply_shows_the_error_keeps_the_reply_and_save_again_works(
        main_window, qtbot, monkeypatch):
    monkeypatch.setenv("STUDIO_NO_KEYRING", "1")
    main_window.resize(1320, 840)
    main_window.show()
    panel = main_window.show_workspace("chat")
    text = "".join(WORDS)
    with serve_fake_openai() as server:
        base = server + "/v1"
        set_api_key(base, GOOD_KEY)
        settings = panel.ctx.settings
        panel.ctx.update_settings(settings.__class__(**{
            **settings.__dict__,
            "remote_endpoints": [{"name": "GPU", "base_url": base, "models": ["m1"]}]}))
        qtbot.waitUntil(lambda: panel.controls.model_spec() == f"openai:{base}#m1",
                        timeout=10_000)
        disk = _fillable(panel.store, monkeypatch)

        def fill_disk(job, chunk):  # worker thread, on the first token: before the GUI saves
            disk.full = True

        panel.ctx.bridge.partial.connect(fill_disk, Qt.ConnectionType.DirectConnection)
        try:
            panel.input.setPlainText("Hello there")
            qtbot.keyClick(panel.input, Qt.Key.Key_Return)
            qtbot.waitUntil(lambda: panel.job is None, timeout=20_000)
        finally:
            panel.ctx.bridge.partial.disconnect(fill_disk)
        assert disk.full
        reply = panel.model.last_message()
        assert reply.role == "assistant" and reply.content == text  # on screen, from memory
        assert not panel.store.message(reply.id).complete  # not in the database
        assert panel.save_banner.isVisible() and panel.save_again.isVisible()
        assert "This reply could not be saved: the disk is full" in panel.save_error.text()
        assert panel.send_button.isVisible() and not panel.stop_button.isVisible()

        # Still full: Save again says so, and a new message is not sent (it stays typed).
        qtbot.mouseClick(panel.save_again, Qt.MouseButton.LeftButton)
        assert panel.save_banner.isVisible() and panel.unsaved is not None
        panel.input.setPlainText("Next question")
        qtbot.mouseClick(panel.send_button, Qt.MouseButton.LeftButton)
        assert panel.job is None and panel.input.toPlainText() == "Next question"
        assert "must be saved first" in panel.status.text()

        # Space is back: Save again writes the reply as it was shown.
        disk.full = False
        qtbot.mouseClick(panel.save_again, Qt.MouseButton.LeftButton)
        assert not panel.save_banner.isVisible() and panel.unsaved is None
        saved = panel.store.message(reply.id)
        assert saved.complete and saved.content == text
        assert panel.model.last_message().content == text

        # A second reply fails to save; this time the next Send saves it first, then sends.
        panel.ctx.bridge.partial.connect(fill_disk, Qt.ConnectionType.DirectConnection)
        try:
            qtbot.mouseClick(panel.send_button, Qt.MouseButton.LeftButton)
            qtbot.waitUntil(lambda: panel.job is None, timeout=20_000)
        finally:
            panel.ctx.bridge.partial.disconnect(fill_disk)
        second = panel.model.last_message()
        assert panel.unsaved is not None and second.content == text
        disk.full = False
        panel.input.setPlainText("Third")
        qtbot.mouseClick(panel.send_button, Qt.MouseButton.LeftButton)
        qtbot.waitUntil(lambda: panel.job is None, timeout=20_000)
        assert panel.store.message(second.id).complete
        assert [m.content for m in panel.store.path(panel.conv_id)] == [
            "Hello there", text, "Next question", text, "Third", text]
        assert not panel.save_banner.isVisible()
