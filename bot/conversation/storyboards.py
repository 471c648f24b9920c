"""Sending the storyboard sheet (``bot.conversation.storyboard``): with ``/status`` while the
session has approved segments, and once after the final video.

The sheet is a convenience, so it is best effort: a sheet that cannot be composed or sent is
logged and never stands in the way of the status answer or the video. It is composed off the
event loop, once per set of approved takes (kept in the session's folder under a name made from
them, so asking ``/status`` again sends the same file). The final's sheet is recorded on the
session (``delivery.FINAL_STORYBOARD``) once sent, so a restart never sends it twice.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
from pathlib import Path

from bot.conversation import delivery, drift
from bot.conversation.chats import Chats, chat_of
from bot.conversation.media import Media
from bot.conversation.storyboard import Panel, compose_jpeg
from bot.store import SegmentStatus, SessionRow, Store

log = logging.getLogger("framechain.service")

PREFIX = "storyboard-"


def _segments(count: int) -> str:
    return f"{count} approved segment{'' if count == 1 else 's'}"


class Storyboards:
    def __init__(self, store: Store, media: Media, chats: Chats) -> None:
        self.store = store
        self.media = media
        self.chats = chats

    async def sheet(self, row: SessionRow) -> tuple[Path, int] | None:
        """The session's sheet as it stands, and how many segments it shows; None before the
        first approval (or when a picture of it is gone)."""
        approved = await self.store.list_segments(row.id, (SegmentStatus.APPROVED,))
        if not approved:
            return None
        panels = [Panel(row.first_image)] if row.first_image is not None else []
        for segment, note in zip(approved, drift.tile_lines(approved), strict=True):
            if segment.last_frame is None:
                return None
            panels.append(Panel(segment.last_frame, segment.prompt, note))
        if not all(p.picture.is_file() for p in panels):
            return None
        key = json.dumps([[str(p.picture), p.prompt, p.note] for p in panels], ensure_ascii=False)
        folder = self.media.session_dir(row.id)
        path = folder / f"{PREFIX}{hashlib.sha256(key.encode()).hexdigest()[:16]}.jpg"
        if not path.is_file():
            await asyncio.to_thread(compose_jpeg, panels, path)
            for old in folder.glob(f"{PREFIX}*.jpg"):  # sheets of takes since undone or superseded
                if old != path:
                    old.unlink(missing_ok=True)
        return path, len(approved)

    async def send(self, row: SessionRow, caption: str) -> str | None:
        """Compose and send the sheet; its message id, or None when there was none to send or it
        failed (logged)."""
        chat = chat_of(row)
        try:
            made = await self.sheet(row)
            if made is None:
                return None
            path, count = made
            port = self.chats.port(chat)
            if path.stat().st_size > port.upload_limit(chat):
                log.warning("the storyboard of session %s is over the upload limit; not sent", row.id)
                return None
            return await port.send_photo(chat, path, caption.format(segments=_segments(count)))
        except Exception:
            log.exception("the storyboard of session %s was not sent", row.id)
            return None

    async def with_status(self, row: SessionRow) -> None:
        await self.send(row, "Storyboard so far: the start picture and {segments}.")

    async def with_final(self, row: SessionRow) -> None:
        """After the final's parts are up: the sheet, at most once. It is marked as being sent
        before it goes, so a crash while sending leaves it out rather than sending it twice after
        the restart; one that could not be sent is not retried either (it is not worth a retry
        loop of its own)."""
        row = await self.store.get_session(row.id)
        if delivery.FINAL_STORYBOARD in row.posted:
            return
        await self.store.record_session_posted(row.id, delivery.FINAL_STORYBOARD, "")
        message_id = await self.send(row, "The storyboard of your video: the start picture and {segments}.")
        if message_id is not None:
            await self.store.record_session_posted(row.id, delivery.FINAL_STORYBOARD, message_id)
