"""Servers…: add, edit and remove the OpenAI-compatible servers Chat can talk to.

Each server has a name, a base URL and an optional API key. The key goes to
:mod:`studio.library.secrets` (the system keyring, or a file only the user can read) — never to
settings.json — and the dialog says which. "Test connection" asks the server for ``/v1/models``
on the dialog's own thread pool, never on the GUI thread, and shows the models or why there are
none (unreachable, refused key, too slow). OK saves the servers with the models they listed, so
the Chat model picker can offer every one of them.
"""

from __future__ import annotations

import dataclasses
import itertools
from typing import Any

from PySide6.QtCore import Qt
from PySide6.QtWidgets import (
    QDialog,
    QDialogButtonBox,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QListWidget,
    QListWidgetItem,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from studio.library.secrets import key_storage
from studio.pipelines.chat import endpoints as ep
from studio.ui.context import AppContext
from studio.ui.theme import colors
from studio.ui.widgets.basics import ok_cancel_buttons
from studio.workers.lanes import Calls

_ids = itertools.count(1)


class ServersDialog(QDialog):
    """Edit a copy of Settings' ``remote_endpoints`` (and their keys); :meth:`accept` saves."""

    def __init__(self, ctx: AppContext, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.ctx = ctx
        self.timeout = ep.TEST_TIMEOUT
        self._calls = Calls(self)
        self._testing: set[int] = set()  # server ids with a test in flight
        self._original = [dict(e) for e in ctx.settings.remote_endpoints]
        # The working copy: one dict per server, with a private id and the key being edited.
        self.servers: list[dict[str, Any]] = [
            {**e, "_id": next(_ids), "_key": ep.endpoint_key(e, ctx.paths), "_status": ""}
            for e in self._original]
        self.setWindowTitle("Chat servers")
        self.setMinimumSize(760, 470)
        self._build()
        self._refill_list(select=0)

    # -- construction --------------------------------------------------------------------------
    def _build(self) -> None:
        col = QVBoxLayout(self)
        col.setContentsMargins(18, 16, 18, 14)
        col.setSpacing(10)
        intro = QLabel("OpenAI-compatible servers — vLLM, Ollama, LM Studio, llama.cpp server, "
                       "text-generation-webui or another Studio. Their models appear in "
                       "Chat's model list, grouped by server.")
        intro.setProperty("muted", True)
        intro.setWordWrap(True)
        col.addWidget(intro)

        body = QHBoxLayout()
        body.setSpacing(12)
        left = QVBoxLayout()
        left.setSpacing(8)
        self.list = QListWidget()
        self.list.setFixedWidth(230)
        self.list.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.list.setTextElideMode(Qt.TextElideMode.ElideRight)
        self.list.currentRowChanged.connect(self._show_server)
        left.addWidget(self.list, 1)
        row = QHBoxLayout()
        row.setSpacing(8)
        self.add_button = QPushButton("Add server")
        self.add_button.clicked.connect(lambda: self.add_server())
        self.remove_button = QPushButton("Remove")
        self.remove_button.clicked.connect(self.remove_server)
        row.addWidget(self.add_button, 1)
        row.addWidget(self.remove_button)
        left.addLayout(row)
        body.addLayout(left)

        self.form_box = QGroupBox("Server")
        form = QFormLayout(self.form_box)
        form.setLabelAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        form.setHorizontalSpacing(14)
        form.setVerticalSpacing(8)
        self.name = QLineEdit()
        self.name.setPlaceholderText("e.g. GPU server")
        self.name.textEdited.connect(lambda t: self._edit("name", t))
        self.base_url = QLineEdit()
        self.base_url.setPlaceholderText("http://localhost:11434/v1")
        self.base_url.textEdited.connect(lambda t: self._edit("base_url", t))
        self.api_key = QLineEdit()
        self.api_key.setEchoMode(QLineEdit.EchoMode.Password)
        self.api_key.setPlaceholderText("none — local servers usually need no key")
        self.api_key.textEdited.connect(lambda t: self._edit("_key", t))
        self.show_key = QPushButton("Show")
        self.show_key.setCheckable(True)
        self.show_key.toggled.connect(self._toggle_key)
        key_row = QHBoxLayout()
        key_row.setSpacing(8)
        key_row.addWidget(self.api_key, 1)
        key_row.addWidget(self.show_key)
        self.key_note = QLabel(f"Keys are kept in {key_storage(self.ctx.paths)}, never in "
                               "settings.json.")
        self.key_note.setProperty("muted", True)
        self.key_note.setWordWrap(True)
        form.addRow("Name", self.name)
        form.addRow("Base URL", self.base_url)
        form.addRow("API key", key_row)
        form.addRow("", self.key_note)
        test_row = QHBoxLayout()
        test_row.setSpacing(10)
        self.test_button = QPushButton("Test connection")
        self.test_button.setToolTip("Ask the server for its models (GET /v1/models)")
        self.test_button.clicked.connect(self.test_connection)
        self.status = QLabel("")
        self.status.setWordWrap(True)
        self.status.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        test_row.addWidget(self.test_button, 0, Qt.AlignmentFlag.AlignTop)
        test_row.addWidget(self.status, 1)
        form.addRow("", test_row)
        self.models = QListWidget()
        self.models.setSelectionMode(QListWidget.SelectionMode.NoSelection)
        self.models.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        form.addRow("Models", self.models)
        body.addWidget(self.form_box, 1)
        self.empty = QLabel("No servers yet.\n\nAdd one to chat with models that run on "
                            "another machine — a GPU server, a cluster, or Ollama here.")
        self.empty.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.empty.setWordWrap(True)
        self.empty.setProperty("muted", True)
        body.addWidget(self.empty, 1)
        col.addLayout(body, 1)

        self.error = QLabel("")
        self.error.setWordWrap(True)
        self.error.setStyleSheet(f"color: {colors().failed};")
        self.error.setVisible(False)
        col.addWidget(self.error)
        box = ok_cancel_buttons(self)
        self.ok_button = box.button(QDialogButtonBox.StandardButton.Ok)
        self.cancel_button = box.button(QDialogButtonBox.StandardButton.Cancel)
        col.addWidget(box)

    # -- the list --------------------------------------------------------------------------------
    def current(self) -> dict[str, Any] | None:
        row = self.list.currentRow()
        return self.servers[row] if 0 <= row < len(self.servers) else None

    def _refill_list(self, select: int) -> None:
        self.list.blockSignals(True)
        self.list.clear()
        for server in self.servers:
            item = QListWidgetItem(self._list_text(server))
            item.setToolTip(ep.normalize_url(server.get("base_url", "")))
            self.list.addItem(item)
        self.list.blockSignals(False)
        self.list.setCurrentRow(min(select, len(self.servers) - 1))
        self._show_server(self.list.currentRow())

    @staticmethod
    def _list_text(server: dict) -> str:
        count = len(server.get("models") or [])
        models = f"{count} model{'s' if count != 1 else ''}" if count else "not tested"
        return f"{ep.display_name(server)}\n{models}"

    def add_server(self, name: str = "", base_url: str = "", api_key: str = "") -> dict:
        """Add a server to the list (selected, ready to edit) and return it."""
        server = {"name": name, "base_url": base_url, "models": [], "_id": next(_ids),
                  "_key": api_key, "_status": ""}
        self.servers.append(server)
        self._refill_list(select=len(self.servers) - 1)
        (self.base_url if name else self.name).setFocus()
        return server

    def remove_server(self) -> None:
        row = self.list.currentRow()
        if 0 <= row < len(self.servers):
            del self.servers[row]
            self._refill_list(select=max(0, row - 1))

    def _show_server(self, row: int) -> None:
        server = self.current()
        has = server is not None
        self.form_box.setVisible(has)
        self.empty.setVisible(not has)
        self.remove_button.setEnabled(has)
        if not has:
            return
        self.form_box.setTitle(ep.display_name(server))
        self.name.setText(server.get("name", ""))
        self.base_url.setText(server.get("base_url", ""))
        self.api_key.setText(server.get("_key", ""))
        self._show_models(server)

    def _show_models(self, server: dict) -> None:
        self.models.clear()
        models = server.get("models") or []
        self.models.addItems(models)
        testing = server["_id"] in self._testing
        self.test_button.setEnabled(not testing)
        self.test_button.setText("Testing…" if testing else "Test connection")
        status = server.get("_status", "")
        if testing:
            self._set_status("Asking the server for its models…", "muted")
        elif status.startswith("error:"):
            self._set_status(status[6:], "error")
        elif status:
            self._set_status(status, "ok")
        elif models:
            self._set_status(f"{len(models)} model{'s' if len(models) != 1 else ''} from the "
                             "last test. Test again to refresh.", "muted")
        else:
            self._set_status("Not tested yet.", "muted")

    def _set_status(self, text: str, kind: str) -> None:
        c = colors()
        color = {"error": c.failed, "ok": c.done, "muted": c.muted}[kind]
        self.status.setStyleSheet(f"color: {color};")
        self.status.setText(text)

    def _edit(self, field: str, text: str) -> None:
        server = self.current()
        if server is None:
            return
        server[field] = text
        if field == "base_url":  # models and results of another URL no longer apply
            server["models"], server["_status"] = [], ""
            self._show_models(server)
        if field != "_key":
            self.form_box.setTitle(ep.display_name(server))
            self.list.currentItem().setText(self._list_text(server))
        self.error.setVisible(False)

    def _toggle_key(self, shown: bool) -> None:
        self.api_key.setEchoMode(QLineEdit.EchoMode.Normal if shown
                                 else QLineEdit.EchoMode.Password)
        self.show_key.setText("Hide" if shown else "Show")

    # -- test connection ------------------------------------------------------------------------
    def test_connection(self) -> None:
        """Query the current server's /v1/models on the pool; the answer updates its entry."""
        server = self.current()
        if server is None or server["_id"] in self._testing:
            return
        problem = ep.check_url(server.get("base_url", ""))
        if problem:
            server["_status"] = "error:" + problem
            self._show_models(server)
            return
        sid, url, key, timeout = (server["_id"], server["base_url"], server["_key"],
                                  self.timeout)
        self._testing.add(sid)
        self._show_models(server)
        self._calls.run(lambda: ep.fetch_models(url, key, timeout),
                          lambda result: self._tested(sid, url, result))

    def _tested(self, sid: int, url: str, result: ep.ModelList) -> None:
        self._testing.discard(sid)
        server = next((s for s in self.servers if s["_id"] == sid), None)
        if server is None or ep.normalize_url(server["base_url"]) != ep.normalize_url(url):
            return  # removed, or its URL changed while the test ran: the answer is stale
        if result.ok:
            n = len(result.models)
            server["models"] = result.models
            server["_status"] = (f"Connected — {n} model{'s' if n != 1 else ''}." if n else
                                 "error:Connected, but the server lists no models.")
        else:
            server["_status"] = "error:" + result.error
        row = self.servers.index(server)
        self.list.item(row).setText(self._list_text(server))
        if server is self.current():
            self._show_models(server)

    def busy(self) -> bool:
        """True while a connection test is running."""
        return bool(self._testing)

    # -- saving ----------------------------------------------------------------------------------
    def problems(self) -> str:
        """Why the servers cannot be saved as they are ("" when they can)."""
        seen: set[str] = set()
        for server in self.servers:
            problem = ep.check_url(server.get("base_url", ""))
            if problem:
                return f"{ep.display_name(server)}: {problem}"
            url = ep.normalize_url(server["base_url"])
            if url in seen:
                return f"{url} is listed twice; one entry per server."
            seen.add(url)
        return ""

    def endpoints(self) -> list[dict]:
        """The servers as Settings keeps them (no keys)."""
        return [ep.clean(s) for s in self.servers]

    def accept(self) -> None:
        problem = self.problems()
        if problem:
            self.error.setText(problem)
            self.error.setVisible(True)
            return
        endpoints = self.endpoints()
        keys = {ep.normalize_url(s["base_url"]): s.get("_key", "").strip()
                for s in self.servers}
        try:
            ep.save_keys(self._original, endpoints, keys, self.ctx.paths)
        except OSError as exc:
            self.error.setText(f"The API key could not be stored: {exc}")
            self.error.setVisible(True)
            return
        self.ctx.update_settings(dataclasses.replace(self.ctx.settings,
                                                     remote_endpoints=endpoints))
        super().accept()

    def done(self, result: int) -> None:
        # Tests in flight answer into a closed dialog otherwise; their timeout bounds the wait.
        self._calls.wait(int(self.timeout * 1000) + 2000)
        super().done(result)

