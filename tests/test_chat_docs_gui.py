"""The Chat window with documents attached: indexing off the GUI thread, cited references under
the reply that open the passage, "What the model was given", and the nothing-relevant path."""

from __future__ import annotations

import pytest
from PySide6.QtWidgets import QApplication

from tests.test_chat_d_gui import chat, empty_hub_cache, window  # noqa: F401 - its fixtures
from tests.test_chat_docs import BREAD, FOXES

pytestmark = pytest.mark.gui


@pytest.fixture
def chat_panel(chat):  # noqa: F811 - the fixture imported above
    _window, panel = chat
    panel.controls.max_new.setValue(3)
    return panel


def _send(qtbot, panel, text: str):
    panel.input.setPlainText(text)
    panel.send()
    qtbot.waitUntil(lambda: panel.job is None and not panel.retrieving, timeout=60_000)
    return panel.model.message_at(panel.model.rowCount() - 1)


def _shown_text(panel, msg) -> str:
    doc, _ = panel.delegate._doc(msg, 600)
    return doc.toPlainText()


def test_attached_documents_are_cited_and_shown(chat_panel, qtbot, tmp_path):
    panel = chat_panel
    folder = tmp_path / "docs"
    folder.mkdir()
    (folder / "bread.txt").write_text(BREAD, encoding="utf-8")
    (folder / "foxes.md").write_text(FOXES, encoding="utf-8")
    (folder / "empty.txt").write_text("", encoding="utf-8")
    panel.documents.attach([str(folder)])
    qtbot.waitUntil(lambda: not panel.documents.busy, timeout=30_000)
    assert "2 files indexed" in panel.status.text() and "empty.txt: the file is empty." in \
        panel.status.text()
    assert panel.documents.summary.text() == "2 files · 2 passages"
    assert panel.documents.summary.isVisible() and panel.documents.attach_files.isVisible()
    assert panel.conv_id is not None  # attaching made the conversation

    reply = _send(qtbot, panel, "How does bread rise?")
    assert [s["file"].rsplit("/", 1)[-1] for s in reply.meta["sources"]][0] == "bread.txt"
    stored = panel.store.message(reply.id).meta
    assert stored["sources"] == reply.meta["sources"]
    shown = _shown_text(panel, reply)
    assert "[1] bread.txt" in shown and "What the model was given" in shown
    assert "fused" not in shown
    panel._on_action("given", reply, None)
    assert "BM25" in _shown_text(panel, reply)
    panel._on_action("source", reply, 1)
    dialog = next(w for w in QApplication.topLevelWidgets()
                  if w.isVisible() and w.windowTitle() == "[1] bread.txt")
    assert dialog.text.toPlainText() == BREAD
    dialog.close()

    off = _send(qtbot, panel, "Explain quantum chromodynamics")
    assert off.meta["documents"] and off.meta["sources"] == []
    assert "Nothing relevant found in the attached documents." in _shown_text(panel, off)

    panel.input.setPlainText("How does bread rise?")  # Stop while the documents are searched
    panel.send()
    assert panel.retrieving and panel.stop_button.isVisible()
    panel.stop()
    qtbot.waitUntil(lambda: not panel.retrieving, timeout=30_000)
    stopped = panel.model.message_at(panel.model.rowCount() - 1)
    assert panel.job is None and stopped.meta["finish_reason"] == "cancelled"
    assert panel.status.text() == "Stopped before the model was asked."

    panel.documents.summary.click()  # the attached files, the skipped one with its reason
    files = panel.documents.dialog
    rows = [files.list.item(i).text() for i in range(files.list.count())]
    assert any(r.endswith("empty.txt — skipped: the file is empty.") for r in rows)
    assert any(r.endswith("bread.txt — 1 passage") for r in rows)
    files.list.setCurrentRow(next(i for i, r in enumerate(rows) if "bread.txt" in r))
    files.remove_button.click()
    assert files.list.count() == 2
    files.accept()
    assert panel.documents.summary.text() == "1 file · 1 passage"


def test_each_conversation_reopens_on_its_collection(chat_panel):
    panel, bar = chat_panel, chat_panel.documents
    bar.index.collection("recipes")
    bar.refresh_collections(select="recipes")
    first = panel.new_conversation()  # a new chat starts on the collection on screen
    assert bar.collection.currentText() == "recipes"
    second = panel.store.create_conversation("other").id
    panel.open_conversation(second)
    assert bar.collection.currentData() is None  # this chat only
    panel.open_conversation(first)
    assert bar.collection.currentText() == "recipes"
    bar.collection.setCurrentIndex(0)  # the user picks "this chat only" for the first chat
    bar.collection.activated.emit(0)
    panel.open_conversation(second)
    panel.open_conversation(first)
    assert bar.collection.currentData() is None
    assert bar.index.chosen_collection(first) is None
