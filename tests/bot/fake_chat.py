"""A fake chat platform: a ChatPort that records what the service sends, for service tests.

It stands in for the outside world (Discord/Telegram servers), not for any of our code.
"""

from __future__ import annotations

import asyncio
import itertools
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bot.ports import IGNORE_SENT, NO_INTENT, ChatRef, FinalPost, MaybeSent, ReviewPage, SegmentPost, Sending
from bot.ports import Sent as SentCallback


@dataclass
class Sent:
    kind: str  # text | edit | media | delete | segment | close | final | photo
    chat: ChatRef
    text: str = ""
    message_id: str = ""
    post: Any = None
    #: segment: the roles this call sent (video, frame); final: the part numbers it sent.
    roles: list[Any] = field(default_factory=list)
    #: close: the controls left on the message.
    keep: tuple[tuple[str, str], ...] = ()


class Crash(Exception):
    """The bot process 'dies' in the middle of a post (see FakeChat.crash_after)."""


@dataclass
class FakeChat:
    platform: str = "telegram"
    limit: int = 50 * 1024 * 1024
    fail_edits: bool = False
    #: The platform is unreachable for posting videos.
    fail_posts: bool = False
    #: The platform is unreachable for text messages too.
    fail_texts: bool = False
    #: Raise ``crash_with`` right after the message with this role (``video``, ``frame``,
    #: ``final.1``…) was accepted and reported, once: a crash in the middle of a post.
    crash_after: str | None = None
    crash_with: type[BaseException] = Crash
    #: Right after the message with this role was accepted, its answer is lost, once: the port
    #: raises ``MaybeSent`` (what a timeout on the way back, or a crash, leaves): the platform has
    #: the message, the bot's record does not.
    crash_unheard: str | None = None
    #: Fail the send of the message with this role, once, with an answer from the platform (it
    #: created nothing): ``ConnectionError`` after the service recorded its intent.
    refuse: str | None = None
    #: What the port claims (``ChatPort.resend_window``): like Discord's nonce, a send repeated
    #: with the same key within this many seconds is not a second message (this fake only
    #: records the keys, see ``keys``); 0: like Telegram, no such key.
    resend_window: float = 0.0
    #: The idempotency key each message was asked for with, by role (``sending``), in order.
    keys: list[tuple[str, str]] = field(default_factory=list)
    #: Like Telegram: a picture cannot go into a text message, so a new message replaces it
    #: (after ``media_delay`` seconds: an upload under way).
    media_replaces: bool = False
    media_delay: float = 0.0
    sent: list[Sent] = field(default_factory=list)
    _ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1000))
    _changed: asyncio.Condition = field(default_factory=asyncio.Condition)
    _pictured: set[str] = field(default_factory=set)

    def upload_limit(self, chat: ChatRef) -> int:
        return self.limit

    async def _record(self, item: Sent) -> None:
        self.sent.append(item)
        async with self._changed:
            self._changed.notify_all()

    async def _accepted(self, record: Sent, role: Any, message_id: str, sent: SentCallback) -> None:
        record.roles.append(role)
        role = role if isinstance(role, str) else f"final.{role}"
        if self.crash_unheard == role:
            self.crash_unheard = None
            raise MaybeSent(f"no answer after sending {role}")
        await sent(role, message_id)
        if self.crash_after == role:
            self.crash_after = None
            raise self.crash_with(f"crashed after sending {role}")

    def _refused(self, role: str) -> None:
        if self.refuse == role:
            self.refuse = None
            raise ConnectionError(f"the platform refused {role}")

    async def send_text(self, chat: ChatRef, text: str, controls: tuple[tuple[str, str], ...] = ()) -> str:
        if self.fail_texts:
            raise ConnectionError("send failed")
        message_id = str(next(self._ids))
        await self._record(Sent("text", chat, text=text, message_id=message_id, keep=controls))
        return message_id

    async def send_photo(self, chat: ChatRef, path: Path, caption: str) -> str:
        if self.fail_posts:
            raise ConnectionError("platform unreachable")
        assert path.is_file()
        message_id = str(next(self._ids))
        await self._record(Sent("photo", chat, text=caption, message_id=message_id, post=path))
        return message_id

    async def edit_text(self, chat: ChatRef, message_id: str, text: str) -> None:
        if self.fail_edits:
            raise ConnectionError("edit failed")
        await self._record(Sent("edit", chat, text=text, message_id=message_id))

    async def edit_media(self, chat: ChatRef, message_id: str, path: Path, text: str) -> str:
        if self.fail_edits:
            raise ConnectionError("edit failed")
        assert path.is_file()
        await asyncio.sleep(self.media_delay)
        if self.media_replaces and message_id not in self._pictured:
            new_id = str(next(self._ids))
            self._pictured.add(new_id)
            await self._record(Sent("media", chat, text=text, message_id=new_id, post=path))
            await self._record(Sent("delete", chat, message_id=message_id))
            return new_id
        await self._record(Sent("media", chat, text=text, message_id=message_id, post=path))
        return message_id

    async def post_segment(
        self, chat: ChatRef, post: SegmentPost, sent: SentCallback = IGNORE_SENT, sending: Sending = NO_INTENT
    ) -> dict[str, str]:
        if self.fail_posts:
            raise ConnectionError("platform unreachable")
        assert Path(post.video).exists() and Path(post.last_frame).exists()
        ids: dict[str, str] = {}
        record = Sent("segment", chat, text=post.caption, post=post)
        await self._record(record)
        for role in ("video", "frame"):
            if role in post.already:
                continue
            self.keys.append((role, await sending((role,))))
            self._refused(role)
            ids[role] = str(next(self._ids))
            if role == "video":
                record.message_id = ids[role]
            await self._accepted(record, role, ids[role], sent)
        return ids

    async def settings_changed(self, chat: ChatRef, session_id: str, current: dict[str, str] | None) -> None:
        await self._record(Sent("settings", chat, text="" if current is None else repr(sorted(current.items()))))

    async def delete_message(self, chat: ChatRef, message_id: str) -> None:
        await self._record(Sent("delete", chat, message_id=message_id))

    async def close_controls(
        self, chat: ChatRef, message_ids: dict[str, str], note: str, keep: tuple[tuple[str, str], ...] = ()
    ) -> None:
        await self._record(Sent("close", chat, text=note, message_id=message_ids.get("video", ""), keep=keep))

    async def show_review(self, chat: ChatRef, message_ids: dict[str, str], page: ReviewPage) -> None:
        if self.fail_edits:
            raise ConnectionError("edit failed")
        message_id = message_ids.get("video", "")
        await self._record(Sent("page", chat, text=page.caption, message_id=message_id, keep=page.controls, post=page))

    async def post_final(
        self, chat: ChatRef, post: FinalPost, sent: SentCallback = IGNORE_SENT, sending: Sending = NO_INTENT
    ) -> list[str]:
        if self.fail_posts:
            raise ConnectionError("platform unreachable")
        record = Sent("final", chat, text=post.caption, post=post)
        await self._record(record)
        ids = []
        for number in range(1, len(post.parts) + 1):
            if number not in post.already:
                self.keys.append((f"final.{number}", await sending((f"final.{number}",))))
                self._refused(f"final.{number}")
                ids.append(str(next(self._ids)))
                await self._accepted(record, number, ids[-1], sent)
        return ids

    # --- for tests ---

    def of(self, kind: str, chat: ChatRef | None = None) -> list[Sent]:
        return [s for s in self.sent if s.kind == kind and (chat is None or s.chat == chat)]

    def texts(self, chat: ChatRef | None = None) -> list[str]:
        return [s.text for s in self.of("text", chat)]

    def controls_of(self, message_id: str) -> tuple[tuple[str, str], ...] | None:
        """The controls a segment's video message shows now (None: not a segment video)."""
        shown = None
        for s in self.sent:
            if s.kind == "segment" and s.message_id == message_id:
                shown = s.post.controls
            elif s.kind in ("close", "page") and s.message_id == message_id:
                shown = s.keep
        return shown

    async def wait_for(self, kind: str, count: int = 1, chat: ChatRef | None = None, timeout: float = 60) -> list[Sent]:
        async def enough() -> list[Sent]:
            async with self._changed:
                await self._changed.wait_for(lambda: len(self.of(kind, chat)) >= count)
            return self.of(kind, chat)

        return await asyncio.wait_for(enough(), timeout)
