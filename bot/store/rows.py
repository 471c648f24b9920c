"""What the store holds, as Python sees it: the platforms and statuses, the session and segment
rows, and how a row read from SQLite (or a value written to it) is converted.

Timestamps are unix seconds (float, UTC). Platform ids (chat, thread, user) are stored as text;
a session without a thread has ``thread_id == ""``. Session ids are uuid4 hex (they name the
media folder ``sessions/<session_id>/``); segment ids are integers.
"""

from __future__ import annotations

import json
import os
import sqlite3
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import Enum, StrEnum
from pathlib import Path
from typing import Any, Final

from bot.core import State


class Platform(StrEnum):
    DISCORD = "discord"
    TELEGRAM = "telegram"
    CLI = "cli"
    WEB = "web"


#: A session's state is the conversation core's: one definition of the states.
SessionState = State


class SegmentStatus(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    APPROVED = "approved"
    REJECTED = "rejected"
    FAILED = "failed"
    CANCELLED = "cancelled"


#: Segments the dispatcher still owes work for.
PENDING: Final = (SegmentStatus.QUEUED, SegmentStatus.RUNNING)
#: Sessions that are over; every other state is active.
OVER: Final = (SessionState.FINISHED, SessionState.CANCELLED)


def in_list(values: Iterable[Enum]) -> str:
    return ", ".join(f"'{v.value}'" for v in values)


class Unset(Enum):
    UNSET = "unset"


#: "Leave this column as it is" for the nullable columns of update_session/update_segment.
UNSET: Final = Unset.UNSET

PathArg = str | os.PathLike[str]


@dataclass(frozen=True)
class SessionRow:
    id: str
    platform: Platform
    chat_id: str
    thread_id: str
    owner_id: str
    state: SessionState
    settings: Mapping[str, Any]
    #: The image the next segment starts from (the hand-off frame).
    start_image: Path | None
    #: The image the session started with.
    first_image: Path | None
    final_video: Path | None
    #: Platform message ids of what was posted for the session (status, final video, ...).
    posted: Mapping[str, Any]
    created_at: float
    updated_at: float
    #: The caption the final video is posted with (the same again after a restart).
    final_caption: str | None = None


@dataclass(frozen=True)
class SegmentRow:
    id: int
    session_id: str
    #: Position in the chain (the first segment is 0).
    idx: int
    #: 1 for the first try at this idx, 2 after one regenerate, ...
    attempt: int
    prompt: str
    negative_prompt: str
    seed: int | None
    #: Generation parameters (width, height, frames, steps, guidance, ...).
    params: Mapping[str, Any]
    status: SegmentStatus
    start_image: Path | None
    video: Path | None
    last_frame: Path | None
    error: str | None
    #: How many times the dispatcher has started this job.
    tries: int
    #: Global enqueue order; resumable jobs are replayed by it.
    queue_seq: int
    enqueued_at: float | None
    started_at: float | None
    finished_at: float | None
    #: Platform message ids of what was posted, e.g. {"progress": 1, "video": 2, "frame": 3}.
    posted: Mapping[str, Any]
    created_at: float
    updated_at: float
    #: The caption the take is posted with for review (the same again after a restart).
    caption: str | None = None
    #: The take's drift figures as the worker sent them (``shared.drift.DriftFigures`` JSON),
    #: None when not measured.
    drift: Mapping[str, Any] | None = None


def path_or_none(value: str | None) -> Path | None:
    return None if value is None else Path(value)


def path_text(value: PathArg | None) -> str | None:
    return None if value is None else os.fspath(value)


def to_json(value: Mapping[str, Any]) -> str:
    return json.dumps(dict(value), ensure_ascii=False, sort_keys=True)


def session_row(row: sqlite3.Row) -> SessionRow:
    return SessionRow(
        id=row["id"],
        platform=Platform(row["platform"]),
        chat_id=row["chat_id"],
        thread_id=row["thread_id"],
        owner_id=row["owner_id"],
        state=SessionState(row["state"]),
        settings=json.loads(row["settings"]),
        start_image=path_or_none(row["start_image"]),
        first_image=path_or_none(row["first_image"]),
        final_video=path_or_none(row["final_video"]),
        posted=json.loads(row["posted"]),
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        final_caption=row["final_caption"],
    )


def segment_row(row: sqlite3.Row) -> SegmentRow:
    return SegmentRow(
        id=row["id"],
        session_id=row["session_id"],
        idx=row["idx"],
        attempt=row["attempt"],
        prompt=row["prompt"],
        negative_prompt=row["negative_prompt"],
        seed=row["seed"],
        params=json.loads(row["params"]),
        status=SegmentStatus(row["status"]),
        start_image=path_or_none(row["start_image"]),
        video=path_or_none(row["video"]),
        last_frame=path_or_none(row["last_frame"]),
        error=row["error"],
        tries=row["tries"],
        queue_seq=row["queue_seq"],
        enqueued_at=row["enqueued_at"],
        started_at=row["started_at"],
        finished_at=row["finished_at"],
        posted=json.loads(row["posted"]),
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        caption=row["caption"],
        drift=None if row["drift"] is None else json.loads(row["drift"]),
    )


def json_key(key: str) -> str:
    """A JSON path naming one top-level key (quoted, so dots and spaces are fine)."""
    # SQLite's path syntax has no escapes inside a quoted label.
    if not key or '"' in key or "\\" in key:
        raise ValueError(f"posted key must be non-empty text without quotes or backslashes, got {key!r}")
    return f'$."{key}"'
