"""The schema and its migrations, numbered by position.

``MIGRATIONS[i]`` takes ``PRAGMA user_version`` from ``i`` to ``i + 1``, each in its own
transaction. To change the schema, append a script; never edit one that has shipped.
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Sequence
from pathlib import Path
from typing import Final

import aiosqlite

from bot.store.errors import SchemaTooNew, StoreError

log = logging.getLogger("bot.store")


# Migration 1: the initial schema. Literal text, not built from the enums, so it never changes
# once shipped; a later migration that adds a state must rebuild the table (SQLite cannot alter
# a CHECK constraint).
_V1 = """
CREATE TABLE sessions (
    id           TEXT PRIMARY KEY,
    platform     TEXT NOT NULL CHECK (platform IN ('discord', 'telegram', 'cli')),
    chat_id      TEXT NOT NULL,
    thread_id    TEXT NOT NULL DEFAULT '',
    owner_id     TEXT NOT NULL,
    state        TEXT NOT NULL CHECK (state IN ('awaiting_image', 'awaiting_prompt', 'generating',
                                              'reviewing', 'assembling', 'finished', 'cancelled')),
    settings     TEXT NOT NULL DEFAULT '{}' CHECK (json_valid(settings)),
    start_image  TEXT,
    first_image  TEXT,
    final_video  TEXT,
    posted       TEXT NOT NULL DEFAULT '{}' CHECK (json_valid(posted)),
    created_at   REAL NOT NULL,
    updated_at   REAL NOT NULL
);
CREATE INDEX sessions_by_place ON sessions (platform, chat_id, thread_id, state);

CREATE TABLE segments (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    session_id      TEXT NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
    idx             INTEGER NOT NULL CHECK (idx >= 0),
    attempt         INTEGER NOT NULL CHECK (attempt >= 1),
    prompt          TEXT NOT NULL,
    negative_prompt TEXT NOT NULL DEFAULT '',
    seed            INTEGER,
    params          TEXT NOT NULL DEFAULT '{}' CHECK (json_valid(params)),
    status          TEXT NOT NULL CHECK (status IN ('queued', 'running', 'done', 'approved',
                                                    'rejected', 'failed', 'cancelled')),
    start_image     TEXT,
    video           TEXT,
    last_frame      TEXT,
    error           TEXT,
    tries           INTEGER NOT NULL DEFAULT 0,
    queue_seq       INTEGER NOT NULL UNIQUE,
    enqueued_at     REAL,
    started_at      REAL,
    finished_at     REAL,
    posted          TEXT NOT NULL DEFAULT '{}' CHECK (json_valid(posted)),
    created_at      REAL NOT NULL,
    updated_at      REAL NOT NULL,
    UNIQUE (session_id, idx, attempt)
);
CREATE INDEX segments_by_status ON segments (status, queue_seq);
"""

# Migration 2: the caption each post was made with, kept for a re-post after a restart; and
# each message of a post is recorded as it is sent (video, frame), so a segment counts as posted
# once both roles have a record. A video posted before this version was posted with everything
# that went with it: its frame role is recorded as "" (nothing to send).
_V2 = """
ALTER TABLE segments ADD COLUMN caption TEXT;
ALTER TABLE sessions ADD COLUMN final_caption TEXT;
UPDATE segments SET posted = json_set(posted, '$.frame', '')
    WHERE json_type(posted, '$.video') IS NOT NULL AND json_type(posted, '$.frame') IS NULL;
"""

# Migration 3: GPU time per job, from the worker's own timing, for the daily per-user quota. One
# row per segment (recording again changes nothing); no foreign key, so deleting a session
# does not hand its GPU time back.
_V3 = """
CREATE TABLE gpu_usage (
    segment_id  INTEGER PRIMARY KEY,
    platform    TEXT NOT NULL,
    owner_id    TEXT NOT NULL,
    seconds     REAL NOT NULL CHECK (seconds >= 0),
    recorded_at REAL NOT NULL
);
CREATE INDEX gpu_usage_by_owner ON gpu_usage (platform, owner_id, recorded_at);
"""

# Migration 4: each take's drift figures (shared.drift), as its worker measured them; NULL for
# a take from before, or from a worker that does not measure them.
_V4 = """
ALTER TABLE segments ADD COLUMN drift TEXT CHECK (drift IS NULL OR json_valid(drift));
"""

# Migration 5: the admins' steering (bot.conversation.admin): banned users, refused like strangers
# on their platform; and bot-wide flags that outlive a restart (the queue paused by /pause).
_V5 = """
CREATE TABLE bans (
    platform   TEXT NOT NULL,
    user_id    TEXT NOT NULL,
    banned_by  TEXT NOT NULL,
    banned_at  REAL NOT NULL,
    PRIMARY KEY (platform, user_id)
);
CREATE TABLE flags (
    name       TEXT PRIMARY KEY,
    value      TEXT NOT NULL,
    set_by     TEXT NOT NULL DEFAULT '',
    updated_at REAL NOT NULL
);
"""

# Migration 6: the web chat is a platform of its own. SQLite cannot alter a CHECK constraint, so
# the sessions table is rebuilt with 'web' allowed (foreign keys are off during migrations, so
# the segments that reference it are kept as they are).
_V6 = """
CREATE TABLE sessions_v6 (
    id           TEXT PRIMARY KEY,
    platform     TEXT NOT NULL CHECK (platform IN ('discord', 'telegram', 'cli', 'web')),
    chat_id      TEXT NOT NULL,
    thread_id    TEXT NOT NULL DEFAULT '',
    owner_id     TEXT NOT NULL,
    state        TEXT NOT NULL CHECK (state IN ('awaiting_image', 'awaiting_prompt', 'generating',
                                              'reviewing', 'assembling', 'finished', 'cancelled')),
    settings     TEXT NOT NULL DEFAULT '{}' CHECK (json_valid(settings)),
    start_image  TEXT,
    first_image  TEXT,
    final_video  TEXT,
    posted       TEXT NOT NULL DEFAULT '{}' CHECK (json_valid(posted)),
    created_at   REAL NOT NULL,
    updated_at   REAL NOT NULL,
    final_caption TEXT
);
INSERT INTO sessions_v6 (id, platform, chat_id, thread_id, owner_id, state, settings, start_image,
                         first_image, final_video, posted, created_at, updated_at, final_caption)
    SELECT id, platform, chat_id, thread_id, owner_id, state, settings, start_image, first_image,
           final_video, posted, created_at, updated_at, final_caption FROM sessions;
DROP TABLE sessions;
ALTER TABLE sessions_v6 RENAME TO sessions;
CREATE INDEX sessions_by_place ON sessions (platform, chat_id, thread_id, state);
"""

# Migration 7: when each refused user was last told they are not allowed (bot.access), so a
# restart does not tell them again at once; rows older than the interval are deleted.
_V7 = """
CREATE TABLE refusal_notices (
    platform TEXT NOT NULL,
    user_id  TEXT NOT NULL,
    told_at  REAL NOT NULL,
    PRIMARY KEY (platform, user_id)
);
CREATE INDEX refusal_notices_by_time ON refusal_notices (told_at);
"""

#: ``MIGRATIONS[i]`` brings ``user_version`` from ``i`` to ``i + 1``. Append only.
MIGRATIONS: Final[tuple[str, ...]] = (_V1, _V2, _V3, _V4, _V5, _V6, _V7)


def _split_sql(script: str) -> list[str]:
    """Split a script into statements (aiosqlite has no executescript that keeps our transaction)."""
    statements: list[str] = []
    buf = ""
    parts = script.split(";")
    for i, part in enumerate(parts):
        buf += part if i == len(parts) - 1 else part + ";"
        # complete_statement knows about string literals and trigger bodies containing ';'.
        if sqlite3.complete_statement(buf):
            if buf.strip(" \t\r\n;"):
                statements.append(buf.strip())
            buf = ""
    if buf.strip():
        raise ValueError(f"migration script ends in an incomplete statement: {buf.strip()[:80]!r}")
    return statements


async def user_version(db: aiosqlite.Connection) -> int:
    rows = list(await db.execute_fetchall("PRAGMA user_version"))
    return int(rows[0][0])


def refuse_newer(path: Path, version: int, known: int) -> None:
    if version > known:
        raise SchemaTooNew(
            f"{path}: the database is at schema version {version}, but this framechain only knows "
            f"versions up to {known}; it was written by a newer framechain. Upgrade framechain, "
            "or point the configuration at another database."
        )


async def migrate(db: aiosqlite.Connection, path: Path, migrations: Sequence[str]) -> int:
    """Apply the pending migrations, one transaction each; return the final version."""
    target = len(migrations)
    # A new database is created, not migrated step by step: one line says so.
    fresh = await user_version(db) == 0
    if fresh:
        log.info("creating the database %s (schema version %d)", path, target)
    while True:
        version = await user_version(db)
        refuse_newer(path, version, target)
        if version == target:
            return version
        await db.execute("BEGIN IMMEDIATE")
        try:
            # Another process may have migrated while we waited for the write lock.
            version = await user_version(db)
            refuse_newer(path, version, target)
            if version < target:
                (log.debug if fresh else log.info)(
                    "migrating %s from schema version %d to %d", path, version, version + 1
                )
                for statement in _split_sql(migrations[version]):
                    await db.execute(statement)
                # Migrations run with foreign keys off (so tables can be rebuilt); check at the end.
                broken = list(await db.execute_fetchall("PRAGMA foreign_key_check"))
                if broken:
                    raise StoreError(f"{path}: migration {version + 1} broke foreign keys: {broken[:5]}")
                await db.execute(f"PRAGMA user_version = {version + 1:d}")
            await db.execute("COMMIT")
        except BaseException:
            await db.execute("ROLLBACK")
            raise
