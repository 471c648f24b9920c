"""Who may use the bot: closed by default.

One rule for both platforms, decided from what the platform says about the acting user (their
id, their Discord roles and guild, the Telegram chat) and the configuration, before anything the
user sent is downloaded or reaches the conversation service:

- ``open = true`` serves everyone (documented as "anyone can use your GPU"); it is the only way.
- Otherwise admins, and users let in by an allowlist: ``allowed_user_ids`` anywhere, anyone with
  one of ``allowed_role_ids`` or in one of ``allowed_guild_ids`` (Discord), anyone in one of
  ``allowed_chat_ids`` while in that chat (Telegram). With no allowlist, only the admins.
- A user an admin banned (``/ban``, kept in the store) is refused the same way, whatever the
  lists say; admins cannot be banned. The adapters ask the conversation (``banned``).
- Everyone else is refused and told so privately, with their user id so the owner can add them;
  :class:`RefusalNotices` keeps that to once per user per interval (``limits.refusal_notice_hours``),
  so a refused user's every message is not answered, and (kept in the store) not after a
  restart either.

Which session a user may act on (its owner, or an admin) is the conversation core's rule
(``bot.core.may_act``); this module only decides who gets in at all.
"""

from __future__ import annotations

import enum
import logging
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Protocol

from shared.config import Config, DiscordConfig, TelegramConfig

log = logging.getLogger("framechain.access")

#: A refused user is told again at most this often (seconds; ``limits.refusal_notice_hours``).
REFUSAL_INTERVAL = 6 * 3600.0
#: Users remembered as told; the oldest are forgotten first (a flood of strangers stays bounded).
REFUSAL_MEMORY = 10_000


class Standing(enum.Enum):
    ADMIN = "admin"
    ALLOWED = "allowed"
    REFUSED = "refused"


@dataclass(frozen=True)
class Actor:
    """What the platform says about who is acting, and where."""

    user_id: int
    role_ids: frozenset[int] = frozenset()
    guild_id: int | None = None
    chat_id: int | None = None


@dataclass(frozen=True)
class AccessRule:
    """One platform's rule, from its configuration section."""

    platform: str
    admins: frozenset[int] = frozenset()
    users: frozenset[int] = frozenset()
    roles: frozenset[int] = frozenset()
    guilds: frozenset[int] = frozenset()
    chats: frozenset[int] = frozenset()
    open: bool = False

    @classmethod
    def for_discord(cls, config: DiscordConfig) -> AccessRule:
        return cls(
            "discord",
            admins=frozenset(config.admin_ids),
            users=frozenset(config.allowed_user_ids),
            roles=frozenset(config.allowed_role_ids),
            guilds=frozenset(config.allowed_guild_ids),
            open=config.open,
        )

    @classmethod
    def for_telegram(cls, config: TelegramConfig) -> AccessRule:
        return cls(
            "telegram",
            admins=frozenset(config.admin_ids),
            users=frozenset(config.allowed_user_ids),
            chats=frozenset(config.allowed_chat_ids),
            open=config.open,
        )

    def is_admin(self, user_id: int) -> bool:
        return user_id in self.admins

    def standing(self, actor: Actor) -> Standing:
        if actor.user_id in self.admins:
            return Standing.ADMIN
        if self.open or actor.user_id in self.users or actor.role_ids & self.roles:
            return Standing.ALLOWED
        if actor.guild_id is not None and actor.guild_id in self.guilds:
            return Standing.ALLOWED
        if actor.chat_id is not None and actor.chat_id in self.chats:
            return Standing.ALLOWED
        return Standing.REFUSED

    def allows(self, actor: Actor) -> bool:
        return self.standing(actor) is not Standing.REFUSED

    def refusal(self, user_id: int) -> str:
        """What a refused user is told: their id, and the key the owner adds it to."""
        return (
            f"You're not allowed to use this bot. Ask its owner to add your user id {user_id} "
            f"to {self.platform}.allowed_user_ids."
        )

    def banned_refusal(self, user_id: int) -> str:
        """What a user banned by an admin (``/ban``) is told."""
        return banned_refusal(user_id)

    def summary(self) -> str:
        """Who can use the bot, in one plain line (``framechain check``, the start-up log)."""
        if self.open:
            return f"{self.platform}: OPEN, anyone can use your GPU ({self.platform}.open = true)"
        parts = [
            f"{label} {_ids(ids)}"
            for label, ids in (
                ("admins", self.admins),
                ("users", self.users),
                ("anyone with roles", self.roles),
                ("anyone in guilds", self.guilds),
                ("anyone in chats", self.chats),
            )
            if ids
        ]
        if not parts:
            return (
                f"{self.platform}: CLOSED, nobody can use the bot yet; add user ids to "
                f"{self.platform}.admin_ids or {self.platform}.allowed_user_ids"
            )
        return f"{self.platform}: only {'; '.join(parts)}; everyone else is refused"


def banned_refusal(user_id: int | str) -> str:
    """What a user banned by an admin (``/ban``) is told, on every platform (a web user's id is
    their token's name)."""
    return f"You're not allowed to use this bot: its admins have blocked your user id {user_id}."


def _ids(ids: Iterable[int]) -> str:
    return ", ".join(str(i) for i in sorted(ids))


def access_rules(config: Config) -> list[AccessRule]:
    """The rule of each enabled platform."""
    rules = {"discord": AccessRule.for_discord(config.discord), "telegram": AccessRule.for_telegram(config.telegram)}
    # The web chat's users are its tokens (bot.web.auth), each let in by having one.
    return [rules[name] for name in config.enabled_platforms if name in rules]


class RefusalLedger(Protocol):
    """Where the notices are kept across restarts (:class:`bot.store.Store`)."""

    async def claim_refusal_notice(self, platform: str, user_id: str, *, now: float, interval: float) -> float:
        """When the user was last told, after recording ``now`` unless that was less than
        ``interval`` seconds ago: ``now`` means "tell them now"."""
        ...


class RefusalNotices:
    """Decides when a refused user is told again: once per ``interval`` per user. Remembered in
    memory (so a stranger's flood does not reach the database with every message) and, with a
    ``ledger``, in the store, so a restart does not tell them again at once."""

    def __init__(
        self,
        interval: float = REFUSAL_INTERVAL,
        *,
        ledger: RefusalLedger | None = None,
        memory: int = REFUSAL_MEMORY,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.interval = interval
        self.ledger = ledger
        self.memory = memory
        self.clock = clock  # wall time: what is stored must mean the same after a reboot
        self._told: OrderedDict[tuple[str, str], float] = OrderedDict()

    async def due(self, platform: str, user_id: str) -> bool:
        """True when ``user_id`` should be told now (and records that they were)."""
        now = self.clock()
        key = (platform, user_id)
        last = self._told.get(key)
        if last is not None and now - last < self.interval:
            return False
        told_at = now
        if self.ledger is not None:
            try:
                told_at = await self.ledger.claim_refusal_notice(platform, user_id, now=now, interval=self.interval)
            except Exception:  # a store that can't take it must not turn a refusal into an apology
                log.warning("refusal notices: the store could not record one; deciding from memory", exc_info=True)
        # Told now, or (the store says) by a process before this one.
        self._told[key] = told_at
        self._told.move_to_end(key)
        while len(self._told) > self.memory:
            self._told.popitem(last=False)
        return told_at >= now
