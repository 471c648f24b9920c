"""The queries behind the admin commands (``bot.conversation.admin``): banned users and the
bot-wide flags (the paused queue). A part of :class:`bot.store.Store`, kept apart because it is
one concern."""

from __future__ import annotations

from dataclasses import dataclass

from bot.store.connection import Connection


@dataclass(frozen=True)
class Ban:
    platform: str
    user_id: str
    #: The admin who banned them (a user id on the same platform, or another platform's "p:id").
    banned_by: str
    banned_at: float


@dataclass(frozen=True)
class Flag:
    name: str
    value: str
    set_by: str
    updated_at: float


class AdminQueries:
    """Mixed into :class:`bot.store.Store`, whose connection it uses (and whose transaction it joins)."""

    _sql: Connection

    async def ban_user(self, platform: str, user_id: str, *, by: str, at: float) -> bool:
        """Ban one user; False when they already were (the first ban's record is kept)."""
        rows = await self._sql.all(
            "INSERT INTO bans (platform, user_id, banned_by, banned_at) VALUES (?, ?, ?, ?)"
            " ON CONFLICT (platform, user_id) DO NOTHING RETURNING user_id",
            (platform, str(user_id), by, at),
        )
        return bool(rows)

    async def unban_user(self, platform: str, user_id: str) -> bool:
        """Lift a ban; False when there was none."""
        rows = await self._sql.all(
            "DELETE FROM bans WHERE platform = ? AND user_id = ? RETURNING user_id", (platform, str(user_id))
        )
        return bool(rows)

    async def list_bans(self) -> list[Ban]:
        rows = await self._sql.all("SELECT * FROM bans ORDER BY banned_at, platform, user_id")
        return [Ban(r["platform"], r["user_id"], r["banned_by"], float(r["banned_at"])) for r in rows]

    async def get_flag(self, name: str) -> Flag | None:
        row = await self._sql.one("SELECT * FROM flags WHERE name = ?", (name,))
        if row is None:
            return None
        return Flag(row["name"], row["value"], row["set_by"], float(row["updated_at"]))

    async def set_flag(self, name: str, value: str, *, by: str, at: float) -> None:
        await self._sql.all(
            "INSERT INTO flags (name, value, set_by, updated_at) VALUES (?, ?, ?, ?)"
            " ON CONFLICT (name) DO UPDATE SET value = excluded.value, set_by = excluded.set_by,"
            " updated_at = excluded.updated_at",
            (name, value, by, at),
        )
