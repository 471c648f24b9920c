"""The web chat's message history: what the platform's server keeps, as Telegram and Discord keep
theirs. The bot's own store records which message ids it posted; this log holds the messages
themselves (text, media paths in the data dir, buttons), so a page opened after a restart shows
the whole conversation and its buttons still work.

One small SQLite file of its own (``<data_dir>/web-chat.db``), beside the bot's database: the
web platform is a chat platform, and its messages are not the conversation service's data.
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiosqlite

_SCHEMA = """
CREATE TABLE IF NOT EXISTS threads (
    user     TEXT NOT NULL,
    id       TEXT NOT NULL,
    created  REAL NOT NULL,
    PRIMARY KEY (user, id)
);
CREATE TABLE IF NOT EXISTS messages (
    id       INTEGER PRIMARY KEY AUTOINCREMENT,
    user     TEXT NOT NULL,
    thread   TEXT NOT NULL,
    author   TEXT NOT NULL CHECK (author IN ('bot', 'you')),
    text     TEXT NOT NULL DEFAULT '',
    media    TEXT NOT NULL DEFAULT '[]',
    controls TEXT NOT NULL DEFAULT '[]',
    note     TEXT NOT NULL DEFAULT '',
    deleted  INTEGER NOT NULL DEFAULT 0,
    version  INTEGER NOT NULL DEFAULT 1,
    created  REAL NOT NULL,
    send_key TEXT
);
CREATE INDEX IF NOT EXISTS messages_by_thread ON messages (user, thread, id);
"""
#: A bot message sent again with the key it was first sent with (after a crash left it in doubt)
#: is the one already there, never a second copy: the web platform deduplicates without limit.
_KEYS = "CREATE UNIQUE INDEX IF NOT EXISTS messages_by_key ON messages (user, send_key) WHERE send_key IS NOT NULL"

#: A conversation's title before its first prompt (not "New video": that is the button beside it).
UNTITLED = "Untitled video"

#: What a user's message shows for the picture they sent with it.
PICTURE_MARK = "🖼"

#: Media kinds a message can show.
VIDEO = "video"
IMAGE = "image"


@dataclass(frozen=True)
class Message:
    id: int
    user: str
    thread: str
    author: str
    text: str
    #: (kind, path) pairs: paths the bot gave, in the data dir; never anything a user sent.
    media: tuple[tuple[str, str], ...] = ()
    controls: tuple[tuple[str, str], ...] = ()
    note: str = ""
    deleted: bool = False
    version: int = 1

    def view(self) -> dict[str, Any]:
        """What the page gets: media by message id and position, never by path."""
        return {
            "id": self.id,
            "thread": self.thread,
            "author": self.author,
            "text": self.text,
            # A picture can change (a progress message's previews): its address carries the version.
            "media": [
                {"kind": k, "url": f"/media/{self.id}/{i}" + (f"?v={self.version}" if k == IMAGE else "")}
                for i, (k, _) in enumerate(self.media)
            ],
            "controls": [{"label": label, "data": data} for label, data in self.controls],
            "note": self.note,
            "deleted": self.deleted,
            "version": self.version,
        }


@dataclass(frozen=True)
class Thread:
    id: str
    created: float
    title: str = ""
    #: Messages in it (deleted ones not counted).
    messages: int = 0

    def view(self) -> dict[str, Any]:
        return {"id": self.id, "title": self.title or UNTITLED, "messages": self.messages}


def _message(row: aiosqlite.Row) -> Message:
    return Message(
        id=row["id"],
        user=row["user"],
        thread=row["thread"],
        author=row["author"],
        text=row["text"],
        media=tuple((str(k), str(p)) for k, p in json.loads(row["media"])),
        controls=tuple((str(label), str(data)) for label, data in json.loads(row["controls"])),
        note=row["note"],
        deleted=bool(row["deleted"]),
        version=row["version"],
    )


class MessageLog:
    """The messages of every web conversation. One aiosqlite connection; each call is one
    statement (or one short transaction), so nothing needs a lock of ours."""

    def __init__(self, db: aiosqlite.Connection) -> None:
        self._db = db

    @classmethod
    async def open(cls, path: Path) -> MessageLog:
        path.parent.mkdir(parents=True, exist_ok=True)
        db = await aiosqlite.connect(path)
        db.row_factory = aiosqlite.Row
        await db.execute("PRAGMA journal_mode = WAL")
        await db.executescript(_SCHEMA)
        columns = {row["name"] for row in await db.execute_fetchall("PRAGMA table_info(messages)")}
        if "send_key" not in columns:  # a log written before messages had keys
            await db.execute("ALTER TABLE messages ADD COLUMN send_key TEXT")
        await db.execute(_KEYS)
        await db.commit()
        return cls(db)

    async def close(self) -> None:
        await self._db.close()

    # --- threads -----------------------------------------------------------------------------

    async def new_thread(self, user: str) -> str:
        thread = secrets.token_hex(6)
        await self._db.execute("INSERT INTO threads (user, id, created) VALUES (?, ?, ?)", (user, thread, time.time()))
        await self._db.commit()
        return thread

    async def has_thread(self, user: str, thread: str) -> bool:
        rows = list(await self._db.execute_fetchall("SELECT 1 FROM threads WHERE user = ? AND id = ?", (user, thread)))
        return bool(rows)

    async def threads(self, user: str) -> list[Thread]:
        """The user's conversations, newest first, each titled by its first prompt (not a
        /command, not a picture alone, without the picture's mark)."""
        rows = await self._db.execute_fetchall(
            "SELECT t.id, t.created,"
            " (SELECT text FROM messages m WHERE m.user = t.user AND m.thread = t.id AND m.author = 'you'"
            "  AND m.text NOT IN ('', :mark) AND m.text NOT LIKE '/%' AND m.text NOT LIKE :mark || ' /%'"
            "  ORDER BY m.id LIMIT 1) AS title,"
            " (SELECT count(*) FROM messages m WHERE m.user = t.user AND m.thread = t.id AND NOT m.deleted) AS n"
            " FROM threads t WHERE t.user = :user ORDER BY t.created DESC, t.rowid DESC",
            {"user": user, "mark": PICTURE_MARK},
        )
        titles = [(r["title"] or "").removeprefix(PICTURE_MARK + " ") for r in rows]
        return [Thread(r["id"], r["created"], title[:80], r["n"]) for r, title in zip(rows, titles, strict=True)]

    # --- messages ----------------------------------------------------------------------------

    async def add(
        self,
        user: str,
        thread: str,
        author: str,
        text: str,
        *,
        media: Sequence[tuple[str, str]] = (),
        controls: Sequence[tuple[str, str]] = (),
        key: str | None = None,
    ) -> Message:
        """A new message; with ``key``, the message already added with that key if there is one."""
        if key is not None:
            known = list(
                await self._db.execute_fetchall("SELECT id FROM messages WHERE user = ? AND send_key = ?", (user, key))
            )
            if known:
                return await self.get(int(known[0]["id"]))
        # A thread the bot writes to exists (the service may speak in one after a restart).
        await self._db.execute(
            "INSERT OR IGNORE INTO threads (user, id, created) VALUES (?, ?, ?)", (user, thread, time.time())
        )
        cursor = await self._db.execute(
            "INSERT INTO messages (user, thread, author, text, media, controls, created, send_key)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (user, thread, author, text, json.dumps(list(media)), json.dumps(list(controls)), time.time(), key),
        )
        await self._db.commit()
        assert cursor.lastrowid is not None
        return await self.get(cursor.lastrowid)

    async def get(self, message_id: int) -> Message:
        rows = list(await self._db.execute_fetchall("SELECT * FROM messages WHERE id = ?", (message_id,)))
        if not rows:
            raise KeyError(message_id)
        return _message(rows[0])

    async def find(self, message_id: int) -> Message | None:
        try:
            return await self.get(message_id)
        except KeyError:
            return None

    async def update(self, message_id: int, **columns: Any) -> Message:
        """Change ``text``, ``media``, ``controls``, ``note`` or ``deleted``; the version goes up
        (the page keeps the newest, and a picture's address changes with it)."""
        encoded = {k: json.dumps(list(v)) if k in ("media", "controls") else v for k, v in columns.items()}
        sets = ", ".join(f"{name} = ?" for name in encoded)
        cursor = await self._db.execute(
            f"UPDATE messages SET {sets}, version = version + 1 WHERE id = ?", (*encoded.values(), message_id)
        )
        await self._db.commit()
        if cursor.rowcount == 0:
            raise KeyError(message_id)
        return await self.get(message_id)

    async def history(self, user: str, thread: str) -> list[Message]:
        rows = await self._db.execute_fetchall(
            "SELECT * FROM messages WHERE user = ? AND thread = ? AND NOT deleted ORDER BY id", (user, thread)
        )
        return [_message(r) for r in rows]
