"""A session as the core reads it, rebuilt from its store rows, and its settings as stored.

The functions are pure; :class:`Sessions` reads the rows they work on from the store.
"""

from __future__ import annotations

from typing import Any

from bot import core
from bot.ports import ChatRef
from bot.store import NotFound, SegmentRow, SegmentStatus, SessionRow, Store
from shared.color_reference import color_match_of
from shared.config import Config
from shared.params import SECONDS_TO_FRAMES


def default_settings(config: Config) -> core.Settings:
    g = config.generation
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
        color_match=g.color_match,
        continuity=g.continuity,
    )


def settings_json(settings: core.Settings, pending_prompt: str | None, end_image: str | None = None) -> dict[str, Any]:
    """A session's settings as stored, with what else it holds between takes: a prompt sent
    before the picture, the end keyframe (/end) the next take aims at."""
    return {
        "seconds": settings.seconds,
        "steps": settings.steps,
        "seed": settings.seed,
        "negative_prompt": settings.negative_prompt,
        "width": settings.width,
        "height": settings.height,
        "color_match": settings.color_match,
        "continuity": settings.continuity,
        "pending_prompt": pending_prompt,
        "end_image": end_image,
        "takes": settings.takes,
    }


def saved(row: SessionRow, rows: list[SegmentRow], defaults: core.Settings) -> tuple[core.Session, core.Take | None]:
    """A session's rows as the core reads them: everything but the state and the current take
    (see ``core.restore``), and the newest take at the next chain position."""
    stored = dict(row.settings)
    settings = core.Settings(
        seconds=int(stored.get("seconds", defaults.seconds)),
        steps=int(stored.get("steps", defaults.steps)),
        seed=stored.get("seed", defaults.seed),
        negative_prompt=str(stored.get("negative_prompt", defaults.negative_prompt)),
        width=int(stored.get("width", defaults.width)),
        height=int(stored.get("height", defaults.height)),
        color_match=color_match_of(stored, defaults.color_match),
        continuity=str(stored.get("continuity", defaults.continuity)),
        takes=int(stored.get("takes", defaults.takes)),
    )
    approved = tuple(segment_of(r) for r in rows if r.status is SegmentStatus.APPROVED)
    attempts: list[int] = []
    for r in rows:
        attempts += [0] * (r.idx + 1 - len(attempts))
        attempts[r.idx] = max(attempts[r.idx], r.attempt)
    takes = sorted((r for r in rows if r.idx == len(approved)), key=lambda r: r.attempt)
    take = None
    if takes:
        made = _being_made(takes)
        newest = made[-1] if made else _the_take(takes)
        # Other takes made (and reported) but not rejected: still up for approval (core.Session.kept).
        done = (segment_of(r) for r in takes if r is not newest and r not in made and r.status is SegmentStatus.DONE)
        earlier = tuple(seg for seg in done if seg.result is not None)
        making = tuple(segment_of(r) for r in made if r is not newest)
        take = core.Take(segment_of(newest), _TAKE_STATUS[newest.status], earlier, making)
    base = core.Session(
        id=row.id,
        owner_id=row.owner_id,
        settings=settings,
        first_image=str(row.first_image) if row.first_image else None,
        pending_prompt=stored.get("pending_prompt"),
        approved=approved,
        attempts=tuple(attempts),
        final_video=str(row.final_video) if row.final_video else None,
        end_image=stored.get("end_image"),
    )
    return base, take


_PENDING = (SegmentStatus.QUEUED, SegmentStatus.RUNNING)


def _being_made(takes: list[SegmentRow]) -> list[SegmentRow]:
    """The takes of the newest batch the core still counts as being made: queued or running, or
    finished with a report the core has not taken yet (done without the caption its post
    stores, or failed: the core settles a failed take it leaves out, ``core.LeaveOut``)."""
    batch = _batch(takes[-1])
    mates = [r for r in takes if _batch(r) == batch]
    if not any(r.status in _PENDING for r in mates) and len(mates) == 1:
        return []  # a take queued alone, no longer made: read as it always was
    return [
        r
        for r in mates
        if r.status in _PENDING
        or (r.status is SegmentStatus.DONE and r.caption is None)
        or r.status is SegmentStatus.FAILED
    ]


def unreported(rows: list[SegmentRow]) -> list[SegmentRow]:
    """Takes whose job ended but whose report the core never took (a crash in between)."""
    approved = sum(1 for r in rows if r.status is SegmentStatus.APPROVED)
    takes = sorted((r for r in rows if r.idx == approved), key=lambda r: r.attempt)
    return [r for r in _being_made(takes) if r.status not in _PENDING] if takes else []


def _the_take(takes: list[SegmentRow]) -> SegmentRow:
    """The take the session's state is about (``core.Take.segment``), of a position's takes in
    attempt order: the newest being made while any is (a batch: ``core_takes``); else the newest
    of the newest batch, passing over those of it that failed or were stopped while a take of it
    is done (the core leaves those out and reviews the done one)."""
    pending = [r for r in takes if r.status in _PENDING]
    if pending:
        return pending[-1]
    batch = _batch(takes[-1])
    mates = [r for r in takes if _batch(r) == batch]
    for i in range(len(mates) - 1, -1, -1):
        r = mates[i]
        dropped = r.status in (SegmentStatus.FAILED, SegmentStatus.CANCELLED)
        if not (dropped and any(m.status is SegmentStatus.DONE for m in mates[:i])):
            return r
    return takes[-1]


def _batch(r: SegmentRow) -> int:
    return int(r.params.get("batch") or r.attempt)


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


def segment_of(r: SegmentRow) -> core.Segment:
    """A segment row as the core reads it."""
    result = None
    if r.status in (SegmentStatus.DONE, SegmentStatus.APPROVED) and r.video and r.last_frame and r.seed is not None:
        result = core.SegmentResult(
            video=str(r.video),
            last_frame=str(r.last_frame),
            frames=int(r.params["frames"]),
            seed=r.seed,
            overlap=int(r.params.get("overlap", 1)),
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
        end_image=r.params.get("end_image"),
        batch=int(r.params.get("batch") or 0),
    )


def row_for(rows: list[SegmentRow], key: core.SegmentKey) -> SegmentRow:
    for r in rows:
        if (r.idx, r.attempt) == key:
            return r
    raise NotFound(f"no segment {key}")


def segment_ids(rows: list[SegmentRow]) -> dict[core.SegmentKey, int]:
    """The row id of each take, by the key the core names it with."""
    return {core.SegmentKey(r.idx, r.attempt): r.id for r in rows}


class Sessions:
    """Sessions read from the store, as the core sees them."""

    def __init__(self, store: Store, config: Config) -> None:
        self.store = store
        self.config = config

    def default_settings(self) -> core.Settings:
        return default_settings(self.config)

    async def load(self, session_id: str) -> tuple[SessionRow, core.Session, list[SegmentRow]]:
        row = await self.store.get_session(session_id)
        rows = await self.store.list_segments(session_id)
        return row, self.rebuild(row, rows), rows

    def rebuild(self, row: SessionRow, rows: list[SegmentRow]) -> core.Session:
        """The core's view of a session, from its rows."""
        base, take = self.saved(row, rows)
        return core.restore(base, row.state, take)

    def saved(self, row: SessionRow, rows: list[SegmentRow]) -> tuple[core.Session, core.Take | None]:
        return saved(row, rows, self.default_settings())

    async def session_for(self, chat: ChatRef, user_id: str) -> SessionRow | None:
        """The user's active session here, else anyone's (so strangers get the core's answer)."""
        row = await self.store.find_active_session(chat.platform, chat.chat_id, chat.thread_id, user_id)
        if row is None:
            row = await self.store.find_active_session(chat.platform, chat.chat_id, chat.thread_id, None)
        return row
