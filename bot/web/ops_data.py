"""What the operator page shows beyond ``/queue`` and ``/gpu`` (whose
:class:`~bot.ops_view.OpsSnapshot` it gets from the conversation), gathered from the store in one
call: active sessions with their storyboard frames, finished videos, the day's GPU-seconds per
user. Plain dataclasses, no HTML."""

from __future__ import annotations

import time
from dataclasses import dataclass

from bot import core
from bot.store import SegmentStatus, SessionState, Store

#: Finished videos listed, newest first.
FINALS_SHOWN = 20


@dataclass(frozen=True)
class SessionLine:
    id: str
    platform: str
    owner: str
    state: str
    #: (label, media address) of the storyboard: the start picture, then each approved segment's
    #: hand-off frame.
    frames: tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class FinalLine:
    session_id: str
    platform: str
    owner: str
    caption: str
    url: str


@dataclass(frozen=True)
class Usage:
    platform: str
    owner: str
    seconds: float


@dataclass(frozen=True)
class StoreView:
    sessions: tuple[SessionLine, ...]
    finals: tuple[FinalLine, ...]
    usage: tuple[Usage, ...]
    day_started: float


async def gather(store: Store, *, reset_hour: int = 0) -> StoreView:
    sessions = []
    for row in await store.list_active_sessions():
        frames: list[tuple[str, str]] = []
        if row.first_image is not None:
            frames.append(("start", f"/ops/media/session/{row.id}/start"))
        for segment in await store.list_segments(row.id):
            if segment.status is SegmentStatus.APPROVED and segment.last_frame is not None:
                frames.append((f"segment {segment.idx + 1}", f"/ops/media/segment/{segment.id}/frame"))
        sessions.append(SessionLine(row.id, row.platform.value, row.owner_id, row.state.value, tuple(frames)))
    finished = [r for r in await store.list_sessions([SessionState.FINISHED]) if r.final_video is not None]
    finished.sort(key=lambda r: r.updated_at, reverse=True)
    finals = tuple(
        FinalLine(r.id, r.platform.value, r.owner_id, r.final_caption or "", f"/ops/media/session/{r.id}/final")
        for r in finished[:FINALS_SHOWN]
    )
    since = core.day_start(time.time(), reset_hour)
    usage = tuple(Usage(p, o, s) for p, o, s in await store.gpu_seconds_by_user_since(since))
    return StoreView(tuple(sessions), finals, usage, since)
