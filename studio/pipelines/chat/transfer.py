"""Conversations in and out: Markdown (the branch on screen) and JSON (the whole tree).

The JSON keeps every branch, so export → import gives the same conversation back. Import also
accepts a plain ``{"messages": [{"role": ..., "content": ...}, ...]}`` (OpenAI style) or a bare
list of such messages, read as one linear conversation. A file to import is checked whole first
(:func:`plan_import`: shape, unique ids, existing parents, no loops, roles, types, sizes) and only
then written, in one transaction — a hostile or broken file is refused with a sentence and the
store stays untouched. No Qt here.
"""

from __future__ import annotations

import dataclasses
import json
import math
import sqlite3
import time
from collections import deque
from pathlib import Path
from typing import Any

from studio.core.wording import count_of
from studio.pipelines.chat.store import (
    Conversation,
    ConversationStore,
    inserted_id,
    write_failure,
)
from studio.pipelines.chat.types import ROLES

FORMAT = "studio-conversation"
VERSION = 1


def export_markdown(store: ConversationStore, conversation_id: int) -> str:
    """The conversation as it is shown (the current branch) in Markdown."""
    conv = store.conversation(conversation_id)
    lines = [f"# {conv.title or 'Conversation'}", ""]
    if conv.model:
        lines += [f"*Model: {conv.model}*", ""]
    if conv.system_prompt:
        lines += ["## System", "", conv.system_prompt, ""]
    for m in store.path(conversation_id):
        lines += [f"## {m.role.capitalize()}", "", m.content, ""]
    return "\n".join(lines).rstrip() + "\n"


def export_json(store: ConversationStore, conversation_id: int) -> dict[str, Any]:
    """The whole conversation, every branch included, as a JSON-ready dict."""
    conv = store.conversation(conversation_id)
    rows = store._run("SELECT * FROM messages WHERE conversation_id = ? ORDER BY id",
                      (conversation_id,)).fetchall()
    return {
        "format": FORMAT, "version": VERSION, "title": conv.title,
        "system_prompt": conv.system_prompt, "model": conv.model, "settings": conv.settings,
        "created": conv.created, "updated": conv.updated, "current_leaf": conv.current_leaf,
        "messages": [{
            "id": r["id"], "parent_id": r["parent_id"], "role": r["role"],
            "content": r["content"], "tokens": r["tokens"], "created": r["created"],
            "complete": bool(r["complete"]), "meta": store.message(r["id"]).meta,
        } for r in rows],
    }


#: Limits of one imported conversation: far above any real one, low enough that a hostile file
#: cannot fill the disk or hold the database for minutes.
MAX_FILE_BYTES = 64 * 2**20
MAX_MESSAGES = 100_000
MAX_MESSAGE_CHARS = 4_000_000
MAX_META_CHARS = 64 * 1024
MAX_TITLE_CHARS = 1_000
MAX_TOKENS = 10**9


@dataclasses.dataclass(frozen=True)
class ImportedMessage:
    """One checked message; ``parent`` is the index of its parent in the plan, or None."""

    parent: int | None
    role: str
    content: str
    tokens: int
    created: float
    complete: bool
    meta: str  # JSON text


@dataclasses.dataclass(frozen=True)
class ImportPlan:
    """A conversation checked in full and ready to write: parents come before their replies."""

    title: str
    system_prompt: str
    model: str
    settings: str  # JSON text
    created: float
    messages: tuple[ImportedMessage, ...]
    current_leaf: int | None  # index into ``messages``


def _linear(messages: list[Any]) -> list[Any]:
    out, parent = [], None
    for i, m in enumerate(messages, start=1):
        out.append({**m, "id": i, "parent_id": parent} if isinstance(m, dict) else m)
        parent = i
    return out


def _text(value: Any, what: str, limit: int, default: str = "") -> str:
    if value is None:
        return default
    if not isinstance(value, str):
        raise ValueError(f"{what} must be text, not {type(value).__name__}")
    if len(value) > limit:
        raise ValueError(f"{what} is {len(value):,} characters long; at most {limit:,} are "
                         "accepted")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError(f"{what} contains characters that are not valid Unicode "
                         "(a lone surrogate such as \\ud800)") from None
    return value


def _number(value: Any, what: str, default: float) -> float:
    if value is None:
        return default
    # compared before float(): float() of a 400-digit int raises OverflowError
    if isinstance(value, bool) or not isinstance(value, (int, float)) \
            or not 0 <= value < 1e11 or not math.isfinite(value):
        raise ValueError(f"{what} must be a time in seconds, not {str(value)[:40]!r}")
    return float(value)


def _json_object(value: Any, what: str) -> str:
    if value is None:
        return "{}"
    if not isinstance(value, dict):
        raise ValueError(f"{what} must be an object, not {type(value).__name__}")
    try:
        text = json.dumps(value, ensure_ascii=False)
        text.encode("utf-8")
    except (TypeError, ValueError, RecursionError, UnicodeEncodeError):
        raise ValueError(f"{what} cannot be stored (not plain JSON)") from None
    if len(text) > MAX_META_CHARS:
        raise ValueError(f"{what} is larger than {MAX_META_CHARS // 1024} KiB")
    return text


def _message_key(value: Any, what: str) -> tuple[str, Any]:
    """An id as a dict key that keeps ``1``, ``"1"`` and ``true`` apart (``True == 1`` in
    Python, so a plain dict would merge them)."""
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise ValueError(f"{what} must be a number or text, not {str(value)[:40]!r}")
    if isinstance(value, str) and len(value) > 200:
        raise ValueError(f"{what} is too long")
    return (type(value).__name__, value)


def plan_import(data: Any) -> ImportPlan:
    """Check a whole conversation (exported JSON, ``{"messages": [...]}`` OpenAI style, or a bare
    list of messages) before anything is written; raises ValueError with the first problem.

    Checked: the shape, unique message ids, parents that exist, no loops (every message is
    reachable from a first message), known roles, text content, types and sizes of every field."""
    if isinstance(data, list):
        data = {"messages": data}
    if not isinstance(data, dict) or not isinstance(data.get("messages"), list):
        raise ValueError("not a conversation: expected an object with a 'messages' list")
    if data.get("format") not in (None, FORMAT):
        raise ValueError(f"unknown format {str(data.get('format'))[:40]!r}")
    messages = data["messages"]
    if len(messages) > MAX_MESSAGES:
        raise ValueError(f"{count_of(len(messages), 'message')}; at most {MAX_MESSAGES:,} are "
                         "accepted")
    system = _text(data.get("system_prompt"), "the system prompt", MAX_MESSAGE_CHARS)
    first = messages[0] if messages else None
    if not (isinstance(first, dict) and "id" in first):
        # OpenAI-style list: a leading system message becomes the system prompt.
        if isinstance(first, dict) and first.get("role") == "system":
            system = _text(first.get("content"), "the system message", MAX_MESSAGE_CHARS)
            messages = messages[1:]
        messages = _linear(messages)

    keys: dict[tuple[str, Any], int] = {}
    for number, m in enumerate(messages, start=1):
        if not isinstance(m, dict):
            raise ValueError(f"message {number} is not an object")
        key = _message_key(m.get("id"), f"message {number}'s id")
        if key in keys:
            raise ValueError(f"message {number} has the same id ({m['id']!r}) as message "
                             f"{keys[key] + 1}: ids must be unique")
        keys[key] = number - 1
    parents: list[int | None] = []
    for number, m in enumerate(messages, start=1):
        raw = m.get("parent_id")
        if raw is None:
            parents.append(None)
            continue
        parent = keys.get(_message_key(raw, f"message {number}'s parent_id"))
        if parent is None:
            raise ValueError(f"message {number}'s parent ({raw!r}) is not in the file")
        parents.append(parent)

    # Parents before replies (breadth first from the first messages); what is never reached
    # hangs in a loop of parent links.
    children: dict[int | None, list[int]] = {}
    for index, parent in enumerate(parents):
        children.setdefault(parent, []).append(index)
    order: list[int] = []
    queue = deque(children.get(None, []))
    while queue:
        index = queue.popleft()
        order.append(index)
        queue.extend(children.get(index, []))
    if len(order) != len(messages):
        stuck = min(set(range(len(messages))) - set(order)) + 1
        raise ValueError(f"message {stuck}'s parent links form a loop")
    position = {index: n for n, index in enumerate(order)}

    now = time.time()
    planned = []
    for index in order:
        m, number = messages[index], index + 1
        role = m.get("role")
        if role not in ROLES:
            raise ValueError(f"message {number}'s role {str(role)[:40]!r} is not one of "
                             f"{', '.join(ROLES)}")
        if not isinstance(m.get("content"), str):
            raise ValueError(f"message {number} needs text content")
        tokens = m.get("tokens") or 0
        if isinstance(tokens, bool) or not isinstance(tokens, int) \
                or not 0 <= tokens <= MAX_TOKENS:
            raise ValueError(f"message {number}'s token count {str(tokens)[:40]!r} is not a "
                             "count")
        complete = m.get("complete", True)
        if not isinstance(complete, bool):
            raise ValueError(f"message {number}'s 'complete' must be true or false")
        parent = parents[index]
        planned.append(ImportedMessage(
            parent=None if parent is None else position[parent], role=role,
            content=_text(m["content"], f"message {number}", MAX_MESSAGE_CHARS),
            tokens=tokens, created=_number(m.get("created"), f"message {number}'s time", now),
            complete=complete, meta=_json_object(m.get("meta"), f"message {number}'s meta")))

    leaf_raw = data.get("current_leaf")
    leaf = None
    if leaf_raw is not None and not isinstance(leaf_raw, bool) \
            and isinstance(leaf_raw, (int, str)):
        found = keys.get(_message_key(leaf_raw, "current_leaf"))
        leaf = None if found is None else position[found]
    if leaf is None and planned:
        leaf = len(planned) - 1
    return ImportPlan(
        title=_text(data.get("title"), "the title", MAX_TITLE_CHARS) or "Imported conversation",
        system_prompt=system, model=_text(data.get("model"), "the model name", MAX_TITLE_CHARS),
        settings=_json_object(data.get("settings"), "the settings"),
        created=_number(data.get("created"), "the conversation's time", now),
        messages=tuple(planned), current_leaf=leaf)


def write_import(store: ConversationStore, plan: ImportPlan) -> Conversation:
    """Write a checked conversation in one transaction: all of it, or (on any error) nothing.

    A database that refuses the write (disk full, read-only, a constraint) raises ValueError with
    the reason; the transaction is rolled back, so the store is as it was.
    """
    try:
        return _write_import(store, plan)
    except sqlite3.Error as exc:
        raise ValueError(f"nothing was imported: {write_failure(exc)}, then import it "
                         "again") from None


def _write_import(store: ConversationStore, plan: ImportPlan) -> Conversation:
    with store.transaction():
        now = time.time()
        cur = store._db.execute(
            "INSERT INTO conversations (title, system_prompt, model, settings, created, updated) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            (plan.title, plan.system_prompt, plan.model, plan.settings, plan.created, now))
        conv_id = inserted_id(cur)
        ids: list[int] = []
        for m in plan.messages:
            cur = store._db.execute(
                "INSERT INTO messages (conversation_id, parent_id, role, content, tokens, "
                "created, complete, meta) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (conv_id, None if m.parent is None else ids[m.parent], m.role, m.content,
                 m.tokens, m.created, int(m.complete), m.meta))
            ids.append(inserted_id(cur))
        leaf = None if plan.current_leaf is None else ids[plan.current_leaf]
        store._db.execute("UPDATE conversations SET current_leaf = ? WHERE id = ?",
                          (leaf, conv_id))
    return store.conversation(conv_id)


def import_json(store: ConversationStore, data: Any) -> Conversation:
    """A new conversation from exported JSON (raises ValueError with a reason when malformed;
    then nothing is written)."""
    return write_import(store, plan_import(data))


def read_conversation_file(path: Path | str) -> ImportPlan:
    """Read and check a conversation file (size, encoding, JSON, then :func:`plan_import`);
    raises ValueError with a sentence naming the problem."""
    path = Path(path)
    try:
        size = path.stat().st_size
        if size > MAX_FILE_BYTES:
            raise ValueError(f"{path.name} is {size / 2**20:.0f} MB; conversations of at most "
                             f"{MAX_FILE_BYTES // 2**20} MB can be imported")
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError:
        raise ValueError(f"{path.name} is not UTF-8 text") from None
    except OSError as exc:
        raise ValueError(f"cannot read {path.name}: {exc.strerror or exc}") from None
    try:
        data = json.loads(text)
    except RecursionError:
        raise ValueError(f"{path.name} is nested too deeply to be a conversation") from None
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path.name} is not JSON ({exc.msg}, line {exc.lineno})") from None
    except ValueError:  # a number with thousands of digits (Python's int-string limit)
        raise ValueError(f"{path.name} holds a number too long to be part of a conversation") \
            from None
    return plan_import(data)
