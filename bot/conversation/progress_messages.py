"""The progress message of each job: posted when the job is queued, edited as it moves on (at
most every few seconds, newest text only, never holding up the job's events), and deleted once
the take's result is up. Purely cosmetic: a failure here changes nothing else."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from bot.conversation import delivery, progress
from bot.conversation.background import BackgroundTasks
from bot.conversation.chats import Chats
from bot.ports import Action, ChatRef, control_id
from bot.store import SegmentRow, Store

log = logging.getLogger("framechain.service")


@dataclass
class ProgressMessage:
    """One progress message per job, edited at most every ``interval`` seconds."""

    chat: ChatRef
    message_id: str | None
    label: str
    #: The job was interrupted by a restart and queued again (said until it starts).
    restarted: bool = False
    #: Its worker went away mid-job and it is tried again (said until it starts again).
    retried: bool = False
    #: It waits behind other people's jobs on its server: the step estimate starts after.
    waiting: bool = False
    started: float | None = None
    last_edit: float = float("-inf")
    last_text: str = ""
    #: The newest text not yet sent, and the task sending it.
    pending: str | None = None
    sender: asyncio.Task[None] | None = None
    segment_id: int = 0
    #: The newest live preview not yet shown, and when the last one went out.
    pending_picture: Path | None = None
    last_picture: float = float("-inf")


def label(segment: SegmentRow) -> str:
    return progress.label(segment.idx, segment.attempt)


class ProgressMessages:
    def __init__(
        self,
        store: Store,
        chats: Chats,
        background: BackgroundTasks,
        *,
        interval: float,
        clock: Callable[[], float],
    ) -> None:
        self.store = store
        self.chats = chats
        self.background = background
        self.interval = interval
        self.clock = clock
        self._shown: dict[int, ProgressMessage] = {}
        #: Segments whose progress message is being deleted.
        self._retiring: set[int] = set()
        #: Edits still going out, by segment, also for messages forgotten meanwhile: a preview
        #: may replace the message (a new id), and retiring must wait for that.
        self._sending: dict[int, asyncio.Task[None]] = {}

    def get(self, segment_id: int) -> ProgressMessage | None:
        return self._shown.get(segment_id)

    def forget(self, segment_id: int) -> None:
        self._shown.pop(segment_id, None)

    async def post(self, chat: ChatRef, segment: SegmentRow) -> None:
        """A new job's message ("queued"), recorded on its segment."""
        shown = ProgressMessage(chat=chat, message_id=None, label=label(segment), segment_id=segment.id)
        self._shown[segment.id] = shown
        with contextlib.suppress(Exception):
            text = progress.queued(shown.label)
            stop = (("✖ Stop", control_id(segment.id, Action.STOP)),)  # one tap, all along
            shown.message_id = await self.chats.port(chat).send_text(chat, text, controls=stop)
            shown.last_text = text
            await self.store.record_posted(segment.id, delivery.PROGRESS, shown.message_id)

    def resume(self, chat: ChatRef, segment: SegmentRow) -> None:
        """A job queued again after a restart takes its message back."""
        shown = ProgressMessage(
            chat=chat,
            message_id=_str_or_none(segment.posted.get(delivery.PROGRESS)),
            label=label(segment),
            restarted=True,
            segment_id=segment.id,
        )
        self._shown[segment.id] = shown
        # Not a silent jump back to "queued": the user sees why the job starts over.
        self.queue_edit(shown, progress.queued(shown.label, restarted=True))

    async def edit(self, segment_id: int, text: str, *, force: bool = False) -> None:
        shown = self._shown.get(segment_id)
        if shown is None or text == shown.last_text:
            return
        now = self.clock()
        if not force and now - shown.last_edit < self.interval:
            return
        shown.last_edit = now
        self.queue_edit(shown, text)

    async def picture(self, segment_id: int, path: Path, text: str) -> None:
        """A live preview into the message, with ``text``: no more often than the edit interval
        (a newer one arriving sooner is dropped: the next comes in a few steps)."""
        shown = self._shown.get(segment_id)
        if shown is None:
            return
        now = self.clock()
        if now - shown.last_picture < self.interval:
            return
        shown.last_picture = shown.last_edit = now
        shown.pending_picture = path
        self.queue_edit(shown, text)

    def queue_edit(self, shown: ProgressMessage, text: str) -> None:
        """Edits go out from a task per message, newest text only: a platform's flood wait
        must never hold up the job's events (and with them the next job)."""
        shown.last_text = text
        shown.pending = text
        if shown.message_id is None or (shown.sender is not None and not shown.sender.done()):
            return
        sender = shown.sender = self.background.spawn(self._send_edits(shown), "progress-edits")
        self._sending[shown.segment_id] = sender

        def sent(task: asyncio.Task[None]) -> None:
            if self._sending.get(shown.segment_id) is task:
                del self._sending[shown.segment_id]

        sender.add_done_callback(sent)

    async def _send_edits(self, shown: ProgressMessage) -> None:
        while shown.pending is not None and shown.message_id is not None:
            text, shown.pending = shown.pending, None
            picture, shown.pending_picture = shown.pending_picture, None
            port = self.chats.port(shown.chat)
            try:
                if picture is None:
                    await port.edit_text(shown.chat, shown.message_id, text)
                    continue
                message_id = await port.edit_media(shown.chat, shown.message_id, picture, text)
                if message_id != shown.message_id:
                    # The platform put the picture into a new message: that one is the progress now.
                    shown.message_id = message_id
                    await self.store.record_posted(shown.segment_id, delivery.PROGRESS, message_id)
            except Exception as exc:  # an edit is cosmetic: a failure changes nothing else
                log.debug("progress edit failed: %s", exc)

    def retire(self, chat: ChatRef, segment_id: int) -> None:
        """The take's result is up: its progress message goes, once its last edit is out. Best
        effort and tried once (the id is then recorded as gone), in the background."""
        shown = self._shown.pop(segment_id, None)
        if segment_id in self._retiring:
            return
        self._retiring.add(segment_id)

        async def retire() -> None:
            try:
                sender = shown.sender if shown is not None else self._sending.get(segment_id)
                if sender is not None:
                    with contextlib.suppress(Exception):
                        await sender
                message_id = (await self.store.get_segment(segment_id)).posted.get(delivery.PROGRESS)
                if message_id is None:
                    return
                try:
                    await self.chats.port(chat).delete_message(chat, str(message_id))
                except Exception as exc:
                    log.info("progress message %s not deleted: %s", message_id, exc)
                await self.store.record_posted(segment_id, delivery.PROGRESS, None)
            finally:
                self._retiring.discard(segment_id)

        self.background.spawn(retire(), f"retire-progress-{segment_id}")


def _str_or_none(value: object) -> str | None:
    return None if value is None else str(value)
