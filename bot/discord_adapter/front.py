"""``DiscordFrontEnd``: the client, its port and the background gateway task."""

from __future__ import annotations

import asyncio
import contextlib
import logging

from bot.discord_adapter.client import FramechainClient
from bot.discord_adapter.port import DiscordPort
from bot.ports import Conversation
from shared.config import Config

log = logging.getLogger("framechain.discord")


class DiscordFrontEnd:
    def __init__(self, config: Config, conversation: Conversation) -> None:
        self.config = config
        self.client = FramechainClient(config, conversation)
        self.port = DiscordPort(self.client, cap=int(config.discord.upload_limit_mb * 1_000_000))
        self._gateway: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Log in (which runs ``setup_hook``: buttons, command sync) and connect in the background.

        Raises here if the token is missing or wrong; a gateway failure later (e.g. the message
        content intent not enabled in the developer portal) is logged."""
        token = self.config.discord.token.get()
        if not token:
            raise ValueError("discord.token is not set (nor FRAMECHAIN_DISCORD_TOKEN)")
        await self.client.login(token)
        self._gateway = asyncio.create_task(self.client.connect(reconnect=True), name="discord gateway")
        self._gateway.add_done_callback(_gateway_ended)

    async def stop(self) -> None:
        await self.client.close()
        if self._gateway is not None:
            with contextlib.suppress(Exception, asyncio.CancelledError):
                await self._gateway
            self._gateway = None


def _gateway_ended(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("discord: the gateway connection ended", exc_info=task.exception())


def build_discord(config: Config, conversation: Conversation) -> DiscordFrontEnd:
    return DiscordFrontEnd(config, conversation)
