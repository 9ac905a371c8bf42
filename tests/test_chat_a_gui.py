"""The Chat workspace with the real tiny model: stream, Stop, regenerate, edit+resend, delete,
copy, the context marker, and a 10,000-message conversation."""

from __future__ import annotations

import threading
import time

import pytest
from PySide6.QtCore import QPoint, Qt
from PySide6.QtGui import QGuiApplication

from studio.pipelines.chat.store import Message
from studio.ui.panels.chat.model import MarkerRole, MessageRole

pytestmark = pytest.mark.gui
PATIENCE_S = 180  # for a reply of the tiny model: seconds unloaded, longer on a busy machine

RICH = """Here is a **summary** with a list, a table and code:

## Steps
1. Install the package
2. Run `studio chat`

| Model | Context |
|---|---|
| Qwen2.5 | 32k |
| SmolLM2 | 8k |

```python
def greet(name: str) -> str:
    return f"Hello, {name}!"
```
"""


@pytest.fixture
def chat(studio_home, tiny_llama_dir, request, qtbot):
    from tests.fixtures.chat_window import open_chat

    return open_chat(request, qtbot, tiny_llama_dir, 40)


def _rows(panel) -> list[Message]:
    return [m for r in range(panel.model.rowCount()) if (m := panel.model.message_at(r))]


def _click(qtbot, panel, message_id: int, action: str) -> None:
    """Click the real action button painted under a message."""
    row = next(r for r in range(panel.model.rowCount())
               if (m := panel.model.message_at(r)) and m.id == message_id)
    index = panel.model.index(row)
    panel.view.scrollTo(index)
    rect = panel.view.visualRect(index)
    lay = panel.delegate._layout(rect, index.data(MessageRole))
    button = next(r for name, r, _t in lay["buttons"] if name == action)
    qtbot.mouseClick(panel.view.viewport(), Qt.MouseButton.LeftButton, pos=button.center())


def _send(qtbot, panel, text: str) -> None:
    panel.input.setPlainText(text)
    qtbot.keyClick(panel.input, Qt.Key.Key_Return)
    qtbot.waitUntil(lambda: panel.job is None, timeout=PATIENCE_S * 1000)


def test_send_streams_then_stop_regenerate_edit_delete_copy(chat, qtbot, screenshot):
    window, panel = chat
    updates, shown = [], []
    panel.model.dataChanged.connect(lambda a, b: updates.append(a.row()))
    # After the panel's own slot: what the streaming bubble holds as each chunk arrives.
    on_partial = panel._on_partial

    def spy(job, chunk):
        on_partial(job, chunk)
        if panel.streaming is not None:
            shown.append(panel.streaming.tokens)

    panel._on_partial = spy  # the reply's handle connects to it when the reply starts
    _send(qtbot, panel, "Hello")
    user, reply = _rows(panel)
    assert (user.role, user.content, reply.role) == ("user", "Hello", "assistant")
    stored = panel.store.message(reply.id)
    assert stored.complete and stored.content == reply.content and stored.tokens == reply.tokens
    assert reply.tokens > 1 and reply.meta["finish_reason"] in ("stop", "length")
    assert shown[:3] == [1, 2, 3] and shown[-1] == reply.tokens  # appended token by token
    assert set(updates) <= {1}  # repaints (when the reply outlives a frame) touch its row only
    assert panel.title.text() == "Hello" and panel.sidebar.list.count() == 1
    assert "tokens" in panel.meter_label.text()

    # Stop: pressed when the first token is shown; the reply ends within a token and is kept.
    # The model waits after its first token until Stop is clicked, so however long a loaded
    # machine keeps the GUI thread from showing that token, the reply cannot run on meanwhile.
    panel.controls.max_new.setValue(200)
    stopped, clicked = [], threading.Event()

    def stop_once(job, chunk):  # GUI thread (queued), after the panel showed the chunk
        if not stopped:
            stopped.append(chunk.completion_tokens)
            qtbot.mouseClick(panel.stop_button, Qt.MouseButton.LeftButton)
            clicked.set()

    def hold_first(job, chunk):  # worker thread (direct): the model waits for the click
        clicked.wait(PATIENCE_S)

    panel.ctx.bridge.partial.connect(stop_once)  # before hold_first: queued before it blocks
    panel.ctx.bridge.partial.connect(hold_first, Qt.ConnectionType.DirectConnection)
    try:
        _send(qtbot, panel, "Tell me more")
    finally:
        clicked.set()
        panel.ctx.bridge.partial.disconnect(hold_first)
        panel.ctx.bridge.partial.disconnect(stop_once)
    last = _rows(panel)[-1]
    assert stopped == [1] and clicked.is_set()
    assert last.meta["finish_reason"] == "cancelled"
    assert last.tokens <= stopped[0] + 1  # the token being made when Stop came, no more
    assert panel.store.message(last.id).complete
    assert panel.send_button.isVisible() and not panel.stop_button.isVisible()

    # Regenerate the last reply: a second branch under the same question.
    _click(qtbot, panel, last.id, "regenerate")
    qtbot.waitUntil(lambda: panel.job is None, timeout=PATIENCE_S * 1000)
    again = _rows(panel)[-1]
    assert again.id != last.id and (again.sibling_index, again.sibling_count) == (1, 2)
    _click(qtbot, panel, again.id, "prev")
    assert _rows(panel)[-1].id == last.id

    # Edit the first question and resend: a new branch; the old one stays viewable.
    _click(qtbot, panel, user.id, "edit")
    assert panel.input.toPlainText() == "Hello" and panel.edit_banner.isVisible()
    _send(qtbot, panel, "Hello, edited")
    rows = _rows(panel)
    assert rows[0].content == "Hello, edited" and (rows[0].sibling_index,
                                                   rows[0].sibling_count) == (1, 2)
    assert len(rows) == 2 and not panel.edit_banner.isVisible()
    screenshot(window, "chat_branch")
    _click(qtbot, panel, rows[0].id, "prev")
    assert [m.content for m in _rows(panel)][:1] == ["Hello"] and len(_rows(panel)) == 4

    # Copy a message, then delete it.
    target = _rows(panel)[-1]
    _click(qtbot, panel, target.id, "copy")
    assert QGuiApplication.clipboard().text() == target.content
    _click(qtbot, panel, target.id, "delete")
    assert target.id not in [m.id for m in _rows(panel)]


def test_markdown_reply_and_code_copy_button(chat, qtbot, screenshot):
    window, panel = chat
    conv = panel.store.create_conversation("Markdown demo", "You are a helpful assistant.")
    panel.store.add_message(conv.id, "user", "Show me a table and some code, please.")
    msg = panel.store.add_message(conv.id, "assistant", RICH, tokens=87,
                                  meta={"tokens_per_second": 42.5, "finish_reason": "stop"})
    panel.sidebar.refresh(select=conv.id)
    panel.open_conversation(conv.id)
    qtbot.wait(50)
    row = [m.id for m in _rows(panel)].index(msg.id)
    index = panel.model.index(row)
    panel.view.scrollTo(index)
    rect = panel.view.visualRect(index)
    lay = panel.delegate._layout(rect, index.data(MessageRole))
    doc = lay["doc"]
    assert lay["blocks"] == ['def greet(name: str) -> str:\n    return f"Hello, {name}!"\n']
    cursor = doc.find("Copy")
    block_rect = doc.documentLayout().blockBoundingRect(cursor.block())
    line = cursor.block().layout().lineForTextPosition(cursor.positionInBlock() - 2)
    x = line.cursorToX(cursor.positionInBlock() - 2)[0]
    pos = lay["origin"] + block_rect.topLeft() + type(block_rect.topLeft())(x, line.y() + 5)
    qtbot.mouseClick(panel.view.viewport(), Qt.MouseButton.LeftButton,
                     pos=QPoint(int(pos.x()), int(pos.y())))
    assert QGuiApplication.clipboard().text() == lay["blocks"][0]
    assert panel.status.text() == "Code copied."
    screenshot(window, "chat_markdown")


def test_context_overflow_shows_a_marker(chat, qtbot, screenshot):
    window, panel = chat
    conv = panel.store.create_conversation("Long talk", "You are a helpful assistant.")
    for i in range(12):
        panel.store.add_message(conv.id, "user", f"Question {i}: what is the capital of France?")
        panel.store.add_message(conv.id, "assistant", f"Answer {i}: Paris.")
    panel.sidebar.refresh(select=conv.id)
    panel.open_conversation(conv.id)
    panel.controls.max_new.setValue(40)  # the conversation's own settings were just applied
    _send(qtbot, panel, "And the last question?")
    markers = [panel.model.index(r).data(MarkerRole) for r in range(panel.model.rowCount())]
    dropped = [m for m in markers if m is not None]
    assert len(dropped) == 1 and dropped[0] > 0
    reply = _rows(panel)[-1]
    assert reply.meta["dropped_messages"] == dropped[0]
    # The marker sits right before the first message the model still saw.
    where = markers.index(dropped[0])
    assert panel.model.message_at(where + 1).content.startswith(f"Question {dropped[0] // 2}")
    panel.view.scrollTo(panel.model.index(where))
    screenshot(window, "chat_context_marker")


def test_ten_thousand_messages_open_a_page_and_scroll_back(chat, qtbot):
    window, panel = chat
    store = panel.store
    conv = store.create_conversation("Ten thousand")
    with store.transaction():
        parent = None
        for i in range(10_000):
            role = "user" if i % 2 == 0 else "assistant"
            text = (f"Message {i}: " + "some words here " * (1 + i % 7)
                    + (f"\n\n```python\nprint({i})\n```" if i % 50 == 1 else ""))
            cur = store._db.execute(
                "INSERT INTO messages (conversation_id, parent_id, role, content, created) "
                "VALUES (?, ?, ?, ?, ?)", (conv.id, parent, role, text, time.time()))
            parent = cur.lastrowid
        store._db.execute("UPDATE conversations SET current_leaf = ? WHERE id = ?",
                          (parent, conv.id))
    panel.open_conversation(conv.id)
    panel.view.viewport().repaint()
    QGuiApplication.processEvents()
    # Opening shows the newest page only, not 10,000 rows (how long it takes: bench/chat.py).
    opened_rows = panel.model.rowCount()
    assert 0 < opened_rows <= 200
    assert _rows(panel)[-1].content.startswith("Message 9999")
    bar = panel.view.verticalScrollBar()
    for _ in range(40):  # scroll up a page at a time, loading older pages on the way
        bar.setValue(bar.value() - panel.view.viewport().height())
        panel.view.viewport().repaint()
    assert panel.model.rowCount() > max(120, opened_rows)  # older pages loaded while scrolling
    rows = _rows(panel)
    numbers = [int(m.content.split(":")[0].split()[1]) for m in rows]
    assert numbers == list(range(numbers[0], 10_000))  # contiguous, oldest first, none twice
