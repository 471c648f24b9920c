"""The conversation service: applies the core's decisions to the world.

For every user action or job report it loads the session from the store, asks the pure core
(``bot.core.step``) what happens, writes the new state and every segment change to the store in
one transaction, and only then performs the outward effects: chat messages through the
platform's ``ChatPort``, jobs through the dispatcher, joins off the event loop. A crash between
the two leaves the store right and, at worst, a message unsent; ``resume()`` on the next start
re-queues unfinished jobs and posts what was finished but never posted, and nothing that was
posted is posted again.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import logging
import time
from collections.abc import AsyncIterator, Callable, Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PIL import Image, ImageOps

from bot import core, delivery, progress
from bot.core import State, Via
from bot.dispatcher import Dispatcher
from bot.pictures import picture_problem
from bot.ports import Action, ChatPort, ChatRef, FinalPost, PrivateReply, SegmentPost, Sent, control_id
from bot.store import PENDING, Conflict, NotFound, SegmentRow, SegmentStatus, SessionRow, SessionState, Store
from shared import memory_plan
from shared.config import Config
from shared.params import SECONDS_TO_FRAMES
from shared.protocol import Done, Failed, FailureKind, Generate

log = logging.getLogger("framechain.service")

#: Leave room under a platform's upload limit for multipart overhead and rounding.
UPLOAD_MARGIN = 0.95

#: The task that retries unposted deliveries (see keep_posting).
KEEP_POSTING = "keep-posting"
#: Seconds a shutdown waits for progress edits and deletions still going out.
COSMETIC_WAIT = 5.0
#: The answer to a user action while the bot shuts down.
RESTARTING = "I'm restarting — please send that again in a minute."

#: Shown once a take is approved, and while its Finish is the next thing to do.
APPROVED = "✅ Approved"
FINISH_LABEL = "🏁 Finish"

HELP = (
    "framechain makes a long video one short segment at a time.\n"
    "• /start with a picture (optionally with the first prompt) begins a session.\n"
    "• Then send one prompt per segment: what happens in the next few seconds.\n"
    "• Each segment comes back for review: ✅ approve it or 🔁 regenerate it "
    "(/regenerate <new prompt> redoes it with another prompt).\n"
    "• /undo removes the last segment, /finish joins the approved ones into one video, "
    "/cancel ends the session, /status shows where things stand.\n"
    "• /settings shows the settings; /settings seconds=3 steps=20 seed=42 changes them."
)


@dataclass
class _Progress:
    """One progress message per job, edited at most every ``interval`` seconds."""

    chat: ChatRef
    message_id: str | None
    label: str
    #: The job was interrupted by a restart and queued again (said until it starts).
    restarted: bool = False
    started: float | None = None
    last_edit: float = float("-inf")
    last_text: str = ""
    #: The newest text not yet sent, and the task sending it.
    pending: str | None = None
    sender: asyncio.Task[None] | None = None


@dataclass
class _Lock:
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    users: int = 0


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
    ) -> None:
        self.store = store
        self.config = config
        self.ports: dict[str, ChatPort] = {}
        self.dispatcher: Dispatcher | None = None
        self.progress_interval = progress_interval
        self.clock = clock
        g, lim = config.generation, config.limits
        self.limits = core.Limits(
            max_prompt_chars=lim.prompt_chars,
            max_segments=lim.segments_per_session,
            max_steps=lim.max_steps,
            size=(g.width, g.height),
            size_mode=g.size_mode,
            max_pixels=max(_memory_max_pixels(config), g.width * g.height),
        )
        self._progress: dict[int, _Progress] = {}
        self._locks: dict[str, _Lock] = {}
        self._assemblies: dict[str, asyncio.Task[None]] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        #: Segments whose progress message is being deleted.
        self._retiring: set[int] = set()
        #: Shutting down: user actions are no longer taken (stop_input).
        self._closing = False

    # --- wiring -----------------------------------------------------------------------------

    def add_port(self, port: ChatPort) -> None:
        self.ports[port.platform] = port

    def attach(self, dispatcher: Dispatcher) -> None:
        self.dispatcher = dispatcher

    # --- shutdown, in this order (bot.app.serve): stop_input, drain, close ----------------------

    def stop_input(self) -> None:
        """From now on user actions are answered "restarting" and change nothing, so that what
        runs can finish against a store nobody else changes."""
        self._closing = True

    async def drain(self, timeout: float) -> None:
        """Let a join in progress finish and its video be posted, and outstanding progress edits
        and deletions go out, for at most ``timeout`` seconds; what is left is cancelled by
        close() and redone on the next start (a join) or left as it is (a cosmetic edit)."""
        for task in [t for t in self._tasks if t.get_name() == KEEP_POSTING]:
            task.cancel()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        if self._assemblies:  # each posts its video itself once joined
            _, late = await asyncio.wait(list(self._assemblies.values()), timeout=timeout)
            if late:
                log.warning("a join still runs after %.0f s; it is redone on the next start", timeout)
        cosmetic = [t for t in self._tasks if not t.done()]
        if cosmetic:  # progress edits and deletions: a few seconds at most (a flood wait may be long)
            await asyncio.wait(cosmetic, timeout=max(0.0, min(COSMETIC_WAIT, deadline - loop.time())))

    async def close(self) -> None:
        """Cancel whatever still runs. The platforms must still be open only for drain()."""
        self._closing = True
        for task in [*self._assemblies.values(), *self._tasks]:
            task.cancel()
        for task in [*self._assemblies.values(), *self._tasks]:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    async def _refuse_while_closing(self, chat: ChatRef, row: SessionRow | None, user_id: str) -> None:
        """A message to a session while shutting down: its owner is told to send it again."""
        if row is not None and row.owner_id == user_id:
            await self._say(chat, RESTARTING)

    def _spawn(self, work: Coroutine[Any, Any, None], name: str) -> asyncio.Task[None]:
        task = asyncio.create_task(work, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def default_settings(self) -> core.Settings:
        g = self.config.generation
        seconds = next((s for s, f in SECONDS_TO_FRAMES.items() if f == g.frames), 5)
        seed = None if g.seed_policy == "random" else g.seed
        steps = g.sampling_steps
        return core.Settings(
            seconds=seconds,
            steps=steps,
            seed=seed,
            negative_prompt=g.negative_prompt,
            width=g.width,
            height=g.height,
        )

    # --- what adapters call (bot.ports.Conversation) -----------------------------------------

    async def start(
        self,
        chat: ChatRef,
        user_id: str,
        image: bytes | None,
        prompt: str | None,
        *,
        is_admin: bool = False,
        reply: PrivateReply | None = None,
    ) -> None:
        if self._closing:
            await self._answer(chat, RESTARTING, reply)
            return
        row = await self.store.find_active_session(chat.platform, chat.chat_id, chat.thread_id, user_id)
        if row is None:
            if image is not None:
                problem = self._image_problem(image)
                if problem:
                    await self._say(chat, problem)
                    return
            row = await self.store.create_session(
                platform=chat.platform,
                chat_id=chat.chat_id,
                thread_id=chat.thread_id,
                owner_id=user_id,
                settings=self._settings_json(self.default_settings(), None),
            )
            log.info("session %s started by %s in %s", row.id, user_id, chat)
        picture = None
        if image is not None and row.state is SessionState.AWAITING_IMAGE:  # else the core refuses
            picture = await self._save_picture(chat, row.id, image)
            if picture is None:
                return
            if prompt and not await self._queue_has_room(row, chat):
                prompt = None  # keep the picture; the prompt can be sent again later
        event = core.Start(user_id=user_id, picture=picture, prompt=prompt)
        await self._apply(row.id, event, is_admin=is_admin, reply=reply)

    async def image(self, chat: ChatRef, user_id: str, image: bytes) -> None:
        row = await self._session_for(chat, user_id)
        if row is None:
            return  # a picture in a chat without a session is not for us (/start begins one)
        if self._closing:
            await self._refuse_while_closing(chat, row, user_id)
            return
        if user_id != row.owner_id:
            return  # chatter the core ignores (no admins here): nothing is written for it
        picture = await self._save_picture(chat, row.id, image)
        if picture is not None:
            await self._apply(row.id, core.ImageReceived(user_id=user_id, picture=picture))

    async def text(self, chat: ChatRef, user_id: str, text: str) -> None:
        row = await self._session_for(chat, user_id)
        if self._closing:
            await self._refuse_while_closing(chat, row, user_id)
            return
        if row is None:
            # In a thread (a finished session's, on Discord) chatter is left alone.
            if not chat.thread_id:
                await self._say(chat, "Send /start with a picture to begin a video.")
            return
        if (
            row.owner_id == user_id
            and row.state
            in (
                SessionState.AWAITING_PROMPT,
                SessionState.AWAITING_IMAGE,
            )
            and not await self._queue_has_room(row, chat)
        ):
            return
        await self._apply(row.id, core.PromptText(user_id=user_id, text=text))

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
    ) -> None:
        try:
            segment = await self.store.get_segment(segment_id)
            row = await self.store.get_session(segment.session_id)
        except NotFound:
            return
        if row.platform != chat.platform or row.chat_id != chat.chat_id:
            return  # a control id forged or carried into another chat
        key = core.SegmentKey(segment.idx, segment.attempt)
        event: core.Event
        if action is Action.APPROVE:
            event = core.Approve(user_id=user_id, via=via, segment=key)
        elif action is Action.REGENERATE:
            if user_id == row.owner_id and not await self._queue_has_room(row, chat):
                return
            event = core.Regenerate(user_id=user_id, via=via, segment=key)
        elif action is Action.UNDO:
            event = core.Undo(user_id=user_id, via=via, segment=key)
        elif action is Action.APPROVE_FINISH:
            event = core.ApproveAndFinish(user_id=user_id, via=via, segment=key)
        else:
            event = core.Finish(user_id=user_id, via=via, segment=key)
        await self._apply(row.id, event, is_admin=is_admin, reply=reply)

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
        if segment is not None:
            await self.control(chat, user_id, segment.id, action, is_admin=is_admin, reply=reply, via=Via.REACTION)

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
            await self._answer(chat, HELP, reply)
            return
        row = await self._session_for(chat, user_id)
        if row is None:
            await self._answer(chat, "There's no session here. Send /start with a picture to begin.", reply)
            return
        event: core.Event
        if name == "finish":
            event = core.Finish(user_id=user_id)
        elif name == "undo":
            event = core.Undo(user_id=user_id)
        elif name == "cancel":
            event = core.Cancel(user_id=user_id)
        elif name == "status":
            event = core.Status(user_id=user_id, queue_position=await self._queue_position(row.id))
        elif name in ("regenerate", "regen"):
            if user_id == row.owner_id and not await self._queue_has_room(row, chat):
                return
            event = core.Regenerate(user_id=user_id, prompt=argument or None)
        elif name == "approve":
            event = core.Approve(user_id=user_id)
        elif name == "settings":
            try:
                changes = core.parse_settings(argument)
            except core.SettingsError as exc:
                await self._answer(chat, str(exc), reply)
                return
            event = core.ChangeSettings(user_id=user_id, changes=changes)
        else:
            await self._answer(chat, f"I don't know /{name}. Send /help for the commands.", reply)
            return
        await self._apply(row.id, event, is_admin=is_admin, reply=reply)

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
        row = await self._session_for(chat, user_id)
        if row is None:
            await self._answer(chat, "There's no session here. Send /start with a picture to begin.", reply)
            return
        event = core.ChangeSettings(user_id=user_id, changes=changes)
        await self._apply(row.id, event, is_admin=is_admin, reply=reply)

    async def current_settings(self, chat: ChatRef, user_id: str) -> dict[str, str] | None:
        """The settings of the session a command from ``user_id`` here acts on, or None when no
        session is live here: ``session`` (its id), ``owner``, ``seconds``, ``steps``, ``seed``
        (a number or ``random``). Read only; for showing the settings keyboard's choices."""
        row = await self._session_for(chat, user_id)
        if row is None:
            return None
        settings = self._rebuild(row, []).settings
        return {
            "session": row.id,
            "owner": row.owner_id,
            "seconds": str(settings.seconds),
            "steps": str(settings.steps),
            "seed": "random" if settings.seed is None else str(settings.seed),
        }

    # --- dispatcher listener ----------------------------------------------------------------

    async def job_position(self, job_id: str, position: int) -> None:
        shown = self._progress.get(int(job_id))
        if shown is not None:
            text = progress.queued(shown.label, position, restarted=shown.restarted)
            await self._edit_progress(int(job_id), text, force=True)

    async def job_delayed(self, job_id: str, reason: str) -> None:
        shown = self._progress.get(int(job_id))
        if shown is not None:
            await self._edit_progress(int(job_id), progress.delayed(shown.label, reason), force=True)

    async def job_started(self, job_id: str, device: str) -> None:
        segment_id = int(job_id)
        with contextlib.suppress(Conflict, NotFound):
            await self.store.start_segment(segment_id)
        shown = self._progress.get(segment_id)
        if shown is not None:
            shown.started = self.clock()
            shown.restarted = False
            await self._edit_progress(segment_id, progress.starting(shown.label), force=True)

    async def job_progress(self, job_id: str, step: int, total: int) -> None:
        segment_id = int(job_id)
        shown = self._progress.get(segment_id)
        if shown is None:
            return
        left = None
        if shown.started is not None and step > 0:
            left = (self.clock() - shown.started) / step * (total - step)
        await self._edit_progress(segment_id, progress.step(shown.label, step, total, left))

    async def job_finished(self, job_id: str, result: Done | Failed) -> None:
        segment_id = int(job_id)
        try:
            segment = await self.store.get_segment(segment_id)
        except NotFound:
            return
        key = core.SegmentKey(segment.idx, segment.attempt)
        # Kept while the result is posted: the post retires the progress message (_retire_progress).
        shown = self._progress.get(segment_id)
        if isinstance(result, Done):
            params = dict(segment.params) | {"preview": result.preview, "seconds_taken": result.seconds}
            try:
                async with self.store.transaction():
                    await self.store.finish_segment(segment_id, video=result.video, last_frame=result.last_frame)
                    await self.store.update_segment(segment_id, seed=result.seed, params=params)
            except Conflict:
                log.info("segment %s finished after it was stopped; ignoring", segment_id)
                self._progress.pop(segment_id, None)
                return
            if shown is not None:
                self._queue_edit(shown, progress.ready(shown.label, result.seconds))
            event: core.Event = core.JobDone(
                segment=key,
                video=result.video,
                last_frame=result.last_frame,
                frames=result.frames,
                seed=result.seed,
            )
        else:
            if result.kind is not FailureKind.CANCELLED:
                with contextlib.suppress(Conflict):
                    await self.store.fail_segment(segment_id, f"{result.kind.value}: {result.message}")
            if result.kind is FailureKind.INTERNAL:
                log.error("segment %s failed: %s", segment_id, result.message)
            if shown is not None:
                self._queue_edit(shown, progress.ended(shown.label, cancelled=result.kind is FailureKind.CANCELLED))
            event = core.JobFailed(segment=key, kind=result.kind, message=result.message)
        try:
            await self._apply(segment.session_id, event)
        finally:
            self._progress.pop(segment_id, None)

    # --- recovery ---------------------------------------------------------------------------

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
            chat = ChatRef(row.platform.value, row.chat_id, row.thread_id)
            shown = _Progress(
                chat=chat,
                message_id=_str_or_none(segment.posted.get(delivery.PROGRESS)),
                label=_label(segment),
                restarted=True,
            )
            self._progress[segment.id] = shown
            # Not a silent jump back to "queued": the user sees why the job starts over.
            self._queue_edit(shown, progress.queued(shown.label, restarted=True))
            await self._submit(row, segment)
        for row in await self.store.list_sessions((SessionState.ASSEMBLING,)):
            _, session, _ = await self._load(row.id)
            self._start_assembly(row, session.approved)
        await self.post_unposted()

    async def _reconcile(self, session_id: str) -> None:
        """A crash between storing a take's result and moving its session on leaves them
        disagreeing; the core says which state the takes imply. Persist it, then act on it."""
        async with self._session_lock(session_id):
            row = await self.store.get_session(session_id)
            rows = await self.store.list_segments(session_id)
            base, take = self._saved(row, rows)
            new, effects = core.reconcile(base, row.state, take)
            if new.state is row.state and not effects:
                return
            log.warning("session %s was %s after a restart; now %s", row.id, row.state.value, new.state.value)
            row = await self.store.update_session(row.id, state=new.state)
            ids = {core.SegmentKey(r.idx, r.attempt): r.id for r in rows}
            for effect in effects:
                try:
                    await self._perform(row, new, effect, ids)
                except Exception:
                    log.exception("effect %s of session %s failed", type(effect).__name__, session_id)

    async def post_unposted(self) -> None:
        """Post what was finished but never posted: a segment up for review or a final video
        whose post was cut short by a crash, or failed while the platform was unreachable."""
        for row in await self.store.list_sessions((SessionState.REVIEWING,)):
            async with self._session_lock(row.id):  # not while an action is posting it
                row, session, rows = await self._load(row.id)
                current = session.current
                if row.state is not SessionState.REVIEWING or current is None:
                    continue
                seg_row = _row_for(rows, current.key)
                if not delivery.segment_delivered(seg_row.posted) or seg_row.posted.get(delivery.PROGRESS):
                    try:
                        # With the caption it was first posted with; only what has no record is sent.
                        await self._post_segment(row, current)
                    except Exception as exc:
                        log.warning("segment of session %s still not posted: %s", row.id, exc)
        for row in await self.store.list_sessions((SessionState.FINISHED,)):
            if row.final_video is not None and delivery.FINAL not in row.posted:
                async with self._session_lock(row.id):
                    await self._post_final(row, retrying=True)

    def keep_posting(self, interval: float = 60.0) -> None:
        """Retry posting what could not be posted, every ``interval`` seconds, until close()."""

        async def loop() -> None:
            while True:
                await asyncio.sleep(interval)
                try:
                    await self.post_unposted()
                except Exception:
                    log.exception("retrying unposted deliveries failed")

        self._spawn(loop(), KEEP_POSTING)

    # --- the core loop ----------------------------------------------------------------------

    async def _apply(
        self, session_id: str, event: core.Event, *, is_admin: bool = False, reply: PrivateReply | None = None
    ) -> None:
        if self._closing and isinstance(event, core.UserEvent):
            row = await self.store.get_session(session_id)
            await self._answer(ChatRef(row.platform.value, row.chat_id, row.thread_id), RESTARTING, reply)
            return
        user = getattr(event, "user_id", None)
        admins = frozenset({user}) if (is_admin and user) else frozenset()
        async with self._session_lock(session_id):
            row, session, rows = await self._load(session_id)
            new, effects = core.step(session, event, admins=admins, limits=self.limits)
            ids = await self._persist(row, session, new, effects, rows)
            row = await self.store.get_session(session_id)
            chat = ChatRef(row.platform.value, row.chat_id, row.thread_id)
            for effect in effects:
                try:
                    if isinstance(effect, core.Say) and effect.ephemeral:
                        await self._answer(chat, effect.text, reply, typed=getattr(event, "via", None) is Via.COMMAND)
                        continue
                    await self._perform(row, new, effect, ids)
                except Exception:
                    log.exception("effect %s of session %s failed", type(effect).__name__, session_id)
            if new.state is State.CANCELLED and session.state is not State.CANCELLED and new.approved:
                # The session is over: the Finish kept on its last approved take goes too.
                chat = ChatRef(row.platform.value, row.chat_id, row.thread_id)
                await self._close_controls(chat, ids[new.approved[-1].key], APPROVED)

    async def _persist(
        self,
        row: SessionRow,
        old: core.Session,
        new: core.Session,
        effects: list[core.Effect],
        rows: list[SegmentRow],
    ) -> dict[core.SegmentKey, int]:
        """Write every store intent and the new session state in one transaction; return the
        row ids of the segments the effects name."""
        ids = {core.SegmentKey(r.idx, r.attempt): r.id for r in rows}
        state = new.state
        async with self.store.transaction():
            for effect in effects:
                if isinstance(effect, core.EnqueueSegment):
                    seg = effect.segment
                    added = await self.store.add_segment(
                        row.id,
                        idx=seg.idx,
                        attempt=seg.attempt,
                        prompt=seg.prompt,
                        negative_prompt=seg.negative_prompt,
                        seed=seg.seed,
                        start_image=seg.start_image,
                        params={
                            "width": seg.width,
                            "height": seg.height,
                            "frames": seg.frames,
                            "steps": seg.steps,
                            "seed_requested": seg.seed,
                        },
                    )
                    ids[seg.key] = added.id
                elif isinstance(effect, core.ApproveSegment):
                    await self.store.approve_segment(ids[effect.segment], state=state)
                elif isinstance(effect, core.RejectSegment):
                    with contextlib.suppress(Conflict):
                        await self.store.reject_segment(ids[effect.segment])
                elif isinstance(effect, core.DropLastApproved):
                    await self.store.undo_last_approved(row.id, state=state)
                elif isinstance(effect, core.CancelJob):
                    segment = await self.store.get_segment(ids[effect.segment])
                    if segment.status in (SegmentStatus.QUEUED, SegmentStatus.RUNNING):
                        await self.store.update_segment(segment.id, status=SegmentStatus.CANCELLED)
                # A post cut short (a crash, the platform down) is resumed with the same caption.
                elif isinstance(effect, core.PostSegment):
                    await self.store.update_segment(ids[effect.segment.key], caption=effect.caption)
                elif isinstance(effect, core.PostFinal):
                    await self.store.update_session(row.id, final_caption=effect.caption)
            if new != old:
                await self.store.update_session(
                    row.id,
                    state=state,
                    settings=self._settings_json(new.settings, new.pending_prompt),
                    first_image=new.first_image,
                    start_image=new.start_image,
                    final_video=new.final_video,
                )
        return ids

    async def _perform(
        self, row: SessionRow, session: core.Session, effect: core.Effect, ids: dict[core.SegmentKey, int]
    ) -> None:
        chat = ChatRef(row.platform.value, row.chat_id, row.thread_id)
        if isinstance(effect, core.Say):
            await self._say(chat, effect.text)
        elif isinstance(effect, core.EnqueueSegment):
            segment = await self.store.get_segment(ids[effect.segment.key])
            shown = _Progress(chat=chat, message_id=None, label=_label(segment))
            self._progress[segment.id] = shown
            with contextlib.suppress(Exception):
                text = progress.queued(shown.label)
                shown.message_id = await self._port(chat).send_text(chat, text)
                shown.last_text = text
                await self.store.record_posted(segment.id, delivery.PROGRESS, shown.message_id)
            await self._submit(row, segment)
        elif isinstance(effect, core.CancelJob):
            if self.dispatcher is not None:
                await self.dispatcher.cancel(str(ids[effect.segment]))
        elif isinstance(effect, core.PostSegment):
            await self._post_segment(row, effect.segment, effect.caption)
        elif isinstance(effect, core.ApproveSegment):
            # The approved take keeps a Finish while finishing is what comes next; the take
            # approved before it loses its own.
            if len(session.approved) > 1:
                await self._close_controls(chat, ids[session.approved[-2].key], APPROVED)
            finish_next = core.Control.FINISH in effect.keep_controls and session.state is State.AWAITING_PROMPT
            await self._close_controls(chat, ids[effect.segment], APPROVED, finish=finish_next)
        elif isinstance(effect, core.RejectSegment):
            await self._close_controls(chat, ids[effect.segment], "🗑 Discarded")
        elif isinstance(effect, core.DropLastApproved):
            await self._close_controls(chat, ids[effect.segment], "↩ Undone")
            if session.approved and session.state is State.AWAITING_PROMPT:
                await self._close_controls(chat, ids[session.approved[-1].key], APPROVED, finish=True)
        elif isinstance(effect, core.StartAssembly):
            self._start_assembly(row, effect.segments)
            if effect.segments:
                await self._close_controls(chat, ids[effect.segments[-1].key], APPROVED)
        elif isinstance(effect, core.CancelAssembly):
            task = self._assemblies.pop(row.id, None)
            if task is not None:
                task.cancel()
        elif isinstance(effect, core.PostFinal):
            await self._post_final(row, effect.caption)
        # UpdateProgress is handled by job_progress directly (it needs no store change).

    # --- jobs -------------------------------------------------------------------------------

    async def _submit(self, row: SessionRow, segment: SegmentRow) -> None:
        if self.dispatcher is None:
            raise RuntimeError("no dispatcher attached")
        g = self.config.generation
        params = segment.params
        reference = {"start": segment.start_image, "first": row.first_image}.get(g.color_match)
        guidance, guidance_2 = g.sampling_guidance
        message = Generate(
            job_id=str(segment.id),
            image=str(segment.start_image),
            prompt=segment.prompt,
            negative_prompt=segment.negative_prompt,
            width=int(params["width"]),
            height=int(params["height"]),
            frames=int(params["frames"]),
            fps=g.fps,
            steps=int(params["steps"]),
            guidance=guidance,
            guidance_2=guidance_2,
            seed=params.get("seed_requested"),
            out_dir=str(self._session_dir(row.id)),
            name=f"seg{segment.idx + 1:03d}-take{segment.attempt}",
            color_reference=str(reference) if reference is not None else None,
            color_strength=g.color_strength,
            color_lightness=g.color_lightness,
        )
        await self.dispatcher.submit(message, owner=f"{row.platform.value}:{row.owner_id}")

    async def _queue_has_room(self, row: SessionRow, chat: ChatRef) -> bool:
        pending = await self.store.count_pending_jobs(row.platform, row.owner_id)
        limit = self.config.limits.queued_jobs_per_user
        if pending >= limit:
            await self._say(
                chat,
                f"You already have {pending} segment{'s' if pending != 1 else ''} waiting; "
                "send this again once one is done.",
            )
            return False
        return True

    async def _queue_position(self, session_id: str) -> int | None:
        """For /status: 0 while the session's job runs, its 1-based place in the queue while it
        waits (1: next in line, also when no worker is up to take it), None when unknown."""
        if self.dispatcher is None:
            return None
        for segment in await self.store.list_segments(session_id, PENDING):
            position = self.dispatcher.position(str(segment.id))
            if position is not None:
                return position
        return None

    # --- posting ----------------------------------------------------------------------------

    async def _post_segment(self, row: SessionRow, segment: core.Segment, caption: str | None = None) -> None:
        """Post a take for review, or the rest of it after a crash (only the roles with no
        record), with the caption stored when the post was decided. Each message is recorded
        the moment the platform accepted it. Once the post is whole, the progress message goes."""
        chat = ChatRef(row.platform.value, row.chat_id, row.thread_id)
        rows = await self.store.list_segments(row.id)
        seg_row = _row_for(rows, segment.key)
        already = delivery.segment_already(seg_row.posted)
        if already == delivery.SEGMENT_ROLES:
            self._retire_progress(chat, seg_row.id)
            return  # posted before a restart: never twice
        assert seg_row.video is not None and seg_row.last_frame is not None
        caption = seg_row.caption or caption or core.review_caption(segment)
        port = self._port(chat)
        video = seg_row.video
        limit = int(port.upload_limit(chat) * UPLOAD_MARGIN)
        if video.stat().st_size > limit:
            video = await self._fit_video(video, limit)
            caption += "\n(re-encoded to fit the upload limit; the full-quality segment is kept for the final)"
        if seg_row.params.get("preview"):
            caption += "\n[preview animation — not generated by Wan]"
        controls = tuple(
            (label, control_id(seg_row.id, action))
            for label, action in (
                ("✅ Approve", Action.APPROVE),
                ("🔁 Regenerate", Action.REGENERATE),
                ("↩ Undo", Action.UNDO),
                ("🏁 Approve & finish", Action.APPROVE_FINISH),
            )
        )
        frames = int(seg_row.params.get("frames", segment.frames))
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
        )
        posted = await port.post_segment(chat, post, self._recorder(seg_row.id))
        for key, message_id in posted.items():  # again, for a port that does not call back
            await self.store.record_posted(seg_row.id, key, message_id)
        for role in delivery.SEGMENT_ROLES - already - posted.keys():
            # The port chose not to send it (a hand-off frame the platform refused): not retried.
            await self.store.record_posted(seg_row.id, role, "")
        self._retire_progress(chat, seg_row.id)

    def _recorder(self, segment_id: int) -> Sent:
        async def sent(role: str, message_id: str) -> None:
            await self.store.record_posted(segment_id, role, message_id)

        return sent

    def _retire_progress(self, chat: ChatRef, segment_id: int) -> None:
        """The take's result is up: its progress message goes, once its last edit is out. Best
        effort and tried once (the id is then recorded as gone), in the background."""
        shown = self._progress.pop(segment_id, None)
        if segment_id in self._retiring:
            return
        self._retiring.add(segment_id)

        async def retire() -> None:
            try:
                if shown is not None and shown.sender is not None:
                    with contextlib.suppress(Exception):
                        await shown.sender
                message_id = (await self.store.get_segment(segment_id)).posted.get(delivery.PROGRESS)
                if message_id is None:
                    return
                try:
                    await self._port(chat).delete_message(chat, str(message_id))
                except Exception as exc:
                    log.info("progress message %s not deleted: %s", message_id, exc)
                await self.store.record_posted(segment_id, delivery.PROGRESS, None)
            finally:
                self._retiring.discard(segment_id)

        self._spawn(retire(), f"retire-progress-{segment_id}")

    async def _close_controls(self, chat: ChatRef, segment_id: int, note: str, *, finish: bool = False) -> None:
        """The take's review is over: its controls go, but for a Finish when ``finish``. Best
        effort: a control left up is refused by the core when pressed."""
        segment = await self.store.get_segment(segment_id)
        messages = delivery.control_messages(segment.posted)
        if messages:
            keep = ((FINISH_LABEL, control_id(segment_id, Action.FINISH)),) if finish else ()
            try:
                await self._port(chat).close_controls(chat, messages, note, keep=keep)
            except Exception:
                log.exception("closing the controls of segment %s failed", segment_id)

    async def _fit_video(self, video: Path, limit: int) -> Path:
        from worker.video import join_segments  # numpy + ffmpeg only; no torch

        out = video.with_name(f"{video.stem}-fit{video.suffix}")
        fps = self.config.generation.fps
        result = await asyncio.to_thread(join_segments, [video], out, fps, limit)
        return result.path

    def _start_assembly(self, row: SessionRow, segments: tuple[core.Segment, ...]) -> None:
        previous = self._assemblies.pop(row.id, None)
        if previous is not None:
            previous.cancel()
        task = asyncio.create_task(self._assemble(row, segments), name=f"assemble-{row.id}")
        self._assemblies[row.id] = task

    async def _assemble(self, row: SessionRow, segments: tuple[core.Segment, ...]) -> None:
        from worker.video import join_segments

        masters = [Path(s.result.video) for s in segments if s.result is not None]
        out = self._session_dir(row.id) / "final.mp4"
        try:
            result = await asyncio.to_thread(join_segments, masters, out, self.config.generation.fps)
            log.info("session %s joined: %d frames, %d bytes", row.id, result.frames, result.bytes)
            event: core.Event = core.AssemblyDone(path=str(result.path))
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("joining session %s failed", row.id)
            event = core.AssemblyFailed(message="")
        finally:
            self._assemblies.pop(row.id, None)
        await self._apply(row.id, event)

    async def _post_final(self, row: SessionRow, caption: str | None = None, *, retrying: bool = False) -> None:
        """Post the final video, or the parts of it a crash left unsent, with the caption stored
        when the post was decided. The part files are chosen once and recorded, so a restart
        sends the same parts; each part is recorded the moment the platform accepted it."""
        row = await self.store.get_session(row.id)
        if row.final_video is None or delivery.FINAL in row.posted:
            return
        caption = row.final_caption or caption or "Here's your video."
        chat = ChatRef(row.platform.value, row.chat_id, row.thread_id)
        port = self._port(chat)
        limit = int(port.upload_limit(chat) * UPLOAD_MARGIN)
        parts = _recorded_parts(row)
        if parts is None:
            try:
                parts = await self._fit_final(row.final_video, limit)
            except Exception:
                # It cannot be made to fit: say so once and stop trying.
                log.exception("the final video of session %s cannot be made to fit %d bytes", row.id, limit)
                await self._say(
                    chat,
                    f"Your video is ready ({row.final_video.name} on the server) but it is too large to send "
                    "here, even in parts. Ask the bot's operator for the file.",
                )
                await self.store.record_session_posted(row.id, delivery.FINAL, "unsendable")
                return
            row = await self.store.record_session_posted(row.id, delivery.FINAL_PARTS, [str(p) for p in parts])
        assert row.final_video is not None
        caption += _fit_note(row.final_video, parts, limit)
        already = delivery.final_already(row.posted, len(parts))
        if len(already) < len(parts):

            async def sent(role: str, message_id: str) -> None:
                await self.store.record_session_posted(row.id, role, message_id)

            try:
                posted = await port.post_final(chat, FinalPost(parts=parts, caption=caption, already=already), sent)
            except Exception as exc:
                # The platform may be unreachable for now: keep it unposted, so it is retried.
                log.warning("posting the final video of session %s failed: %s", row.id, exc)
                if not retrying:
                    await self._say(chat, "Your video is ready, but sending it failed; I'll try again in a minute.")
                return
            missing = sorted(set(range(1, len(parts) + 1)) - already)
            for number, message_id in zip(missing, posted, strict=False):  # for a port that does not call back
                await self.store.record_session_posted(row.id, delivery.part_key(number), message_id)
        row = await self.store.get_session(row.id)
        ids = [row.posted.get(delivery.part_key(n), "") for n in range(1, len(parts) + 1)]
        await self.store.record_session_posted(row.id, delivery.FINAL, ids)

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

    # --- helpers ----------------------------------------------------------------------------

    def _port(self, chat: ChatRef) -> ChatPort:
        return self.ports[chat.platform]

    async def _answer(self, chat: ChatRef, text: str, reply: PrivateReply | None, *, typed: bool = True) -> None:
        """A note for the acting user alone: privately where the adapter gave a way (``reply``).
        Without one, the answer to a typed command goes into the chat (the command is there, and
        the user waits for an answer); any other note (a reaction's) is dropped, never posted
        into the chat for everyone."""
        if reply is None:
            if typed:
                await self._say(chat, text)
            else:
                log.debug("no private channel for a note in %s; dropped: %s", chat, text)
            return
        try:
            await reply(text)
        except Exception:
            log.exception("could not answer privately in %s", chat)

    async def _say(self, chat: ChatRef, text: str) -> None:
        try:
            await self._port(chat).send_text(chat, text)
        except Exception:
            log.exception("could not send a message to %s", chat)

    async def _edit_progress(self, segment_id: int, text: str, *, force: bool = False) -> None:
        progress = self._progress.get(segment_id)
        if progress is None or text == progress.last_text:
            return
        now = self.clock()
        if not force and now - progress.last_edit < self.progress_interval:
            return
        progress.last_edit = now
        self._queue_edit(progress, text)

    def _queue_edit(self, progress: _Progress, text: str) -> None:
        """Edits go out from a task per message, newest text only: a platform's flood wait
        must never hold up the job's events (and with them the next job)."""
        progress.last_text = text
        progress.pending = text
        if progress.message_id is None or (progress.sender is not None and not progress.sender.done()):
            return
        progress.sender = self._spawn(self._send_edits(progress), "progress-edits")

    async def _send_edits(self, progress: _Progress) -> None:
        while progress.pending is not None and progress.message_id is not None:
            text, progress.pending = progress.pending, None
            try:
                await self._port(progress.chat).edit_text(progress.chat, progress.message_id, text)
            except Exception as exc:  # an edit is cosmetic: a failure changes nothing else
                log.debug("progress edit failed: %s", exc)

    @contextlib.asynccontextmanager
    async def _session_lock(self, session_id: str) -> AsyncIterator[None]:
        """One action at a time per session; the lock is dropped when nobody holds or awaits it."""
        entry = self._locks.setdefault(session_id, _Lock())
        entry.users += 1
        try:
            async with entry.lock:
                yield
        finally:
            entry.users -= 1
            if entry.users == 0:
                del self._locks[session_id]

    async def _session_for(self, chat: ChatRef, user_id: str) -> SessionRow | None:
        """The user's active session here, else anyone's (so strangers get the core's answer)."""
        row = await self.store.find_active_session(chat.platform, chat.chat_id, chat.thread_id, user_id)
        if row is None:
            row = await self.store.find_active_session(chat.platform, chat.chat_id, chat.thread_id, None)
        return row

    def _session_dir(self, session_id: str) -> Path:
        path = (self.config.data_dir / "sessions" / session_id).resolve()
        path.mkdir(parents=True, exist_ok=True)
        return path

    def _image_problem(self, data: bytes) -> str | None:
        return picture_problem(data, self.config.limits)

    async def _save_picture(
        self, chat: ChatRef, session_id: str, data: bytes, *, quiet: bool = False
    ) -> core.Picture | None:
        problem = self._image_problem(data)
        if problem:
            if not quiet:
                await self._say(chat, problem)
            return None
        with Image.open(io.BytesIO(data)) as img:
            fmt = (img.format or "png").lower()
            width, height = ImageOps.exif_transpose(img).size
        ext = {"jpeg": "jpg", "mpo": "jpg"}.get(fmt, fmt)
        folder = self._session_dir(session_id)
        existing = len(list(folder.glob("picture-*")))
        path = folder / f"picture-{existing + 1}.{ext}"
        from worker.files import atomic_write_bytes

        await asyncio.to_thread(atomic_write_bytes, path, data)
        return core.Picture(path=str(path), width=width, height=height)

    def _settings_json(self, settings: core.Settings, pending_prompt: str | None) -> dict[str, Any]:
        return {
            "seconds": settings.seconds,
            "steps": settings.steps,
            "seed": settings.seed,
            "negative_prompt": settings.negative_prompt,
            "width": settings.width,
            "height": settings.height,
            "pending_prompt": pending_prompt,
        }

    async def _load(self, session_id: str) -> tuple[SessionRow, core.Session, list[SegmentRow]]:
        row = await self.store.get_session(session_id)
        rows = await self.store.list_segments(session_id)
        return row, self._rebuild(row, rows), rows

    def _rebuild(self, row: SessionRow, rows: list[SegmentRow]) -> core.Session:
        """The core's view of a session, from its rows."""
        base, take = self._saved(row, rows)
        return core.restore(base, row.state, take)

    def _saved(self, row: SessionRow, rows: list[SegmentRow]) -> tuple[core.Session, core.Take | None]:
        """A session's rows as the core reads them: everything but the state and the current take
        (see ``core.restore``), and the newest take at the next chain position."""
        stored = dict(row.settings)
        defaults = self.default_settings()
        settings = core.Settings(
            seconds=int(stored.get("seconds", defaults.seconds)),
            steps=int(stored.get("steps", defaults.steps)),
            seed=stored.get("seed", defaults.seed),
            negative_prompt=str(stored.get("negative_prompt", defaults.negative_prompt)),
            width=int(stored.get("width", defaults.width)),
            height=int(stored.get("height", defaults.height)),
        )
        approved = tuple(_segment(r) for r in rows if r.status is SegmentStatus.APPROVED)
        attempts: list[int] = []
        for r in rows:
            attempts += [0] * (r.idx + 1 - len(attempts))
            attempts[r.idx] = max(attempts[r.idx], r.attempt)
        takes = [r for r in rows if r.idx == len(approved)]
        take = None
        if takes:
            newest = max(takes, key=lambda r: r.attempt)
            take = core.Take(_segment(newest), _TAKE_STATUS[newest.status])
        base = core.Session(
            id=row.id,
            owner_id=row.owner_id,
            settings=settings,
            first_image=str(row.first_image) if row.first_image else None,
            pending_prompt=stored.get("pending_prompt"),
            approved=approved,
            attempts=tuple(attempts),
            final_video=str(row.final_video) if row.final_video else None,
        )
        return base, take


#: How the core reads a stored take's status.
_TAKE_STATUS = {
    SegmentStatus.QUEUED: core.TakeStatus.PENDING,
    SegmentStatus.RUNNING: core.TakeStatus.PENDING,
    SegmentStatus.DONE: core.TakeStatus.DONE,
    SegmentStatus.FAILED: core.TakeStatus.FAILED,
    SegmentStatus.REJECTED: core.TakeStatus.SETTLED,
    SegmentStatus.CANCELLED: core.TakeStatus.SETTLED,
    SegmentStatus.APPROVED: core.TakeStatus.SETTLED,
}


def _segment(r: SegmentRow) -> core.Segment:
    result = None
    if r.status in (SegmentStatus.DONE, SegmentStatus.APPROVED) and r.video and r.last_frame and r.seed is not None:
        result = core.SegmentResult(
            video=str(r.video), last_frame=str(r.last_frame), frames=int(r.params["frames"]), seed=r.seed
        )
    return core.Segment(
        idx=r.idx,
        attempt=r.attempt,
        prompt=r.prompt,
        negative_prompt=r.negative_prompt,
        seed=r.params.get("seed_requested"),
        start_image=str(r.start_image),
        width=int(r.params["width"]),
        height=int(r.params["height"]),
        frames=int(r.params["frames"]),
        steps=int(r.params["steps"]),
        result=result,
    )


def _row_for(rows: list[SegmentRow], key: core.SegmentKey) -> SegmentRow:
    for r in rows:
        if (r.idx, r.attempt) == key:
            return r
    raise NotFound(f"no segment {key}")


def _label(segment: SegmentRow) -> str:
    return progress.label(segment.idx, segment.attempt)


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


def _str_or_none(value: object) -> str | None:
    return None if value is None else str(value)
