"""Writing one step of the core to the store: every store intent among its effects and the new
session state, in one transaction, before any effect reaches the outside world."""

from __future__ import annotations

import contextlib

from bot import core
from bot.conversation.sessions import segment_ids, settings_json
from bot.store import Conflict, SegmentRow, SegmentStatus, SessionRow, Store


async def persist(
    store: Store,
    row: SessionRow,
    old: core.Session,
    new: core.Session,
    effects: list[core.Effect],
    rows: list[SegmentRow],
) -> dict[core.SegmentKey, int]:
    """Write every store intent and the new session state in one transaction; return the
    row ids of the segments the effects name."""
    ids = segment_ids(rows)
    state = new.state
    async with store.transaction():
        for effect in effects:
            if isinstance(effect, core.EnqueueSegment):
                seg = effect.segment
                added = await store.add_segment(
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
                        # The end keyframe (/end) the take aims at; the job reads it from here.
                        "end_image": seg.end_image,
                        # The takes queued together with it (settings takes=N): its batch.
                        "batch": seg.batch,
                    },
                )
                ids[seg.key] = added.id
            elif isinstance(effect, core.ApproveSegment):
                await store.approve_segment(ids[effect.segment], state=state)
            elif isinstance(effect, core.RejectSegment):
                with contextlib.suppress(Conflict):
                    await store.reject_segment(ids[effect.segment])
            elif isinstance(effect, core.DropLastApproved):
                await store.undo_last_approved(row.id, state=state)
            elif isinstance(effect, core.LeaveOut):
                segment = await store.get_segment(ids[effect.segment])
                if segment.status is SegmentStatus.FAILED:
                    await store.update_segment(segment.id, status=SegmentStatus.CANCELLED)
            elif isinstance(effect, core.CancelJob):
                segment = await store.get_segment(ids[effect.segment])
                if segment.status in (SegmentStatus.QUEUED, SegmentStatus.RUNNING):
                    await store.update_segment(segment.id, status=SegmentStatus.CANCELLED)
            # A post cut short (a crash, the platform down) is resumed with the same caption.
            elif isinstance(effect, core.PostSegment):
                await store.update_segment(ids[effect.segment.key], caption=effect.caption)
            elif isinstance(effect, core.PostFinal):
                await store.update_session(row.id, final_caption=effect.caption)
        if new != old:
            await store.update_session(
                row.id,
                state=state,
                settings=settings_json(new.settings, new.pending_prompt, new.end_image),
                first_image=new.first_image,
                start_image=new.start_image,
                final_video=new.final_video,
            )
    return ids
