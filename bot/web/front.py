"""The web front end: one aiohttp server inside ``framechain run`` for the web chat (always, when
``[web] listen`` is set) and the operator page (``operator_page = true``).

It is a front end like Telegram's: ``port`` goes to the conversation service, ``start`` binds the
address and opens the message log, ``stop`` closes the pages' websockets and the server.
"""

from __future__ import annotations

import logging

from aiohttp import web

from bot.dispatcher import Dispatcher
from bot.ports import Conversation
from bot.store import Store
from bot.web.auth import Gate
from bot.web.chat import ChatRoutes
from bot.web.messages import MessageLog
from bot.web.operator import OperatorRoutes
from bot.web.port import Hub, WebPort
from shared.config import Config, WebConfig

log = logging.getLogger("framechain.web")

#: Above the largest picture, for the form around it (the picture itself is checked as it is read).
FORM_OVERHEAD = 1024 * 1024


#: Only this server's own scripts, media and sockets; never framed; no address (a ?token= one)
#: handed to other sites.
HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; img-src 'self'; media-src 'self'; connect-src 'self'; "
        "style-src 'self'; script-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
    ),
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
}


async def _security_headers(request: web.Request, response: web.StreamResponse) -> None:
    for name, value in HEADERS.items():
        response.headers.setdefault(name, value)


class WebFrontEnd:
    def __init__(self, config: Config, conversation: Conversation) -> None:
        if not config.web.listen:
            raise ValueError("web.listen is not set")
        self.config = config
        self.host, self.port_number = config.web.host_port
        self.port = WebPort(Hub())
        self.operator = OperatorRoutes(config, conversation) if config.web.operator_page else None
        self.gate = Gate(config.web, self.port_number)
        self.app = web.Application(
            middlewares=[self.gate.middleware], client_max_size=config.limits.image_bytes + FORM_OVERHEAD
        )
        ChatRoutes(config, conversation, self.port).add_to(self.app)
        if self.operator is not None:
            self.operator.add_to(self.app)
        self.app.on_shutdown.append(self._close_sockets)
        self.app.on_response_prepare.append(_security_headers)
        self._runner: web.AppRunner | None = None

    @property
    def address(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port_number}/"

    def observe(self, store: Store, dispatcher: Dispatcher | None) -> None:
        """The operator page reads the store (bot.app hands it over); the queue and the workers
        it asks of the conversation (``Conversation.ops_snapshot``), as /queue and /gpu do."""
        if self.operator is not None:
            self.operator.observe(store, dispatcher)

    async def _close_sockets(self, app: web.Application) -> None:
        await self.port.hub.close_all()

    async def start(self) -> None:
        messages = await MessageLog.open(self.config.data_dir / "web-chat.db")
        runner = web.AppRunner(self.app, access_log=None, shutdown_timeout=5.0)
        try:
            await runner.setup()
            await web.TCPSite(runner, self.host, self.port_number).start()
        except BaseException:
            await runner.cleanup()
            await messages.close()
            raise
        self.port.attach(messages)
        self._runner = runner
        log.info(
            "web chat: open %s — %s%s",
            self.address,
            web_access(self.config.web),
            "; operator page at /ops" if self.operator else "",
        )

    async def stop(self) -> None:
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()
        messages = self.port.detach()
        if messages is not None:
            await messages.close()


def web_access(config: WebConfig) -> str:
    """Who can use the web chat, in one line (the start-up log, ``framechain check``)."""
    if not config.tokens:
        return "for the local user only (no tokens, loopback)"
    admins = sorted(config.admins)
    return f"for the {len(config.tokens)} users with a token ({', '.join(t.user for t in config.tokens)}); admins: " + (
        ", ".join(admins) or "none"
    )


def build_web(config: Config, conversation: Conversation) -> WebFrontEnd:
    return WebFrontEnd(config, conversation)
