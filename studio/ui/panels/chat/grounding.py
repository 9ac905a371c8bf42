"""A Chat reply asked with documents attached: the passages are searched off the GUI thread
first, then the reply is asked for with them (or ended without asking, when Stop came first or
the search failed). Part of :class:`~studio.ui.panels.chat.panel.ChatPanel`, which starts the
search in ``_start_reply``; split out of panel.py to keep it readable."""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any

from studio.pipelines.chat.types import ChatRequest

if TYPE_CHECKING:
    from PySide6.QtWidgets import QLabel

    from studio.pipelines.chat.documents import Passage
    from studio.pipelines.chat.store import ConversationStore, Message, StreamingSaver


class GroundedReplies:
    """The panel's steps after a document search (a mixin of ChatPanel: it uses the panel's
    ``streaming``, ``saver``, ``store``, ``status``, ``_submit`` and ``reload``)."""

    streaming: Message | None
    saver: StreamingSaver | None
    retrieving: bool
    stop_requested: bool
    store: ConversationStore
    status: QLabel

    def _grounded(self, reply_id: int, request: ChatRequest, messages: list[dict[str, str]],
                  passages: list[Passage]) -> None:
        """The passages for the question were found: the reply is asked for with them."""
        self.retrieving = False
        if self.streaming is None or self.streaming.id != reply_id:
            return
        if self.stop_requested:  # Stop (or another conversation) while the search ran
            self._end_unasked(finish_reason="cancelled")
            return
        self.streaming.meta["sources"] = [p.to_dict() for p in passages]
        self.store.update_message(reply_id, meta=self.streaming.meta)
        self._submit(dataclasses.replace(request, messages=messages))
        if not passages:
            self.status.setText("Nothing relevant found in the attached documents; asking the "
                                "model without them.")

    def _grounding_failed(self, reply_id: int, sentence: str) -> None:
        self.retrieving = False
        if self.streaming is not None and self.streaming.id == reply_id:
            self._end_unasked(finish_reason="error",
                              error=f"The documents could not be searched: {sentence}")

    def _end_unasked(self, **meta: Any) -> None:
        """End the reply being prepared without asking the model (stopped, or the search
        failed): the empty message is saved as such and the status says why."""
        msg, saver = self.streaming, self.saver
        if msg is None:
            return
        msg.meta.update(meta)
        msg.complete = True
        if saver is not None:
            saver.finish(msg.meta)
        self.saver = self.streaming = None
        self.status.setText(meta.get("error") or "Stopped before the model was asked.")
        self.reload()
