"""The conversation service: applies the core's decisions to the world.

For every user action or job report it loads the session from the store, asks the pure core
(``bot.core.step``) what happens, writes the new state and every segment change to the store in
one transaction (``bot.conversation.persist``), and only then performs the outward effects: chat
messages through the platform's ``ChatPort`` (``posting``), jobs through the dispatcher
(``jobs``), joins off the event loop (``assembly``). A crash between the two leaves the store
right and, at worst, a message unsent; ``resume()`` on the next start (``recovery``) re-queues
unfinished jobs and posts what was finished but never posted, and nothing that was posted is
posted again.

This module holds what adapters, the dispatcher and ``bot.app`` call, and the loop itself; the
collaborators it wires together are built here and get their dependencies explicitly.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
import typing
from collections.abc import Callable, Coroutine
from dataclasses import replace
from typing import Any, ParamSpec

from bot import core, core_admin
from bot.access import RefusalNotices
from bot.conversation import drift
from bot.conversation.admin import Admin
from bot.conversation.alerts import AdminAlerts
from bot.conversation.assembly import Assemblies
from bot.conversation.background import BackgroundTasks
from bot.conversation.chats import Chats, chat_of
from bot.conversation.jobs import Jobs
from bot.conversation.locks import SessionLocks
from bot.conversation.media import Media
from bot.conversation.persist import persist
from bot.conversation.posting import Posting
from bot.conversation.progress_messages import ProgressMessages
from bot.conversation.queue_view import whole_queue
from bot.conversation.quotas import Quotas
from bot.conversation.recovery import KEEP_POSTING, Recovery
from bot.conversation.review_pages import LOOK, SHOWS, UNDONE_LOOK, unref
from bot.conversation.sessions import Sessions, settings_json, unreported
from bot.conversation.storyboards import Storyboards
from bot.core import State, Via
from bot.disk import DiskSpace, FreeSpace, admin_note, free_bytes, is_disk_full
from bot.dispatcher import Dispatcher
from bot.ops_view import OpsSnapshot
from bot.ports import Action, ChatPort, ChatRef, PrivateReply
from bot.store import DiskFull, NotFound, SegmentStatus, SessionRow, SessionState, Store, StoreBusy
from shared import memory_plan
from shared.config import Config
from shared.pictures import Accepted, Refused
from shared.protocol import Done, Failed, FailureKind

log = logging.getLogger("framechain.service")

#: A ✖ Stop pressed once the take was no longer being made.
STOP_TOO_LATE = "That take is not being made any more: nothing to stop."

#: Seconds a shutdown waits for progress edits and deletions still going out.
COSMETIC_WAIT = 5.0
#: The answer to a user action while the bot shuts down.
RESTARTING = "I'm restarting — please send that again in a minute."
#: The answer to a user action the store could not take: the disk is full, or the database busy.
DISK_FULL = (
    "The server's disk is full, so I couldn't save that. The bot's admins have been told; please try again later."
)
STORE_BUSY = "I'm busy with the database right now — please send that again in a moment."

_P = ParamSpec("_P")


def answers_store_faults(method: Callable[_P, Coroutine[Any, Any, None]]) -> Callable[_P, Coroutine[Any, Any, None]]:
    """A user action (``method(self, chat, ...)``) the store cannot take (disk full, database
    locked past the busy timeout) gets a sentence saying so, instead of the adapter's generic
    apology and a traceback."""

    @functools.wraps(method)
    async def wrapper(*args: _P.args, **kwargs: _P.kwargs) -> None:
        try:
            await method(*args, **kwargs)
        except (DiskFull, StoreBusy, OSError) as exc:
            service = typing.cast(ConversationService, args[0])
            chat = typing.cast(ChatRef, args[1] if len(args) > 1 else kwargs["chat"])
            reply = kwargs.get("reply")
            if not await service.answer_store_fault(chat, exc, reply if callable(reply) else None):
                raise

    return wrapper


HELP = (
    "framechain makes a long video one short segment at a time.\n"
    "• /start with a picture (optionally with the first prompt) begins a session.\n"
    "• Then send one prompt per segment: what happens in the next few seconds.\n"
    "• Each segment comes back for review: ✅ approve it or 🔁 regenerate it "
    "(/regenerate <new prompt> redoes it with another prompt).\n"
    "• /end with a picture (sent with it, or as a reply to one) sets the frame the next segment "
    "ends on; /end clear removes it.\n"
    "• /undo removes the last segment, /finish joins the approved ones into one video, "
    "/cancel ends the session, /status shows where things stand.\n"
    "• /settings shows the settings; /settings seconds=3 steps=20 seed=42 changes them "
    "(takes=2: two takes of every prompt to choose from)."
)


def _memory_max_pixels(config: Config) -> int:
    """The largest /settings size the GPU can take under the configured profile (shared.memory_plan);
    no further limit where the card is unknown."""
    g = config.generation
    fits = memory_plan.max_pixels_for(
        backend=g.backend,
        profile=g.memory_profile,
        transformer=g.transformer,
        transformer_2=g.transformer_2,
        vae_dtype=g.vae_dtype,
        low_ram=g.low_ram,
    )
    if fits is not None and fits < config.limits.max_pixels:
        log.info("memory plan: sizes above %d pixels per frame do not fit this GPU under %s", fits, g.memory_profile)
    return config.limits.max_pixels if fits is None else min(fits, config.limits.max_pixels)


class ConversationService:
    def __init__(
        self,
        store: Store,
        config: Config,
        *,
        progress_interval: float = 3.0,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
        free_space: FreeSpace = free_bytes,
    ) -> None:
        self.store = store
        self.config = config
        g, lim = config.generation, config.limits
        self.limits = core.Limits(
            max_prompt_chars=lim.prompt_chars,
            max_segments=lim.segments_per_session,
            max_steps=lim.max_steps,
            size=(g.width, g.height),
            size_mode=g.size_mode,
            max_pixels=max(_memory_max_pixels(config), g.width * g.height),
            # A ComfyUI server's graph has no end-frame input: /end only where none serves.
            keyframes=not any(slot.startswith("comfyui:") for slot in config.worker_slots),
            svi=g.svi_available and g.backend == "wan",
        )
        self.chats = Chats()
        self.alerts = AdminAlerts(config, self.chats, clock=clock)
        self.disk = DiskSpace(config, free_space)
        self.media = Media(config)
        self.sessions = Sessions(store, config)
        self.locks = SessionLocks()
        self.background = BackgroundTasks()
        self.progress = ProgressMessages(store, self.chats, self.background, interval=progress_interval, clock=clock)
        self.quotas = Quotas(store, config, clock=wall_clock)
        self.refusals = RefusalNotices(lim.refusal_notice_hours * 3600, ledger=store, clock=wall_clock)
        self.jobs = Jobs(store, config, self.chats, self.media, self.progress, self.quotas, clock=clock)
        self.storyboards = Storyboards(store, self.media, self.chats)
        self.posting = Posting(store, config, self.chats, self.progress, self.storyboards)
        self.assemblies = Assemblies(config, self.media, self._apply, disk=self.disk, alerts=self.alerts)
        self.recovery = Recovery(
            store,
            self.sessions,
            self.locks,
            jobs=self.jobs,
            progress_messages=self.progress,
            posting=self.posting,
            assemblies=self.assemblies,
            background=self.background,
            perform=self._perform,
            disk=self.disk,
            alerts=self.alerts,
            job_failed=self.job_finished,
        )
        #: The admin commands (/queue, /gpu, /stop, /pause, /resume, /ban, /unban).
        self.admin = Admin(store, config, self.chats, self.jobs, apply=self._apply, clock=clock, wall_clock=wall_clock)
        #: Shutting down: user actions are no longer taken (stop_input).
        self._closing = False

    # --- wiring -----------------------------------------------------------------------------

    def add_port(self, port: ChatPort) -> None:
        self.chats.add(port)

    def attach(self, dispatcher: Dispatcher) -> None:
        self.jobs.dispatcher = dispatcher

    # --- shutdown, in this order (bot.app.serve): stop_input, drain, close ----------------------

    def stop_input(self) -> None:
        """From now on user actions are answered "restarting" and change nothing, so that what
        runs can finish against a store nobody else changes."""
        self._closing = True

    async def drain(self, timeout: float) -> None:
        """Let a join in progress finish and its video be posted, and outstanding progress edits
        and deletions go out, for at most ``timeout`` seconds; what is left is cancelled by
        close() and redone on the next start (a join) or left as it is (a cosmetic edit)."""
        for task in self.background.named(KEEP_POSTING):
            task.cancel()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        joins = self.assemblies.running()
        if joins:  # each posts its video itself once joined
            _, late = await asyncio.wait(joins, timeout=timeout)
            if late:
                log.warning("a join still runs after %.0f s; it is redone on the next start", timeout)
        cosmetic = self.background.unfinished()
        if cosmetic:  # progress edits and deletions: a few seconds at most (a flood wait may be long)
            await asyncio.wait(cosmetic, timeout=max(0.0, min(COSMETIC_WAIT, deadline - loop.time())))

    async def close(self) -> None:
        """Cancel whatever still runs. The platforms must still be open only for drain()."""
        self._closing = True
        for task in [*self.assemblies.running(), *self.background.all()]:
            task.cancel()
        for task in [*self.assemblies.running(), *self.background.all()]:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    async def _refuse_while_closing(self, chat: ChatRef, row: SessionRow | None, user_id: str) -> None:
        """A message to a session while shutting down: its owner is told to send it again."""
        if row is not None and row.owner_id == user_id:
            await self.chats.say(chat, RESTARTING)

    def default_settings(self) -> core.Settings:
        return self.sessions.default_settings()

    async def _can_queue(self, row: SessionRow, chat: ChatRef) -> bool:
        """Whether the disk has room for a new take: refused before anything is queued, rather
        than failing half-way. (The quotas are checked where the take is queued, in ``_apply``.)"""
        problem = self.disk.job_problem()
        if problem:
            await self.chats.say(
                chat,
                f"I can't start a new segment right now: {problem}. The bot's admins have been told; "
                "please try again later.",
            )
            await self.alerts.tell("disk", admin_note(problem, self.config.data_dir))
            return False
        return True

    async def answer_store_fault(self, chat: ChatRef, exc: BaseException, reply: PrivateReply | None) -> bool:
        """Answer a user action that failed on a full disk or a busy database; False for any other
        error (left to the adapter's handler)."""
        if isinstance(exc, DiskFull) or is_disk_full(exc):
            log.error("a user action in %s failed: the disk is full (%s)", chat, exc)
            await self.chats.answer(chat, DISK_FULL, reply)
            await self.alerts.tell("disk", admin_note("it is full", self.config.data_dir))
            return True
        if isinstance(exc, StoreBusy):
            log.warning("a user action in %s failed: %s", chat, exc)
            await self.chats.answer(chat, STORE_BUSY, reply)
            return True
        return False

    # --- what adapters call (bot.ports.Conversation) -----------------------------------------

    @answers_store_faults
    async def start(
        self,
        chat: ChatRef,
        user_id: str,
        image: bytes | Accepted | None,
        prompt: str | None,
        *,
        is_admin: bool = False,
        reply: PrivateReply | None = None,
    ) -> None:
        if self._closing:
            await self.chats.answer(chat, RESTARTING, reply)
            return
        row = await self.store.find_active_session(chat.platform, chat.chat_id, chat.thread_id, user_id)
        if row is None:
            refusal = await self.quotas.new_session_refusal(chat.platform, user_id, is_admin=is_admin)
            if refusal is not None:
                await self.chats.answer(chat, refusal, reply)
                return
        checked: Accepted | None = None
        if image is not None and (row is None or row.state is SessionState.AWAITING_IMAGE):  # else the core refuses
            result = await self.media.check_picture(image)
            if isinstance(result, Refused):
                await self.chats.say(chat, result.reason)
                return
            checked = result
        if row is None:
            row = await self.store.create_session(
                platform=chat.platform,
                chat_id=chat.chat_id,
                thread_id=chat.thread_id,
                owner_id=user_id,
                settings=settings_json(self.default_settings(), None),
            )
            log.info("session %s started by %s in %s", row.id, user_id, chat)
        picture = None
        if checked is not None:
            picture = await self.media.save_picture(row.id, checked)
            if prompt and not await self._can_queue(row, chat):
                prompt = None  # keep the picture; the prompt can be sent again later
        event = core.Start(user_id=user_id, picture=picture, prompt=prompt)
        await self._apply(row.id, event, is_admin=is_admin, reply=reply)

    @answers_store_faults
    async def image(self, chat: ChatRef, user_id: str, image: bytes) -> None:
        row = await self.sessions.session_for(chat, user_id)
        if row is None:
            return  # a picture in a chat without a session is not for us (/start begins one)
        if self._closing:
            await self._refuse_while_closing(chat, row, user_id)
            return
        if user_id != row.owner_id:
            return  # chatter the core ignores (no admins here): nothing is written for it
        checked = await self.media.check_picture(image)
        if isinstance(checked, Refused):
            await self.chats.say(chat, checked.reason)
            return
        picture = await self.media.save_picture(row.id, checked)
        await self._apply(row.id, core.ImageReceived(user_id=user_id, picture=picture))

    @answers_store_faults
    async def text(self, chat: ChatRef, user_id: str, text: str) -> None:
        row = await self.sessions.session_for(chat, user_id)
        if self._closing:
            await self._refuse_while_closing(chat, row, user_id)
            return
        if row is None:
            # In a thread (a finished session's, on Discord) chatter is left alone.
            if not chat.thread_id:
                await self.chats.say(chat, "Send /start with a picture to begin a video.")
            return
        if (
            row.owner_id == user_id
            and row.state
            in (
                SessionState.AWAITING_PROMPT,
                SessionState.AWAITING_IMAGE,
            )
            and not await self._can_queue(row, chat)
        ):
            return
        await self._apply(row.id, core.PromptText(user_id=user_id, text=text))

    @answers_store_faults
    async def control(
        self,
        chat: ChatRef,
        user_id: str,
        segment_id: int,
        action: Action,
        *,
        is_admin: bool = False,
        reply: PrivateReply | None = None,
        via: Via = Via.CONTROL,
        message_id: str | None = None,
    ) -> None:
        try:
            segment = await self.store.get_segment(segment_id)
            row = await self.store.get_session(segment.session_id)
        except NotFound:
            return
        if row.platform != chat.platform or row.chat_id != chat.chat_id:
            return  # a control id forged or carried into another chat
        if action in (Action.RESEND, Action.RESEND_FINAL):  # a notice's 📤 Send again (posting)
            if user_id == row.owner_id or is_admin:
                await self.recovery.resend(row.id, segment_id, action)
            return
        key = core.SegmentKey(segment.idx, segment.attempt)
        event: core.Event
        if action is Action.APPROVE:
            event = core.Approve(user_id=user_id, via=via, segment=key)
        elif action is Action.REGENERATE:
            if user_id == row.owner_id and not await self._can_queue(row, chat):
                return
            event = core.Regenerate(user_id=user_id, via=via, segment=key)
        elif action is Action.UNDO:
            event = core.Undo(user_id=user_id, via=via, segment=key)
        elif action is Action.APPROVE_FINISH:
            event = core.ApproveAndFinish(user_id=user_id, via=via, segment=key)
        elif action is Action.SHOW:
            event = core.ShowTake(user_id=user_id, via=via, segment=key)
            if message_id is not None:
                # ◀ ▶ page the message they are on (the press names the take to show there).
                pressed = await self.store.find_segment_by_message(chat.platform, chat.chat_id, message_id)
                if pressed is not None and pressed.session_id == row.id:
                    await self._apply(row.id, event, is_admin=is_admin, reply=reply, page_in=pressed.id)
                    return
        elif action is Action.STOP:
            if segment.status not in (SegmentStatus.QUEUED, SegmentStatus.RUNNING):
                # Its result is up (or it ended): a late ✖ Stop must never discard the take
                # under review, which an Undo of the same take would.
                await self.chats.answer(chat, STOP_TOO_LATE, reply, typed=False)
                return
            # While it is made, the core's Undo of this very take stops it (a stale one is refused).
            event = core.Undo(user_id=user_id, via=via, segment=key)
        else:
            event = core.Finish(user_id=user_id, via=via, segment=key)
        await self._apply(row.id, event, is_admin=is_admin, reply=reply)

    @answers_store_faults
    async def reaction(
        self,
        chat: ChatRef,
        user_id: str,
        message_id: str,
        action: Action,
        *,
        is_admin: bool = False,
        reply: PrivateReply | None = None,
    ) -> None:
        segment = await self.store.find_segment_by_message(chat.platform, chat.chat_id, message_id)
        if segment is None:
            return
        shown = unref(segment.posted.get(SHOWS))
        if shown is not None:
            # A paged review message: the reaction is about the take it shows now.
            segment = await self.store.get_segment(shown)
        if action is Action.FINISH and segment.status is SegmentStatus.DONE:
            # 🏁 on a take under review stands where its 🏁 Approve & finish button is: it means
            # that, not "finish without this take" (which the core would only question).
            action = Action.APPROVE_FINISH
        await self.control(chat, user_id, segment.id, action, is_admin=is_admin, reply=reply, via=Via.REACTION)

    @answers_store_faults
    async def command(
        self,
        chat: ChatRef,
        user_id: str,
        name: str,
        argument: str = "",
        *,
        is_admin: bool = False,
        reply: PrivateReply | None = None,
    ) -> None:
        name = name.lower().lstrip("/")
        if name == "help":
            await self.chats.answer(chat, HELP + ("\n\n" + core_admin.ADMIN_HELP if is_admin else ""), reply)
            return
        if name in core_admin.ADMIN_COMMANDS:
            await self.admin.command(chat, user_id, name, argument, is_admin=is_admin, reply=reply)
            return
        if name == "status" and is_admin:  # admins see the whole queue, with or without a session here
            await self.chats.answer(chat, whole_queue(self.jobs.dispatcher), reply)
        row = await self.sessions.session_for(chat, user_id)
        if row is None:
            text = "There's no session here. Send /start with a picture to begin."
            if name == "status":
                text += "\n" + core.quota_text(await self.quotas.of(chat.platform, user_id, is_admin=is_admin))
            await self.chats.answer(chat, text, reply)
            return
        event: core.Event
        if name == "finish":
            event = core.Finish(user_id=user_id)
        elif name == "undo":
            event = core.Undo(user_id=user_id)
        elif name == "cancel":
            event = core.Cancel(user_id=user_id)
        elif name == "status":
            event = core.Status(
                user_id=user_id,
                queue_position=await self.jobs.queue_position(row.id),
                quota=await self.quotas.of(chat.platform, user_id, is_admin=is_admin),
                drift=drift.status_line(await self.store.approved_segments(row.id)),
            )
        elif name in ("regenerate", "regen"):
            if user_id == row.owner_id and not await self._can_queue(row, chat):
                return
            event = core.Regenerate(user_id=user_id, prompt=argument or None)
        elif name == "approve":
            event = core.Approve(user_id=user_id)
        elif name == "end":  # typed, without a picture: /end clear, or /end to ask
            event = core.EndFrame(user_id=user_id, clear=argument.strip().lower() == "clear")
        elif name == "settings":
            try:
                changes = core.parse_settings(argument)
            except core.SettingsError as exc:
                await self.chats.answer(chat, str(exc), reply)
                return
            event = core.ChangeSettings(user_id=user_id, changes=changes)
        else:
            await self.chats.answer(chat, f"I don't know /{name}. Send /help for the commands.", reply)
            return
        await self._apply(row.id, event, is_admin=is_admin, reply=reply)
        if name == "status" and not self._closing:  # the story so far, under the status answer
            await self.storyboards.with_status(row)

    @answers_store_faults
    async def end_frame(
        self,
        chat: ChatRef,
        user_id: str,
        image: bytes | None,
        *,
        clear: bool = False,
        is_admin: bool = False,
        reply: PrivateReply | None = None,
    ) -> None:
        """``/end``: with a picture, the frame the next segment should end on; ``clear`` removes
        it. The picture gets the start picture's checks (``shared.pictures``)."""
        if self._closing:
            await self.chats.answer(chat, RESTARTING, reply)
            return
        row = await self.sessions.session_for(chat, user_id)
        if row is None:
            await self.chats.answer(chat, "There's no session here. Send /start with a picture to begin.", reply)
            return
        picture = None
        may_act = user_id == row.owner_id or is_admin
        taken = (row.state, core.EndFrame) in core.TRANSITIONS and self.limits.keyframes
        # Only a picture the core would take is checked and kept; it answers everything else.
        if image is not None and not clear and may_act and taken:
            checked = await self.media.check_picture(image)
            if isinstance(checked, Refused):
                await self.chats.answer(chat, checked.reason, reply)
                return
            picture = await self.media.save_picture(row.id, checked, stem="keyframe")
        event = core.EndFrame(user_id=user_id, picture=picture, clear=clear)
        await self._apply(row.id, event, is_admin=is_admin, reply=reply)

    @answers_store_faults
    async def change_settings(
        self,
        chat: ChatRef,
        user_id: str,
        changes: tuple[tuple[str, str], ...],
        *,
        is_admin: bool = False,
        reply: PrivateReply | None = None,
    ) -> None:
        """``/settings`` with its options as values (a slash command), never parsed from text."""
        row = await self.sessions.session_for(chat, user_id)
        if row is None:
            await self.chats.answer(chat, "There's no session here. Send /start with a picture to begin.", reply)
            return
        event = core.ChangeSettings(user_id=user_id, changes=changes)
        await self._apply(row.id, event, is_admin=is_admin, reply=reply)

    async def banned(self, platform: str, user_id: str) -> bool:
        """Whether an admin banned this user (/ban): adapters refuse them like a stranger."""
        return await self.admin.banned(platform, user_id)

    async def ops_snapshot(self) -> OpsSnapshot:
        return await self.admin.snapshot()

    async def current_settings(self, chat: ChatRef, user_id: str) -> dict[str, str] | None:
        """The settings of the session a command from ``user_id`` here acts on, or None when no
        session is live here: ``session`` (its id), ``owner``, ``seconds``, ``steps``, ``seed``
        (a number or ``random``), ``takes``. Read only; for showing the settings keyboard's choices."""
        row = await self.sessions.session_for(chat, user_id)
        if row is None:
            return None
        # The takes too: a session generating or reviewing is only consistent with its take.
        _, session, _ = await self.sessions.load(row.id)
        return _settings_view(row, session.settings)

    async def new_session_refusal(self, platform: str, user_id: str, *, is_admin: bool = False) -> str | None:
        return await self.quotas.new_session_refusal(platform, user_id, is_admin=is_admin)

    async def refusal_due(self, platform: str, user_id: str) -> bool:
        return await self.refusals.due(platform, user_id)

    # --- dispatcher listener ----------------------------------------------------------------

    async def job_position(self, job_id: str, position: int) -> None:
        await self.jobs.position(job_id, position)
        await self.admin.waiting(job_id)

    async def job_delayed(self, job_id: str, reason: str) -> None:
        await self.jobs.delayed(job_id, reason)

    async def job_started(self, job_id: str, device: str) -> None:
        self.admin.started(job_id)
        await self.jobs.started(job_id, device)

    async def job_progress(self, job_id: str, step: int, total: int) -> None:
        self.admin.step(job_id, step, total)
        await self.jobs.step(job_id, step, total)

    async def job_waiting(self, job_id: str, ahead: int, where: str, eta: float | None) -> None:
        await self.jobs.waiting(job_id, ahead, where, eta)

    async def job_preview(self, job_id: str, path: str, step: int, total: int) -> None:
        await self.jobs.preview(job_id, path, step, total)

    async def job_retrying(self, job_id: str, reason: str) -> None:
        self.admin.ended(job_id)
        await self.jobs.retrying(job_id, reason)

    async def job_finished(self, job_id: str, result: Done | Failed) -> None:
        self.admin.ended(job_id, result)
        reported = await self.jobs.record_result(job_id, result)
        if reported is None:
            return
        session_id, event = reported
        try:
            await self._apply(session_id, event)
        finally:
            self.progress.forget(int(job_id))

    # --- recovery (bot.conversation.recovery) -----------------------------------------------

    async def resume(self) -> None:
        """After a restart: bring sessions whose state and takes disagree together, re-queue
        unfinished jobs in their original order, post finished segments that were never posted,
        and restart interrupted joins."""
        async with self.admin.restoring():  # a queue paused before the restart stays paused
            await self._replay_unreported()
            await self.recovery.resume()

    async def _replay_unreported(self) -> None:
        """A take of a batch whose job ended just before a crash, its report never taken: the
        core is told now, as it would have been (it is posted, or left out), before recovery
        re-queues the rest of the batch."""
        for row in await self.store.list_sessions((SessionState.GENERATING,)):
            for seg in unreported(await self.store.list_segments(row.id)):
                key = core.SegmentKey(seg.idx, seg.attempt)
                event: core.Event
                if seg.status is SegmentStatus.DONE and seg.video and seg.last_frame and seg.seed is not None:
                    event = core.JobDone(
                        segment=key,
                        video=str(seg.video),
                        last_frame=str(seg.last_frame),
                        frames=int(seg.params["frames"]),
                        seed=seg.seed,
                        overlap=int(seg.params.get("overlap", 1)),
                    )
                else:
                    kind = (seg.error or "").partition(":")[0]
                    known = kind in {k.value for k in FailureKind}
                    event = core.JobFailed(segment=key, kind=FailureKind(kind) if known else FailureKind.INTERNAL)
                try:
                    await self._apply(row.id, event)
                except Exception:
                    log.exception("replaying the report of segment %s failed", seg.id)

    async def post_unposted(self) -> None:
        """Post what was finished but never posted (see Recovery.post_unposted)."""
        await self.recovery.post_unposted()

    def keep_posting(self, interval: float = 60.0) -> None:
        """Retry posting what could not be posted, every ``interval`` seconds, until close()."""
        self.recovery.keep_posting(interval)

    # --- the core loop ----------------------------------------------------------------------

    async def _apply(
        self,
        session_id: str,
        event: core.Event,
        *,
        is_admin: bool = False,
        reply: PrivateReply | None = None,
        page_in: int | None = None,
    ) -> None:
        """``page_in``: the row of the review message a ◀ ▶ was pressed on."""
        if self._closing and isinstance(event, core.UserEvent):
            row = await self.store.get_session(session_id)
            await self.chats.answer(chat_of(row), RESTARTING, reply)
            return
        user = getattr(event, "user_id", None)
        admins = frozenset({user}) if (is_admin and user) else frozenset()
        async with self.locks.hold(session_id):
            row, session, rows = await self.sessions.load(session_id)
            new, effects = core.step(session, event, admins=admins, limits=self.limits)
            refusal = None
            # A new take is checked against the quotas in the transaction that queues it, so
            # concurrent takes never get past a limit together.
            async with self.store.transaction():
                new_jobs = sum(isinstance(e, core.EnqueueSegment) for e in effects)
                if isinstance(event, core.UserEvent) and new_jobs:
                    refusal = await self.quotas.new_job_refusal(row, is_admin=is_admin, jobs=new_jobs)
                    if refusal is not None:
                        new, effects = self._without_new_take(session, event, admins)
                ids = await persist(self.store, row, session, new, effects, rows)
            row = await self.store.get_session(session_id)
            if refusal is not None:
                await self.chats.answer(chat_of(row), refusal, reply)
            chat = chat_of(row)
            for effect in effects:
                try:
                    if isinstance(effect, core.Say) and effect.ephemeral:
                        typed = getattr(event, "via", None) is Via.COMMAND
                        await self.chats.answer(chat, effect.text, reply, typed=typed)
                        continue
                    await self._perform(row, new, effect, ids, page_in=page_in)
                except Exception:
                    log.exception("effect %s of session %s failed", type(effect).__name__, session_id)
            if new.settings != session.settings or (new.state.over and not session.state.over):
                view = None if new.state.over else _settings_view(row, new.settings)
                try:
                    await self.chats.port(chat).settings_changed(chat, row.id, view)
                except Exception:
                    log.exception("showing the new settings of session %s failed", session_id)
            if new.state is State.CANCELLED and session.state is not State.CANCELLED and new.approved:
                # The session is over: the Finish kept on its last approved take goes too.
                await self.posting.pages.refresh(row, new, {new.approved[-1].idx})

    def _without_new_take(
        self, session: core.Session, event: core.UserEvent, admins: frozenset[str]
    ) -> core.Transition:
        """What ``event`` does when a quota refuses the take it would queue: a start picture is
        still taken (the prompt is not queued; the refusal asks for it again later), anything
        else changes nothing."""
        if isinstance(event, (core.Start, core.ImageReceived)) and event.picture is not None:
            bare = replace(event, prompt=None) if isinstance(event, core.Start) else event
            new, effects = core.step(replace(session, pending_prompt=None), bare, admins=admins, limits=self.limits)
            if not any(isinstance(e, core.EnqueueSegment) for e in effects):
                return new, effects
        return session, []

    async def _perform(
        self,
        row: SessionRow,
        session: core.Session,
        effect: core.Effect,
        ids: dict[core.SegmentKey, int],
        *,
        page_in: int | None = None,
    ) -> None:
        chat = chat_of(row)
        close_controls = self.posting.close_controls
        if isinstance(effect, core.Say):
            await self.chats.say(chat, effect.text)
        elif isinstance(effect, core.EnqueueSegment):
            await self.jobs.enqueue(row, chat, ids[effect.segment.key])
        elif isinstance(effect, core.CancelJob):
            await self.jobs.cancel(ids[effect.segment])
        elif isinstance(effect, core.PostSegment):
            await self.posting.post_segment(row, effect.segment, effect.caption)
        elif isinstance(effect, core.ApproveSegment):
            # The message showing the approved take says so (with a Finish while finishing is
            # what comes next), the segment's other review messages close, and the take
            # approved before it loses its Finish (bot.conversation.review_pages).
            await self.posting.pages.refresh(row, session, {effect.segment.idx, effect.segment.idx - 1})
        elif isinstance(effect, (core.RejectSegment, core.KeepTake)):
            await self.posting.pages.refresh(row, session, {effect.segment.idx})
        elif isinstance(effect, core.DropLastApproved):
            undone = await self.posting.message_of(ids[effect.segment])
            await close_controls(chat, undone, "↩ Undone")
            await self.store.record_posted(undone, LOOK, UNDONE_LOOK)
            await self.posting.pages.refresh(row, session, {effect.segment.idx - 1})
        elif isinstance(effect, core.StartAssembly):
            self.assemblies.start(row, effect.segments)
            if effect.segments:
                await self.posting.pages.refresh(row, session, {effect.segments[-1].idx})
        elif isinstance(effect, core.CancelAssembly):
            self.assemblies.cancel(row.id)
        elif isinstance(effect, core.PostFinal):
            await self.posting.post_final(row, effect.caption)
        elif isinstance(effect, core.PageTake):
            await self.posting.page(row, ids[effect.segment], page_in)
        # UpdateProgress is handled by job_progress directly (it needs no store change).

    # --- helpers ----------------------------------------------------------------------------


def _settings_view(row: SessionRow, settings: core.Settings) -> dict[str, str]:
    """What a settings keyboard shows: the session, its owner and the values a tap can set."""
    return {
        "session": row.id,
        "owner": row.owner_id,
        "seconds": str(settings.seconds),
        "steps": str(settings.steps),
        "seed": "random" if settings.seed is None else str(settings.seed),
        "takes": str(settings.takes),
    }
