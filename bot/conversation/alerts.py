"""Telling the bot's admins (``discord.admin_ids``, ``telegram.admin_ids``, the web's admin
users) about trouble that
needs the operator, such as a disk running low: logged as a warning every time, sent to each
admin privately at most once per ``every`` seconds per kind, so a full disk does not flood them.

A port with ``send_private(user_id, text)`` (Discord: a DM) is used for that; otherwise the
admin's private chat, whose id is the user id (Telegram), gets an ordinary message. (The web
port's ``send_private`` writes into the web admin's newest conversation.)
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Protocol, runtime_checkable

from bot.conversation.chats import Chats
from bot.ports import ChatRef
from shared.config import Config

log = logging.getLogger("framechain.alerts")

#: Seconds between two private alerts of the same kind.
ALERT_EVERY = 1800.0


@runtime_checkable
class PrivateSender(Protocol):
    async def send_private(self, user_id: str, text: str) -> None: ...


class AdminAlerts:
    def __init__(
        self, config: Config, chats: Chats, *, every: float = ALERT_EVERY, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.config = config
        self.chats = chats
        self.every = every
        self.clock = clock
        self._last: dict[str, float] = {}

    def admins(self) -> list[tuple[str, str]]:
        """(platform, user id) of every configured admin."""
        return [
            *(("discord", str(i)) for i in self.config.discord.admin_ids),
            *(("telegram", str(i)) for i in self.config.telegram.admin_ids),
            *(("web", user) for user in sorted(self.config.web.admins) if self.config.web.listen),
        ]

    async def tell(self, kind: str, text: str) -> None:
        log.warning("%s", text)
        now = self.clock()
        last = self._last.get(kind)
        if last is not None and now - last < self.every:
            return
        self._last[kind] = now
        for platform, user_id in self.admins():
            port = self.chats.ports.get(platform)
            if port is None:
                continue
            try:
                if isinstance(port, PrivateSender):
                    await port.send_private(user_id, text)
                else:
                    await port.send_text(ChatRef(platform, user_id), text)
            except Exception as exc:
                log.warning("could not tell admin %s on %s: %s", user_id, platform, exc)
