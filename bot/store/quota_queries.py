"""The queries behind the quotas (``bot.conversation.quotas``): GPU time per user, and the counts
of active sessions and of jobs in the queue. A part of :class:`bot.store.Store`, kept apart
because it is one concern."""

from __future__ import annotations

from bot.store.connection import Connection
from bot.store.rows import OVER, PENDING, Platform, in_list


class QuotaQueries:
    """Mixed into :class:`bot.store.Store`, whose connection it uses (and whose transaction it joins)."""

    _sql: Connection

    async def record_gpu_seconds(
        self, segment_id: int, platform: Platform | str, owner_id: str | int, seconds: float, *, at: float
    ) -> None:
        """The worker's own timing of one job, charged to the session's owner at ``at`` (epoch
        seconds). Recording a job again changes nothing, so a result seen twice counts once."""
        await self._sql.all(
            "INSERT INTO gpu_usage (segment_id, platform, owner_id, seconds, recorded_at) VALUES (?, ?, ?, ?, ?)"
            " ON CONFLICT (segment_id) DO NOTHING",
            (segment_id, Platform(platform).value, str(owner_id), max(0.0, float(seconds)), at),
        )

    async def gpu_seconds_since(self, platform: Platform | str, owner_id: str | int, since: float) -> float:
        """GPU seconds charged to one user from ``since`` (epoch seconds) on."""
        row = await self._sql.one(
            "SELECT coalesce(sum(seconds), 0) FROM gpu_usage WHERE platform = ? AND owner_id = ? AND recorded_at >= ?",
            (Platform(platform).value, str(owner_id), since),
        )
        assert row is not None
        return float(row[0])

    async def count_active_sessions(self, platform: Platform | str, owner_id: str | int) -> int:
        """Sessions of one user, in any chat, that are not finished or cancelled."""
        row = await self._sql.one(
            f"SELECT count(*) FROM sessions WHERE platform = ? AND owner_id = ? AND state NOT IN ({in_list(OVER)})",
            (Platform(platform).value, str(owner_id)),
        )
        assert row is not None
        return int(row[0])

    async def count_all_pending_jobs(self) -> int:
        """Queued or running segments of every user (for the global queue cap)."""
        row = await self._sql.one(f"SELECT count(*) FROM segments WHERE status IN ({in_list(PENDING)})")
        assert row is not None
        return int(row[0])

    async def gpu_seconds_by_user_since(self, since: float) -> list[tuple[str, str, float]]:
        """(platform, owner, GPU seconds) of every user charged from ``since`` on, most first
        (the operator page's day)."""
        rows = await self._sql.all(
            "SELECT platform, owner_id, sum(seconds) AS s FROM gpu_usage WHERE recorded_at >= ?"
            " GROUP BY platform, owner_id ORDER BY s DESC",
            (since,),
        )
        return [(str(r[0]), str(r[1]), float(r[2])) for r in rows]
