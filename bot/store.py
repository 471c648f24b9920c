"""The SQLite store: sessions and their segments. All of framechain's SQL lives in this module.

One aiosqlite connection per :class:`Store`, in WAL mode with foreign keys on and a busy timeout,
so several stores (or processes) can share one file. Every write that spans more than one
statement runs inside ``BEGIN IMMEDIATE``: it takes the write lock up front, so it waits on the
busy timeout instead of failing with "database is locked" when it upgrades from reading.

Tasks sharing one Store are serialised by an asyncio lock; the task that holds
:meth:`Store.transaction` may call any other method inside it, and those calls join the
transaction.

Schema changes are :data:`MIGRATIONS`, numbered by position: ``MIGRATIONS[i]`` takes
``PRAGMA user_version`` from ``i`` to ``i + 1``, each in its own transaction. To change the
schema, append a script; never edit one that has shipped.

Timestamps are unix seconds (float, UTC). Platform ids (chat, thread, user) are stored as text;
a session without a thread has ``thread_id == ""``. Session ids are uuid4 hex (they name the
media folder ``sessions/<session_id>/``); segment ids are integers.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import sqlite3
import time
import uuid
from collections.abc import AsyncIterator, Callable, Collection, Generator, Iterable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from enum import Enum, StrEnum
from pathlib import Path
from types import TracebackType
from typing import Any, Final

import aiosqlite

from bot.core import State

log = logging.getLogger(__name__)

__all__ = [
    "MIGRATIONS",
    "OVER",
    "PENDING",
    "UNSET",
    "Conflict",
    "NotFound",
    "Platform",
    "SchemaTooNew",
    "SegmentRow",
    "SegmentStatus",
    "SessionRow",
    "SessionState",
    "Store",
    "StoreError",
    "create_database_at_version",
]


class Platform(StrEnum):
    DISCORD = "discord"
    TELEGRAM = "telegram"
    CLI = "cli"


#: A session's state is the conversation core's: one definition of the states.
SessionState = State


class SegmentStatus(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    APPROVED = "approved"
    REJECTED = "rejected"
    FAILED = "failed"
    CANCELLED = "cancelled"


#: Segments the dispatcher still owes work for.
PENDING: Final = (SegmentStatus.QUEUED, SegmentStatus.RUNNING)
#: Sessions that are over; every other state is active.
OVER: Final = (SessionState.FINISHED, SessionState.CANCELLED)


class StoreError(Exception):
    """Base of the store's own errors."""


class SchemaTooNew(StoreError):
    """The database was written by a newer framechain than this one."""


class NotFound(StoreError, LookupError):
    """No session or segment with that id."""


class Conflict(StoreError):
    """The row is not in a state that allows the change (e.g. approving a segment twice)."""


def _in(values: Iterable[Enum]) -> str:
    return ", ".join(f"'{v.value}'" for v in values)


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

#: ``MIGRATIONS[i]`` brings ``user_version`` from ``i`` to ``i + 1``. Append only.
MIGRATIONS: Final[tuple[str, ...]] = (_V1, _V2)

_INT64 = (-(2**63), 2**63 - 1)


class _Unset(Enum):
    UNSET = "unset"


#: "Leave this column as it is" for the nullable columns of update_session/update_segment.
UNSET: Final = _Unset.UNSET

PathArg = str | os.PathLike[str]


@dataclass(frozen=True)
class SessionRow:
    id: str
    platform: Platform
    chat_id: str
    thread_id: str
    owner_id: str
    state: SessionState
    settings: Mapping[str, Any]
    #: The image the next segment starts from (the hand-off frame).
    start_image: Path | None
    #: The image the session started with.
    first_image: Path | None
    final_video: Path | None
    #: Platform message ids of what was posted for the session (status, final video, ...).
    posted: Mapping[str, Any]
    created_at: float
    updated_at: float
    #: The caption the final video is posted with (the same again after a restart).
    final_caption: str | None = None


@dataclass(frozen=True)
class SegmentRow:
    id: int
    session_id: str
    #: Position in the chain (the first segment is 0).
    idx: int
    #: 1 for the first try at this idx, 2 after one regenerate, ...
    attempt: int
    prompt: str
    negative_prompt: str
    seed: int | None
    #: Generation parameters (width, height, frames, steps, guidance, ...).
    params: Mapping[str, Any]
    status: SegmentStatus
    start_image: Path | None
    video: Path | None
    last_frame: Path | None
    error: str | None
    #: How many times the dispatcher has started this job.
    tries: int
    #: Global enqueue order; resumable jobs are replayed by it.
    queue_seq: int
    enqueued_at: float | None
    started_at: float | None
    finished_at: float | None
    #: Platform message ids of what was posted, e.g. {"progress": 1, "video": 2, "frame": 3}.
    posted: Mapping[str, Any]
    created_at: float
    updated_at: float
    #: The caption the take is posted with for review (the same again after a restart).
    caption: str | None = None


def _path(value: str | None) -> Path | None:
    return None if value is None else Path(value)


def _path_text(value: PathArg | None) -> str | None:
    return None if value is None else os.fspath(value)


def _json(value: Mapping[str, Any]) -> str:
    return json.dumps(dict(value), ensure_ascii=False, sort_keys=True)


def _session(row: sqlite3.Row) -> SessionRow:
    return SessionRow(
        id=row["id"],
        platform=Platform(row["platform"]),
        chat_id=row["chat_id"],
        thread_id=row["thread_id"],
        owner_id=row["owner_id"],
        state=SessionState(row["state"]),
        settings=json.loads(row["settings"]),
        start_image=_path(row["start_image"]),
        first_image=_path(row["first_image"]),
        final_video=_path(row["final_video"]),
        posted=json.loads(row["posted"]),
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        final_caption=row["final_caption"],
    )


def _segment(row: sqlite3.Row) -> SegmentRow:
    return SegmentRow(
        id=row["id"],
        session_id=row["session_id"],
        idx=row["idx"],
        attempt=row["attempt"],
        prompt=row["prompt"],
        negative_prompt=row["negative_prompt"],
        seed=row["seed"],
        params=json.loads(row["params"]),
        status=SegmentStatus(row["status"]),
        start_image=_path(row["start_image"]),
        video=_path(row["video"]),
        last_frame=_path(row["last_frame"]),
        error=row["error"],
        tries=row["tries"],
        queue_seq=row["queue_seq"],
        enqueued_at=row["enqueued_at"],
        started_at=row["started_at"],
        finished_at=row["finished_at"],
        posted=json.loads(row["posted"]),
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        caption=row["caption"],
    )


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


async def _user_version(db: aiosqlite.Connection) -> int:
    rows = list(await db.execute_fetchall("PRAGMA user_version"))
    return int(rows[0][0])


def _refuse_newer(path: Path, version: int, known: int) -> None:
    if version > known:
        raise SchemaTooNew(
            f"{path}: the database is at schema version {version}, but this framechain only knows "
            f"versions up to {known}; it was written by a newer framechain. Upgrade framechain, "
            "or point the configuration at another database."
        )


async def _migrate(db: aiosqlite.Connection, path: Path, migrations: Sequence[str]) -> int:
    """Apply the pending migrations, one transaction each; return the final version."""
    target = len(migrations)
    while True:
        version = await _user_version(db)
        _refuse_newer(path, version, target)
        if version == target:
            return version
        await db.execute("BEGIN IMMEDIATE")
        try:
            # Another process may have migrated while we waited for the write lock.
            version = await _user_version(db)
            _refuse_newer(path, version, target)
            if version < target:
                log.info("migrating %s from schema version %d to %d", path, version, version + 1)
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


async def _use_wal(db: aiosqlite.Connection, path: Path, busy_timeout: float) -> None:
    """Switch the file to WAL (a lasting property of the file, so usually a no-op)."""
    deadline = time.monotonic() + busy_timeout
    delay = 0.005
    while True:
        try:
            mode = next(iter(await db.execute_fetchall("PRAGMA journal_mode = WAL")))[0]
            break
        except sqlite3.OperationalError as exc:
            # Switching needs an exclusive lock and SQLite does not call the busy handler for it,
            # so two processes opening a new file together must retry here themselves.
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            await asyncio.sleep(delay)
            delay = min(delay * 2, 0.2)
    if str(mode).lower() != "wal":
        log.warning("%s: journal mode is %s, not WAL", path, mode)


async def _connect(path: Path, migrations: Sequence[str], busy_timeout: float) -> tuple[aiosqlite.Connection, int]:
    path.parent.mkdir(parents=True, exist_ok=True)
    # isolation_level=None: no implicit transactions; we issue BEGIN IMMEDIATE/COMMIT ourselves.
    db = await aiosqlite.connect(path, timeout=busy_timeout, isolation_level=None)
    try:
        db.row_factory = sqlite3.Row
        await db.execute(f"PRAGMA busy_timeout = {int(busy_timeout * 1000):d}")
        try:
            # Refuse a newer database before writing anything to it (even the journal mode).
            _refuse_newer(path, await _user_version(db), len(migrations))
        except sqlite3.DatabaseError as exc:
            raise StoreError(f"{path}: not a usable SQLite database ({exc})") from exc
        await _use_wal(db, path, busy_timeout)
        # NORMAL is safe with WAL: a crash of the process loses nothing committed; power loss
        # may lose the last transactions but never corrupts the file.
        await db.execute("PRAGMA synchronous = NORMAL")
        await db.execute("PRAGMA foreign_keys = OFF")
        version = await _migrate(db, path, migrations)
        await db.execute("PRAGMA foreign_keys = ON")
        return db, version
    except BaseException:
        await db.close()
        raise


async def create_database_at_version(path: PathArg, version: int) -> None:
    """Create (or bring) a database at exactly ``version`` by applying ``MIGRATIONS[:version]``.

    For tests of the upgrade path: build an old database, then open it with :meth:`Store.open`.
    """
    if not 0 <= version <= len(MIGRATIONS):
        raise ValueError(f"version must be in 0..{len(MIGRATIONS)}, got {version}")
    db, _ = await _connect(Path(path), MIGRATIONS[:version], busy_timeout=30.0)
    await db.close()


class _Opening:
    """What :meth:`Store.open` returns: await it, or use it with ``async with``."""

    def __init__(self, path: Path, migrations: Sequence[str], busy_timeout: float, clock: Callable[[], float]) -> None:
        self._args = (path, migrations, busy_timeout, clock)
        self._store: Store | None = None

    async def _open(self) -> Store:
        path, migrations, busy_timeout, clock = self._args
        db, version = await _connect(path, migrations, busy_timeout)
        return Store(db, path=path, schema_version=version, clock=clock)

    def __await__(self) -> Generator[Any, None, Store]:
        return self._open().__await__()

    async def __aenter__(self) -> Store:
        self._store = await self._open()
        return self._store

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._store is not None:
            await self._store.close()


class Store:
    """Sessions and segments in one SQLite file. Open with :meth:`open`."""

    def __init__(
        self,
        db: aiosqlite.Connection,
        *,
        path: Path,
        schema_version: int,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._db = db
        self.path = path
        self.schema_version = schema_version
        self._clock = clock
        self._lock = asyncio.Lock()
        # The task inside transaction(); its other calls join the transaction instead of waiting.
        self._tx_task: asyncio.Task[Any] | None = None
        self._closed = False

    @classmethod
    def open(
        cls,
        path: PathArg,
        *,
        busy_timeout: float = 30.0,
        clock: Callable[[], float] = time.time,
        migrations: Sequence[str] = MIGRATIONS,
    ) -> _Opening:
        """Open (creating and migrating as needed) the database at ``path``.

        ``await Store.open(p)`` (then ``close()``) or ``async with Store.open(p) as store``.
        Raises :class:`SchemaTooNew` for a database written by a newer framechain.
        """
        return _Opening(Path(path), migrations, busy_timeout, clock)

    async def close(self) -> None:
        if self._closed:
            return
        async with self._lock:
            self._closed = True
            await self._db.close()

    # -- plumbing ------------------------------------------------------------------------------

    def _in_own_transaction(self) -> bool:
        return self._tx_task is not None and self._tx_task is asyncio.current_task()

    @asynccontextmanager
    async def _access(self) -> AsyncIterator[aiosqlite.Connection]:
        """Exclusive use of the connection for one statement (or join the running transaction)."""
        if self._in_own_transaction():
            yield self._db
            return
        async with self._lock:
            yield self._db

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[None]:
        """One write transaction (BEGIN IMMEDIATE) around everything in the block.

        Store methods called inside it by the same task are part of it; an exception (or
        cancellation) rolls it all back. Nested use joins the outer transaction. Other tasks wait
        until it ends, so do not await a task that uses this store from inside the block.
        """
        if self._in_own_transaction():
            yield
            return
        async with self._lock:
            await self._db.execute("BEGIN IMMEDIATE")
            self._tx_task = asyncio.current_task()
            try:
                yield
            except BaseException:
                self._tx_task = None
                await self._end("ROLLBACK")
                raise
            self._tx_task = None
            try:
                await self._end("COMMIT")
            except BaseException:
                if self._db.in_transaction:
                    await self._end("ROLLBACK")
                raise

    async def _end(self, statement: str) -> None:
        # Shielded: once queued, the statement runs even if this task is cancelled meanwhile,
        # and nothing else can use the connection before it (aiosqlite runs calls in order).
        async def run() -> None:
            await self._db.execute(statement)

        await asyncio.shield(run())

    async def _all(self, sql: str, params: Sequence[Any] = ()) -> list[sqlite3.Row]:
        async with self._access() as db:
            return list(await db.execute_fetchall(sql, params))

    async def _one(self, sql: str, params: Sequence[Any] = ()) -> sqlite3.Row | None:
        rows = await self._all(sql, params)
        return rows[0] if rows else None

    def _now(self) -> float:
        return self._clock()

    # -- sessions ------------------------------------------------------------------------------

    async def create_session(
        self,
        *,
        platform: Platform | str,
        chat_id: str | int,
        owner_id: str | int,
        thread_id: str | int | None = None,
        state: SessionState = SessionState.AWAITING_IMAGE,
        settings: Mapping[str, Any] | None = None,
        first_image: PathArg | None = None,
        start_image: PathArg | None = None,
        session_id: str | None = None,
    ) -> SessionRow:
        """A new session. ``start_image`` defaults to ``first_image``."""
        now = self._now()
        if start_image is None:
            start_image = first_image
        row = await self._one(
            "INSERT INTO sessions (id, platform, chat_id, thread_id, owner_id, state, settings,"
            " start_image, first_image, created_at, updated_at)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING *",
            (
                session_id or uuid.uuid4().hex,
                Platform(platform).value,
                str(chat_id),
                "" if thread_id is None else str(thread_id),
                str(owner_id),
                SessionState(state).value,
                _json(settings or {}),
                _path_text(start_image),
                _path_text(first_image),
                now,
                now,
            ),
        )
        assert row is not None
        return _session(row)

    async def get_session(self, session_id: str) -> SessionRow:
        row = await self._one("SELECT * FROM sessions WHERE id = ?", (session_id,))
        if row is None:
            raise NotFound(f"no session {session_id!r}")
        return _session(row)

    async def find_active_session(
        self,
        platform: Platform | str,
        chat_id: str | int,
        thread_id: str | int | None = None,
        owner_id: str | int | None = None,
    ) -> SessionRow | None:
        """The newest session in this chat/thread (of this owner, if given) that is not over."""
        sql = (
            "SELECT * FROM sessions WHERE platform = ? AND chat_id = ? AND thread_id = ?"
            f" AND state NOT IN ({_in(OVER)})"
        )
        params: list[Any] = [
            Platform(platform).value,
            str(chat_id),
            "" if thread_id is None else str(thread_id),
        ]
        if owner_id is not None:
            sql += " AND owner_id = ?"
            params.append(str(owner_id))
        row = await self._one(sql + " ORDER BY created_at DESC, rowid DESC LIMIT 1", params)
        return None if row is None else _session(row)

    async def list_active_sessions(self, platform: Platform | str | None = None) -> list[SessionRow]:
        """Sessions that are not finished or cancelled, oldest first."""
        sql = f"SELECT * FROM sessions WHERE state NOT IN ({_in(OVER)})"
        params: list[Any] = []
        if platform is not None:
            sql += " AND platform = ?"
            params.append(Platform(platform).value)
        return [_session(r) for r in await self._all(sql + " ORDER BY created_at, rowid", params)]

    async def list_sessions(self, states: Collection[SessionState]) -> list[SessionRow]:
        """Sessions in these states, oldest first."""
        if not states:
            return []
        rows = await self._all(
            f"SELECT * FROM sessions WHERE state IN ({_in(SessionState(s) for s in states)}) ORDER BY created_at"
        )
        return [_session(r) for r in rows]

    async def update_session(
        self,
        session_id: str,
        *,
        state: SessionState | None = None,
        settings: Mapping[str, Any] | None = None,
        start_image: PathArg | _Unset | None = UNSET,
        first_image: PathArg | _Unset | None = UNSET,
        final_video: PathArg | _Unset | None = UNSET,
        final_caption: str | _Unset | None = UNSET,
    ) -> SessionRow:
        """Change the given columns (``settings`` is replaced whole); returns the new row."""
        columns: dict[str, Any] = {}
        if state is not None:
            columns["state"] = SessionState(state).value
        if settings is not None:
            columns["settings"] = _json(settings)
        if not isinstance(final_caption, _Unset):
            columns["final_caption"] = final_caption
        for name, value in (
            ("start_image", start_image),
            ("first_image", first_image),
            ("final_video", final_video),
        ):
            if not isinstance(value, _Unset):
                columns[name] = _path_text(value)
        row = await self._update("sessions", session_id, columns)
        return _session(row)

    async def delete_session(self, session_id: str) -> None:
        """Remove a session and (by cascade) its segments. Media files are the caller's."""
        if await self._one("DELETE FROM sessions WHERE id = ? RETURNING id", (session_id,)) is None:
            raise NotFound(f"no session {session_id!r}")

    async def record_session_posted(self, session_id: str, key: str, message_id: Any) -> SessionRow:
        """Set ``posted[key] = message_id`` on a session, atomically; returns the new row."""
        row = await self._one(
            "UPDATE sessions SET posted = json_set(posted, ?, json(?)), updated_at = ? WHERE id = ? RETURNING *",
            (_json_key(key), json.dumps(message_id), self._now(), session_id),
        )
        if row is None:
            raise NotFound(f"no session {session_id!r}")
        return _session(row)

    async def cancel_session(self, session_id: str) -> tuple[SessionRow, list[SegmentRow]]:
        """Mark the session cancelled and its queued/running segments cancelled, together.

        Returns the session and the segments that were cancelled (running ones still need their
        worker told).
        """
        async with self.transaction():
            now = self._now()
            session = await self._one(
                "UPDATE sessions SET state = ?, updated_at = ? WHERE id = ? RETURNING *",
                (SessionState.CANCELLED.value, now, session_id),
            )
            if session is None:
                raise NotFound(f"no session {session_id!r}")
            rows = await self._all(
                "UPDATE segments SET status = ?, finished_at = ?, updated_at = ?"
                f" WHERE session_id = ? AND status IN ({_in(PENDING)}) RETURNING *",
                (SegmentStatus.CANCELLED.value, now, now, session_id),
            )
        return _session(session), sorted((_segment(r) for r in rows), key=lambda s: s.queue_seq)

    # -- segments ------------------------------------------------------------------------------

    async def add_segment(
        self,
        session_id: str,
        *,
        idx: int,
        prompt: str,
        negative_prompt: str = "",
        seed: int | None = None,
        params: Mapping[str, Any] | None = None,
        start_image: PathArg | None = None,
        attempt: int | None = None,
        status: SegmentStatus = SegmentStatus.QUEUED,
    ) -> SegmentRow:
        """Append a segment (queued by default) at the end of the global queue.

        ``attempt`` defaults to one more than the highest attempt at this ``idx``. A repeated
        (session, idx, attempt) raises :class:`Conflict`, so a caller-chosen attempt makes
        enqueueing idempotent.
        """
        if seed is not None and not _INT64[0] <= seed <= _INT64[1]:
            raise ValueError(f"seed must fit in a signed 64-bit integer, got {seed}")
        now = self._now()
        status = SegmentStatus(status)
        try:
            row = await self._one(
                "INSERT INTO segments (session_id, idx, attempt, prompt, negative_prompt, seed, params,"
                " status, start_image, queue_seq, enqueued_at, created_at, updated_at)"
                " VALUES (?1, ?2,"
                " coalesce(?3,"
                " (SELECT max(attempt) FROM segments WHERE session_id = ?1 AND idx = ?2) + 1, 1),"
                " ?4, ?5, ?6, ?7, ?8, ?9,"
                " coalesce((SELECT max(queue_seq) FROM segments), 0) + 1, ?10, ?11, ?11)"
                " RETURNING *",
                (
                    session_id,
                    idx,
                    attempt,
                    prompt,
                    negative_prompt,
                    seed,
                    _json(params or {}),
                    status.value,
                    _path_text(start_image),
                    now if status is SegmentStatus.QUEUED else None,
                    now,
                ),
            )
        except sqlite3.IntegrityError as exc:
            message = str(exc)
            if "FOREIGN KEY" in message:
                raise NotFound(f"no session {session_id!r}") from exc
            if "UNIQUE" in message:
                raise Conflict(f"session {session_id!r} already has segment {idx} attempt {attempt}") from exc
            raise
        assert row is not None
        return _segment(row)

    async def get_segment(self, segment_id: int) -> SegmentRow:
        row = await self._one("SELECT * FROM segments WHERE id = ?", (segment_id,))
        if row is None:
            raise NotFound(f"no segment {segment_id!r}")
        return _segment(row)

    async def update_segment(
        self,
        segment_id: int,
        *,
        status: SegmentStatus | None = None,
        prompt: str | None = None,
        negative_prompt: str | None = None,
        seed: int | _Unset | None = UNSET,
        params: Mapping[str, Any] | None = None,
        start_image: PathArg | _Unset | None = UNSET,
        video: PathArg | _Unset | None = UNSET,
        last_frame: PathArg | _Unset | None = UNSET,
        error: str | _Unset | None = UNSET,
        tries: int | None = None,
        started_at: float | _Unset | None = UNSET,
        finished_at: float | _Unset | None = UNSET,
        caption: str | _Unset | None = UNSET,
    ) -> SegmentRow:
        """Change the given columns (``params`` is replaced whole); returns the new row.

        No state checks: prefer the specific methods (start_segment, finish_segment, ...).
        """
        columns: dict[str, Any] = {}
        if status is not None:
            columns["status"] = SegmentStatus(status).value
        for name, text in (("prompt", prompt), ("negative_prompt", negative_prompt)):
            if text is not None:
                columns[name] = text
        if params is not None:
            columns["params"] = _json(params)
        if tries is not None:
            columns["tries"] = tries
        for name, path in (("start_image", start_image), ("video", video), ("last_frame", last_frame)):
            if not isinstance(path, _Unset):
                columns[name] = _path_text(path)
        for name, value in (
            ("seed", seed),
            ("error", error),
            ("started_at", started_at),
            ("finished_at", finished_at),
            ("caption", caption),
        ):
            if not isinstance(value, _Unset):
                columns[name] = value
        return _segment(await self._update("segments", segment_id, columns))

    async def list_segments(
        self, session_id: str, statuses: Collection[SegmentStatus] | None = None
    ) -> list[SegmentRow]:
        """A session's segments (optionally only these statuses) by idx, then attempt."""
        sql = "SELECT * FROM segments WHERE session_id = ?"
        if statuses is not None:
            if not statuses:
                return []
            sql += f" AND status IN ({_in(SegmentStatus(s) for s in statuses)})"
        rows = await self._all(sql + " ORDER BY idx, attempt", (session_id,))
        return [_segment(r) for r in rows]

    async def approved_segments(self, session_id: str) -> list[SegmentRow]:
        """The session's chain so far: approved segments in idx order."""
        return await self.list_segments(session_id, (SegmentStatus.APPROVED,))

    async def last_approved(self, session_id: str) -> SegmentRow | None:
        row = await self._one(
            "SELECT * FROM segments WHERE session_id = ? AND status = ? ORDER BY idx DESC LIMIT 1",
            (session_id, SegmentStatus.APPROVED.value),
        )
        return None if row is None else _segment(row)

    async def list_resumable_jobs(self) -> list[SegmentRow]:
        """Segments left queued or running (of sessions still active), in original enqueue order."""
        rows = await self._all(
            "SELECT segments.* FROM segments JOIN sessions ON sessions.id = segments.session_id"
            f" WHERE segments.status IN ({_in(PENDING)})"
            f" AND sessions.state NOT IN ({_in(OVER)})"
            " ORDER BY segments.queue_seq"
        )
        return [_segment(r) for r in rows]

    async def count_pending_jobs(self, platform: Platform | str, owner_id: str | int) -> int:
        """Queued or running segments of one user's sessions (for the per-user queue limit)."""
        row = await self._one(
            "SELECT count(*) FROM segments JOIN sessions ON sessions.id = segments.session_id"
            f" WHERE segments.status IN ({_in(PENDING)}) AND sessions.platform = ? AND sessions.owner_id = ?",
            (Platform(platform).value, str(owner_id)),
        )
        assert row is not None
        return int(row[0])

    async def record_posted(self, segment_id: int, key: str, message_id: Any) -> SegmentRow:
        """Set ``posted[key] = message_id`` (any JSON value), merging atomically with other keys.

        ``None`` records that the message is gone (a deleted progress message); a reaction lookup
        never matches it."""
        row = await self._one(
            "UPDATE segments SET posted = json_set(posted, ?, json(?)), updated_at = ? WHERE id = ? RETURNING *",
            (_json_key(key), json.dumps(message_id), self._now(), segment_id),
        )
        if row is None:
            raise NotFound(f"no segment {segment_id!r}")
        return _segment(row)

    async def find_segment_by_message(
        self, platform: Platform | str, chat_id: str | int, message_id: str | int
    ) -> SegmentRow | None:
        """The segment one of whose posted messages (video, frame, controls...) has this id in
        this chat: lets a reaction find its segment after a restart."""
        row = await self._one(
            "SELECT segments.* FROM segments JOIN sessions ON sessions.id = segments.session_id,"
            " json_each(segments.posted) AS posted"
            " WHERE sessions.platform = ? AND sessions.chat_id = ? AND CAST(posted.value AS TEXT) = ?"
            " ORDER BY segments.id DESC LIMIT 1",
            (Platform(platform).value, str(chat_id), str(message_id)),
        )
        return None if row is None else _segment(row)

    # Dispatcher transitions. Each is one conditional UPDATE, so a job cancelled meanwhile is
    # not started or completed behind the user's back: the loser gets Conflict.

    async def start_segment(self, segment_id: int) -> SegmentRow:
        """queued (or running, when resumed after a restart) -> running; counts a try."""
        now = self._now()
        return await self._transition(
            segment_id,
            PENDING,
            "status = ?, tries = tries + 1, started_at = ?, finished_at = NULL, error = NULL, updated_at = ?",
            (SegmentStatus.RUNNING.value, now, now),
        )

    async def requeue_segment(self, segment_id: int) -> SegmentRow:
        """running/failed -> queued, keeping its place (queue_seq) in the original order."""
        return await self._transition(
            segment_id,
            (SegmentStatus.RUNNING, SegmentStatus.FAILED),
            "status = ?, updated_at = ?",
            (SegmentStatus.QUEUED.value, self._now()),
        )

    async def finish_segment(self, segment_id: int, *, video: PathArg, last_frame: PathArg) -> SegmentRow:
        """running -> done with its outputs."""
        now = self._now()
        return await self._transition(
            segment_id,
            (SegmentStatus.RUNNING,),
            "status = ?, video = ?, last_frame = ?, error = NULL, finished_at = ?, updated_at = ?",
            (SegmentStatus.DONE.value, os.fspath(video), os.fspath(last_frame), now, now),
        )

    async def fail_segment(self, segment_id: int, error: str) -> SegmentRow:
        """queued/running -> failed, keeping the error as the job's result."""
        now = self._now()
        return await self._transition(
            segment_id,
            PENDING,
            "status = ?, error = ?, finished_at = ?, updated_at = ?",
            (SegmentStatus.FAILED.value, error, now, now),
        )

    async def reject_segment(self, segment_id: int) -> SegmentRow:
        """done -> rejected (the user asked for another attempt)."""
        return await self._transition(
            segment_id,
            (SegmentStatus.DONE,),
            "status = ?, updated_at = ?",
            (SegmentStatus.REJECTED.value, self._now()),
        )

    async def approve_segment(
        self, segment_id: int, *, state: SessionState = SessionState.AWAITING_PROMPT
    ) -> tuple[SessionRow, SegmentRow]:
        """done -> approved, and hand its last frame on as the session's start image, together.

        The session moves to ``state``. Conflict if the segment is not done, has no last frame,
        or its idx already has an approved segment.
        """
        async with self.transaction():
            segment = await self.get_segment(segment_id)
            if segment.status is not SegmentStatus.DONE:
                raise Conflict(f"segment {segment_id} is {segment.status.value}, not done")
            if segment.last_frame is None:
                raise Conflict(f"segment {segment_id} has no last frame to hand off")
            taken = await self._one(
                "SELECT id FROM segments WHERE session_id = ? AND idx = ? AND status = ?",
                (segment.session_id, segment.idx, SegmentStatus.APPROVED.value),
            )
            if taken is not None:
                raise Conflict(f"segment {segment.idx} of the session is already approved (id {taken[0]})")
            segment = await self.update_segment(segment_id, status=SegmentStatus.APPROVED)
            session = await self.update_session(segment.session_id, state=state, start_image=segment.last_frame)
        return session, segment

    async def undo_last_approved(
        self, session_id: str, *, state: SessionState = SessionState.AWAITING_PROMPT
    ) -> tuple[SessionRow, SegmentRow | None]:
        """Drop the last approved segment (-> rejected) and restore the previous hand-off image.

        The start image becomes the previous approved segment's last frame, or the session's
        first image; the session moves to ``state``. With nothing approved, nothing changes and
        the segment returned is None.
        """
        async with self.transaction():
            last = await self.last_approved(session_id)
            if last is None:
                return await self.get_session(session_id), None
            last = await self.update_segment(last.id, status=SegmentStatus.REJECTED)
            previous = await self.last_approved(session_id)
            session = await self.get_session(session_id)
            start = previous.last_frame if previous is not None else session.first_image
            session = await self.update_session(session_id, state=state, start_image=start)
        return session, last

    # -- helpers -------------------------------------------------------------------------------

    async def _update(self, table: str, row_id: Any, columns: Mapping[str, Any]) -> sqlite3.Row:
        # Column names come from the keyword parameters above, never from callers' strings.
        assignments = ", ".join(f"{name} = ?" for name in [*columns, "updated_at"])
        row = await self._one(
            f"UPDATE {table} SET {assignments} WHERE id = ? RETURNING *",
            (*columns.values(), self._now(), row_id),
        )
        if row is None:
            raise NotFound(f"no {table[:-1]} {row_id!r}")
        return row

    async def _transition(
        self, segment_id: int, allowed: Iterable[SegmentStatus], assignments: str, params: Sequence[Any]
    ) -> SegmentRow:
        allowed = tuple(allowed)
        row = await self._one(
            f"UPDATE segments SET {assignments} WHERE id = ? AND status IN ({_in(allowed)}) RETURNING *",
            (*params, segment_id),
        )
        if row is not None:
            return _segment(row)
        current = await self.get_segment(segment_id)  # NotFound if it does not exist
        raise Conflict(
            f"segment {segment_id} is {current.status.value}, expected {' or '.join(s.value for s in allowed)}"
        )


def _json_key(key: str) -> str:
    """A JSON path naming one top-level key (quoted, so dots and spaces are fine)."""
    # SQLite's path syntax has no escapes inside a quoted label.
    if not key or '"' in key or "\\" in key:
        raise ValueError(f"posted key must be non-empty text without quotes or backslashes, got {key!r}")
    return f'$."{key}"'
