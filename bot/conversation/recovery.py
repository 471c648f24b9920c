"""Picking up after a restart, and retrying what could not be posted.

``resume()`` brings sessions whose state and takes disagree together (a crash between storing a
take's result and moving its session on), re-queues unfinished jobs in their original order,
restarts interrupted joins, and posts what was finished but never posted. ``keep_posting()``
retries those posts while the bot runs, for a platform that was unreachable.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from bot import core
from bot.conversation import delivery
from bot.conversation.alerts import AdminAlerts
from bot.conversation.assembly import Assemblies
from bot.conversation.background import BackgroundTasks
from bot.conversation.chats import chat_of
from bot.conversation.jobs import Jobs
from bot.conversation.locks import SessionLocks
from bot.conversation.posting import Posting
from bot.conversation.progress_messages import ProgressMessages
from bot.conversation.sessions import Sessions, row_for, segment_ids
from bot.disk import DiskSpace, admin_note
from bot.ports import Action
from bot.store import SegmentRow, SegmentStatus, SessionRow, SessionState, Store
from shared.protocol import Failed, FailureKind

log = logging.getLogger("framechain.service")

#: The task that retries unposted deliveries (see keep_posting).
KEEP_POSTING = "keep-posting"
#: Failed tries of one post after which its owner is told it keeps failing.
FAILING_AFTER = 3

#: Performs one effect of a step that is already persisted (the service's ``_perform``).
Perform = Callable[[SessionRow, core.Session, core.Effect, dict[core.SegmentKey, int]], Awaitable[None]]


class Recovery:
    def __init__(
        self,
        store: Store,
        sessions: Sessions,
        locks: SessionLocks,
        *,
        jobs: Jobs,
        progress_messages: ProgressMessages,
        posting: Posting,
        assemblies: Assemblies,
        background: BackgroundTasks,
        perform: Perform,
        disk: DiskSpace | None = None,
        alerts: AdminAlerts | None = None,
        job_failed: Callable[[str, Failed], Awaitable[None]] | None = None,
    ) -> None:
        self.store = store
        self.sessions = sessions
        self.locks = locks
        self.jobs = jobs
        self.progress = progress_messages
        self.posting = posting
        self.assemblies = assemblies
        self.background = background
        self.perform = perform
        #: Re-queued jobs pass the free-space check new takes pass; one that fails it is reported
        #: failed (``job_failed``: the service's ``job_finished``) and the admins are told.
        self.disk = disk
        self.alerts = alerts
        self.job_failed = job_failed
        #: Failed posting tries per session, and the sessions whose owner was told so.
        self._failures: dict[str, int] = {}
        self._told: set[str] = set()

    async def resume(self) -> None:
        """After a restart: bring sessions whose state and takes disagree together, re-queue
        unfinished jobs in their original order, post finished segments that were never posted,
        and restart interrupted joins."""
        for row in await self.store.list_sessions(
            (SessionState.AWAITING_PROMPT, SessionState.GENERATING, SessionState.REVIEWING)
        ):
            try:
                await self._reconcile(row.id)
            except Exception:
                log.exception("could not reconcile session %s", row.id)
        for segment in await self.store.list_resumable_jobs():
            row = await self.store.get_session(segment.session_id)
            if segment.status is SegmentStatus.RUNNING:
                segment = await self.store.requeue_segment(segment.id)
            self.progress.resume(chat_of(row), segment)
            problem = self.disk.job_problem() if self.disk is not None else None
            if problem and self.job_failed is not None:
                await self._refuse_job(segment, problem)
                continue
            await self.jobs.submit(row, segment)
        for row in await self.store.list_sessions((SessionState.ASSEMBLING,)):
            _, session, _ = await self.sessions.load(row.id)
            self.assemblies.start(row, session.approved)
        await self.post_unposted()

    async def _refuse_job(self, segment: SegmentRow, problem: str) -> None:
        """A job the restart would queue again, refused like a new take on a low disk: it fails
        with the reason (the owner may /regenerate once there is room), and the admins are told."""
        log.error("segment %s not queued again after the restart: %s", segment.id, problem)
        assert self.job_failed is not None and self.disk is not None
        if self.alerts is not None:
            await self.alerts.tell("disk", admin_note(problem, self.disk.config.data_dir))
        message = f"{problem}; the bot's admins have been told"
        await self.job_failed(
            str(segment.id), Failed(job_id=str(segment.id), kind=FailureKind.BAD_INPUT, message=message)
        )

    async def _reconcile(self, session_id: str) -> None:
        """A crash between storing a take's result and moving its session on leaves them
        disagreeing; the core says which state the takes imply. Persist it, then act on it."""
        async with self.locks.hold(session_id):
            row = await self.store.get_session(session_id)
            rows = await self.store.list_segments(session_id)
            base, take = self.sessions.saved(row, rows)
            new, effects = core.reconcile(base, row.state, take)
            if new.state is row.state and not effects:
                return
            log.warning("session %s was %s after a restart; now %s", row.id, row.state.value, new.state.value)
            row = await self.store.update_session(row.id, state=new.state)
            ids = segment_ids(rows)
            for effect in effects:
                try:
                    await self.perform(row, new, effect, ids)
                except Exception:
                    log.exception("effect %s of session %s failed", type(effect).__name__, session_id)

    async def post_unposted(self) -> None:
        """Post what was finished but never posted: a segment up for review or a final video
        whose post was cut short by a crash, or failed while the platform was unreachable."""
        for row in await self.store.list_sessions((SessionState.REVIEWING, SessionState.GENERATING)):
            async with self.locks.hold(row.id):  # not while an action is posting it
                row, session, rows = await self.sessions.load(row.id)
                # Every take up for review: the one under review, and the takes of a batch kept
                # while the others are made (bot.core_takes).
                for take in core.takes_up(session) if row.state is SessionState.REVIEWING else session.kept:
                    seg_row = row_for(rows, take.key)
                    if delivery.segment_delivered(seg_row.posted) and not seg_row.posted.get(delivery.PROGRESS):
                        continue
                    try:
                        # With the caption it was first posted with; only what has no record is sent.
                        await self.posting.post_segment(row, take)
                    except Exception as exc:
                        log.warning("segment of session %s still not posted: %s", row.id, exc)
                        await self._failed(row, f"segment {take.number}")
                    else:
                        self._posted(row.id)
        for row in await self.store.list_sessions((SessionState.FINISHED,)):
            if row.final_video is not None and delivery.FINAL not in row.posted:
                async with self.locks.hold(row.id):
                    if await self.posting.post_final(row, retrying=True):
                        self._posted(row.id)
                    else:
                        await self._failed(row, "your video")

    async def _failed(self, row: SessionRow, what: str) -> None:
        """One more failed try of a session's post. Once it keeps failing, its owner is told, as
        soon as the platform takes a message (that is, once it is back), and only once."""
        count = self._failures.get(row.id, 0) + 1
        self._failures[row.id] = count
        if count < FAILING_AFTER or row.id in self._told:
            return
        chat = chat_of(row)
        text = (
            f"{what[0].upper()}{what[1:]} is ready, but sending it here has failed {count} times; "
            "I keep trying every minute."
        )
        try:
            # Not Chats.say: whether this reached the owner decides if it is sent again.
            await self.posting.chats.port(chat).send_text(chat, text)
        except Exception as exc:
            log.info("could not tell the owner of session %s that posting fails: %s", row.id, exc)
            return
        self._told.add(row.id)

    async def resend(self, session_id: str, segment_id: int, action: Action) -> None:
        """The owner tapped 📤 Send again on a notice: send what a crash left in doubt, afresh
        (for a take: its video and frame; for ``RESEND_FINAL``: the final's parts). Nothing
        when nothing is in doubt any more (a second tap)."""
        async with self.locks.hold(session_id):
            row, session, rows = await self.sessions.load(session_id)
            if action is Action.RESEND_FINAL:
                if row.state is SessionState.FINISHED and any(delivery.is_unsure(v) for v in row.posted.values()):
                    await self.posting.post_final(row, resend=True)
                return
            seg_row = next((r for r in rows if r.id == segment_id), None)
            takes = (session.current, *session.kept, *session.approved)
            take = next((t for t in takes if t is not None and seg_row is not None and t.key == _key(seg_row)), None)
            if take is None or take.result is None or seg_row is None:
                return
            if any(delivery.is_unsure(seg_row.posted.get(role)) for role in delivery.SEGMENT_ROLES):
                await self.posting.post_segment(row, take, resend=True)

    def _posted(self, session_id: str) -> None:
        self._failures.pop(session_id, None)
        self._told.discard(session_id)

    def keep_posting(self, interval: float = 60.0) -> None:
        """Retry posting what could not be posted, every ``interval`` seconds, until close()."""

        async def loop() -> None:
            while True:
                await asyncio.sleep(interval)
                try:
                    await self.post_unposted()
                except Exception:
                    log.exception("retrying unposted deliveries failed")

        self.background.spawn(loop(), KEEP_POSTING)


def _key(row: SegmentRow) -> core.SegmentKey:
    return core.SegmentKey(row.idx, row.attempt)
