"""The web front end: a chat platform in the browser (``web``) and the operator page, served by
one aiohttp server inside ``framechain run``."""

from bot.web.front import WebFrontEnd, build_web
from bot.web.port import WebPort

__all__ = ["WebFrontEnd", "WebPort", "build_web"]
