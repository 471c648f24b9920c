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
import dataclasses
import io
import logging
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PIL import Image, ImageOps, UnidentifiedImageError

from bot import core
from bot.core import State, Via
from bot.dispatcher import Dispatcher
from bot.ports import Action, ChatPort, ChatRef, FinalPost, PrivateReply, SegmentPost, control_id
from bot.store import PENDING, Conflict, NotFound, SegmentRow, SegmentStatus, SessionRow, SessionState, Store
from shared.config import Config
from shared.params import SECONDS_TO_FRAMES
from shared.protocol import Done, Failed, FailureKind, Generate

log = logging.getLogger("framechain.service")

#: Smallest start picture accepted, per side.
MIN_SIDE = 64
#: Leave room under a platform's upload limit for multipart overhead and rounding.
UPLOAD_MARGIN = 0.95

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


def _duration(seconds: float) -> str:
    seconds = max(0, round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    minutes, seconds = divmod(seconds, 60)
    return f"{minutes} min {seconds:02d} s" if minutes < 60 else f"{minutes // 60} h {minutes % 60:02d} min"


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
            pixel_budget=g.width * g.height,
            max_pixels=max(lim.max_pixels, g.width * g.height),
        )
        self._progress: dict[int, _Progress] = {}
        self._locks: dict[str, _Lock] = {}
        self._assemblies: dict[str, asyncio.Task[None]] = {}
        self._tasks: set[asyncio.Task[Any]] = set()

    # --- wiring -----------------------------------------------------------------------------

    def add_port(self, port: ChatPort) -> None:
        self.ports[port.platform] = port

    def attach(self, dispatcher: Dispatcher) -> None:
        self.dispatcher = dispatcher

    async def close(self) -> None:
        for task in [*self._assemblies.values(), *self._tasks]:
            task.cancel()
        for task in [*self._assemblies.values(), *self._tasks]:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

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
        picture = await self._save_picture(chat, row.id, image, quiet=user_id != row.owner_id)
        if picture is not None:
            await self._apply(row.id, core.ImageReceived(user_id=user_id, picture=picture))

    async def text(self, chat: ChatRef, user_id: str, text: str) -> None:
        row = await self._session_for(chat, user_id)
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
            event = core.Approve(user_id=user_id, via=Via.CONTROL, segment=key)
        elif action is Action.REGENERATE:
            if user_id == row.owner_id and not await self._queue_has_room(row, chat):
                return
            event = core.Regenerate(user_id=user_id, via=Via.CONTROL, segment=key)
        elif action is Action.UNDO:
            event = core.Undo(user_id=user_id, via=Via.CONTROL)
        else:
            event = core.Finish(user_id=user_id, via=Via.CONTROL)
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
            await self.control(chat, user_id, segment.id, action, is_admin=is_admin, reply=reply)

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

    # --- dispatcher listener ----------------------------------------------------------------

    async def job_position(self, job_id: str, position: int) -> None:
        progress = self._progress.get(int(job_id))
        if progress is not None:
            ahead = "next in line" if position == 1 else f"{position - 1} ahead in the queue"
            await self._edit_progress(int(job_id), f"⏳ {progress.label} — queued, {ahead}.", force=True)

    async def job_delayed(self, job_id: str, reason: str) -> None:
        progress = self._progress.get(int(job_id))
        if progress is not None:
            text = f"⚠️ {progress.label} — still queued: {reason}. It will start when the worker is back."
            await self._edit_progress(int(job_id), text, force=True)

    async def job_started(self, job_id: str, device: str) -> None:
        segment_id = int(job_id)
        with contextlib.suppress(Conflict, NotFound):
            await self.store.start_segment(segment_id)
        progress = self._progress.get(segment_id)
        if progress is not None:
            progress.started = self.clock()
            await self._edit_progress(segment_id, f"🎬 {progress.label} — starting…", force=True)

    async def job_progress(self, job_id: str, step: int, total: int) -> None:
        segment_id = int(job_id)
        progress = self._progress.get(segment_id)
        if progress is None:
            return
        text = f"🎬 {progress.label} — step {step}/{total}"
        if progress.started is not None and step > 0:
            elapsed = self.clock() - progress.started
            text += f" · about {_duration(elapsed / step * (total - step))} left"
        await self._edit_progress(segment_id, text)

    async def job_finished(self, job_id: str, result: Done | Failed) -> None:
        segment_id = int(job_id)
        try:
            segment = await self.store.get_segment(segment_id)
        except NotFound:
            return
        key = core.SegmentKey(segment.idx, segment.attempt)
        progress = self._progress.pop(segment_id, None)
        if isinstance(result, Done):
            params = dict(segment.params) | {"preview": result.preview, "seconds_taken": result.seconds}
            try:
                async with self.store.transaction():
                    await self.store.finish_segment(segment_id, video=result.video, last_frame=result.last_frame)
                    await self.store.update_segment(segment_id, seed=result.seed, params=params)
            except Conflict:
                log.info("segment %s finished after it was stopped; ignoring", segment_id)
                return
            if progress is not None:
                self._queue_edit(progress, f"✅ {progress.label} — ready ({_duration(result.seconds)}).")
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
            if progress is not None:
                word = "stopped" if result.kind is FailureKind.CANCELLED else "failed"
                self._queue_edit(progress, f"⏹ {progress.label} — {word}.")
            event = core.JobFailed(segment=key, kind=result.kind, message=result.message)
        await self._apply(segment.session_id, event)

    # --- recovery ---------------------------------------------------------------------------

    async def resume(self) -> None:
        """After a restart: re-queue unfinished jobs in their original order, post finished
        segments that were never posted, and restart interrupted joins."""
        for segment in await self.store.list_resumable_jobs():
            row = await self.store.get_session(segment.session_id)
            if segment.status is SegmentStatus.RUNNING:
                segment = await self.store.requeue_segment(segment.id)
            chat = ChatRef(row.platform.value, row.chat_id, row.thread_id)
            self._progress[segment.id] = _Progress(
                chat=chat, message_id=_str_or_none(segment.posted.get("progress")), label=_label(segment)
            )
            await self._submit(row, segment)
        for row in await self.store.list_sessions((SessionState.ASSEMBLING,)):
            _, session, _ = await self._load(row.id)
            self._start_assembly(row, session.approved)
        await self.post_unposted()

    async def post_unposted(self) -> None:
        """Post what was finished but never posted: a segment up for review or a final video
        whose post was cut short by a crash, or failed while the platform was unreachable."""
        for row in await self.store.list_sessions((SessionState.REVIEWING,)):
            async with self._session_lock(row.id):  # not while an action is posting it
                row, session, rows = await self._load(row.id)
                current = session.current
                if row.state is not SessionState.REVIEWING or current is None:
                    continue
                if "video" not in _row_for(rows, current.key).posted:
                    try:
                        await self._post_segment(row, session, current, core.review_caption(current))
                    except Exception as exc:
                        log.warning("segment of session %s still not posted: %s", row.id, exc)
        for row in await self.store.list_sessions((SessionState.FINISHED,)):
            if row.final_video is not None and "final" not in row.posted:
                async with self._session_lock(row.id):
                    await self._post_final(row, "Here's your video.", retrying=True)

    def keep_posting(self, interval: float = 60.0) -> None:
        """Retry posting what could not be posted, every ``interval`` seconds, until close()."""

        async def loop() -> None:
            while True:
                await asyncio.sleep(interval)
                try:
                    await self.post_unposted()
                except Exception:
                    log.exception("retrying unposted deliveries failed")

        task = asyncio.create_task(loop(), name="keep-posting")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # --- the core loop ----------------------------------------------------------------------

    async def _apply(
        self, session_id: str, event: core.Event, *, is_admin: bool = False, reply: PrivateReply | None = None
    ) -> None:
        user = getattr(event, "user_id", None)
        admins = frozenset({user}) if (is_admin and user) else frozenset()
        async with self._session_lock(session_id):
            row, session, rows = await self._load(session_id)
            new, effects = core.step(session, event, admins=admins, limits=self.limits)
            ids = await self._persist(row, session, new, effects, rows)
            row = await self.store.get_session(session_id)
            for effect in effects:
                try:
                    if reply is not None and isinstance(effect, core.Say) and effect.ephemeral:
                        await reply(effect.text)
                        continue
                    await self._perform(row, new, effect, ids)
                except Exception:
                    log.exception("effect %s of session %s failed", type(effect).__name__, session_id)

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
            progress = _Progress(chat=chat, message_id=None, label=_label(segment))
            self._progress[segment.id] = progress
            with contextlib.suppress(Exception):
                progress.message_id = await self._port(chat).send_text(chat, f"⏳ {progress.label} — queued.")
                progress.last_text = f"⏳ {progress.label} — queued."
                await self.store.record_posted(segment.id, "progress", progress.message_id)
            await self._submit(row, segment)
        elif isinstance(effect, core.CancelJob):
            if self.dispatcher is not None:
                await self.dispatcher.cancel(str(ids[effect.segment]))
        elif isinstance(effect, core.PostSegment):
            await self._post_segment(row, session, effect.segment, effect.caption)
        elif isinstance(effect, (core.ApproveSegment, core.RejectSegment)):
            note = "✅ Approved" if isinstance(effect, core.ApproveSegment) else "🗑 Discarded"
            await self._close_controls(chat, ids[effect.segment], note)
        elif isinstance(effect, core.StartAssembly):
            self._start_assembly(row, effect.segments)
        elif isinstance(effect, core.CancelAssembly):
            task = self._assemblies.pop(row.id, None)
            if task is not None:
                task.cancel()
        elif isinstance(effect, core.PostFinal):
            await self._post_final(row, effect.caption)
        # UpdateProgress is handled by job_progress directly (it needs no store change);
        # DropLastApproved needs nothing beyond the store.

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

    async def _post_segment(self, row: SessionRow, session: core.Session, segment: core.Segment, caption: str) -> None:
        chat = ChatRef(row.platform.value, row.chat_id, row.thread_id)
        rows = await self.store.list_segments(row.id)
        seg_row = _row_for(rows, segment.key)
        if "video" in seg_row.posted:
            return  # posted before a restart: never twice
        assert seg_row.video is not None and seg_row.last_frame is not None
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
                ("🏁 Finish", Action.FINISH),
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
        )
        posted = await port.post_segment(chat, post)
        for key, message_id in posted.items():
            await self.store.record_posted(seg_row.id, key, message_id)
        if "video" not in posted:
            await self.store.record_posted(seg_row.id, "video", next(iter(posted.values()), ""))

    async def _close_controls(self, chat: ChatRef, segment_id: int, note: str) -> None:
        segment = await self.store.get_segment(segment_id)
        posted = {k: str(v) for k, v in segment.posted.items() if k != "progress"}
        if posted:
            await self._port(chat).close_controls(chat, posted, note)

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

    async def _post_final(self, row: SessionRow, caption: str, *, retrying: bool = False) -> None:
        row = await self.store.get_session(row.id)
        if row.final_video is None or "final" in row.posted:
            return
        chat = ChatRef(row.platform.value, row.chat_id, row.thread_id)
        port = self._port(chat)
        limit = int(port.upload_limit(chat) * UPLOAD_MARGIN)
        try:
            parts, caption = await self._fit_final(row.final_video, limit, caption)
        except Exception:
            # It cannot be made to fit: say so once and stop trying.
            log.exception("the final video of session %s cannot be made to fit %d bytes", row.id, limit)
            await self._say(
                chat,
                f"Your video is ready ({row.final_video.name} on the server) but it is too large to send "
                "here, even in parts. Ask the bot's operator for the file.",
            )
            await self.store.record_session_posted(row.id, "final", "unsendable")
            return
        try:
            posted = await port.post_final(chat, FinalPost(parts=parts, caption=caption))
        except Exception as exc:
            # The platform may be unreachable for now: keep it unposted, so it is retried.
            log.warning("posting the final video of session %s failed: %s", row.id, exc)
            if not retrying:
                await self._say(chat, "Your video is ready, but sending it failed; I'll try again in a minute.")
            return
        await self.store.record_session_posted(row.id, "final", posted)

    async def _fit_final(self, final: Path, limit: int, caption: str) -> tuple[tuple[Path, ...], str]:
        """The final as it can be uploaded: whole, re-encoded to fit, or in parts."""
        from worker.video import join_segments, split_to_fit

        parts: tuple[Path, ...] = (final,)
        if final.stat().st_size > limit:
            fitted = final.with_name("final-fit.mp4")
            result = await asyncio.to_thread(join_segments, [final], fitted, self.config.generation.fps, limit)
            if result.within_budget:
                parts = (fitted,)
                caption += f"\n(re-encoded to fit the {limit // 1_000_000} MB upload limit)"
            else:
                pieces = await asyncio.to_thread(split_to_fit, final, limit)
                parts = tuple(pieces)
                caption += f"\n(too large to send whole: in {len(parts)} parts)"
        return parts, caption

    # --- helpers ----------------------------------------------------------------------------

    def _port(self, chat: ChatRef) -> ChatPort:
        return self.ports[chat.platform]

    async def _answer(self, chat: ChatRef, text: str, reply: PrivateReply | None) -> None:
        """To the acting user alone where the platform allows it, else into the chat."""
        if reply is None:
            await self._say(chat, text)
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
        progress.sender = asyncio.create_task(self._send_edits(progress))
        self._tasks.add(progress.sender)
        progress.sender.add_done_callback(self._tasks.discard)

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
        limits = self.config.limits
        if len(data) > limits.image_bytes:
            return (
                f"That file is {len(data) / 1e6:.1f} MB; the limit is {limits.image_bytes / 1e6:.0f} MB. "
                "Please send a smaller picture."
            )
        try:
            with Image.open(io.BytesIO(data)) as img:
                if img.width * img.height > limits.image_pixels:
                    return (
                        f"That picture is {img.width}×{img.height}; the limit is "
                        f"{limits.image_pixels / 1e6:.0f} megapixels. Please send a smaller one."
                    )
                img.load()
                width, height = ImageOps.exif_transpose(img).size
        except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError):
            return "I couldn't read that as a picture. Please send a PNG, JPEG or WebP image."
        if min(width, height) < MIN_SIDE:
            return f"That picture is only {width}×{height}; please send one at least {MIN_SIDE} pixels on each side."
        return None

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
        state = row.state
        current = None
        takes = [r for r in rows if r.idx == len(approved)]
        if takes:
            newest = max(takes, key=lambda r: r.attempt)
            # While generating, the take may already be stored done or failed: the job's report
            # is written before the core hears of it, and only the core moves to reviewing.
            wanted = {
                State.GENERATING: (
                    SegmentStatus.QUEUED,
                    SegmentStatus.RUNNING,
                    SegmentStatus.DONE,
                    SegmentStatus.FAILED,
                ),
                State.REVIEWING: (SegmentStatus.DONE,),
                State.AWAITING_PROMPT: (SegmentStatus.FAILED,),
            }.get(state, ())
            if newest.status in wanted:
                current = _segment(newest)
                if state is State.GENERATING:
                    current = dataclasses.replace(current, result=None)
        return core.Session(
            id=row.id,
            owner_id=row.owner_id,
            state=state,
            settings=settings,
            first_image=str(row.first_image) if row.first_image else None,
            pending_prompt=stored.get("pending_prompt"),
            approved=approved,
            current=current,
            attempts=tuple(attempts),
            final_video=str(row.final_video) if row.final_video else None,
        )


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
    take = f", take {segment.attempt}" if segment.attempt > 1 else ""
    return f"Segment {segment.idx + 1}{take}"


def _str_or_none(value: object) -> str | None:
    return None if value is None else str(value)
