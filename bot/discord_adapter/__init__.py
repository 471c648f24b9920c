"""The Discord front end (discord.py 2.x).

``build_discord(config, conversation)`` gives a :class:`DiscordFrontEnd`: ``.port`` is the
``ChatPort`` the service talks through, ``start()``/``stop()`` run the gateway connection.
The package is not called ``discord`` so that it never shadows the library.
"""

from bot.discord_adapter.client import FramechainClient
from bot.discord_adapter.front import DiscordFrontEnd, build_discord
from bot.discord_adapter.port import DiscordPort

__all__ = ["DiscordFrontEnd", "DiscordPort", "FramechainClient", "build_discord"]
