"""Conversations in and out: Markdown (the branch on screen) and JSON (the whole tree).

The JSON keeps every branch, so export → import gives the same conversation back. Import also
accepts a plain ``{"messages": [{"role": ..., "content": ...}, ...]}`` (OpenAI style) or a bare
list of such messages, read as one linear conversation. No Qt here.
"""

from __future__ import annotations

import json
import time
from collections import deque
from typing import Any

from studio.pipelines.chat.store import Conversation, ConversationStore
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


def _linear(messages: list[Any]) -> list[dict[str, Any]]:
    out, parent = [], None
    for i, m in enumerate(messages, start=1):
        out.append({**m, "id": i, "parent_id": parent})
        parent = i
    return out


def import_json(store: ConversationStore, data: Any) -> Conversation:
    """A new conversation from exported JSON (raises ValueError with a reason when malformed)."""
    if isinstance(data, list):
        data = {"messages": data}
    if not isinstance(data, dict) or not isinstance(data.get("messages"), list):
        raise ValueError("not a conversation: expected an object with a 'messages' list")
    if data.get("format") not in (None, FORMAT):
        raise ValueError(f"unknown format {data.get('format')!r}")
    messages = data["messages"]
    system = str(data.get("system_prompt") or "")
    if "id" not in (messages[0] if messages and isinstance(messages[0], dict) else {}):
        # OpenAI-style list: a leading system message becomes the system prompt.
        if messages and isinstance(messages[0], dict) and messages[0].get("role") == "system":
            system, messages = str(messages[0].get("content", "")), messages[1:]
        messages = _linear(messages)
    for m in messages:
        if not isinstance(m, dict) or m.get("role") not in ROLES \
                or not isinstance(m.get("content"), str):
            raise ValueError(f"bad message {str(m)[:80]}: needs a role {ROLES} and text content")
    known = {m["id"] for m in messages}
    title = str(data.get("title") or "Imported conversation")
    with store.transaction():
        now = time.time()
        cur = store._db.execute(
            "INSERT INTO conversations (title, system_prompt, model, settings, created, updated) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            (title, system, str(data.get("model") or ""),
             json.dumps(data.get("settings") or {}),
             float(data.get("created") or now), now))
        conv_id = int(cur.lastrowid)
        new_ids: dict[Any, int] = {}
        children: dict[Any, list[dict[str, Any]]] = {}
        for m in messages:
            parent = m.get("parent_id")
            children.setdefault(parent if parent in known else None, []).append(m)
        queue = deque(children.get(None, []))  # parents are written before their replies
        while queue:
            m = queue.popleft()
            cur = store._db.execute(
                "INSERT INTO messages (conversation_id, parent_id, role, content, tokens, "
                "created, complete, meta) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (conv_id, new_ids.get(m.get("parent_id")), m["role"], m["content"],
                 int(m.get("tokens") or 0), float(m.get("created") or now),
                 int(bool(m.get("complete", True))), json.dumps(m.get("meta") or {})))
            new_ids[m["id"]] = int(cur.lastrowid)
            queue += children.get(m["id"], [])
        if len(new_ids) != len(messages):
            raise ValueError("some messages' parent links form a loop")
        leaf = data.get("current_leaf")
        leaf = new_ids.get(leaf) if leaf in new_ids else (max(new_ids.values())
                                                          if new_ids else None)
        store._db.execute("UPDATE conversations SET current_leaf = ? WHERE id = ?",
                          (leaf, conv_id))
    return store.conversation(conv_id)
