"""The Store: sessions and their segments, every query framechain makes of its database.

One connection per :class:`Store` (:mod:`bot.store.connection`), in WAL mode with foreign keys on
and a busy timeout, so several stores (or processes) can share one file. The task that holds
:meth:`Store.transaction` may call any other method inside it, and those calls join the
transaction.
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
import uuid
from collections.abc import Callable, Collection, Generator, Iterable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from types import TracebackType
from typing import Any

import aiosqlite

from bot.store.admin_queries import AdminQueries
from bot.store.connection import Connection, connect
from bot.store.errors import Conflict, NotFound
from bot.store.migrations import MIGRATIONS
from bot.store.quota_queries import QuotaQueries
from bot.store.refusal_queries import RefusalQueries
from bot.store.rows import (
    OVER,
    PENDING,
    UNSET,
    PathArg,
    Platform,
    SegmentRow,
    SegmentStatus,
    SessionRow,
    SessionState,
    Unset,
    in_list,
    json_key,
    path_text,
    segment_row,
    session_row,
    to_json,
)

_INT64 = (-(2**63), 2**63 - 1)


class _Opening:
    """What :meth:`Store.open` returns: await it, or use it with ``async with``."""

    def __init__(self, path: Path, migrations: Sequence[str], busy_timeout: float, clock: Callable[[], float]) -> None:
        self._args = (path, migrations, busy_timeout, clock)
        self._store: Store | None = None

    async def _open(self) -> Store:
        path, migrations, busy_timeout, clock = self._args
        db, version = await connect(path, migrations, busy_timeout)
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


class Store(QuotaQueries, AdminQueries, RefusalQueries):
    """Sessions and segments in one SQLite file. Open with :meth:`open`. The quotas' queries
    are in :class:`QuotaQueries`, the admin commands' (bans, flags) in :class:`AdminQueries`,
    the refused users' notices in :class:`RefusalQueries`."""

    def __init__(
        self,
        db: aiosqlite.Connection,
        *,
        path: Path,
        schema_version: int,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._sql = Connection(db)
        self.path = path
        self.schema_version = schema_version
        self._clock = clock

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
        await self._sql.close()

    def transaction(self) -> AbstractAsyncContextManager[None]:
        """One write transaction (BEGIN IMMEDIATE) around everything in the block.

        Store methods called inside it by the same task are part of it; an exception (or
        cancellation) rolls it all back. Nested use joins the outer transaction. Other tasks wait
        until it ends, so do not await a task that uses this store from inside the block.
        """
        return self._sql.transaction()

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
        row = await self._sql.one(
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
                to_json(settings or {}),
                path_text(start_image),
                path_text(first_image),
                now,
                now,
            ),
        )
        assert row is not None
        return session_row(row)

    async def get_session(self, session_id: str) -> SessionRow:
        row = await self._sql.one("SELECT * FROM sessions WHERE id = ?", (session_id,))
        if row is None:
            raise NotFound(f"no session {session_id!r}")
        return session_row(row)

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
            f" AND state NOT IN ({in_list(OVER)})"
        )
        params: list[Any] = [
            Platform(platform).value,
            str(chat_id),
            "" if thread_id is None else str(thread_id),
        ]
        if owner_id is not None:
            sql += " AND owner_id = ?"
            params.append(str(owner_id))
        row = await self._sql.one(sql + " ORDER BY created_at DESC, rowid DESC LIMIT 1", params)
        return None if row is None else session_row(row)

    async def list_active_sessions(self, platform: Platform | str | None = None) -> list[SessionRow]:
        """Sessions that are not finished or cancelled, oldest first."""
        sql = f"SELECT * FROM sessions WHERE state NOT IN ({in_list(OVER)})"
        params: list[Any] = []
        if platform is not None:
            sql += " AND platform = ?"
            params.append(Platform(platform).value)
        return [session_row(r) for r in await self._sql.all(sql + " ORDER BY created_at, rowid", params)]

    async def list_sessions(self, states: Collection[SessionState]) -> list[SessionRow]:
        """Sessions in these states, oldest first."""
        if not states:
            return []
        rows = await self._sql.all(
            f"SELECT * FROM sessions WHERE state IN ({in_list(SessionState(s) for s in states)}) ORDER BY created_at"
        )
        return [session_row(r) for r in rows]

    async def update_session(
        self,
        session_id: str,
        *,
        state: SessionState | None = None,
        settings: Mapping[str, Any] | None = None,
        start_image: PathArg | Unset | None = UNSET,
        first_image: PathArg | Unset | None = UNSET,
        final_video: PathArg | Unset | None = UNSET,
        final_caption: str | Unset | None = UNSET,
    ) -> SessionRow:
        """Change the given columns (``settings`` is replaced whole); returns the new row."""
        columns: dict[str, Any] = {}
        if state is not None:
            columns["state"] = SessionState(state).value
        if settings is not None:
            columns["settings"] = to_json(settings)
        if not isinstance(final_caption, Unset):
            columns["final_caption"] = final_caption
        for name, value in (
            ("start_image", start_image),
            ("first_image", first_image),
            ("final_video", final_video),
        ):
            if not isinstance(value, Unset):
                columns[name] = path_text(value)
        row = await self._update("sessions", session_id, columns)
        return session_row(row)

    async def delete_session(self, session_id: str) -> None:
        """Remove a session and (by cascade) its segments. Media files are the caller's."""
        if await self._sql.one("DELETE FROM sessions WHERE id = ? RETURNING id", (session_id,)) is None:
            raise NotFound(f"no session {session_id!r}")

    async def record_session_posted(self, session_id: str, key: str, message_id: Any) -> SessionRow:
        """Set ``posted[key] = message_id`` on a session, atomically; returns the new row."""
        row = await self._sql.one(
            "UPDATE sessions SET posted = json_set(posted, ?, json(?)), updated_at = ? WHERE id = ? RETURNING *",
            (json_key(key), json.dumps(message_id), self._now(), session_id),
        )
        if row is None:
            raise NotFound(f"no session {session_id!r}")
        return session_row(row)

    async def cancel_session(self, session_id: str) -> tuple[SessionRow, list[SegmentRow]]:
        """Mark the session cancelled and its queued/running segments cancelled, together.

        Returns the session and the segments that were cancelled (running ones still need their
        worker told).
        """
        async with self.transaction():
            now = self._now()
            session = await self._sql.one(
                "UPDATE sessions SET state = ?, updated_at = ? WHERE id = ? RETURNING *",
                (SessionState.CANCELLED.value, now, session_id),
            )
            if session is None:
                raise NotFound(f"no session {session_id!r}")
            rows = await self._sql.all(
                "UPDATE segments SET status = ?, finished_at = ?, updated_at = ?"
                f" WHERE session_id = ? AND status IN ({in_list(PENDING)}) RETURNING *",
                (SegmentStatus.CANCELLED.value, now, now, session_id),
            )
        return session_row(session), sorted((segment_row(r) for r in rows), key=lambda s: s.queue_seq)

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
            row = await self._sql.one(
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
                    to_json(params or {}),
                    status.value,
                    path_text(start_image),
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
        return segment_row(row)

    async def get_segment(self, segment_id: int) -> SegmentRow:
        row = await self._sql.one("SELECT * FROM segments WHERE id = ?", (segment_id,))
        if row is None:
            raise NotFound(f"no segment {segment_id!r}")
        return segment_row(row)

    async def update_segment(
        self,
        segment_id: int,
        *,
        status: SegmentStatus | None = None,
        prompt: str | None = None,
        negative_prompt: str | None = None,
        seed: int | Unset | None = UNSET,
        params: Mapping[str, Any] | None = None,
        start_image: PathArg | Unset | None = UNSET,
        video: PathArg | Unset | None = UNSET,
        last_frame: PathArg | Unset | None = UNSET,
        error: str | Unset | None = UNSET,
        tries: int | None = None,
        started_at: float | Unset | None = UNSET,
        finished_at: float | Unset | None = UNSET,
        caption: str | Unset | None = UNSET,
        drift: Mapping[str, Any] | Unset | None = UNSET,
    ) -> SegmentRow:
        """Change the given columns (``params`` and ``drift`` are replaced whole); returns the new row.

        No state checks: prefer the specific methods (start_segment, finish_segment, ...).
        """
        columns: dict[str, Any] = {}
        if status is not None:
            columns["status"] = SegmentStatus(status).value
        for name, text in (("prompt", prompt), ("negative_prompt", negative_prompt)):
            if text is not None:
                columns[name] = text
        if params is not None:
            columns["params"] = to_json(params)
        if tries is not None:
            columns["tries"] = tries
        for name, path in (("start_image", start_image), ("video", video), ("last_frame", last_frame)):
            if not isinstance(path, Unset):
                columns[name] = path_text(path)
        for name, value in (
            ("seed", seed),
            ("error", error),
            ("started_at", started_at),
            ("finished_at", finished_at),
            ("caption", caption),
        ):
            if not isinstance(value, Unset):
                columns[name] = value
        if not isinstance(drift, Unset):
            columns["drift"] = None if drift is None else to_json(drift)
        return segment_row(await self._update("segments", segment_id, columns))

    async def list_segments(
        self, session_id: str, statuses: Collection[SegmentStatus] | None = None
    ) -> list[SegmentRow]:
        """A session's segments (optionally only these statuses) by idx, then attempt."""
        sql = "SELECT * FROM segments WHERE session_id = ?"
        if statuses is not None:
            if not statuses:
                return []
            sql += f" AND status IN ({in_list(SegmentStatus(s) for s in statuses)})"
        rows = await self._sql.all(sql + " ORDER BY idx, attempt", (session_id,))
        return [segment_row(r) for r in rows]

    async def approved_segments(self, session_id: str) -> list[SegmentRow]:
        """The session's chain so far: approved segments in idx order."""
        return await self.list_segments(session_id, (SegmentStatus.APPROVED,))

    async def last_approved(self, session_id: str) -> SegmentRow | None:
        row = await self._sql.one(
            "SELECT * FROM segments WHERE session_id = ? AND status = ? ORDER BY idx DESC LIMIT 1",
            (session_id, SegmentStatus.APPROVED.value),
        )
        return None if row is None else segment_row(row)

    async def list_resumable_jobs(self) -> list[SegmentRow]:
        """Segments left queued or running (of sessions still active), in original enqueue order."""
        rows = await self._sql.all(
            "SELECT segments.* FROM segments JOIN sessions ON sessions.id = segments.session_id"
            f" WHERE segments.status IN ({in_list(PENDING)})"
            f" AND sessions.state NOT IN ({in_list(OVER)})"
            " ORDER BY segments.queue_seq"
        )
        return [segment_row(r) for r in rows]

    async def count_pending_jobs(self, platform: Platform | str, owner_id: str | int) -> int:
        """Queued or running segments of one user's sessions (for the per-user queue limit)."""
        row = await self._sql.one(
            "SELECT count(*) FROM segments JOIN sessions ON sessions.id = segments.session_id"
            f" WHERE segments.status IN ({in_list(PENDING)}) AND sessions.platform = ? AND sessions.owner_id = ?",
            (Platform(platform).value, str(owner_id)),
        )
        assert row is not None
        return int(row[0])

    async def record_posted(self, segment_id: int, key: str, message_id: Any) -> SegmentRow:
        """Set ``posted[key] = message_id`` (any JSON value), merging atomically with other keys.

        ``None`` records that the message is gone (a deleted progress message); a reaction lookup
        never matches it."""
        row = await self._sql.one(
            "UPDATE segments SET posted = json_set(posted, ?, json(?)), updated_at = ? WHERE id = ? RETURNING *",
            (json_key(key), json.dumps(message_id), self._now(), segment_id),
        )
        if row is None:
            raise NotFound(f"no segment {segment_id!r}")
        return segment_row(row)

    async def find_segment_by_message(
        self, platform: Platform | str, chat_id: str | int, message_id: str | int
    ) -> SegmentRow | None:
        """The segment one of whose posted messages (video, frame, controls...) has this id in
        this chat: lets a reaction find its segment after a restart."""
        row = await self._sql.one(
            "SELECT segments.* FROM segments JOIN sessions ON sessions.id = segments.session_id,"
            " json_each(segments.posted) AS posted"
            " WHERE sessions.platform = ? AND sessions.chat_id = ? AND CAST(posted.value AS TEXT) = ?"
            " ORDER BY segments.id DESC LIMIT 1",
            (Platform(platform).value, str(chat_id), str(message_id)),
        )
        return None if row is None else segment_row(row)

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
            taken = await self._sql.one(
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
        row = await self._sql.one(
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
        row = await self._sql.one(
            f"UPDATE segments SET {assignments} WHERE id = ? AND status IN ({in_list(allowed)}) RETURNING *",
            (*params, segment_id),
        )
        if row is not None:
            return segment_row(row)
        current = await self.get_segment(segment_id)  # NotFound if it does not exist
        raise Conflict(
            f"segment {segment_id} is {current.status.value}, expected {' or '.join(s.value for s in allowed)}"
        )
