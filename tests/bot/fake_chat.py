"""A fake chat platform: a ChatPort that records what the service sends, for service tests.

It stands in for the outside world (Discord/Telegram servers), not for any of our code.
"""

from __future__ import annotations

import asyncio
import itertools
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bot.ports import IGNORE_SENT, ChatRef, FinalPost, SegmentPost
from bot.ports import Sent as SentCallback


@dataclass
class Sent:
    kind: str  # text | edit | segment | close | final
    chat: ChatRef
    text: str = ""
    message_id: str = ""
    post: Any = None


@dataclass
class FakeChat:
    platform: str = "telegram"
    limit: int = 50 * 1024 * 1024
    fail_edits: bool = False
    #: The platform is unreachable for posting videos.
    fail_posts: bool = False
    sent: list[Sent] = field(default_factory=list)
    _ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1000))
    _changed: asyncio.Condition = field(default_factory=asyncio.Condition)

    def upload_limit(self, chat: ChatRef) -> int:
        return self.limit

    async def _record(self, item: Sent) -> None:
        self.sent.append(item)
        async with self._changed:
            self._changed.notify_all()

    async def send_text(self, chat: ChatRef, text: str) -> str:
        message_id = str(next(self._ids))
        await self._record(Sent("text", chat, text=text, message_id=message_id))
        return message_id

    async def edit_text(self, chat: ChatRef, message_id: str, text: str) -> None:
        if self.fail_edits:
            raise ConnectionError("edit failed")
        await self._record(Sent("edit", chat, text=text, message_id=message_id))

    async def post_segment(self, chat: ChatRef, post: SegmentPost, sent: SentCallback = IGNORE_SENT) -> dict[str, str]:
        if self.fail_posts:
            raise ConnectionError("platform unreachable")
        assert Path(post.video).exists() and Path(post.last_frame).exists()
        ids = {role: str(next(self._ids)) for role in ("video", "frame") if role not in post.already}
        await self._record(Sent("segment", chat, text=post.caption, message_id=ids.get("video", ""), post=post))
        for role, message_id in ids.items():
            await sent(role, message_id)
        return ids

    async def delete_message(self, chat: ChatRef, message_id: str) -> None:
        await self._record(Sent("delete", chat, message_id=message_id))

    async def close_controls(self, chat: ChatRef, message_ids: dict[str, str], note: str) -> None:
        await self._record(Sent("close", chat, text=note, message_id=message_ids.get("video", "")))

    async def post_final(self, chat: ChatRef, post: FinalPost, sent: SentCallback = IGNORE_SENT) -> list[str]:
        if self.fail_posts:
            raise ConnectionError("platform unreachable")
        numbers = [n for n in range(1, len(post.parts) + 1) if n not in post.already]
        ids = [str(next(self._ids)) for _ in numbers]
        await self._record(Sent("final", chat, text=post.caption, post=post))
        for number, message_id in zip(numbers, ids, strict=True):
            await sent(f"final.{number}", message_id)
        return ids

    # --- for tests ---

    def of(self, kind: str, chat: ChatRef | None = None) -> list[Sent]:
        return [s for s in self.sent if s.kind == kind and (chat is None or s.chat == chat)]

    def texts(self, chat: ChatRef | None = None) -> list[str]:
        return [s.text for s in self.of("text", chat)]

    async def wait_for(self, kind: str, count: int = 1, chat: ChatRef | None = None, timeout: float = 60) -> list[Sent]:
        async def enough() -> list[Sent]:
            async with self._changed:
                await self._changed.wait_for(lambda: len(self.of(kind, chat)) >= count)
            return self.of(kind, chat)

        return await asyncio.wait_for(enough(), timeout)
