"""The operator's view of the queue and the workers: one immutable snapshot, no I/O.

What ``/queue`` and ``/gpu`` show, and what an operator web page can show the same way. The
data flows in one direction:

- :class:`DispatchFacts` is what the dispatcher knows right now (``Dispatcher.facts()``): the
  running jobs and their slots, the waiting jobs in the order the fair queue will serve them,
  each slot's worker (alive, its ``ready`` report, why it cannot start), and whether the queue
  is paused.
- :class:`JobFacts` is what the store knows about a job (its session, segment and take), and
  :class:`JobTiming` what the service has seen of it (when it started, its latest step).
- :func:`build_snapshot` joins them into an :class:`OpsSnapshot`: a :class:`QueueEntry` per job
  (owner, session, position, slot, estimates) and a :class:`WorkerView` per slot (device or
  server, state, running job, memory).

Estimates: a running job's time left comes from its own pace (seconds per step so far), else
from the mean duration of recent jobs; a waiting job's start is simulated by handing the jobs,
in queue order, to whichever usable slot frees first, each taking the mean duration. Nothing is
estimated while the queue is paused, or before any job has been timed.

Every value is plain (strings, numbers, tuples, frozen dataclasses), so a snapshot can be
rendered as chat text (``bot.core_admin``) or serialised as JSON (:func:`as_dict`).
"""

from __future__ import annotations

import dataclasses
import heapq
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

# -- what goes in ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class RunningFacts:
    job_id: str
    #: The dispatcher's owner key, ``platform:user_id``.
    owner: str
    #: The slot running it (None for a moment while its worker is replaced).
    slot: str | None
    tries: int = 1
    #: A cancel was sent; the worker stops it within a step.
    stopping: bool = False


@dataclass(frozen=True)
class WaitingFacts:
    job_id: str
    owner: str
    #: Earlier tries (1 or more: a retry after its worker died).
    tries: int = 0


@dataclass(frozen=True)
class SlotFacts:
    """One dispatcher slot: a local device (``cuda:0``, ``cpu``) or a ComfyUI server (``comfyui:N``)."""

    slot: str
    alive: bool
    #: From the worker's ``ready`` (None until it is ready).
    backend: str | None = None
    #: The ``ready`` message's ``info`` (model source, memory profile and plan, server…).
    info: Mapping[str, Any] = field(default_factory=dict)
    #: Why the worker cannot start until the operator fixes something.
    unavailable: str | None = None
    #: Why its latest start failed while it is being retried.
    failing: str | None = None


@dataclass(frozen=True)
class DispatchFacts:
    paused: bool
    running: tuple[RunningFacts, ...] = ()
    #: In the order the fair queue will serve them.
    waiting: tuple[WaitingFacts, ...] = ()
    slots: tuple[SlotFacts, ...] = ()


@dataclass(frozen=True)
class JobFacts:
    """What the store says about a job (a take of a segment)."""

    session_id: str
    #: 1-based, as users count.
    segment: int
    take: int
    prompt: str = ""


@dataclass(frozen=True)
class JobTiming:
    """What the service saw of a running job, on the snapshot's clock."""

    started_at: float
    step: int = 0
    total: int = 0


# -- what comes out -------------------------------------------------------------------------------


class JobState(StrEnum):
    RUNNING = "running"
    WAITING = "waiting"


class WorkerState(StrEnum):
    #: Loading (a model takes minutes), or not started yet.
    STARTING = "starting"
    IDLE = "idle"
    BUSY = "busy"
    #: Its start failed; it is being retried with backoff.
    RESTARTING = "restarting"
    #: It cannot start until the operator fixes its setup.
    UNAVAILABLE = "unavailable"


@dataclass(frozen=True)
class QueueEntry:
    """One job, running or waiting."""

    job_id: str
    #: ``platform:user_id``, as the fair queue keys its owners.
    owner: str
    platform: str
    user_id: str
    state: JobState
    #: 0 while running; 1 for the next in line, 2 after it, …
    position: int
    #: The slot running it (running jobs only).
    slot: str | None = None
    #: Its session, segment (1-based) and take, when the store knows the job.
    session_id: str | None = None
    segment: int | None = None
    take: int | None = None
    prompt: str = ""
    #: Running: the latest step reported.
    step: int | None = None
    total: int | None = None
    #: Tries so far (a second try follows a worker's death).
    tries: int = 0
    stopping: bool = False
    #: Seconds until it starts (waiting jobs; 0 once running), None without an estimate.
    starts_in: float | None = None
    #: Seconds until it should be done, None without an estimate.
    done_in: float | None = None


@dataclass(frozen=True)
class WorkerView:
    """One worker slot."""

    slot: str
    #: ``device`` (a local GPU or the CPU) or ``server`` (a ComfyUI server).
    kind: str
    #: The device name, or the server's URL.
    where: str
    state: WorkerState
    backend: str | None = None
    job_id: str | None = None
    job_owner: str | None = None
    #: What the worker reported about memory (its profile and plan), None when it reports none.
    memory: str | None = None
    #: Why it is restarting or unavailable.
    problem: str | None = None
    #: The worker's whole ``ready`` info, as it sent it.
    info: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class OpsSnapshot:
    paused: bool
    #: Running jobs first (in slot order), then the waiting ones in the order they will be served.
    queue: tuple[QueueEntry, ...]
    workers: tuple[WorkerView, ...]
    #: The mean duration of recently finished jobs (None: none timed yet).
    mean_job_seconds: float | None = None

    @property
    def running(self) -> tuple[QueueEntry, ...]:
        return tuple(e for e in self.queue if e.state is JobState.RUNNING)

    @property
    def waiting(self) -> tuple[QueueEntry, ...]:
        return tuple(e for e in self.queue if e.state is JobState.WAITING)

    def entry(self, job_id: str) -> QueueEntry | None:
        return next((e for e in self.queue if e.job_id == job_id), None)


# -- building it ----------------------------------------------------------------------------------


def build_snapshot(
    facts: DispatchFacts,
    jobs: Mapping[str, JobFacts],
    timings: Mapping[str, JobTiming],
    *,
    now: float,
    mean_job_seconds: float | None = None,
    servers: Mapping[str, str] | None = None,
) -> OpsSnapshot:
    """Join what the dispatcher, the store and the service know into one snapshot.

    ``now`` is on the clock of ``timings``; ``servers`` maps a server slot (``comfyui:0``) to its
    URL, for :attr:`WorkerView.where`."""
    mean = mean_job_seconds if mean_job_seconds is not None and mean_job_seconds > 0 else None
    slot_order = {s.slot: i for i, s in enumerate(facts.slots)}
    running = sorted(facts.running, key=lambda r: slot_order.get(r.slot or "", len(slot_order)))
    entries: list[QueueEntry] = []
    left: dict[str, float | None] = {}
    for r in running:
        timing = timings.get(r.job_id)
        remaining = _time_left(timing, now, mean)
        left[r.job_id] = remaining
        entries.append(
            _entry(
                r.job_id,
                r.owner,
                jobs.get(r.job_id),
                state=JobState.RUNNING,
                position=0,
                slot=r.slot,
                step=timing.step if timing is not None else None,
                total=timing.total if timing is not None and timing.total else None,
                tries=r.tries,
                stopping=r.stopping,
                starts_in=0.0,
                done_in=remaining,
            )
        )
    starts = _waiting_starts(facts, left, mean)
    for position, w in enumerate(facts.waiting, start=1):
        start = starts[position - 1]
        entries.append(
            _entry(
                w.job_id,
                w.owner,
                jobs.get(w.job_id),
                state=JobState.WAITING,
                position=position,
                tries=w.tries,
                starts_in=start,
                done_in=None if start is None or mean is None else start + mean,
            )
        )
    on_slot = {r.slot: r for r in facts.running if r.slot is not None}
    workers = tuple(_worker(s, on_slot.get(s.slot), servers or {}) for s in facts.slots)
    return OpsSnapshot(paused=facts.paused, queue=tuple(entries), workers=workers, mean_job_seconds=mean)


def as_dict(snapshot: OpsSnapshot) -> dict[str, Any]:
    """The snapshot as JSON-ready values (enums as their strings)."""
    return {
        "paused": snapshot.paused,
        "mean_job_seconds": snapshot.mean_job_seconds,
        "queue": [_plain(dataclasses.asdict(e)) for e in snapshot.queue],
        "workers": [_plain(dataclasses.asdict(w)) for w in snapshot.workers],
    }


def is_server(slot: str) -> bool:
    return slot.startswith("comfyui:")


def _plain(values: dict[str, Any]) -> dict[str, Any]:
    return {k: (v.value if isinstance(v, StrEnum) else v) for k, v in values.items()}


def _entry(job_id: str, owner: str, job: JobFacts | None, **values: Any) -> QueueEntry:
    platform, _, user_id = owner.partition(":")
    return QueueEntry(
        job_id=job_id,
        owner=owner,
        platform=platform,
        user_id=user_id,
        session_id=job.session_id if job is not None else None,
        segment=job.segment if job is not None else None,
        take=job.take if job is not None else None,
        prompt=job.prompt if job is not None else "",
        **values,
    )


def _time_left(timing: JobTiming | None, now: float, mean: float | None) -> float | None:
    """A running job's seconds left: from its own pace once it reported a step, else the mean."""
    if timing is None:
        return mean
    elapsed = max(0.0, now - timing.started_at)
    if timing.step > 0 and timing.total >= timing.step:
        return elapsed / timing.step * (timing.total - timing.step)
    return None if mean is None else max(0.0, mean - elapsed)


def _waiting_starts(facts: DispatchFacts, left: Mapping[str, float | None], mean: float | None) -> list[float | None]:
    """When each waiting job should start: the jobs, in queue order, go to whichever usable slot
    frees first, each taking ``mean`` seconds."""
    unknown: list[float | None] = [None] * len(facts.waiting)
    usable = [s for s in facts.slots if s.unavailable is None]
    if facts.paused or mean is None or not usable:
        return unknown
    busy = {r.slot: left.get(r.job_id) for r in facts.running if r.slot is not None}
    free_at: list[float] = []
    for slot in usable:
        if slot.slot in busy:
            remaining = busy[slot.slot]
            free_at.append(mean if remaining is None else remaining)
        else:
            free_at.append(0.0)
    heapq.heapify(free_at)
    starts: list[float | None] = []
    for _ in facts.waiting:
        start = heapq.heappop(free_at)
        starts.append(start)
        heapq.heappush(free_at, start + mean)
    return starts


def _worker(s: SlotFacts, job: RunningFacts | None, servers: Mapping[str, str]) -> WorkerView:
    server = is_server(s.slot)
    if s.unavailable is not None:
        state, problem = WorkerState.UNAVAILABLE, s.unavailable
    elif s.failing is not None and not s.alive:
        state, problem = WorkerState.RESTARTING, s.failing
    elif not s.alive or s.backend is None:
        state, problem = WorkerState.STARTING, None
    else:
        state, problem = (WorkerState.BUSY if job is not None else WorkerState.IDLE), None
    where = servers.get(s.slot) or str(s.info.get("server") or "") or s.slot
    if not server:
        where = str(s.info.get("device") or s.slot)
    return WorkerView(
        slot=s.slot,
        kind="server" if server else "device",
        where=where,
        state=state,
        backend=s.backend,
        job_id=job.job_id if job is not None else None,
        job_owner=job.owner if job is not None else None,
        memory=_memory(s.info),
        problem=problem,
        info=dict(s.info),
    )


def _memory(info: Mapping[str, Any]) -> str | None:
    """The worker's own memory report: its profile and the plan it checked before loading."""
    profile = info.get("memory_profile")
    plan = info.get("memory_plan")
    parts = [str(p) for p in (profile, plan) if p]
    if info.get("low_ram"):
        parts.insert(1 if profile else 0, "low_ram")
    return ", ".join(parts) if parts else None
