"""The admin commands, the service's side: ``/queue``, ``/gpu``, ``/stop``, ``/pause``,
``/resume``, ``/ban``, ``/unban`` (the texts and the argument rules are in ``bot.core_admin``).

- Only admins (``telegram.admin_ids``, ``discord.admin_ids``; the adapter says ``is_admin``) get
  anything; anyone else is told privately that the command is for admins, and nothing else.
- Answers go to the admin alone: the adapter's private reply (Discord: ephemeral), else their
  private chat (a command typed in a group is answered in the admin's chat with the bot).
- ``/stop`` goes through the core as a stop of that very take (what its ✖ Stop does), so the
  session moves on as it would for its owner; the owner is told in their chat.
- ``/pause`` holds the dispatcher's queue (running jobs finish) and is kept in the store's flags,
  so a restart stays paused. Each chat with a waiting job is told once, when the pause begins or
  when its job arrives during it, and once more when the queue runs again.
- Bans are rows in the store, read once and kept in memory; adapters ask :meth:`banned` before
  anything a user sent is downloaded, and refuse a banned user as they refuse a stranger.
- The service feeds the job timings (start, steps, durations) that the estimates of
  :meth:`snapshot` (a ``bot.ops_view.OpsSnapshot``) come from.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Protocol

from bot import core, core_admin
from bot.conversation import progress
from bot.conversation.alerts import PrivateSender
from bot.conversation.chats import Chats, chat_of
from bot.conversation.jobs import Jobs
from bot.ops_view import DispatchFacts, JobFacts, JobTiming, OpsSnapshot, WorkerState, build_snapshot
from bot.ports import ChatRef, PrivateReply
from bot.store import NotFound, SegmentStatus, Store
from shared.config import Config
from shared.protocol import Done, Failed

log = logging.getLogger("framechain.admin")

#: The store flag that keeps the queue paused across restarts.
PAUSED_FLAG = "queue_paused"
#: Durations of this many recent jobs make the mean the estimates use.
TIMED_JOBS = 20
#: An admin's answer that could not reach them privately.
NO_PRIVATE_CHAT = (
    "I couldn't write to you privately. Open a chat with me (send me /help there), then send the command again."
)


class Apply(Protocol):
    def __call__(
        self, session_id: str, event: core.Event, *, is_admin: bool = False, reply: PrivateReply | None = None
    ) -> Awaitable[None]: ...


class Admin:
    def __init__(
        self,
        store: Store,
        config: Config,
        chats: Chats,
        jobs: Jobs,
        *,
        apply: Apply,
        clock: Callable[[], float],
        wall_clock: Callable[[], float],
    ) -> None:
        self.store = store
        self.config = config
        self.chats = chats
        self.jobs = jobs
        self.apply = apply
        self.clock = clock
        self.wall_clock = wall_clock
        #: Running jobs as the service saw them (started, latest step), by job id.
        self.timings: dict[str, JobTiming] = {}
        self.durations: deque[float] = deque(maxlen=TIMED_JOBS)
        self._bans: set[tuple[str, str]] | None = None
        self._bans_loading = asyncio.Lock()
        #: Chats told of the current pause (each once).
        self._told: set[ChatRef] = set()
        #: Re-queueing after a restart: those jobs' users are not told of the pause again.
        self._quiet = False
        self.admins = {
            "telegram": frozenset(str(i) for i in config.telegram.admin_ids),
            "discord": frozenset(str(i) for i in config.discord.admin_ids),
            # The web's admin tokens, or the one local user on loopback (who cannot be banned).
            "web": config.web.admins,
        }

    # --- start-up ----------------------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def restoring(self) -> AsyncIterator[None]:
        """Around the start-up recovery, before the dispatcher's slots start: a queue paused
        before the restart is paused again before any job is re-queued, and the re-queued jobs
        (whose users were told before the restart) are not told again."""
        flag = await self.store.get_flag(PAUSED_FLAG)
        dispatcher = self.jobs.dispatcher
        if flag is not None and flag.value == "1" and dispatcher is not None:
            await dispatcher.pause()
            log.warning("the queue is paused (by %s with /pause); /resume lets it go", flag.set_by or "an admin")
            for job in dispatcher.queue.order():  # sent while the platforms came up: not told yet
                await self._tell_paused(job.job_id)
        self._quiet = True
        try:
            yield
        finally:
            self._quiet = False

    # --- bans (asked by the adapters) --------------------------------------------------------

    async def banned(self, platform: str, user_id: str) -> bool:
        if user_id in self.admins.get(platform, frozenset()):
            return False
        return (platform, user_id) in await self._ban_set()

    async def _ban_set(self) -> set[tuple[str, str]]:
        if self._bans is None:
            async with self._bans_loading:
                if self._bans is None:
                    self._bans = {(b.platform, b.user_id) for b in await self.store.list_bans()}
        return self._bans

    # --- job timings (fed by the service's dispatcher listener) ------------------------------

    def started(self, job_id: str) -> None:
        self.timings[job_id] = JobTiming(started_at=self.clock())

    def step(self, job_id: str, step: int, total: int) -> None:
        timing = self.timings.get(job_id)
        if timing is not None:
            self.timings[job_id] = JobTiming(timing.started_at, step, total)

    def ended(self, job_id: str, result: Done | Failed | None = None) -> None:
        """The job finished (``result``), or went back to the queue (None: a retry)."""
        timing = self.timings.pop(job_id, None)
        if timing is not None and isinstance(result, Done):
            self.durations.append(max(0.0, self.clock() - timing.started_at))

    async def waiting(self, job_id: str) -> None:
        """A job got a place in the queue: while paused, its chat is told (once)."""
        dispatcher = self.jobs.dispatcher
        if dispatcher is not None and dispatcher.paused and not self._quiet:
            await self._tell_paused(job_id)

    # --- the snapshot ------------------------------------------------------------------------

    async def snapshot(self) -> OpsSnapshot:
        """Every job and worker now (``bot.ops_view``); also what an operator page shows."""
        dispatcher = self.jobs.dispatcher
        facts = dispatcher.facts() if dispatcher is not None else DispatchFacts(paused=False)
        jobs: dict[str, JobFacts] = {}
        for job_id in [r.job_id for r in facts.running] + [w.job_id for w in facts.waiting]:
            with contextlib.suppress(NotFound, ValueError):
                segment = await self.store.get_segment(int(job_id))
                jobs[job_id] = JobFacts(segment.session_id, segment.idx + 1, segment.attempt, segment.prompt)
        servers = {f"comfyui:{i}": s.url for i, s in enumerate(self.config.comfyui.server_list)}
        mean = sum(self.durations) / len(self.durations) if self.durations else None
        return build_snapshot(facts, jobs, self.timings, now=self.clock(), mean_job_seconds=mean, servers=servers)

    # --- the commands ------------------------------------------------------------------------

    async def command(
        self, chat: ChatRef, user_id: str, name: str, argument: str, *, is_admin: bool, reply: PrivateReply | None
    ) -> None:
        if not is_admin:
            log.info("%s user %s tried /%s (not an admin)", chat.platform, user_id, name)
            await self._answer(chat, user_id, core_admin.NOT_ADMIN, reply, fallback=core_admin.NOT_ADMIN)
            return
        try:
            text = await self._run(chat, user_id, name, argument)
        except core_admin.AdminUsage as exc:
            text = str(exc)
        await self._answer(chat, user_id, text, reply)

    async def _run(self, chat: ChatRef, user_id: str, name: str, argument: str) -> str:
        admin = f"{chat.platform}:{user_id}"
        if name == "queue":
            return core_admin.queue_text(await self.snapshot())
        if name == "gpu":
            return core_admin.gpu_text(await self.snapshot())
        if name == "stop":
            return await self._stop(core_admin.parse_job(argument), user_id)
        if name == "pause":
            return await self._pause(admin)
        if name == "resume":
            return await self._resume(admin)
        target = core_admin.parse_user(argument, chat.platform, name)
        if name == "ban":
            refusal = core_admin.ban_refusal(target, self.admins)
            if refusal is not None:
                return refusal
            added = await self.store.ban_user(target.platform, target.user_id, by=admin, at=self.wall_clock())
            (await self._ban_set()).add((target.platform, target.user_id))
            log.warning("%s banned %s", admin, target)
            return core_admin.banned_text(target, already=not added)
        removed = await self.store.unban_user(target.platform, target.user_id)
        (await self._ban_set()).discard((target.platform, target.user_id))
        log.warning("%s lifted the ban of %s", admin, target)
        return core_admin.unbanned_text(target, was=removed)

    async def _stop(self, job_id: str, admin_id: str) -> str:
        entry = (await self.snapshot()).entry(job_id)
        try:
            segment = await self.store.get_segment(int(job_id))
            row = await self.store.get_session(segment.session_id)
        except NotFound:
            segment = None
        if entry is None or segment is None or segment.status not in (SegmentStatus.QUEUED, SegmentStatus.RUNNING):
            return core_admin.not_a_job_text(job_id)
        label = progress.label(segment.idx, segment.attempt)
        await self.chats.say(chat_of(row), core_admin.stopped_owner_note(label, job_id))
        # The core stops this very take, as its ✖ Stop would (and tells the owner what next).
        key = core.SegmentKey(segment.idx, segment.attempt)
        await self.apply(row.id, core.Undo(user_id=admin_id, via=core.Via.CONTROL, segment=key), is_admin=True)
        after = await self.store.get_segment(segment.id)
        if after.status in (SegmentStatus.QUEUED, SegmentStatus.RUNNING):
            # Not the session's current take (a leftover): stopped in the dispatcher alone.
            log.warning("job %s is not its session's current take; stopping it in the queue only", job_id)
            await self.store.update_segment(segment.id, status=SegmentStatus.CANCELLED)
            await self.jobs.cancel(segment.id)
        log.warning("admin %s stopped job %s of %s", admin_id, job_id, entry.owner)
        return core_admin.stopped_text(entry)

    async def _pause(self, admin: str) -> str:
        dispatcher = self.jobs.dispatcher
        if dispatcher is None:
            raise core_admin.AdminUsage("No workers are attached: there is no queue to pause.")
        if dispatcher.paused:
            return core_admin.paused_text(await self.snapshot(), already=True)
        await self.store.set_flag(PAUSED_FLAG, "1", by=admin, at=self.wall_clock())
        await dispatcher.pause()
        log.warning("%s paused the queue", admin)
        snapshot = await self.snapshot()
        for entry in snapshot.waiting:
            await self.jobs.position(entry.job_id, entry.position)  # its progress message says so
            await self._tell_paused(entry.job_id)
        return core_admin.paused_text(snapshot, already=False)

    async def _resume(self, admin: str) -> str:
        dispatcher = self.jobs.dispatcher
        if dispatcher is None or not dispatcher.paused:
            return core_admin.resumed_text(await self.snapshot(), was_paused=False)
        await self.store.set_flag(PAUSED_FLAG, "0", by=admin, at=self.wall_clock())
        before = await self.snapshot()  # the order and the free workers the jobs resume into
        free = sum(1 for w in before.workers if w.state is WorkerState.IDLE)
        await dispatcher.resume()
        log.warning("%s resumed the queue", admin)
        told: set[ChatRef] = set()
        for entry in before.waiting:
            found = await self._chat_of_job(entry.job_id)
            if found is None or found[0] in told:
                continue
            told.add(found[0])
            await self.chats.say(found[0], core_admin.resumed_note(found[1], entry.position - 1 - free))
        for job in dispatcher.queue.order():  # those still waiting: their progress messages too
            await self.jobs.position(job.job_id, dispatcher.position(job.job_id) or 1)
        self._told.clear()
        return core_admin.resumed_text(before, was_paused=True)

    # --- helpers -----------------------------------------------------------------------------

    async def _tell_paused(self, job_id: str) -> None:
        found = await self._chat_of_job(job_id)
        if found is None or found[0] in self._told:
            return
        chat, label = found
        self._told.add(chat)
        await self.chats.say(chat, core_admin.paused_note(label))

    async def _chat_of_job(self, job_id: str) -> tuple[ChatRef, str] | None:
        """The chat of a job's session, and the job's label there."""
        try:
            segment = await self.store.get_segment(int(job_id))
            row = await self.store.get_session(segment.session_id)
        except (NotFound, ValueError):
            return None
        return chat_of(row), progress.label(segment.idx, segment.attempt)

    async def _answer(
        self, chat: ChatRef, user_id: str, text: str, reply: PrivateReply | None, *, fallback: str = NO_PRIVATE_CHAT
    ) -> None:
        """To the acting user alone: the adapter's private reply, else their private chat; when
        that cannot be reached, ``fallback`` (which reveals nothing) goes into the chat."""
        if reply is not None:
            await self.chats.answer(chat, text, reply)
            return
        if chat.chat_id == user_id and not chat.thread_id:  # already their private chat
            await self.chats.say(chat, text)
            return
        port = self.chats.ports.get(chat.platform)
        try:
            if port is None:
                raise LookupError(f"no {chat.platform} port")
            if isinstance(port, PrivateSender):
                await port.send_private(user_id, text)
            else:
                await port.send_text(ChatRef(chat.platform, user_id), text)
        except Exception as exc:
            log.info("could not answer %s %s privately (%s)", chat.platform, user_id, exc)
            await self.chats.say(chat, fallback)
