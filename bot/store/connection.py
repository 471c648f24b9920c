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
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any

import aiosqlite

from bot.store.errors import DatabaseUnusable, DiskFull, StoreBusy, StoreError
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


_CORRUPT = ("malformed", "not a database", "file is encrypted", "database corrupt")


def unusable(path: Path, exc: Exception, busy_timeout: float = 0.0) -> StoreError | None:
    """The store's error for a SQLite error met while opening ``path``, saying what is wrong;
    None for an error that is not about the file (a broken migration is a bug, raised as is)."""
    text = str(exc)
    if any(marker in text for marker in _CORRUPT) or (
        isinstance(exc, sqlite3.DatabaseError) and not isinstance(exc, sqlite3.OperationalError)
    ):
        return DatabaseUnusable(
            f"{path}: not a usable SQLite database: it is damaged or not a database file ({text}). "
            "framechain has left it untouched and will not start on it: restore it from a backup, or "
            f"move it aside to start with an empty one (`sqlite3 {path} .recover` may save what it holds)."
        )
    if "readonly" in text or "read-only" in text:
        return DatabaseUnusable(
            f"{path}: the database is read-only ({text}): the file or its folder cannot be written by this "
            "user, or the disk is mounted read-only. The database itself is not damaged."
        )
    if "disk is full" in text:
        return DiskFull(f"{path}: the disk holding the database is full ({text}). Free some space.")
    if "locked" in text or "busy" in text:
        return StoreBusy(
            f"{path}: the database stayed locked for more than {busy_timeout:.0f} s ({text}); is another "
            "framechain using the same data dir?"
        )
    if path.is_dir():
        return DatabaseUnusable(f"{path}: is a folder, not a database file; point `database` at a file.")
    if "unable to open" not in text:
        return None
    return DatabaseUnusable(
        f"{path}: the database cannot be opened ({text}): check that the file and its folder can be read "
        "and written by the user framechain runs as."
    )


async def connect(path: Path, migrations: Sequence[str], busy_timeout: float) -> tuple[aiosqlite.Connection, int]:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DatabaseUnusable(f"{path}: its folder cannot be created ({exc.strerror or exc})") from exc
    try:
        return await _connect(path, migrations, busy_timeout)
    except StoreError:
        raise
    except sqlite3.DatabaseError as exc:
        error = unusable(path, exc, busy_timeout)
        if error is None:
            raise
        raise error from exc


async def _connect(path: Path, migrations: Sequence[str], busy_timeout: float) -> tuple[aiosqlite.Connection, int]:
    # isolation_level=None: no implicit transactions; we issue BEGIN IMMEDIATE/COMMIT ourselves.
    db = await aiosqlite.connect(path, timeout=busy_timeout, isolation_level=None)
    try:
        db.row_factory = sqlite3.Row
        await db.execute(f"PRAGMA busy_timeout = {int(busy_timeout * 1000):d}")
        # Refuse a newer database before writing anything to it (even the journal mode).
        refuse_newer(path, await user_version(db), len(migrations))
        # A damaged file stops start-up here, before anything is written to it.
        problems = [str(r[0]) for r in await db.execute_fetchall("PRAGMA quick_check")]
        if problems != ["ok"]:
            raise DatabaseUnusable(
                f"{path}: not a usable SQLite database: it is damaged ({'; '.join(problems[:3])}). "
                "framechain has left it untouched and will not start on it: restore it from a backup, "
                f"or move it aside to start with an empty one (`sqlite3 {path} .recover` may save what it holds)."
            )
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


@contextmanager
def _translated() -> Iterator[None]:
    """A full disk or a lock held past the busy timeout as the store's own errors, which the
    service answers with a sentence instead of an apology and a traceback."""
    try:
        yield
    except sqlite3.OperationalError as exc:
        text = str(exc)
        if "disk is full" in text:
            raise DiskFull(f"the disk holding the database is full ({text})") from exc
        if "database is locked" in text or "database is busy" in text:
            raise StoreBusy(f"the database stayed locked past the busy timeout ({text})") from exc
        raise


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
            with _translated():
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
                with _translated():
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
            with _translated():
                return list(await db.execute_fetchall(sql, params))

    async def one(self, sql: str, params: Sequence[Any] = ()) -> sqlite3.Row | None:
        rows = await self.all(sql, params)
        return rows[0] if rows else None
