"""The Chat workspace: conversations on the left, the conversation in the middle, settings right.

Sending adds the user message and an empty assistant message to the store and submits a
``chat`` job; each streamed chunk is appended to that message (saved every few tokens) and only
its row is repainted, at most ~30 times a second. Stop (or Esc) cancels the job — the engine stops
within one token and the partial reply is kept. The context meter counts the whole conversation
against the model's context with the engine's own rule
(:func:`~studio.pipelines.chat.prompting.history_fits`), so it reads "full" exactly when the
oldest messages are left out. Editing a user message and sending it again, or
regenerating a reply, adds a sibling branch; "‹ 1/2 ›" switches between branches.
"""

from __future__ import annotations

import dataclasses
import sqlite3
import time
from typing import TYPE_CHECKING, Any

from PySide6.QtCore import Qt, QTimer, Slot
from PySide6.QtGui import QGuiApplication, QKeySequence, QShortcut
from PySide6.QtWidgets import (
    QAbstractItemView,
    QFrame,
    QHBoxLayout,
    QLabel,
    QListView,
    QSplitter,
    QVBoxLayout,
    QWidget,
)

from studio.core.jobs import JobSnapshot, JobState
from studio.core.wording import count_of
from studio.pipelines.chat.prompting import history_fits, reply_reserve
from studio.pipelines.chat.store import (
    ConversationStore,
    Message,
    StreamingSaver,
    keep_image,
    write_failure,
)
from studio.pipelines.chat.types import ChatChunk, ChatRequest
from studio.ui.context import AppContext
from studio.ui.panels.chat.composer import Composer
from studio.ui.panels.chat.controls import TOP_ALTERNATIVES, ChatControls
from studio.ui.panels.chat.delegate import MessageDelegate
from studio.ui.panels.chat.empty_state import NO_MODELS, READY, SCANNING, ChatEmptyState
from studio.ui.panels.chat.grounding import GroundedReplies
from studio.ui.panels.chat.image_attachment import ImageQuestions
from studio.ui.panels.chat.meter import ContextMeter
from studio.ui.panels.chat.model import ConversationModel
from studio.ui.panels.chat.probabilities import TokenProbabilities, add_tokens
from studio.ui.panels.chat.servers import ServerActions
from studio.ui.panels.chat.sidebar import ConversationList
from studio.ui.panels.chat.sources import PassageDialog, passages_of
from studio.ui.panels.chat.token_actions import TokenActions
from studio.workers.job_bridge import QtJobHandle

if TYPE_CHECKING:
    from studio.core.config import Settings


class ChatPanel(QWidget, GroundedReplies, TokenActions, ImageQuestions):
    """The Chat workspace (see the module docstring)."""

    def __init__(self, ctx: AppContext, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.ctx = ctx
        self.store = ConversationStore(ctx.paths.database)
        self.conv_id: int | None = None
        self.job: QtJobHandle | None = None  # the reply being written
        self.saver: StreamingSaver | None = None
        self.streaming: Message | None = None
        self.editing: Message | None = None
        # A finished reply the database refused (disk full): kept here until Save again works.
        self.unsaved: StreamingSaver | None = None
        self.unsaved_message: Message | None = None
        self.retrieving = False  # the attached documents are being searched for a reply
        self.stop_requested = False  # Stop was pressed while they were
        self.token_view: TokenProbabilities | None = None  # the last one opened
        self._build()
        self._flush_timer = QTimer(self, singleShot=True, interval=33)
        self._flush_timer.timeout.connect(self._flush)
        ctx.settingsChanged.connect(lambda s: self.rescan_models(s))
        ctx.libraryChanged.connect(lambda: self.rescan_models())
        QShortcut(QKeySequence("Esc"), self, self.escape,
                  context=Qt.ShortcutContext.WidgetWithChildrenShortcut)
        self.sidebar.refresh()
        self.rescan_models()
        self._update_state()

    # -- construction --------------------------------------------------------------------------
    def _build(self) -> None:
        self.sidebar = ConversationList(self.store)
        self.sidebar.selected.connect(self.open_conversation)
        self.sidebar.newRequested.connect(self.new_conversation)
        self.sidebar.deleted.connect(self._conversation_deleted)
        self.controls = ChatControls(self.ctx.settings)
        self.controls.changed.connect(self._controls_changed)
        self.servers = ServerActions(self.ctx, self.controls, self)  # "Servers…", "Refresh"

        center = QWidget()
        col = QVBoxLayout(center)
        col.setContentsMargins(0, 0, 0, 0)
        col.setSpacing(0)
        header = QHBoxLayout()
        header.setContentsMargins(20, 10, 20, 8)
        self.title = QLabel("New chat")
        self.title.setProperty("heading", True)
        header.addWidget(self.title, 1)
        self.context_meter = ContextMeter()
        self.meter_label, self.meter = self.context_meter.label, self.context_meter.bar
        header.addWidget(self.context_meter)
        col.addLayout(header)

        self.model = ConversationModel(self)
        self.view = QListView()
        self.view.setObjectName("ChatView")
        self.view.setFrameShape(QFrame.Shape.NoFrame)
        self.view.setVerticalScrollMode(QAbstractItemView.ScrollMode.ScrollPerPixel)
        self.view.verticalScrollBar().setSingleStep(24)
        self.view.setResizeMode(QListView.ResizeMode.Adjust)
        self.view.setSelectionMode(QAbstractItemView.SelectionMode.NoSelection)
        self.view.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        self.view.setMouseTracking(True)
        self.view.setStyleSheet("QListView#ChatView { background: transparent; }")
        self.delegate = MessageDelegate(self.view, self.controls.model_label)
        self.delegate.action.connect(self._on_action)
        self.view.setItemDelegate(self.delegate)
        self.view.setModel(self.model)
        self.view.verticalScrollBar().valueChanged.connect(self._maybe_load_older)
        self.empty = ChatEmptyState()
        self.empty.downloadRequested.connect(self._open_download)
        self.empty.rescanRequested.connect(lambda: self.rescan_models())
        col.addWidget(self.view, 1)
        col.addWidget(self.empty, 1)

        composer = Composer(self.store, self.ctx.paths.models_dir,
                            self._conversation_for_documents, self.send, self.stop,
                            self.cancel_edit, self.retry_save, self.attach_image)
        self.composer = composer
        # the panel's names for the composer's parts (the panel drives them)
        self.edit_banner, self.edit_label = composer.edit_banner, composer.edit_label
        self.save_banner, self.save_error = composer.save_banner, composer.save_error
        self.save_again, self.documents = composer.save_again, composer.documents
        self.attachment, self._image_input = composer.attachment, composer._image_input
        self.input, self._enter = composer.input, composer._enter
        self.send_button, self.stop_button = composer.send_button, composer.stop_button
        self.status = composer.status
        wrap = QHBoxLayout()
        wrap.setContentsMargins(20, 6, 20, 14)
        wrap.addWidget(composer)
        col.addLayout(wrap)

        split = QSplitter()
        split.addWidget(self.sidebar)
        split.addWidget(center)
        split.addWidget(self.controls)
        split.setStretchFactor(1, 1)
        split.setSizes([240, 720, 270])
        split.setChildrenCollapsible(False)
        self.sidebar.setMinimumWidth(200)
        self.controls.setMinimumWidth(240)
        layout = QHBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(split)

    # -- conversations -------------------------------------------------------------------------
    @Slot()
    def new_conversation(self) -> int:
        conv = self.store.create_conversation("New chat", self.controls.system.toPlainText(),
                                              self.controls.model_spec(),
                                              self.controls.sampling())
        self.documents.remember(conv.id)  # a new chat starts on the collection chosen
        self.sidebar.refresh(select=conv.id)
        self.open_conversation(conv.id)
        self.input.setFocus()
        return conv.id

    @Slot(int)
    def open_conversation(self, conv_id: int) -> None:
        if (self.job is not None or self.retrieving) and conv_id != self.conv_id:
            self.stop()
        conv = self.store.conversation(conv_id)
        self.conv_id = conv_id
        self.cancel_edit()
        self.controls.apply(conv.settings, conv.system_prompt)
        if conv.model:
            self.controls.select_model(conv.model)
        self.title.setText(conv.title or "Untitled")
        self.documents.set_conversation(conv_id)
        self.reload(scroll_to_end=True)

    def _conversation_for_documents(self) -> int:
        """The conversation attached files go to (a new one when none is open)."""
        return self.conv_id if self.conv_id is not None else self.new_conversation()

    def reload(self, scroll_to_end: bool = False) -> None:
        """Re-read the conversation's current branch into the view."""
        path = self.store.path(self.conv_id) if self.conv_id is not None else []
        # the live reply (so appends reach the view) and one not saved yet show as held here
        live = {m.id: m for m in (self.streaming, self.unsaved_message) if m is not None}
        path = [live.get(m.id, m) for m in path]
        dropped = next((int(m.meta.get("dropped_messages", 0)) for m in reversed(path)
                        if m.role == "assistant"), 0)
        self.delegate.clear_cache()
        self.model.set_messages(path, dropped)
        self._update_state()
        if scroll_to_end:
            self.view.scrollToBottom()
            QTimer.singleShot(0, self.view.scrollToBottom)

    def _conversation_deleted(self, conv_id: int) -> None:
        if conv_id == self.conv_id:
            self.conv_id = None
            self.title.setText("New chat")
            self.documents.set_conversation(None)
            self.reload()

    @Slot()
    def _controls_changed(self) -> None:
        if self.conv_id is not None:
            self.store.update_conversation(
                self.conv_id, system_prompt=self.controls.system.toPlainText(),
                model=self.controls.model_spec(), settings=self.controls.sampling())
        self._update_state()
        self.view.viewport().update()

    # -- sending -----------------------------------------------------------------------------
    @Slot()
    def send(self) -> None:
        """Send the message typed; in Complete mode the text goes as typed (spaces matter), and
        with nothing typed the model continues the text so far."""
        complete = self.controls.complete.isChecked()
        text = self.input.toPlainText() if complete else self.input.toPlainText().strip()
        last = self.model.last_message()
        go_on = complete and not text.strip() and last is not None and self.editing is None
        if (not text.strip() and not go_on) or self.job is not None or self.retrieving:
            return
        if not self.controls.model_spec():
            self.status.setText("Choose a model first.")
            return
        refusal = self._cannot_see()
        if refusal:  # the message and its image stay, ready for a model that sees
            self.status.setText(refusal)
            return
        if self.unsaved is not None and not self.retry_save():
            # The reply above is not in the database yet: nothing is sent, the text stays typed.
            self.status.setText("Not sent: the reply above must be saved first.")
            return
        if go_on:
            self.start_reply(last.id)
            return
        try:
            if self.conv_id is None:
                self.new_conversation()
            conv = self.store.conversation(self.conv_id)
            if conv.title in ("", "New chat"):
                title = text.strip().splitlines()[0][:48]
                self.store.rename(self.conv_id, title)
                self.title.setText(title)
            parent: Any = "leaf"
            if self.editing is not None:
                parent = self.editing.parent_id
            meta = {"images": [str(keep_image(self.attachment.path, self.ctx.paths.database))]} \
                if self.attachment.path is not None else None
            user = self.store.add_message(self.conv_id, "user", text, parent_id=parent,
                                          meta=meta)
        except OSError as exc:  # the image could not be stored with the conversation
            self.status.setText(f"Not sent: the image could not be stored ({exc}).")
            return
        except sqlite3.Error as exc:  # the message stays in the box, ready to send again
            self._show_write_error(f"The message could not be saved, so it was not sent: "
                                   f"{write_failure(exc)}, then send it again.")
            return
        self.input.clear()
        self.attachment.clear()
        self.cancel_edit()
        self.start_reply(user.id)
        self.sidebar.refresh(select=self.conv_id)

    def _show_write_error(self, text: str, can_retry: bool = False) -> None:
        """A database write failed: say so above the message box (Save again when it helps)."""
        self.save_error.setText(text)
        self.save_again.setVisible(can_retry)
        self.save_banner.setVisible(True)
        self.status.setText("")

    @Slot()
    def retry_save(self) -> bool:
        """Save again: write the reply the database refused; True once it is saved."""
        saver = self.unsaved
        if saver is None:
            self.save_banner.setVisible(False)
            return True
        if not saver.retry():
            self._show_write_error(saver.failure, can_retry=True)
            return False
        self.unsaved = self.unsaved_message = None
        self.save_banner.setVisible(False)
        self.status.setText("Reply saved.")
        self.reload()
        return True

    def start_reply(self, parent_id: int, prefix: str = "", branched_from: int = 0) -> None:
        """Generate an assistant message answering the branch that ends at ``parent_id``
        (``prefix``: the reply's beginning, which the model continues — a branch taken at a
        token of the reply ``branched_from``)."""
        try:
            self._start_reply(parent_id, prefix, branched_from)
        except sqlite3.Error as exc:
            self._show_write_error(f"The reply could not be started: {write_failure(exc)}, "
                                   "then use Regenerate.")
            self.reload()

    def _start_reply(self, parent_id: int, prefix: str = "", branched_from: int = 0) -> None:
        history = self.store.path(self.conv_id, leaf=parent_id)
        spec = self.controls.model_spec()
        sampling = self.controls.sampling()
        system = self.controls.system.toPlainText().strip()
        messages = ([{"role": "system", "content": system}] if system else []) + [
            {"role": m.role, "content": m.content,
             **({"images": list(m.meta["images"])} if (m.meta or {}).get("images") else {})}
            for m in history] + ([{"role": "assistant", "content": prefix}] if prefix else [])
        request = ChatRequest(model=spec, messages=messages, continue_reply=bool(prefix),
                              temperature=sampling["temperature"], top_p=sampling["top_p"],
                              top_k=sampling["top_k"],
                              repetition_penalty=sampling["repetition_penalty"],
                              max_new_tokens=sampling["max_new_tokens"],
                              seed=None if sampling["seed"] < 0 else sampling["seed"],
                              complete=sampling["complete"],
                              logprobs=TOP_ALTERNATIVES if sampling["probabilities"] else None)
        # documents go into a chat's question; Complete mode's raw text and a branch's
        # continuation are sent as they are
        grounded = self.documents.active() and not request.complete and not prefix
        meta: dict[str, Any] = {"model": spec}
        if grounded:
            meta["documents"] = True
        if prefix:  # the branch's beginning: its tokens are the original reply's
            meta.update(prefix=prefix, branched_from=branched_from)
        self.streaming = self.store.add_message(self.conv_id, "assistant", prefix,
                                                parent_id=parent_id, complete=False, meta=meta)
        self.saver = StreamingSaver(self.store, self.streaming.id)
        self.saver.text = prefix
        self.save_banner.setVisible(False)
        if grounded:  # the passages are found off the GUI thread, then the reply is asked for
            self.retrieving = True
            self.stop_requested = False
            self.status.setText("Searching the attached documents…")
            reply_id = self.streaming.id
            self.documents.retrieve(
                messages, lambda sent, passages: self._grounded(reply_id, request, sent, passages),
                lambda sentence: self._grounding_failed(reply_id, sentence))
            self.reload(scroll_to_end=True)
        else:
            self._submit(request)

    def _submit(self, request: ChatRequest) -> None:
        spec = request.model
        self.job = self.ctx.bridge.submit(request, title="Chat reply")
        self.job.partial.connect(self._on_partial)
        self.job.changed.connect(self._on_job_changed)
        self.job.ended.connect(self._on_ended)
        self.status.setText("Waiting for the model…")
        self.reload(scroll_to_end=True)
        if self.ctx.settings.last_chat_model != spec:
            self.ctx.update_settings(dataclasses.replace(self.ctx.settings,
                                                         last_chat_model=spec))

    @Slot()
    def stop(self) -> None:
        if self.job is not None:
            self.job.cancel()
        elif self.retrieving:
            self.stop_requested = True

    @Slot()
    def escape(self) -> None:
        """Esc: stop the reply being written (as Stop does), else leave editing a message."""
        if self.job is not None:
            self.stop()
        elif self.editing is not None:
            self.cancel_edit()

    def rescan_models(self, settings: Settings | None = None) -> None:
        """Look for chat models again (the list on the right, the empty state's advice)."""
        self.controls.scan_models(settings or self.ctx.settings, self.ctx.paths)
        self._update_empty()

    def _open_download(self, repo_id: str) -> None:
        from studio.ui.widgets.download_dialog import DownloadRequest

        self.ctx.openInWorkspace.emit("models", DownloadRequest(repo_id))

    def showEvent(self, event) -> None:  # noqa: N802 - Qt override
        super().showEvent(event)
        # A model downloaded in the Models workspace (or copied in) shows up on coming back.
        if self.controls.no_models and not self.controls.scanning:
            self.rescan_models()

    @Slot(object, object)
    def _on_partial(self, job: JobSnapshot, chunk: ChatChunk) -> None:
        if self.streaming is None or self.saver is None:
            return
        self.saver.add(chunk.text, chunk.completion_tokens)
        self.streaming.content = self.saver.text
        self.streaming.tokens = chunk.completion_tokens
        meta = self.streaming.meta
        meta["prompt_tokens"] = chunk.prompt_tokens
        meta["conversation_tokens"] = chunk.conversation_tokens or chunk.prompt_tokens
        if chunk.dropped_messages != meta.get("dropped_messages", 0):
            meta["dropped_messages"] = chunk.dropped_messages
            self.model.set_dropped(chunk.dropped_messages)
        if chunk.warnings:
            meta["warnings"] = list(chunk.warnings)
        if chunk.logprobs or meta.get("logprobs"):
            add_tokens(meta.setdefault("logprobs", []), chunk)
        elapsed = max(1e-6, (job.ended or time.time()) - job.started)
        self.status.setText(f"{count_of(chunk.completion_tokens, 'token')} · "
                            f"{chunk.completion_tokens / elapsed:.1f} tok/s"
                            + (" · not being saved: " + write_failure(self.saver.error).split(";")[0]
                               if self.saver.error is not None else ""))
        if not self._flush_timer.isActive():
            self._flush_timer.start()

    def _flush(self) -> None:
        if self.streaming is None:
            return
        bar = self.view.verticalScrollBar()
        at_end = bar.value() >= bar.maximum() - 40
        self.model.update_message(self.streaming.id)
        self._update_meter()
        if at_end:
            QTimer.singleShot(0, self.view.scrollToBottom)

    @Slot(object)
    def _on_job_changed(self, job: JobSnapshot) -> None:
        if not job.finished and job.message and self.streaming is not None \
                and not self.streaming.content:
            self.status.setText(job.message)

    @Slot(object)
    def _on_ended(self, job: JobSnapshot) -> None:
        """The reply ended (the handle's last signal: every chunk came before it)."""
        msg, saver = self.streaming, self.saver
        reply = job.result
        meta = dict(msg.meta)
        if reply is not None and reply.prompt_ids:  # token probabilities: what "Where it
            meta["prompt_ids"] = reply.prompt_ids  # looked" asks the model again
        if reply is not None:
            meta.update(finish_reason=reply.finish_reason, prompt_tokens=reply.prompt_tokens,
                        conversation_tokens=reply.conversation_tokens or reply.prompt_tokens,
                        tokens_per_second=round(reply.tokens_per_second, 2),
                        seconds=round(reply.seconds, 3),
                        dropped_messages=reply.dropped_messages, warnings=reply.warnings)
        elif job.state is JobState.FAILED:
            meta.update(finish_reason="error", error=job.error)
        else:
            meta.update(finish_reason="cancelled")
        msg.meta = meta
        msg.complete = True
        saved = saver.finish(meta)
        self.job = self.saver = self.streaming = None
        if not saved:  # disk full: the reply stays on screen and Save again writes it later
            self.unsaved, self.unsaved_message = saver, msg
        self.status.setText(job.error if job.state is JobState.FAILED else
                            "; ".join(meta.get("warnings") or []))
        if not saved:
            self._show_write_error(saver.failure, can_retry=True)
        self.reload()
        self.view.scrollToBottom()

    # -- message actions -----------------------------------------------------------------------
    @Slot(str, object, object)
    def _on_action(self, name: str, msg: Message, payload: Any) -> None:
        if name == "copy":
            QGuiApplication.clipboard().setText(msg.content)
            self.status.setText("Message copied.")
        elif name == "copy-code":
            QGuiApplication.clipboard().setText(str(payload))
            self.status.setText("Code copied.")
        elif name == "edit":
            self.editing = msg
            self.input.setPlainText(msg.content)
            self.input.setFocus()
            self._update_state()
        elif name == "regenerate" and self.job is None:
            self.start_reply(msg.parent_id)
        elif name == "delete" and self.job is None:
            self.store.delete_message(msg.id)
            self.reload()
        elif name == "source":
            passage = next((p for p in passages_of(msg.meta) or [] if p.number == payload), None)
            if passage is not None:
                dialog = PassageDialog(passage, self)
                dialog.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
                dialog.open()
        elif name == "probabilities":
            self.open_probabilities(msg)
        elif name == "given":
            self.delegate.expanded ^= {msg.id}
            self.model.update_message(msg.id)
        elif name in ("prev", "next", "branch"):
            siblings = self.store.children(self.conv_id, msg.parent_id)
            step = -1 if name == "prev" else 1
            target = siblings[(siblings.index(msg.id) + step) % len(siblings)]
            self.store.switch_branch(target)
            self.reload()

    @Slot()
    def cancel_edit(self) -> None:
        if self.editing is not None:
            self.input.clear()
        self.editing = None
        self._update_state()

    # -- state ---------------------------------------------------------------------------------
    def _maybe_load_older(self, value: int) -> None:
        if value > 200 or not self.model.has_older():
            return
        bar = self.view.verticalScrollBar()
        before = bar.maximum()
        self.model.load_older()
        self.view.doItemsLayout()
        bar.setValue(value + bar.maximum() - before)

    def _update_state(self) -> None:
        busy = self.job is not None or self.retrieving
        last = self.model.last_message()
        self.delegate.busy = busy
        self.delegate.last_id = last.id if last and last.role == "assistant" else None
        self.send_button.setVisible(not busy)
        self.stop_button.setVisible(busy)
        self.edit_banner.setVisible(self.editing is not None)
        self.composer.show_mode(self.controls.complete.isChecked())
        has_rows = self.model.rowCount() > 0
        self.view.setVisible(has_rows)
        self.empty.setVisible(not has_rows)
        self._update_empty()
        self._update_meter()

    def _update_empty(self) -> None:
        # A model remembered from an earlier session may still be listed when the scan found
        # none: "no model" goes by what the scan found.
        if self.controls.scanning and not self.controls.model_spec():
            self.empty.set_state(SCANNING)
        elif self.controls.no_models and not self.controls.scanning:
            self.empty.set_state(NO_MODELS)
        else:
            self.empty.set_state(READY)

    def context_use(self) -> tuple[int, int, bool]:
        """(tokens of this conversation, the model's context length or 0, full). ``full`` is the
        engine's own test (``history_fits``) — and true whenever the last reply had to leave
        messages out — so the meter and the "left out" marker always agree."""
        ctx_len = self.controls.contexts.get(self.controls.model_spec(), 0)
        last = next((m for m in reversed(self.model.messages()) if m.role == "assistant"), None)
        used, dropped = 0, 0
        if last is not None:
            meta = last.meta or {}
            whole = meta.get("conversation_tokens") or meta.get("prompt_tokens") or 0
            used = int(whole) + int(last.tokens or 0)
            dropped = int(meta.get("dropped_messages") or 0)
        full = bool(ctx_len) and (dropped > 0 or not history_fits(
            used, ctx_len, self.controls.max_new.value()))
        return used, ctx_len, full

    def _update_meter(self) -> None:
        used, ctx_len, full = self.context_use()
        self.context_meter.show_use(used, ctx_len, full,
                                    reply_reserve(ctx_len, self.controls.max_new.value())
                                    if ctx_len else 0)

    def shutdown(self) -> None:
        """Stop a reply in progress (its text so far is kept) and close the database."""
        self.stop()
        self.servers.shutdown()
        self.controls.shutdown()
        self.sidebar.shutdown()
        self.documents.shutdown()
        self.store.close()
