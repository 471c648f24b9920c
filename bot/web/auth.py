"""Who is at the other end of a request to the web server.

- No tokens configured (only allowed on a loopback address): the person at the keyboard is the
  one local user, owner and admin. A page on another site could still make the browser call a
  loopback address, so requests must name this server in ``Host`` (no DNS rebinding) and, for
  websockets and posts, come from its own pages (``Origin``).
- Tokens configured: every request (page, websocket, media) needs one, or gets 401. A browser
  presents it once as ``?token=`` (the server answers with a cookie and a redirect that drops it
  from the address bar); scripts may send ``Authorization: Bearer``. Tokens are compared in
  constant time and never logged.
"""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from aiohttp import web

from shared.config import LOCAL_WEB_USER, WebConfig, is_loopback

COOKIE = "framechain_token"
#: Posts must carry this header: a page of another site cannot add it without a CORS preflight,
#: which this server never grants.
POST_HEADER = "X-Framechain"

NEEDS_TOKEN = (
    "This framechain needs an access token. Open the address it was shared with "
    "(ending in ?token=...), or ask its owner for one ([[web.tokens]] in its configuration)."
)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass(frozen=True)
class WebUser:
    name: str
    admin: bool


def user_of(request: web.Request) -> WebUser:
    user = request.get("framechain_user")
    assert isinstance(user, WebUser)
    return user


class Gate:
    """Decides each request's user, or refuses it."""

    def __init__(self, config: WebConfig, port: int) -> None:
        self.config = config
        host, _ = config.host_port
        self.local = not config.tokens
        names = {host, "127.0.0.1", "localhost", "[::1]"} if is_loopback(host) else {host}
        self.hosts = {f"{name}:{port}" for name in names} | ({"localhost", "127.0.0.1"} if port == 80 else set())

    def token_user(self, token: str) -> WebUser | None:
        found: WebUser | None = None
        for entry in self.config.tokens:
            # Every token is compared, so the time taken says nothing about which one matched.
            if hmac.compare_digest(entry.token.get().encode(), token.encode()):
                found = WebUser(entry.user, entry.admin)
        return found

    def _presented(self, request: web.Request) -> str:
        header = request.headers.get("Authorization", "")
        if header.startswith("Bearer "):
            return header[len("Bearer ") :].strip()
        return request.query.get("token") or request.cookies.get(COOKIE, "")

    def _same_origin(self, request: web.Request) -> bool:
        origin = request.headers.get("Origin")
        return origin is None or origin in (f"http://{request.host}", f"https://{request.host}")

    @web.middleware
    async def middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        if self.local and request.host not in self.hosts:
            raise web.HTTPForbidden(text=f"This server answers only to {sorted(self.hosts)[0]}.")
        if not self._same_origin(request):
            raise web.HTTPForbidden(text="Requests from other sites are refused.")
        if request.method == "POST" and request.headers.get(POST_HEADER) != "1":
            raise web.HTTPForbidden(text="Posts come from the chat page only.")
        if self.local:
            request["framechain_user"] = WebUser(LOCAL_WEB_USER, True)
            return await handler(request)
        token = self._presented(request)
        user = self.token_user(token) if token else None
        if user is None:
            raise web.HTTPUnauthorized(text=NEEDS_TOKEN, headers={"WWW-Authenticate": 'Bearer realm="framechain"'})
        request["framechain_user"] = user
        if "token" in request.query and request.method == "GET":
            # Into a cookie, out of the address bar (and of the history and any shared screenshot).
            query = [(k, v) for k, v in request.query.items() if k != "token"]
            response = web.HTTPSeeOther(request.rel_url.with_query(query))
            response.set_cookie(COOKIE, token, httponly=True, samesite="Strict", path="/")
            raise response
        return await handler(request)
