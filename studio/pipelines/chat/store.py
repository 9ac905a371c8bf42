"""Conversations that last: SQLite (WAL) with branching messages and full-text search.

Messages form a tree: each has a parent, and editing a user message and sending it again adds a
*sibling* — the old branch stays and can be switched back to. A conversation remembers the leaf it
shows (``current_leaf``); the view is the path from the root to that leaf. Every write commits at
once (WAL, ``synchronous=NORMAL``: a killed process loses nothing committed), and a streaming
reply is written every few tokens by :class:`StreamingSaver`, so a crash loses at most a moment
of text. Export to Markdown/JSON and import from JSON live in :mod:`.transfer`. No Qt here.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

SCHEMA = """
CREATE TABLE IF NOT EXISTS conversations (
    id INTEGER PRIMARY KEY,
    title TEXT NOT NULL DEFAULT '',
    system_prompt TEXT NOT NULL DEFAULT '',
    model TEXT NOT NULL DEFAULT '',
    settings TEXT NOT NULL DEFAULT '{}',
    current_leaf INTEGER,
    created REAL NOT NULL,
    updated REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS messages (
    id INTEGER PRIMARY KEY,
    conversation_id INTEGER NOT NULL REFERENCES conversations(id) ON DELETE CASCADE,
    parent_id INTEGER REFERENCES messages(id) ON DELETE SET NULL,
    role TEXT NOT NULL,
    content TEXT NOT NULL DEFAULT '',
    tokens INTEGER NOT NULL DEFAULT 0,
    created REAL NOT NULL,
    complete INTEGER NOT NULL DEFAULT 1,
    meta TEXT NOT NULL DEFAULT '{}'
);
CREATE INDEX IF NOT EXISTS messages_by_parent ON messages(conversation_id, parent_id);
CREATE VIRTUAL TABLE IF NOT EXISTS messages_fts USING fts5(
    content, content='messages', content_rowid='id');
"""


def fts_triggers(table: str, column: str, updates: bool = True) -> str:
    """The triggers that keep ``<table>_fts`` (an external-content FTS5 index over ``column``)
    in step with ``table``: on insert, delete and (``updates``) a change of the column."""
    fts = f"{table}_fts"
    delete = f"INSERT INTO {fts}({fts}, rowid, {column}) VALUES ('delete', old.id, old.{column});"
    insert = f"INSERT INTO {fts}(rowid, {column}) VALUES (new.id, new.{column});"
    sql = (f"CREATE TRIGGER IF NOT EXISTS {table}_ai AFTER INSERT ON {table} BEGIN {insert} END;\n"
           f"CREATE TRIGGER IF NOT EXISTS {table}_ad AFTER DELETE ON {table} BEGIN {delete} END;\n")
    if updates:
        sql += (f"CREATE TRIGGER IF NOT EXISTS {table}_au AFTER UPDATE OF {column} ON {table} "
                f"BEGIN {delete} {insert} END;\n")
    return sql


SCHEMA += fts_triggers("messages", "content")

#: The documents attached to conversations and named collections (retrieval, see
#: :mod:`.documents`): files, their passages, an FTS5 index over the passages (BM25) and,
#: when an embedding model was found, each passage's vector.
DOCUMENTS_SCHEMA = """
CREATE TABLE IF NOT EXISTS doc_collections (
    id INTEGER PRIMARY KEY,
    name TEXT UNIQUE,  -- NULL: the files attached to one conversation
    conversation_id INTEGER UNIQUE REFERENCES conversations(id) ON DELETE CASCADE,
    created REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS doc_files (
    id INTEGER PRIMARY KEY,
    collection_id INTEGER NOT NULL REFERENCES doc_collections(id) ON DELETE CASCADE,
    path TEXT NOT NULL,
    size INTEGER NOT NULL DEFAULT 0,
    mtime REAL NOT NULL DEFAULT 0,
    sha256 TEXT NOT NULL DEFAULT '',
    status TEXT NOT NULL DEFAULT 'ok',  -- ok | skipped
    note TEXT NOT NULL DEFAULT '',
    pages INTEGER NOT NULL DEFAULT 0,
    indexed REAL NOT NULL DEFAULT 0,
    UNIQUE (collection_id, path)
);
CREATE TABLE IF NOT EXISTS doc_chunks (
    id INTEGER PRIMARY KEY,
    file_id INTEGER NOT NULL REFERENCES doc_files(id) ON DELETE CASCADE,
    ord INTEGER NOT NULL,
    page INTEGER NOT NULL DEFAULT 0,  -- 1-based page of a PDF; 0: a file without pages
    text TEXT NOT NULL,
    vector BLOB,
    vector_model TEXT NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS doc_chunks_by_file ON doc_chunks(file_id);
CREATE VIRTUAL TABLE IF NOT EXISTS doc_chunks_fts USING fts5(
    text, content='doc_chunks', content_rowid='id', tokenize='porter unicode61');
""" + fts_triggers("doc_chunks", "text", updates=False)  # a passage's text never changes

#: The named collection a conversation answers from (its own attached files are found by
#: ``doc_collections.conversation_id``); deleting the collection leaves the conversation on none.
CONVERSATION_COLLECTION = """
ALTER TABLE conversations ADD COLUMN doc_collection_id INTEGER
    REFERENCES doc_collections(id) ON DELETE SET NULL;
"""

#: Schema changes after the first release, in order: ``PRAGMA user_version`` says how many of
#: them a database has had; opening it applies the rest, each in one transaction.
MIGRATIONS = (DOCUMENTS_SCHEMA, CONVERSATION_COLLECTION)


def migrate(db: sqlite3.Connection) -> None:
    """Bring a conversations database up to :data:`MIGRATIONS` (a newer one is left alone)."""
    version = int(db.execute("PRAGMA user_version").fetchone()[0])
    for number, script in enumerate(MIGRATIONS[version:], start=version + 1):
        db.executescript(f"BEGIN;\n{script}\nPRAGMA user_version = {number};\nCOMMIT;")


def inserted_id(cursor: sqlite3.Cursor) -> int:
    """The row id an INSERT just made (sqlite3 sets it for every successful INSERT)."""
    if cursor.lastrowid is None:
        raise sqlite3.DatabaseError("the database gave no id for the new row")
    return int(cursor.lastrowid)


@dataclass
class Conversation:
    """One conversation's header (its messages are read with :meth:`ConversationStore.path`)."""

    id: int
    title: str
    system_prompt: str = ""
    model: str = ""
    settings: dict[str, Any] = field(default_factory=dict)
    current_leaf: int | None = None
    created: float = 0.0
    updated: float = 0.0
    doc_collection_id: int | None = None  # the named document collection it answers from


@dataclass
class Message:
    """A message; ``sibling_index``/``sibling_count`` place it among its alternative branches."""

    id: int
    conversation_id: int
    parent_id: int | None
    role: str
    content: str
    tokens: int = 0
    created: float = 0.0
    complete: bool = True
    meta: dict[str, Any] = field(default_factory=dict)
    sibling_index: int = 0
    sibling_count: int = 1


#: What FTS5's snippet() puts around each match: private-use characters no message contains,
#: so brackets a person typed are never taken for a match.
MATCH_START, MATCH_END = "\ue000", "\ue001"


@dataclass
class SearchHit:
    """A conversation that matches a search. ``parts`` is the snippet as runs of
    ``(text, is_match)`` for showing the matches highlighted; ``snippet`` is the same text with
    each match in [brackets], for plain-text output."""

    conversation_id: int
    title: str
    message_id: int | None  # None: the title matched
    snippet: str
    parts: list[tuple[str, bool]] = field(default_factory=list)
    updated: float = 0.0  # when the conversation was last changed


def marked_parts(marked: str) -> list[tuple[str, bool]]:
    """Split text with :data:`MATCH_START` / :data:`MATCH_END` marks into ``(text, is_match)``."""
    parts: list[tuple[str, bool]] = []
    for i, piece in enumerate(marked.split(MATCH_START)):
        if i == 0:
            inside, after = "", piece
        else:
            inside, _, after = piece.partition(MATCH_END)
        if inside:
            parts.append((inside, True))
        if after:
            parts.append((after, False))
    return parts


def _match_in(text: str, query: str) -> list[tuple[str, bool]]:
    """``text`` as parts with the first case-insensitive occurrence of ``query`` marked."""
    at = text.lower().find(query.lower()) if query else -1
    if at < 0:
        return [(text, False)] if text else []
    parts = [(text[:at], False), (text[at:at + len(query)], True), (text[at + len(query):], False)]
    return [p for p in parts if p[0]]


def _bracketed(parts: list[tuple[str, bool]]) -> str:
    return "".join(f"[{text}]" if match else text for text, match in parts)


def _conversation(row: sqlite3.Row) -> Conversation:
    return Conversation(row["id"], row["title"], row["system_prompt"], row["model"],
                        json.loads(row["settings"] or "{}"), row["current_leaf"], row["created"],
                        row["updated"], row["doc_collection_id"])


def _message(row: sqlite3.Row) -> Message:
    return Message(row["id"], row["conversation_id"], row["parent_id"], row["role"],
                   row["content"], row["tokens"], row["created"], bool(row["complete"]),
                   json.loads(row["meta"] or "{}"))


def fts_query(text: str) -> str:
    """User text as a safe FTS5 query: every word quoted, the last one a prefix."""
    words = [w.replace('"', '""') for w in text.split() if w.strip('"')]
    if not words:
        return ""
    return " ".join(f'"{w}"' for w in words[:-1]) + f' "{words[-1]}"*'


class ConversationStore:
    """The conversations database (one connection, usable from any thread, one at a time)."""

    def __init__(self, path: Path | str) -> None:
        self.file = Path(path)
        if str(path) != ":memory:":
            self.file.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.RLock()
        self._db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
        self._db.row_factory = sqlite3.Row
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute("PRAGMA foreign_keys=ON")
        self._db.executescript(SCHEMA)
        migrate(self._db)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def _run(self, sql: str, args: tuple = ()) -> sqlite3.Cursor:
        with self._lock:
            return self._db.execute(sql, args)

    def execute(self, sql: str, args: tuple = ()) -> sqlite3.Cursor:
        """One statement on the database (other stores sharing this file use it; :mod:`.documents`)."""
        return self._run(sql, args)

    def transaction(self) -> AbstractContextManager[None]:
        """``with store.transaction():`` groups writes into one commit (imports, bulk adds)."""
        store = self

        class _Tx:
            def __enter__(self) -> None:
                store._lock.acquire()
                store._db.execute("BEGIN")

            def __exit__(self, kind: Any, *_: Any) -> None:
                try:
                    if kind:
                        store._db.execute("ROLLBACK")
                        return
                    try:
                        store._db.execute("COMMIT")
                    except sqlite3.Error:  # disk full at commit: nothing of it stays
                        if store._db.in_transaction:
                            store._db.execute("ROLLBACK")
                        raise
                finally:
                    store._lock.release()

        return _Tx()

    # -- conversations -------------------------------------------------------------------------
    def create_conversation(self, title: str = "", system_prompt: str = "", model: str = "",
                            settings: dict[str, Any] | None = None) -> Conversation:
        now = time.time()
        cur = self._run("INSERT INTO conversations (title, system_prompt, model, settings, "
                        "created, updated) VALUES (?, ?, ?, ?, ?, ?)",
                        (title, system_prompt, model, json.dumps(settings or {}), now, now))
        return self.conversation(inserted_id(cur))

    def conversation(self, conversation_id: int) -> Conversation:
        row = self._run("SELECT * FROM conversations WHERE id = ?", (conversation_id,)).fetchone()
        if row is None:
            raise KeyError(f"no conversation {conversation_id}")
        return _conversation(row)

    def conversations(self, limit: int | None = None) -> list[Conversation]:
        """All conversations, the most recently used first."""
        sql = "SELECT * FROM conversations ORDER BY updated DESC, id DESC"
        if limit:
            sql += f" LIMIT {int(limit)}"
        return [_conversation(r) for r in self._run(sql)]

    def update_conversation(self, conversation_id: int, **fields: Any) -> None:
        """Change title, system_prompt, model, settings or current_leaf."""
        allowed = {"title", "system_prompt", "model", "settings", "current_leaf"}
        if unknown := set(fields) - allowed:
            raise ValueError(f"unknown conversation fields {sorted(unknown)}")
        if "settings" in fields:
            fields["settings"] = json.dumps(fields["settings"])
        sets = ", ".join(f"{k} = ?" for k in fields)
        self._run(f"UPDATE conversations SET {sets}, updated = ? WHERE id = ?",
                  (*fields.values(), time.time(), conversation_id))

    def rename(self, conversation_id: int, title: str) -> None:
        self.update_conversation(conversation_id, title=title)

    def delete_conversation(self, conversation_id: int) -> None:
        with self.transaction():
            self._db.execute("DELETE FROM messages WHERE conversation_id = ?", (conversation_id,))
            self._db.execute("DELETE FROM conversations WHERE id = ?", (conversation_id,))

    # -- messages ----------------------------------------------------------------------------
    def add_message(self, conversation_id: int, role: str, content: str, *,
                    parent_id: int | None | str = "leaf", tokens: int = 0,
                    complete: bool = True, meta: dict[str, Any] | None = None) -> Message:
        """Append a message under ``parent_id`` (default: the current leaf); it becomes the leaf."""
        with self._lock:
            if parent_id == "leaf":
                parent_id = self.conversation(conversation_id).current_leaf
            now = time.time()
            cur = self._db.execute(
                "INSERT INTO messages (conversation_id, parent_id, role, content, tokens, created,"
                " complete, meta) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (conversation_id, parent_id, role, content, tokens, now, int(complete),
                 json.dumps(meta or {})))
            message_id = inserted_id(cur)
            self._db.execute("UPDATE conversations SET current_leaf = ?, updated = ? WHERE id = ?",
                             (message_id, now, conversation_id))
        return self.message(message_id)

    def message(self, message_id: int) -> Message:
        row = self._run("SELECT * FROM messages WHERE id = ?", (message_id,)).fetchone()
        if row is None:
            raise KeyError(f"no message {message_id}")
        return _message(row)

    def update_message(self, message_id: int, *, content: str | None = None,
                       tokens: int | None = None, complete: bool | None = None,
                       meta: dict[str, Any] | None = None) -> None:
        fields: dict[str, Any] = {}
        if content is not None:
            fields["content"] = content
        if tokens is not None:
            fields["tokens"] = tokens
        if complete is not None:
            fields["complete"] = int(complete)
        if meta is not None:
            fields["meta"] = json.dumps(meta)
        if fields:
            sets = ", ".join(f"{k} = ?" for k in fields)
            self._run(f"UPDATE messages SET {sets} WHERE id = ?", (*fields.values(), message_id))

    def delete_message(self, message_id: int) -> None:
        """Remove one message; its replies move up to its parent, so the rest stays."""
        with self.transaction():
            row = self._db.execute("SELECT conversation_id, parent_id FROM messages WHERE id = ?",
                                   (message_id,)).fetchone()
            if row is None:
                return
            conv, parent = row["conversation_id"], row["parent_id"]
            self._db.execute("UPDATE messages SET parent_id = ? WHERE parent_id = ?",
                             (parent, message_id))
            self._db.execute("DELETE FROM messages WHERE id = ?", (message_id,))
            leaf = self._db.execute("SELECT current_leaf FROM conversations WHERE id = ?",
                                    (conv,)).fetchone()["current_leaf"]
            if leaf == message_id:
                self._db.execute("UPDATE conversations SET current_leaf = ? WHERE id = ?",
                                 (parent, conv))

    def children(self, conversation_id: int, parent_id: int | None) -> list[int]:
        """Ids of the messages answering ``parent_id`` (None: the first messages), oldest first."""
        rows = self._run("SELECT id FROM messages WHERE conversation_id = ? AND parent_id IS ? "
                         "ORDER BY id", (conversation_id, parent_id))
        return [r["id"] for r in rows]

    def latest_leaf(self, message_id: int) -> int:
        """The end of the newest branch below ``message_id`` (itself when it has no replies)."""
        msg = self.message(message_id)
        current = msg.id
        while kids := self.children(msg.conversation_id, current):
            current = kids[-1]
        return current

    def switch_branch(self, message_id: int) -> int:
        """Show the branch through ``message_id``; returns the new leaf."""
        leaf = self.latest_leaf(message_id)
        conv = self.message(message_id).conversation_id
        self._run("UPDATE conversations SET current_leaf = ? WHERE id = ?", (leaf, conv))
        return leaf

    def path(self, conversation_id: int, leaf: int | None | str = "current") -> list[Message]:
        """The messages from the root to ``leaf`` (default: the conversation's current leaf)."""
        if leaf == "current":
            leaf = self.conversation(conversation_id).current_leaf
        if leaf is None:
            return []
        rows = self._run(
            "WITH RECURSIVE up(id, depth) AS (SELECT id, 0 FROM messages WHERE id = ? "
            "UNION ALL SELECT m.parent_id, up.depth + 1 FROM messages m JOIN up ON m.id = up.id "
            "WHERE m.parent_id IS NOT NULL) "
            "SELECT m.* FROM up JOIN messages m ON m.id = up.id ORDER BY up.depth DESC",
            (leaf,)).fetchall()
        messages = [_message(r) for r in rows]
        groups: dict[Any, list[int]] = {}
        for r in self._run("SELECT id, parent_id FROM messages WHERE conversation_id = ? "
                           "ORDER BY id", (conversation_id,)):
            groups.setdefault(r["parent_id"], []).append(r["id"])
        for m in messages:
            siblings = groups.get(m.parent_id, [m.id])
            m.sibling_count = len(siblings)
            m.sibling_index = siblings.index(m.id) if m.id in siblings else 0
        return messages

    def message_count(self, conversation_id: int) -> int:
        return int(self._run("SELECT COUNT(*) FROM messages WHERE conversation_id = ?",
                             (conversation_id,)).fetchone()[0])

    # -- search ------------------------------------------------------------------------------
    def search(self, text: str, limit: int = 100) -> list[SearchHit]:
        """Conversations whose title or messages match ``text`` (FTS5), best matches first."""
        query = fts_query(text)
        if not query:
            return []
        hits: list[SearchHit] = []
        seen: set[int] = set()
        like = f"%{text.strip()}%"
        for r in self._run("SELECT id, title, updated FROM conversations WHERE title LIKE ? "
                           "ORDER BY updated DESC LIMIT ?", (like, limit)):
            parts = _match_in(r["title"], text.strip())
            hits.append(SearchHit(r["id"], r["title"], None, _bracketed(parts), parts,
                                  r["updated"]))
            seen.add(r["id"])
        rows = self._run(
            "SELECT m.id, m.conversation_id, c.title, c.updated, "
            f"snippet(messages_fts, 0, '{MATCH_START}', '{MATCH_END}', '…', 12) AS snip "
            "FROM messages_fts JOIN messages m ON m.id = messages_fts.rowid "
            "JOIN conversations c ON c.id = m.conversation_id "
            "WHERE messages_fts MATCH ? ORDER BY bm25(messages_fts) LIMIT ?",
            (query, limit * 4))
        for r in rows:
            if r["conversation_id"] in seen:
                continue
            seen.add(r["conversation_id"])
            parts = marked_parts(r["snip"])
            hits.append(SearchHit(r["conversation_id"], r["title"], r["id"], _bracketed(parts),
                                  parts, r["updated"]))
        return hits[:limit]


CHAT_IMAGES = "chat-images"  # beside the database: the images attached to conversations


def keep_image(source: Path, database: Path) -> Path:
    """A copy of the image ``source`` stored with the conversations (a ``chat-images`` folder
    beside ``database``, named by the file's SHA-256), so a conversation keeps its images when
    the original is moved or deleted. The same image is stored once."""
    import hashlib
    import shutil

    from studio.core.files import atomic_write

    source = Path(source)
    digest = hashlib.sha256()
    with open(source, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    target = Path(database).parent / CHAT_IMAGES / f"{digest.hexdigest()[:24]}" \
        f"{source.suffix.lower() or '.png'}"
    if not target.is_file():
        target.parent.mkdir(parents=True, exist_ok=True)
        with open(source, "rb") as fh:
            atomic_write(target, lambda out: shutil.copyfileobj(fh, out))
    return target


def write_failure(exc: BaseException) -> str:
    """Why a write to the conversations database failed and what to do, as a user reads it."""
    text = str(exc)
    low = text.lower()
    if "disk is full" in low or "no space" in low:
        return "the disk is full; free some space on it"
    if "readonly" in low or "read-only" in low:
        return "the conversations database is read-only; make it writable"
    if "locked" in low or "busy" in low:
        return "the conversations database is in use by another program; close it"
    return f"the conversations database refused it ({text})"


class StreamingSaver:
    """Writes a reply being streamed into its message row every few tokens or moments.

    A failed write (disk full, database read-only) never escapes: the text stays in :attr:`text`,
    :attr:`error` says what went wrong, later saves try again (so the reply catches up when space
    returns) and :meth:`finish` can be called again until it returns True.
    """

    def __init__(self, store: ConversationStore, message_id: int, every_tokens: int = 8,
                 every_seconds: float = 0.5) -> None:
        self.store = store
        self.message_id = message_id
        self.every_tokens = every_tokens
        self.every_seconds = every_seconds
        self.text = ""
        self.tokens = 0
        self.error: sqlite3.Error | None = None
        self.meta: dict[str, Any] | None = None
        self._saved_tokens = 0
        self._saved_at = time.monotonic()

    def add(self, text: str, tokens: int) -> None:
        self.text += text
        self.tokens = tokens
        if (tokens - self._saved_tokens >= self.every_tokens
                or time.monotonic() - self._saved_at >= self.every_seconds):
            self.save()

    def _write(self, **fields: Any) -> bool:
        try:
            self.store.update_message(self.message_id, content=self.text, tokens=self.tokens,
                                      **fields)
        except sqlite3.Error as exc:
            self.error = exc
            return False
        self.error = None
        return True

    def save(self) -> bool:
        """Write the text so far; False (and :attr:`error` set) when the database refused it."""
        saved = self._write()
        self._saved_tokens = self.tokens
        self._saved_at = time.monotonic()
        return saved

    def finish(self, meta: dict[str, Any] | None = None) -> bool:
        """The reply is complete (or was stopped): the final text, marked complete.

        False when the database refused it; call :meth:`retry` (or this again) later.
        """
        self.meta = meta
        return self._write(complete=True, meta=meta)

    def retry(self) -> bool:
        """Save the finished reply again (after a failed :meth:`finish`)."""
        return self.finish(self.meta)

    @property
    def failure(self) -> str:
        """The sentence to show when the last write failed ("" when it did not)."""
        if self.error is None:
            return ""
        return (f"This reply could not be saved: {write_failure(self.error)}, then click Save "
                "again. It is kept here meanwhile (sending a message saves it first).")
