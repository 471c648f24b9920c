"""The web chat's HTTP side: the page, the user's actions, the websocket and the media.

What a user does reaches the conversation as it does from Telegram: a picture (``/start`` when
the conversation has no session yet), a prompt, a typed ``/command``, a button's control id.
Answers to what was typed go into the chat, as on Telegram; what the service has to say about a
button press to the presser alone (a stale button, a refusal) comes back in the press's answer
and shows as a notice beside the chat, like a Telegram toast. A user an admin banned (``/ban
web:NAME``) gets the sentence the other platforms use for every action (403), before anything
they send is read; the admin commands answer in the chat they were typed in, which is the
user's alone. Media are served by message id and
position, looked up in the message log, and only from inside the data dir.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from pathlib import Path

from aiohttp import BodyPartReader, WSMsgType, web

from bot import core_admin
from bot.access import banned_refusal
from bot.ports import ChatRef, Conversation, parse_control
from bot.web.auth import WebUser, user_of
from bot.web.messages import PICTURE_MARK, MessageLog
from bot.web.port import PLATFORM, WebPort
from shared.config import Config
from shared.pictures import too_large_text

log = logging.getLogger("framechain.web")

STATIC = Path(__file__).parent / "static"
#: Commands handed to Conversation.command (start and end have methods of their own).
FORWARDED = frozenset({"finish", "undo", "cancel", "status", "settings", "help", "regenerate", "approve"})
START_HINT = "Attach a picture (🖼) with your first prompt to start a video, or send /help."
_COMMAND = re.compile(r"^/(?P<name>[A-Za-z0-9_]{1,32})(?:\s+(?P<arg>.*))?$", re.S)
_THREAD = re.compile(r"^[0-9a-f]{12}$")
_MEDIA_TYPES = {".mp4": "video/mp4", ".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg"}


@dataclass
class Notes:
    """What the service said to the acting user alone, during one request."""

    texts: list[str] = field(default_factory=list)

    async def __call__(self, text: str) -> None:
        self.texts.append(text)


class ChatRoutes:
    def __init__(self, config: Config, conversation: Conversation, port: WebPort) -> None:
        self.config = config
        self.conversation = conversation
        self.port = port
        self.data_dir = config.data_dir.resolve()

    def add_to(self, app: web.Application) -> None:
        app.router.add_get("/", self.page)
        app.router.add_static("/static/", STATIC, append_version=True)
        app.router.add_get("/api/threads", self.threads)
        app.router.add_post("/api/threads", self.new_thread)
        app.router.add_post("/api/send", self.send)
        app.router.add_post("/api/press", self.press)
        app.router.add_get("/ws", self.socket)
        app.router.add_get(r"/media/{message:\d{1,18}}/{index:\d{1,3}}", self.media)

    @property
    def messages(self) -> MessageLog:
        return self.port.messages

    async def page(self, request: web.Request) -> web.StreamResponse:
        return web.FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-cache"})

    async def _refuse_banned(self, user: WebUser) -> None:
        if await self.conversation.banned(PLATFORM, user.name):
            raise web.HTTPForbidden(text=banned_refusal(user.name))

    async def _thread(self, user: WebUser, thread: str) -> ChatRef:
        if not _THREAD.match(thread) or not await self.messages.has_thread(user.name, thread):
            raise web.HTTPNotFound(text="No such conversation.")
        return ChatRef(PLATFORM, user.name, thread)

    async def threads(self, request: web.Request) -> web.Response:
        user = user_of(request)
        await self._refuse_banned(user)
        threads = await self.messages.threads(user.name)
        return web.json_response({"user": user.name, "admin": user.admin, "threads": [t.view() for t in threads]})

    async def new_thread(self, request: web.Request) -> web.Response:
        user = user_of(request)
        await self._refuse_banned(user)
        thread = await self.messages.new_thread(user.name)
        return web.json_response({"thread": thread})

    async def send(self, request: web.Request) -> web.Response:
        """A post from the prompt box: ``thread``, ``text`` and an optional ``picture``."""
        user = user_of(request)
        await self._refuse_banned(user)  # before the upload is read
        fields, picture, too_large = await self._read_form(request)
        chat = await self._thread(user, fields.get("thread", ""))
        text = fields.get("text", "").strip()
        if text or picture is not None or too_large:
            shown = text if picture is None else f"{PICTURE_MARK} {text}".strip()
            await self.port.publish(await self.messages.add(user.name, chat.thread_id, "you", shown))
        if too_large:
            await self.port.send_text(chat, too_large_text(too_large, self.config.limits.image_bytes))
        else:
            await self._deliver(chat, user, text, picture)
        return web.json_response({"notes": []})

    async def _read_form(self, request: web.Request) -> tuple[dict[str, str], bytes | None, int]:
        """The form's fields and picture, or the picture's size when it is over the limit
        (read no further than the limit: nothing larger is held in memory)."""
        limit = self.config.limits.image_bytes
        fields: dict[str, str] = {}
        picture: bytes | None = None
        too_large = 0
        if not request.content_type.startswith("multipart/"):
            raise web.HTTPBadRequest(text="Expected a form (multipart/form-data).")
        reader = await request.multipart()
        while (part := await reader.next()) is not None:
            if not isinstance(part, BodyPartReader):
                continue
            if part.name == "picture":
                data = bytearray()
                while chunk := await part.read_chunk(256 * 1024):
                    data += chunk
                    if len(data) > limit:
                        too_large = len(data)
                        while more := await part.read_chunk(256 * 1024):  # drain, counting
                            too_large += len(more)
                        break
                if data and not too_large:
                    picture = bytes(data)
            elif part.name in ("thread", "text"):
                fields[part.name] = await _read_text(part)
        return fields, picture, too_large

    async def _deliver(self, chat: ChatRef, user: WebUser, text: str, picture: bytes | None) -> None:
        """As Telegram does with a message. The answers to what was typed go into the chat (no
        ``reply``): every web chat is its user's alone, and the answer stays in its history."""
        conversation, name, admin = self.conversation, user.name, user.admin
        match = _COMMAND.match(text)
        command, argument = (match["name"].lower(), (match["arg"] or "").strip()) if match else ("", "")
        if command == "start" or (
            picture is not None and not command and await conversation.current_settings(chat, name) is None
        ):
            # A picture in a conversation without a session starts one, its text the first prompt.
            prompt = argument if command == "start" else text
            await conversation.start(chat, name, picture, prompt or None, is_admin=admin)
        elif command == "end":
            clear = argument.lower() == "clear"
            await conversation.end_frame(chat, name, picture, clear=clear, is_admin=admin)
        elif command in FORWARDED:
            await conversation.command(chat, name, command, argument, is_admin=admin)
        elif command in core_admin.ADMIN_COMMANDS:
            # Answered here, as in the admin's private chat on Telegram (refusals too).
            async def into_chat(answer: str) -> None:
                await self.port.send_text(chat, answer)

            await conversation.command(chat, name, command, argument, is_admin=admin, reply=into_chat)
        elif command:
            await self.port.send_text(chat, f"I don't know /{command}. Send /help for the commands.")
        elif picture is None and await conversation.current_settings(chat, name) is None:
            # Every web conversation is a thread, where the service leaves chatter alone.
            await self.port.send_text(chat, START_HINT)
        else:
            if picture is not None:
                await conversation.image(chat, name, picture)
            if text:
                await conversation.text(chat, name, text)

    async def press(self, request: web.Request) -> web.Response:
        """A button: ``{"thread": ..., "data": "seg:12:approve"}``."""
        user = user_of(request)
        await self._refuse_banned(user)
        body = await request.json()
        if not isinstance(body, dict):
            raise web.HTTPBadRequest(text="Expected a JSON object.")
        chat = await self._thread(user, str(body.get("thread", "")))
        control = parse_control(str(body.get("data", "")))
        notes = Notes()
        if control is None:
            raise web.HTTPBadRequest(text="Not a button of this chat.")
        segment_id, action = control
        # The message the button was on: ◀ ▶ pages that one. Only a number is passed on; the
        # service looks it up among the messages it recorded for the session.
        message = str(body.get("message", ""))
        await self.conversation.control(
            chat,
            user.name,
            segment_id,
            action,
            is_admin=user.admin,
            reply=notes,
            message_id=message if message.isdigit() else None,
        )
        return web.json_response({"notes": notes.texts})

    async def socket(self, request: web.Request) -> web.WebSocketResponse:
        """Live updates: the page says which conversation it shows (``{"open": thread}``) and
        gets its history, then every change to the user's messages as it happens."""
        user = user_of(request)
        socket = web.WebSocketResponse(heartbeat=20.0)
        await socket.prepare(request)
        hub = self.port.hub
        hub.add(user.name, socket)
        try:
            async for frame in socket:
                if frame.type is not WSMsgType.TEXT:
                    continue
                try:
                    thread = str(frame.json().get("open", ""))
                except (ValueError, AttributeError):
                    continue
                if await self.conversation.banned(PLATFORM, user.name):
                    await socket.send_json({"type": "refused", "text": banned_refusal(user.name)})
                    continue
                if not _THREAD.match(thread) or not await self.messages.has_thread(user.name, thread):
                    await socket.send_json({"type": "missing", "thread": thread})
                    continue
                history = await self.messages.history(user.name, thread)
                await socket.send_json({"type": "history", "thread": thread, "messages": [m.view() for m in history]})
        finally:
            hub.remove(user.name, socket)
        return socket

    async def media(self, request: web.Request) -> web.StreamResponse:
        user = user_of(request)
        await self._refuse_banned(user)
        message = await self.messages.find(int(request.match_info["message"]))
        index = int(request.match_info["index"])
        if message is None or message.deleted or (message.user != user.name and not user.admin):
            raise web.HTTPNotFound()
        if index >= len(message.media):
            raise web.HTTPNotFound()
        return serve_file(Path(message.media[index][1]), self.data_dir)


#: A form's text is read no further than this: far past any prompt limit, so that a refusal
#: says how long the prompt really was, and nothing huge is held in memory.
TEXT_BYTES = 64 * 1024


async def _read_text(part: BodyPartReader) -> str:
    data = bytearray()
    while chunk := await part.read_chunk(16 * 1024):
        if len(data) < TEXT_BYTES:  # beyond: drained, not kept
            data += chunk[: TEXT_BYTES - len(data)]
    return data.decode(part.get_charset("utf-8"), errors="ignore")


def serve_file(path: Path, data_dir: Path) -> web.StreamResponse:
    """A file of the data dir (ranges served, so a video can seek), with its type from its suffix;
    404 for anything else."""
    try:
        resolved = path.resolve(strict=True)
    except (OSError, RuntimeError):
        raise web.HTTPNotFound() from None
    kind = _MEDIA_TYPES.get(resolved.suffix.lower())
    if kind is None or not resolved.is_relative_to(data_dir) or not resolved.is_file():
        raise web.HTTPNotFound()
    headers = {"Content-Type": kind, "Cache-Control": "private, max-age=3600", "X-Content-Type-Options": "nosniff"}
    return web.FileResponse(resolved, headers=headers)
