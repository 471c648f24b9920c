"""Posting what the user reviews and receives: a take with its review controls, the final video
(re-encoded or split to fit the platform's upload limit), and closing a take's controls once its
review is over.

A post is resumable: each message is recorded (``bot.conversation.delivery``) the moment the
platform accepted it, with the caption stored when the post was decided, so a post cut short by
a crash or an unreachable platform is finished later with only what has no record. Right before
each message is asked for, an intent is recorded (``delivery.plan``): a message a crash left in
doubt is sent again only where the platform deduplicates it, and otherwise offered to the user
with a notice (``bot.conversation.notices``), so a restart never posts anything twice.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path

from bot import core
from bot.conversation import delivery, notices
from bot.conversation.chats import Chats, chat_of
from bot.conversation.post_records import PostRecorder
from bot.conversation.progress_messages import ProgressMessages
from bot.conversation.review_pages import (
    APPROVE_LABEL,
    APPROVED,
    FINISH_LABEL,
    KEPT,
    LOOK,
    PREVIEW_NOTE,
    ReviewPages,
    batch_message,
    full_look,
    live_message,
    message_owner,
    pager,
    review_controls,
)
from bot.conversation.sessions import row_for
from bot.conversation.storyboards import Storyboards
from bot.ports import Action, ChatPort, ChatRef, FinalPost, SegmentPost, control_id
from bot.store import SegmentStatus, SessionRow, Store
from shared.config import Config

log = logging.getLogger("framechain.service")

#: Leave room under a platform's upload limit for multipart overhead and rounding.
UPLOAD_MARGIN = 0.95

__all__ = ["APPROVED", "APPROVE_LABEL", "FINISH_LABEL", "KEPT", "Posting"]


class Posting:
    def __init__(
        self,
        store: Store,
        config: Config,
        chats: Chats,
        progress_messages: ProgressMessages,
        storyboards: Storyboards | None = None,
        *,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.config = config
        self.chats = chats
        self.progress = progress_messages
        #: The storyboard sheet follows the final video (None: no sheet).
        self.storyboards = storyboards
        #: Review messages paging through a segment's takes.
        self.pages = ReviewPages(store, chats, config.generation.fps)
        #: Intents are compared across restarts: wall-clock time.
        self.wall_clock = wall_clock
        #: One post at a time per session: a take or final being posted (a job's result) and the
        #: retry loop or the restart's catch-up must not both find it unsent and both send it.
        self._posting: dict[str, asyncio.Lock] = {}

    def _one_post(self, session_id: str) -> asyncio.Lock:
        return self._posting.setdefault(session_id, asyncio.Lock())

    async def post_segment(
        self, row: SessionRow, segment: core.Segment, caption: str | None = None, *, resend: bool = False
    ) -> None:
        """``resend``: the user asked for the messages a crash left in doubt (📤 Send again)."""
        async with self._one_post(row.id):
            await self._post_segment(row, segment, caption, resend=resend)

    async def post_final(
        self, row: SessionRow, caption: str | None = None, *, retrying: bool = False, resend: bool = False
    ) -> bool:
        async with self._one_post(row.id):
            return await self._post_final(row, caption, retrying=retrying, resend=resend)

    def _plan(self, port: ChatPort, posted: Mapping[str, object], roles: frozenset[str], resend: bool) -> delivery.Plan:
        return delivery.plan(posted, roles, window=port.resend_window, now=self.wall_clock(), resend=resend)

    async def _post_segment(
        self, row: SessionRow, segment: core.Segment, caption: str | None = None, *, resend: bool = False
    ) -> None:
        """Post a take for review, or the rest of it after a crash (only the roles with no
        record), with the caption stored when the post was decided. Each message is recorded
        the moment the platform accepted it. Once the post is whole, the progress message goes."""
        chat = chat_of(row)
        rows = await self.store.list_segments(row.id)
        seg_row = row_for(rows, segment.key)
        port = self.chats.port(chat)
        plan = self._plan(port, seg_row.posted, delivery.SEGMENT_ROLES, resend)
        if plan.doubtful:
            notice = notices.take_notice(seg_row.id, segment.number, plan.doubtful)
            notice_id = await port.send_text(chat, notice.text, notice.controls)
            for role in sorted(plan.doubtful):
                await self.store.record_posted(seg_row.id, role, delivery.unsure(notice_id))
        already = plan.already | plan.doubtful
        if already == delivery.SEGMENT_ROLES:
            self.progress.retire(chat, seg_row.id)
            return  # posted before a restart: never twice
        owner = batch_message(rows, seg_row) if not already else None
        if owner is not None:
            # A batch-mate is up already: this take joins its review message's pages.
            await self.pages.join(seg_row, owner)
            self.progress.retire(chat, seg_row.id)
            await self.pages.refresh(row, None, {segment.idx})
            return
        assert seg_row.video is not None and seg_row.last_frame is not None
        caption = seg_row.caption or caption or core.review_caption(segment)
        if seg_row.caption is None:  # the core has taken its report: recorded so (sessions.saved)
            await self.store.update_segment(seg_row.id, caption=caption)
        video = seg_row.video
        limit = int(port.upload_limit(chat) * UPLOAD_MARGIN)
        # An svi take's master opens on the frames re-rendering its predecessor's end (the join
        # drops them): the review copy starts after them; the master stays whole for the join.
        overlap = review_overlap(seg_row.params)
        too_big = video.stat().st_size > limit
        if too_big or overlap:
            video = await self._fit_video(video, limit if too_big else None, overlap)
        if too_big:
            caption += "\n(re-encoded to fit the upload limit; the full-quality segment is kept for the final)"
        if seg_row.params.get("preview"):
            caption += PREVIEW_NOTE
        controls = review_controls(seg_row.id)
        pages = pager(rows, segment.idx, seg_row.id)
        frames = int(seg_row.params.get("frames", segment.frames)) - overlap
        post = SegmentPost(
            segment_id=seg_row.id,
            index=segment.idx + 1,
            attempt=segment.attempt,
            video=video,
            last_frame=seg_row.last_frame,
            caption=caption,
            width=segment.width,
            height=segment.height,
            frames=frames,
            seconds=frames / self.config.generation.fps,
            preview=bool(seg_row.params.get("preview")),
            controls=controls,
            already=already,
            pager=pages,
        )
        posted = await self._post_take(port, chat, post, plan.again)
        if resend:
            await self._close_notices(chat, seg_row.posted, posted.keys())
        for key, message_id in posted.items():  # again, for a port that does not call back
            await self.store.record_posted(seg_row.id, key, message_id)
        for role in delivery.SEGMENT_ROLES - already - posted.keys():
            # The port chose not to send it (a hand-off frame the platform refused): not retried.
            await self.store.record_posted(seg_row.id, role, "")
        if not already:
            await self.store.record_posted(seg_row.id, LOOK, full_look(seg_row.id, pages))
        self.progress.retire(chat, seg_row.id)
        # The earlier review messages of the segment keep only an Approve now.
        await self.pages.refresh(row, None, {segment.idx})

    async def page(self, row: SessionRow, segment_id: int, message: int | None) -> None:
        """◀ ▶: show take ``segment_id`` in the review message posted as ``message`` (the row it
        was posted for; None: the segment's live review message)."""
        rows = await self.store.list_segments(row.id)
        take = next(r for r in rows if r.id == segment_id)
        owner = next((r for r in rows if r.id == message and r.idx == take.idx), None) if message else None
        owner = owner or live_message(rows, take.idx) or message_owner(rows, take)
        if owner is not None:
            await self.pages.show(row, owner.id, segment_id)

    async def message_of(self, segment_id: int) -> int:
        """The row of the review message a take is shown in (its own, or a batch-mate's)."""
        rows = await self.store.list_segments((await self.store.get_segment(segment_id)).session_id)
        take = next(r for r in rows if r.id == segment_id)
        owner = message_owner(rows, take)
        return owner.id if owner is not None else segment_id

    async def _post_take(
        self, port: ChatPort, chat: ChatRef, post: SegmentPost, again: Mapping[str, str]
    ) -> dict[str, str]:
        recorder = PostRecorder(
            functools.partial(self.store.record_posted, post.segment_id), again, wall_clock=self.wall_clock
        )
        try:
            return await port.post_segment(chat, post, recorder.sent, recorder.sending)
        except BaseException as exc:
            await recorder.failed(exc)
            raise

    async def _close_notices(self, chat: ChatRef, before: Mapping[str, object], roles: Iterable[str]) -> None:
        """After a Send again: the notices of the roles sent lose their buttons (the new post has
        them). Best effort."""
        roles = set(roles)
        ids = {str(v)[len(delivery.UNSURE) :] for r, v in before.items() if r in roles and delivery.is_unsure(v)}
        for notice_id in sorted(ids):
            try:
                await self.chats.port(chat).close_controls(chat, {"video": notice_id}, notices.SENT_AGAIN)
            except Exception:
                log.exception("closing the notice %s failed", notice_id)

    async def close_controls(
        self, chat: ChatRef, segment_id: int, note: str, *, finish: bool = False, approve: bool = False
    ) -> None:
        """The take's review is over: its controls go, but for a Finish when ``finish``, and
        an Approve when ``approve`` (an earlier take kept beside a newer one). Best effort: a
        control left up is refused by the core when pressed."""
        segment = await self.store.get_segment(segment_id)
        messages = delivery.control_messages(segment.posted)
        if messages:
            keep: tuple[tuple[str, str], ...] = ()
            if approve:
                keep += ((APPROVE_LABEL, control_id(segment_id, Action.APPROVE)),)
            if finish:
                keep += ((FINISH_LABEL, control_id(segment_id, Action.FINISH)),)
            try:
                await self.chats.port(chat).close_controls(chat, messages, note, keep=keep)
            except Exception:
                log.exception("closing the controls of segment %s failed", segment_id)

    async def _fit_video(self, video: Path, limit: int | None, overlap: int = 0) -> Path:
        """The copy of a take that is posted (``<stem>-fit.mp4``, which ◀ ▶ pages show too):
        re-encoded to ``limit`` bytes where given, less its first ``overlap`` frames."""
        from worker.video import join_segments  # numpy + ffmpeg only; no torch

        out = video.with_name(f"{video.stem}-fit{video.suffix}")
        fps = self.config.generation.fps
        result = await asyncio.to_thread(join_segments, [video], out, fps, limit, overlaps=[overlap])
        return result.path

    async def _post_final(self, row: SessionRow, caption: str | None, *, retrying: bool, resend: bool = False) -> bool:
        """Post the final video, or the parts of it a crash left unsent, with the caption stored
        when the post was decided. The part files are chosen once and recorded, so a restart
        sends the same parts; each part is recorded the moment the platform accepted it.
        False when the platform did not take it (it is retried later)."""
        row = await self.store.get_session(row.id)
        if row.final_video is None or (delivery.FINAL in row.posted and not resend):
            return True
        caption = row.final_caption or caption or "Here's your video."
        chat = chat_of(row)
        port = self.chats.port(chat)
        limit = int(port.upload_limit(chat) * UPLOAD_MARGIN)
        parts = _recorded_parts(row)
        if parts is None:
            try:
                parts = await self._fit_final(row.final_video, limit)
            except Exception:
                # It cannot be made to fit: say so once and stop trying.
                log.exception("the final video of session %s cannot be made to fit %d bytes", row.id, limit)
                await self.chats.say(
                    chat,
                    f"Your video is ready ({row.final_video.name} on the server) but it is too large to send "
                    "here, even in parts. Ask the bot's operator for the file.",
                )
                await self.store.record_session_posted(row.id, delivery.FINAL, "unsendable")
                return True
            row = await self.store.record_session_posted(row.id, delivery.FINAL_PARTS, [str(p) for p in parts])
        assert row.final_video is not None
        caption += _fit_note(row.final_video, parts, limit)
        roles = {delivery.part_key(n): n for n in range(1, len(parts) + 1)}
        plan = self._plan(port, row.posted, frozenset(roles), resend)
        if plan.doubtful:
            last = await self._last_approved(row.id)
            notice = notices.final_notice(last, len(parts), sorted(roles[r] for r in plan.doubtful))
            try:
                notice_id = await port.send_text(chat, notice.text, notice.controls)
            except Exception as exc:
                log.warning("the notice of session %s's final in doubt was not sent: %s", row.id, exc)
                return False  # tried again with the others
            for role in sorted(plan.doubtful):
                await self.store.record_session_posted(row.id, role, delivery.unsure(notice_id))
        already = frozenset(roles[r] for r in plan.already | plan.doubtful)
        if len(already) < len(parts):
            record = functools.partial(self.store.record_session_posted, row.id)
            recorder = PostRecorder(record, plan.again, wall_clock=self.wall_clock)
            final = FinalPost(parts=parts, caption=caption, already=already)
            try:
                posted = await port.post_final(chat, final, recorder.sent, recorder.sending)
            except Exception as exc:
                await recorder.failed(exc)
                # The platform may be unreachable for now: keep it unposted, so it is retried.
                log.warning("posting the final video of session %s failed: %s", row.id, exc)
                if not retrying:
                    await self.chats.say(
                        chat, "Your video is ready, but sending it failed; I'll try again in a minute."
                    )
                return False
            missing = sorted(set(range(1, len(parts) + 1)) - already)
            if resend:
                await self._close_notices(chat, row.posted, {delivery.part_key(n) for n in missing})
            for number, message_id in zip(missing, posted, strict=False):  # for a port that does not call back
                await self.store.record_session_posted(row.id, delivery.part_key(number), message_id)
        if self.storyboards is not None:
            await self.storyboards.with_final(row)
        row = await self.store.get_session(row.id)
        ids = [row.posted.get(delivery.part_key(n), "") for n in range(1, len(parts) + 1)]
        await self.store.record_session_posted(row.id, delivery.FINAL, ids)
        return True

    async def _last_approved(self, session_id: str) -> int:
        approved = await self.store.list_segments(session_id, (SegmentStatus.APPROVED,))
        return approved[-1].id if approved else 0

    async def _fit_final(self, final: Path, limit: int) -> tuple[Path, ...]:
        """The final as it can be uploaded: whole, re-encoded to fit, or in parts."""
        from worker.video import join_segments, split_to_fit

        if final.stat().st_size <= limit:
            return (final,)
        fitted = final.with_name("final-fit.mp4")
        result = await asyncio.to_thread(join_segments, [final], fitted, self.config.generation.fps, limit)
        if result.within_budget:
            return (fitted,)
        return tuple(await asyncio.to_thread(split_to_fit, final, limit))


def review_overlap(params: Mapping[str, object]) -> int:
    """Head frames a take's review copy leaves out: an svi take's overlap with its predecessor
    (``shared.params.overlap_frames``); 0 for a frame take, whose first frame is its start picture."""
    if params.get("continuity") != "svi":
        return 0
    overlap = params.get("overlap", 0)
    return overlap if isinstance(overlap, int) else 0


def _recorded_parts(row: SessionRow) -> tuple[Path, ...] | None:
    """The part files chosen for the final before a restart, if they are all still there."""
    recorded = row.posted.get(delivery.FINAL_PARTS)
    if not isinstance(recorded, list) or not recorded:
        return None
    parts = tuple(Path(p) for p in recorded)
    return parts if all(p.is_file() for p in parts) else None


def _fit_note(final: Path, parts: tuple[Path, ...], limit: int) -> str:
    """What the caption says about how the final was made to fit the upload limit."""
    if parts == (final,):
        return ""
    if len(parts) == 1:
        return f"\n(re-encoded to fit the {limit // 1_000_000} MB upload limit)"
    return f"\n(too large to send whole: in {len(parts)} parts)"
