"""A reply's token probabilities in the Chat workspace: opening the view, branching a reply
(Complete mode or chat) at an alternative token, and asking where the model looked (the attention
job). Part of :class:`~studio.ui.panels.chat.panel.ChatPanel` (a mixin, like
:mod:`.grounding`), so panel.py stays readable."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from typing import TYPE_CHECKING

from PySide6.QtCore import Qt

from studio.core.jobs import JobSnapshot
from studio.pipelines.chat.store import Message, write_failure
from studio.ui.panels.chat.probabilities import TokenProbabilities, attention_request

if TYPE_CHECKING:
    from PySide6.QtWidgets import QLabel

    from studio.pipelines.chat.store import ConversationStore
    from studio.ui.context import AppContext
    from studio.ui.panels.chat.controls import ChatControls
    from studio.workers.job_bridge import QtJobHandle


class TokenActions:
    """The panel's token-probability actions (it uses the panel's ``ctx``, ``store``,
    ``controls``, ``conv_id``, ``job``, ``status`` and ``start_reply``)."""

    token_view: TokenProbabilities | None
    ctx: AppContext
    store: ConversationStore
    controls: ChatControls
    conv_id: int | None
    job: QtJobHandle | None
    retrieving: bool
    status: QLabel
    start_reply: Callable[..., None]

    def open_probabilities(self, msg: Message) -> None:
        """The reply's tokens in colour; their alternatives branch the reply (in Complete mode
        the text, in a chat the reply continued in the chat template), and for a local model
        "Where it looked" shows the attention."""
        look = ((lambda i: self._look(msg, i)) if attention_request(msg.meta, 0) is not None
                else None)
        dialog = TokenProbabilities(msg.meta.get("logprobs") or [], self,
                                    lambda i, alt: self.branch_at(msg, i, alt), look,
                                    prefix=str(msg.meta.get("prefix") or ""))
        dialog.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        dialog.finished.connect(lambda _r, d=dialog: self._token_view_closed(d))
        dialog.open()
        self.token_view = dialog

    def branch_at(self, msg: Message, index: int, alternative: str) -> None:
        """A new version of the reply ``msg`` that keeps its text before token ``index``, takes
        ``alternative`` there, and is continued by the model: in Complete mode as a text of its
        own that the next reply continues, in a chat as a sibling reply whose beginning the
        model continues in the chat template."""
        if self.job is not None or self.retrieving:
            self.status.setText("Wait for the reply being written (or Stop it) to branch.")
            return
        entries = msg.meta.get("logprobs") or []
        text = "".join(e["text"] for e in entries[:index]) + alternative
        if not self.controls.complete.isChecked():
            if self.token_view is not None:
                self.token_view.close()
            self.start_reply(msg.parent_id, str(msg.meta.get("prefix") or "") + text,
                             branched_from=msg.id)
            return
        try:
            branch = self.store.add_message(self.conv_id, "assistant", text,
                                            parent_id=msg.parent_id,
                                            meta={"model": msg.meta.get("model", ""),
                                                  "branched_from": msg.id})
        except sqlite3.Error as exc:
            self._show_write_error(f"The branch could not be saved: {write_failure(exc)}.")
            return
        if self.token_view is not None:
            self.token_view.close()
        self.start_reply(branch.id)

    def _look(self, msg: Message, index: int) -> None:
        """Ask where the model looked when it wrote token ``index`` of ``msg`` (a GPU job)."""
        dialog, request = self.token_view, attention_request(msg.meta, index)
        if dialog is None or request is None:
            return
        handle = self.ctx.bridge.submit(request, title="Attention")
        self.attention_job = handle  # kept: the handle's signals live as long as it does

        def ended(job: JobSnapshot) -> None:
            if self.token_view is dialog:
                result = job.result
                dialog.show_attention(getattr(result, "tokens", None),
                                      getattr(result, "weights", None), job.error or "")

        handle.ended.connect(ended)

    def _token_view_closed(self, dialog: TokenProbabilities) -> None:
        if self.token_view is dialog:
            self.token_view = None
