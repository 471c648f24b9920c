"""What the operator page shows, gathered in one call from the dispatcher and the store: plain
dataclasses, no HTML. (The admin chat commands build a similar snapshot; the two can share one.)"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass

from bot import core
from bot.dispatcher import Dispatcher
from bot.store import SegmentStatus, SessionState, Store

#: Finished videos listed, newest first.
FINALS_SHOWN = 20


@dataclass(frozen=True)
class WorkerLine:
    device: str
    #: idle, running, starting, restarting (with why), unavailable (with why)
    state: str
    detail: str = ""
    job_id: str = ""


@dataclass(frozen=True)
class JobLine:
    job_id: str
    owner: str
    session_id: str
    #: 0 while running, else the place in the queue
    position: int
    device: str = ""


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
class Snapshot:
    workers: tuple[WorkerLine, ...]
    jobs: tuple[JobLine, ...]
    sessions: tuple[SessionLine, ...]
    finals: tuple[FinalLine, ...]
    usage: tuple[Usage, ...]
    day_started: float


def _workers(dispatcher: Dispatcher | None) -> tuple[WorkerLine, ...]:
    if dispatcher is None:
        return ()
    lines = []
    busy = {id(worker): job.job_id for job, worker in dispatcher.running.values()}
    for device in dispatcher.devices:
        worker = dispatcher.workers.get(device)
        if device in dispatcher.unavailable:
            lines.append(WorkerLine(device, "unavailable", dispatcher.unavailable[device]))
        elif device in dispatcher.failing:
            lines.append(WorkerLine(device, "restarting", dispatcher.failing[device]))
        elif worker is None or not worker.alive:
            lines.append(WorkerLine(device, "starting"))
        elif id(worker) in busy:
            lines.append(WorkerLine(device, "running", job_id=busy[id(worker)]))
        else:
            ready = worker.ready
            lines.append(WorkerLine(device, "idle", f"{ready.backend} on {ready.device}" if ready else ""))
    return tuple(lines)


async def _jobs(store: Store, dispatcher: Dispatcher | None) -> tuple[JobLine, ...]:
    if dispatcher is None:
        return ()
    devices = {id(w): d for d, w in dispatcher.workers.items() if w is not None}
    entries = [(job, 0, devices.get(id(worker), "")) for job, worker in dispatcher.running.values()]
    entries += [(job, i, "") for i, job in enumerate(dispatcher.queue.order(), start=1)]
    lines = []
    for job, position, device in entries:
        session_id = ""
        if job.job_id.isdigit():
            with contextlib.suppress(LookupError):
                session_id = (await store.get_segment(int(job.job_id))).session_id
        lines.append(JobLine(job.job_id, job.owner, session_id, position, device))
    return tuple(lines)


async def gather(store: Store, dispatcher: Dispatcher | None, *, reset_hour: int = 0) -> Snapshot:
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
    return Snapshot(_workers(dispatcher), await _jobs(store, dispatcher), tuple(sessions), finals, usage, since)
