"""The SQLite connection a Store runs its statements on: opening the file (WAL, foreign keys,
busy timeout, migrations), and sharing one aiosqlite connection between tasks.

Every write that spans more than one statement runs inside ``BEGIN IMMEDIATE``: it takes the
write lock up front, so it waits on the busy timeout instead of failing with "database is locked"
when it upgrades from reading. Tasks sharing one connection are serialised by an asyncio lock;
the task that holds :meth:`Connection.transaction` may run any other statement inside it, and
those statements join the transaction.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiosqlite

from bot.store.errors import StoreError
from bot.store.migrations import MIGRATIONS, migrate, refuse_newer, user_version
from bot.store.rows import PathArg

log = logging.getLogger("bot.store")


async def use_wal(db: aiosqlite.Connection, path: Path, busy_timeout: float) -> None:
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


async def connect(path: Path, migrations: Sequence[str], busy_timeout: float) -> tuple[aiosqlite.Connection, int]:
    path.parent.mkdir(parents=True, exist_ok=True)
    # isolation_level=None: no implicit transactions; we issue BEGIN IMMEDIATE/COMMIT ourselves.
    db = await aiosqlite.connect(path, timeout=busy_timeout, isolation_level=None)
    try:
        db.row_factory = sqlite3.Row
        await db.execute(f"PRAGMA busy_timeout = {int(busy_timeout * 1000):d}")
        try:
            # Refuse a newer database before writing anything to it (even the journal mode).
            refuse_newer(path, await user_version(db), len(migrations))
        except sqlite3.DatabaseError as exc:
            raise StoreError(f"{path}: not a usable SQLite database ({exc})") from exc
        await use_wal(db, path, busy_timeout)
        # NORMAL is safe with WAL: a crash of the process loses nothing committed; power loss
        # may lose the last transactions but never corrupts the file.
        await db.execute("PRAGMA synchronous = NORMAL")
        await db.execute("PRAGMA foreign_keys = OFF")
        version = await migrate(db, path, migrations)
        await db.execute("PRAGMA foreign_keys = ON")
        return db, version
    except BaseException:
        await db.close()
        raise


async def create_database_at_version(path: PathArg, version: int) -> None:
    """Create (or bring) a database at exactly ``version`` by applying ``MIGRATIONS[:version]``.

    For tests of the upgrade path: build an old database, then open it with ``Store.open``.
    """
    if not 0 <= version <= len(MIGRATIONS):
        raise ValueError(f"version must be in 0..{len(MIGRATIONS)}, got {version}")
    db, _ = await connect(Path(path), MIGRATIONS[:version], busy_timeout=30.0)
    await db.close()


class Connection:
    """One aiosqlite connection, used by one statement (or one transaction) at a time."""

    def __init__(self, db: aiosqlite.Connection) -> None:
        self._db = db
        self._lock = asyncio.Lock()
        # The task inside transaction(); its other calls join the transaction instead of waiting.
        self._tx_task: asyncio.Task[Any] | None = None
        self._closed = False

    async def close(self) -> None:
        if self._closed:
            return
        async with self._lock:
            self._closed = True
            await self._db.close()

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

        Statements run inside it by the same task are part of it; an exception (or
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

    async def all(self, sql: str, params: Sequence[Any] = ()) -> list[sqlite3.Row]:
        async with self._access() as db:
            return list(await db.execute_fetchall(sql, params))

    async def one(self, sql: str, params: Sequence[Any] = ()) -> sqlite3.Row | None:
        rows = await self.all(sql, params)
        return rows[0] if rows else None
