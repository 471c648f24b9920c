"""Generation jobs, the service's side of the dispatcher: submitting a take, its queue position,
and the dispatcher's reports (position, start, steps, result), which update the job's progress
message and its segment row, and charge a finished job's GPU time (``quotas``)."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bot import core
from bot.conversation import progress
from bot.conversation.chats import Chats, chat_of
from bot.conversation.media import Media
from bot.conversation.progress_messages import ProgressMessages
from bot.conversation.quotas import Quotas
from bot.dispatcher import Dispatcher
from bot.ports import ChatRef
from bot.store import PENDING, Conflict, NotFound, SegmentRow, SegmentStatus, SessionRow, Store
from shared.color_reference import color_match_of, color_reference, continuity_of
from shared.config import Config
from shared.params import live_preview_every_steps, overlap_frames
from shared.protocol import Done, Failed, FailureKind, Generate

log = logging.getLogger("framechain.service")


class Jobs:
    def __init__(
        self,
        store: Store,
        config: Config,
        chats: Chats,
        media: Media,
        progress_messages: ProgressMessages,
        quotas: Quotas,
        *,
        clock: Callable[[], float],
    ) -> None:
        self.store = store
        self.config = config
        self.chats = chats
        self.media = media
        self.progress = progress_messages
        self.quotas = quotas
        self.clock = clock
        self.dispatcher: Dispatcher | None = None

    # --- submitting -------------------------------------------------------------------------

    async def enqueue(self, row: SessionRow, chat: ChatRef, segment_id: int) -> None:
        """A take the core enqueued (and the store holds): its progress message, then the job."""
        segment = await self.store.get_segment(segment_id)
        await self.progress.post(chat, segment)
        await self.submit(row, segment)

    async def submit(self, row: SessionRow, segment: SegmentRow) -> None:
        if self.dispatcher is None:
            raise RuntimeError("no dispatcher attached")
        g = self.config.generation
        params = segment.params
        reference = color_reference(
            color_match_of(row.settings, g.color_match),
            number=segment.idx + 1,
            start_image=segment.start_image,
            first_image=row.first_image,
            continuity=continuity_of(g, row.settings),
            first_from=g.color_first_from,
        )
        end_image = params.get("end_image")
        if end_image is not None:
            reference = None  # the user's keyframe sets the colours it ends on: no pull back to the start's
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
            out_dir=str(self.media.session_dir(row.id)),
            name=f"seg{segment.idx + 1:03d}-take{segment.attempt}",
            color_reference=str(reference) if reference is not None else None,
            color_strength=g.color_strength,
            color_lightness=g.color_lightness,
            end_image=end_image,
            preview_every=live_preview_every_steps(int(params["steps"]), g.live_preview_every),
            drift_reference=str(row.first_image) if row.first_image is not None else None,
            **await self._continuity(row, segment),
        )
        await self.dispatcher.submit(message, owner=f"{row.platform.value}:{row.owner_id}")

    async def _continuity(self, row: SessionRow, segment: SegmentRow) -> dict[str, Any]:
        """The job's continuity fields: ``svi`` from the *approved* predecessor's latents (so a
        regenerate or a take after /undo never continues from a rejected take); the first
        segment, and every segment of a ``frame`` session, continue from the start image."""
        g = self.config.generation
        wanted = str(row.settings.get("continuity", g.continuity))
        if wanted != "svi" or not g.svi_available or segment.idx == 0 or row.first_image is None:
            return {}
        if segment.params.get("end_image") is not None:
            return {}  # an end keyframe is aimed at from the start image (first-last-frame)
        approved = await self.store.list_segments(row.id, (SegmentStatus.APPROVED,))
        previous = next((r for r in approved if r.idx == segment.idx - 1), None)
        latents = previous.params.get("latents") if previous is not None else None
        return {
            "continuity": "svi",
            "anchor_image": str(row.first_image),
            "previous_latents": str(latents) if latents else None,
            "motion_latents": g.svi_motion_latents,
        }

    async def cancel(self, segment_id: int) -> None:
        if self.dispatcher is not None:
            await self.dispatcher.cancel(str(segment_id))

    async def queue_position(self, session_id: str) -> int | None:
        """For /status: 0 while the session's job runs, its 1-based place in the queue while it
        waits (1: next in line, also when no worker is up to take it), None when unknown."""
        if self.dispatcher is None:
            return None
        for segment in await self.store.list_segments(session_id, PENDING):
            position = self.dispatcher.position(str(segment.id))
            if position is not None:
                return position
        return None

    # --- the dispatcher's reports -----------------------------------------------------------

    async def position(self, job_id: str, position: int) -> None:
        shown = self.progress.get(int(job_id))
        if shown is not None:
            paused = self.dispatcher is not None and self.dispatcher.paused
            text = progress.queued(shown.label, position, restarted=shown.restarted, paused=paused)
            await self.progress.edit(int(job_id), text, force=True)

    async def delayed(self, job_id: str, reason: str) -> None:
        shown = self.progress.get(int(job_id))
        if shown is not None:
            await self.progress.edit(int(job_id), progress.delayed(shown.label, reason), force=True)

    async def started(self, job_id: str, device: str) -> None:
        segment_id = int(job_id)
        with contextlib.suppress(Conflict, NotFound):
            await self.store.start_segment(segment_id)
        shown = self.progress.get(segment_id)
        if shown is not None:
            shown.started = self.clock()
            shown.restarted = shown.waiting = False
            again, shown.retried = shown.retried, False
            await self.progress.edit(segment_id, progress.starting(shown.label, again=again), force=True)

    async def waiting(self, job_id: str, ahead: int, where: str, eta: float | None) -> None:
        shown = self.progress.get(int(job_id))
        if shown is not None:
            shown.waiting = True
            await self.progress.edit(int(job_id), progress.waiting(shown.label, ahead, where, eta), force=True)

    async def retrying(self, job_id: str, reason: str) -> None:
        shown = self.progress.get(int(job_id))
        if shown is not None:
            shown.retried = True
            await self.progress.edit(int(job_id), progress.retrying(shown.label, reason), force=True)

    async def step(self, job_id: str, step: int, total: int) -> None:
        segment_id = int(job_id)
        shown = self.progress.get(segment_id)
        if shown is None:
            return
        if shown.waiting:
            # It has just begun on the server: time the steps from now, not from the wait.
            shown.waiting = False
            shown.started = self.clock()
        left = None
        if shown.started is not None and step > 0:
            left = (self.clock() - shown.started) / step * (total - step)
        await self.progress.edit(segment_id, progress.step(shown.label, step, total, left))

    async def preview(self, job_id: str, path: str, step: int, total: int) -> None:
        """A live preview of the running job: into its progress message, with the step's text."""
        segment_id = int(job_id)
        shown = self.progress.get(segment_id)
        if shown is None:
            return
        left = None
        if shown.started is not None and step > 0:
            left = (self.clock() - shown.started) / step * (total - step)
        await self.progress.picture(segment_id, Path(path), progress.step(shown.label, step, total, left))

    async def record_result(self, job_id: str, result: Done | Failed) -> tuple[str, core.Event] | None:
        """Store a job's result on its segment; return the session and the event for the core,
        or None when there is nothing left to tell it (the segment is gone, or was stopped)."""
        segment_id = int(job_id)
        try:
            segment = await self.store.get_segment(segment_id)
        except NotFound:
            return None
        key = core.SegmentKey(segment.idx, segment.attempt)
        # Kept while the result is posted: the post retires the progress message.
        shown = self.progress.get(segment_id)
        if isinstance(result, Done):
            # The GPU time was spent even when the take was stopped meanwhile.
            await self.quotas.charge(segment, result.seconds)
            overlap = overlap_frames(result.continuity, self.config.generation.svi_motion_latents)
            params = dict(segment.params) | {
                "preview": result.preview,
                "seconds_taken": result.seconds,
                "latents": result.latents,
                "continuity": result.continuity,
                "overlap": overlap,
            }
            try:
                async with self.store.transaction():
                    await self.store.finish_segment(segment_id, video=result.video, last_frame=result.last_frame)
                    await self.store.update_segment(segment_id, seed=result.seed, params=params, drift=result.drift)
            except Conflict:
                log.info("segment %s finished after it was stopped; ignoring", segment_id)
                self.progress.forget(segment_id)
                return None
            if shown is not None:
                self.progress.queue_edit(shown, progress.ready(shown.label, result.seconds))
            event: core.Event = core.JobDone(
                segment=key,
                video=result.video,
                last_frame=result.last_frame,
                frames=result.frames,
                seed=result.seed,
                overlap=overlap,
            )
            if result.note:
                # An svi take that fell back to its start image: the user hears why.
                with contextlib.suppress(NotFound):
                    row = await self.store.get_session(segment.session_id)
                    label = f"Segment {segment.idx + 1}, take {segment.attempt}"
                    await self.chats.say(chat_of(row), f"ℹ️ {label}: {result.note}.")
        else:
            if result.kind is not FailureKind.CANCELLED:
                with contextlib.suppress(Conflict):
                    await self.store.fail_segment(segment_id, f"{result.kind.value}: {result.message}")
            if result.kind is FailureKind.INTERNAL:
                log.error("segment %s failed: %s", segment_id, result.message)
            if shown is not None:
                self.progress.queue_edit(
                    shown, progress.ended(shown.label, cancelled=result.kind is FailureKind.CANCELLED)
                )
            event = core.JobFailed(segment=key, kind=result.kind, message=result.message)
        return segment.session_id, event
