"""When each refused user was last told that they are not allowed (``bot.access.RefusalNotices``),
so that a restart does not tell a stranger again at once. A part of :class:`bot.store.Store`,
kept apart because it is one concern."""

from __future__ import annotations

from bot.store.connection import Connection
from bot.store.rows import Platform


class RefusalQueries:
    """Mixed into :class:`bot.store.Store`, whose connection it uses."""

    _sql: Connection

    async def claim_refusal_notice(self, platform: str, user_id: str, *, now: float, interval: float) -> float:
        """When the user was last told, after recording ``now`` unless that was less than
        ``interval`` seconds ago: ``now`` means "tell them now". Notices older than the interval
        are forgotten, so a flood of strangers leaves no more rows than one interval's."""
        async with self._sql.transaction():
            await self._sql.all("DELETE FROM refusal_notices WHERE told_at <= ?", (now - interval,))
            row = await self._sql.one(
                "INSERT INTO refusal_notices (platform, user_id, told_at) VALUES (?, ?, ?)"
                " ON CONFLICT (platform, user_id) DO UPDATE SET told_at = told_at RETURNING told_at",
                (Platform(platform).value, str(user_id), now),
            )
        assert row is not None
        return float(row[0])
