"""Chat's remote servers, wired into the panel: "Servers…" opens :class:`ServersDialog`,
"Refresh models" re-queries every server's ``/v1/models`` off the GUI thread
(:class:`ModelRefresher`) and saves the lists, so the model picker shows what the servers have now.
"""

from __future__ import annotations

import dataclasses

from PySide6.QtCore import QObject, Signal, Slot
from PySide6.QtWidgets import QWidget

from studio.pipelines.chat import endpoints as ep
from studio.ui.context import AppContext
from studio.ui.panels.chat.controls import ChatControls
from studio.ui.panels.chat.servers_dialog import ServersDialog
from studio.workers.lanes import Calls


class ModelRefresher(QObject):
    """"Refresh models": re-query every server's /v1/models on a pool thread, then save the
    lists (a server that fails keeps its old list) and report what failed through ``finished``."""

    finished = Signal(str)  # "" when every server answered, else one line per failure

    def __init__(self, ctx: AppContext, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.ctx = ctx
        self.timeout = ep.TEST_TIMEOUT
        self._calls = Calls(self, serial=True)
        self.running = False

    def refresh(self) -> bool:
        """Start a refresh; False when one is already running or there are no servers."""
        endpoints = [dict(e) for e in self.ctx.settings.remote_endpoints]
        if self.running or not endpoints:
            return False
        self.running = True
        paths, timeout = self.ctx.paths, self.timeout
        self._calls.run(lambda: ep.refresh_models(endpoints, paths, timeout),
                          self._done, self._failed)
        return True

    def _done(self, result: tuple[list[dict], list[str]]) -> None:
        self.running = False
        fresh, errors = result
        # Only the models change: servers edited meanwhile in the dialog keep those edits.
        by_url = {ep.normalize_url(e["base_url"]): e.get("models", []) for e in fresh}
        current = [dict(e) for e in self.ctx.settings.remote_endpoints]
        for endpoint in current:
            url = ep.normalize_url(endpoint.get("base_url", ""))
            if url in by_url:
                endpoint["models"] = by_url[url]
        if current != self.ctx.settings.remote_endpoints:
            self.ctx.update_settings(dataclasses.replace(self.ctx.settings,
                                                         remote_endpoints=current))
        self.finished.emit("\n".join(errors))

    def _failed(self, message: str) -> None:
        self.running = False
        self.finished.emit(message)

    def shutdown(self) -> None:
        self._calls.wait(int(self.timeout * 1000) + 2000)



class ServerActions(QObject):
    """Connects the model area's "Servers…" and "Refresh models" buttons to the dialog and the
    refresher, and shows a refresh's outcome under the model list."""

    def __init__(self, ctx: AppContext, controls: ChatControls, parent: QWidget) -> None:
        super().__init__(parent)
        self.ctx = ctx
        self.controls = controls
        self.dialog: ServersDialog | None = None
        self.refresher = ModelRefresher(ctx, self)
        self.refresher.finished.connect(self._refreshed)
        controls.serversRequested.connect(self.open_dialog)
        controls.refreshRequested.connect(self.refresh)

    @Slot()
    def open_dialog(self) -> ServersDialog:
        """Show the Servers dialog (window-modal); OK saves and the picker rescans."""
        self.dialog = ServersDialog(self.ctx, self.parent())
        self.dialog.open()
        return self.dialog

    @Slot()
    def refresh(self) -> None:
        if self.refresher.refresh():
            self.controls.refresh_button.setEnabled(False)
            self.controls.set_remote_note("Asking the servers for their models…")

    @Slot(str)
    def _refreshed(self, errors: str) -> None:
        self.controls.refresh_button.setEnabled(bool(self.ctx.settings.remote_endpoints))
        self.controls.set_remote_note(errors)

    def shutdown(self) -> None:
        self.refresher.shutdown()
