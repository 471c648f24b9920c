"""``WebPort``: the conversation service's :class:`~bot.ports.ChatPort` for the web chat.

A chat is a web user (``chat_id``) and one of their conversations (``thread_id``, one per
video). Every message is written to the :class:`~bot.web.messages.MessageLog` first, then pushed
to the user's open pages through the :class:`Hub`; a page that was closed (or a server that
restarted) reads the log again. A segment is posted like on Telegram: the video carrying the
review buttons, then the hand-off frame.
"""

from __future__ import annotations

import contextlib
import logging
from pathlib import Path
from typing import Any

from aiohttp import web

from bot.ports import IGNORE_SENT, NO_INTENT, ChatRef, FinalPost, ReviewPage, SegmentPost, Sending, Sent
from bot.web.messages import IMAGE, VIDEO, Message, MessageLog

log = logging.getLogger("framechain.web")

PLATFORM = "web"
#: The browser downloads from this machine: no platform limit, only a sane bound for one file.
UPLOAD_LIMIT = 4 * 1024**3


class Hub:
    """The open websockets, per user; each gets every change to that user's messages."""

    def __init__(self) -> None:
        self._sockets: dict[str, set[web.WebSocketResponse]] = {}

    def add(self, user: str, socket: web.WebSocketResponse) -> None:
        self._sockets.setdefault(user, set()).add(socket)

    def remove(self, user: str, socket: web.WebSocketResponse) -> None:
        sockets = self._sockets.get(user)
        if sockets is not None:
            sockets.discard(socket)
            if not sockets:
                del self._sockets[user]

    async def publish(self, user: str, event: dict[str, Any]) -> None:
        for socket in list(self._sockets.get(user, ())):
            try:
                await socket.send_json(event)
            except (ConnectionError, RuntimeError) as exc:
                log.debug("web: a page of %s went away: %s", user, exc)
                self.remove(user, socket)

    async def close_all(self) -> None:
        for sockets in list(self._sockets.values()):
            for socket in list(sockets):
                with contextlib.suppress(Exception):
                    await socket.close(code=1001, message=b"server shutting down")
        self._sockets.clear()


class WebPort:
    """What the conversation service calls to speak in web chats."""

    platform = PLATFORM
    #: The message log deduplicates a send repeated with its key, however late (MessageLog.add).
    resend_window = float("inf")

    def __init__(self, hub: Hub) -> None:
        self.hub = hub
        self._log: MessageLog | None = None

    def attach(self, messages: MessageLog) -> None:
        self._log = messages

    def detach(self) -> MessageLog | None:
        messages, self._log = self._log, None
        return messages

    @property
    def messages(self) -> MessageLog:
        if self._log is None:
            raise ConnectionError("the web chat is not running")
        return self._log

    async def publish(self, message: Message) -> None:
        await self.hub.publish(message.user, {"type": "message", "message": message.view()})

    async def add(self, chat: ChatRef, text: str, **kwargs: Any) -> str:
        message = await self.messages.add(chat.chat_id, chat.thread_id, "bot", text, **kwargs)
        await self.publish(message)
        return str(message.id)

    async def _update(self, chat: ChatRef, message_id: str, **columns: Any) -> None:
        message = await self.messages.find(int(message_id))
        if message is None or message.user != chat.chat_id:
            raise KeyError(f"web message {message_id} is not in {chat}")
        await self.publish(await self.messages.update(message.id, **columns))

    def upload_limit(self, chat: ChatRef) -> int:
        return UPLOAD_LIMIT

    async def send_text(self, chat: ChatRef, text: str, controls: tuple[tuple[str, str], ...] = ()) -> str:
        return await self.add(chat, text, controls=controls)

    async def edit_text(self, chat: ChatRef, message_id: str, text: str) -> None:
        await self._update(chat, message_id, text=text)

    async def edit_media(self, chat: ChatRef, message_id: str, path: Path, text: str) -> str:
        await self._update(chat, message_id, text=text, media=[(IMAGE, str(path))])
        return message_id

    async def send_photo(self, chat: ChatRef, path: Path, caption: str) -> str:
        return await self.add(chat, caption, media=[(IMAGE, str(path))])

    async def post_segment(
        self, chat: ChatRef, post: SegmentPost, sent: Sent = IGNORE_SENT, sending: Sending = NO_INTENT
    ) -> dict[str, str]:
        posted: dict[str, str] = {}
        if "video" not in post.already:
            video = [(VIDEO, str(post.video))]
            key = await sending(("video",))
            # The ◀ ▶ pager is a row of buttons like the others on a page.
            controls = post.controls + post.pager
            posted["video"] = await self.add(chat, post.caption, media=video, controls=controls, key=key)
            await sent("video", posted["video"])
        if "frame" not in post.already:
            caption = f"Last frame of segment {post.index}: the next segment starts from it."
            key = await sending(("frame",))
            posted["frame"] = await self.add(chat, caption, media=[(IMAGE, str(post.last_frame))], key=key)
            await sent("frame", posted["frame"])
        return posted

    async def show_review(self, chat: ChatRef, message_ids: dict[str, str], page: ReviewPage) -> None:
        """◀ ▶: the review message shows the other take (video, caption, buttons), and its
        hand-off frame message that take's frame; without files only the words and buttons."""
        target = message_ids.get("video")
        if not target:
            return
        columns: dict[str, Any] = {"text": page.caption, "controls": page.controls + page.pager}
        if page.video is not None:
            columns["media"] = [(VIDEO, str(page.video))]
        await self._update(chat, target, **columns)
        frame = message_ids.get("frame")
        if frame and page.last_frame is not None:
            with contextlib.suppress(KeyError):  # the frame message is gone: nothing to swap
                await self._update(chat, frame, media=[(IMAGE, str(page.last_frame))])

    async def send_private(self, user_id: str, text: str) -> None:
        """To a web user alone (an admin alert): into their newest conversation, or a new one."""
        threads = await self.messages.threads(user_id)
        thread = threads[0].id if threads else await self.messages.new_thread(user_id)
        await self.add(ChatRef(PLATFORM, user_id, thread), text)

    async def settings_changed(self, chat: ChatRef, session_id: str, current: dict[str, str] | None) -> None:
        return None  # the settings are shown by /settings, as text

    async def delete_message(self, chat: ChatRef, message_id: str) -> None:
        with contextlib.suppress(KeyError):  # gone already
            await self._update(chat, message_id, deleted=1)

    async def close_controls(
        self, chat: ChatRef, message_ids: dict[str, str], note: str, keep: tuple[tuple[str, str], ...] = ()
    ) -> None:
        target = message_ids.get("video")
        if target:
            await self._update(chat, target, note=note.strip(), controls=keep)

    async def post_final(
        self, chat: ChatRef, post: FinalPost, sent: Sent = IGNORE_SENT, sending: Sending = NO_INTENT
    ) -> list[str]:
        ids: list[str] = []
        count = len(post.parts)
        for number, part in enumerate(post.parts, 1):
            if number in post.already:
                continue
            caption = post.caption if count == 1 else f"Part {number} of {count}\n{post.caption}"
            key = await sending((f"final.{number}",))
            ids.append(await self.add(chat, caption, media=[(VIDEO, str(part))], key=key))
            await sent(f"final.{number}", ids[-1])
        return ids
