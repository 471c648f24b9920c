"""The dispatcher: a fair job queue feeding one slot per GPU, each slot a supervised worker process.

Fairness: jobs wait in one queue per owner, and the owner served least recently goes next, so one
user with many jobs does not starve the others. Each slot owns a worker process; if the process dies, the
slot restarts it (with backoff) and retries the job once on the fresh worker before reporting the
failure. Results are reported through a ``DispatchListener``; a failure is a result, and the queue
moves on.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import NoReturn, Protocol

from bot.ops_view import DispatchFacts, RunningFacts, SlotFacts, WaitingFacts
from bot.worker_client import (
    PreviewHandler,
    ProgressHandler,
    QueuedHandler,
    WorkerDied,
    WorkerError,
    WorkerProcess,
    WorkerStartError,
)
from shared.protocol import Done, Failed, FailureKind, Generate, Preview, Progress, Queued

log = logging.getLogger("framechain.dispatcher")

#: A job is tried at most this often (the first run plus one retry after a worker death).
MAX_TRIES = 2
MAX_BACKOFF = 60.0
#: A worker whose start ran out of memory is tried this many times (the memory may be held by
#: another process for a while); one that reported bad_input (a missing or wrong model file, a
#: missing package, a bad setting) is not restarted at all: only the operator can fix that.
MAX_OOM_STARTS = 3
UNAVAILABLE = "the GPU worker could not start, and the GPU is unavailable until the operator fixes its setup"


@dataclass
class Job:
    message: Generate
    #: Whose job it is, for fairness (e.g. "telegram:1234").
    owner: str
    tries: int = 0
    cancelled: bool = field(default=False, compare=False)

    @property
    def job_id(self) -> str:
        return self.message.job_id


class DispatchListener(Protocol):
    async def job_position(self, job_id: str, position: int) -> None: ...
    async def job_started(self, job_id: str, device: str) -> None: ...
    async def job_progress(self, job_id: str, step: int, total: int) -> None: ...
    async def job_waiting(self, job_id: str, ahead: int, where: str, eta: float | None) -> None:
        """The job runs on its slot but waits there behind ``ahead`` other people's jobs (the
        queue of a ComfyUI server); ``eta``: seconds until it starts, when the worker can tell."""
        ...

    async def job_preview(self, job_id: str, path: str, step: int, total: int) -> None:
        """A live preview of the running job after ``step``: a picture at ``path``."""
        ...

    async def job_retrying(self, job_id: str, reason: str) -> None:
        """The job's worker went away mid-job (``reason`` says what and where it goes next): it
        is queued again, ahead of everything, and starts over."""
        ...

    async def job_finished(self, job_id: str, result: Done | Failed) -> None: ...
    async def job_delayed(self, job_id: str, reason: str) -> None:
        """The job waits longer than it should: no worker could be started (it stays queued)."""
        ...


class FairQueue:
    """Per-owner FIFO queues; the next job comes from the owner served least recently (owners
    never served first, in order of arrival). So a newcomer waits for at most one job of each
    owner already waiting, however many jobs they have queued. One event loop, no threads."""

    def __init__(self) -> None:
        self._owners: dict[str, deque[Job]] = {}
        self._ids: dict[str, Job] = {}
        self._last_served: dict[str, int] = {}
        self._tick = 0
        self._changed = asyncio.Condition()
        #: While paused, get() hands out nothing (the admins' /pause); jobs still queue up.
        self.paused = False

    def __len__(self) -> int:
        return len(self._ids)

    def __contains__(self, job_id: str) -> bool:
        return job_id in self._ids

    async def put(self, job: Job, *, front: bool = False) -> None:
        queue = self._owners.setdefault(job.owner, deque())
        if front:
            # A retry of a job that was already running: it goes ahead of everything.
            queue.appendleft(job)
            self._last_served[job.owner] = -2
        else:
            queue.append(job)
        self._ids[job.job_id] = job
        async with self._changed:
            self._changed.notify()

    def remove(self, job_id: str) -> Job | None:
        job = self._ids.pop(job_id, None)
        if job is not None:
            queue = self._owners[job.owner]
            queue.remove(job)
            if not queue:
                del self._owners[job.owner]
        return job

    @staticmethod
    def _next_owner(owners: Iterable[str], last_served: dict[str, int]) -> str:
        # min() keeps the first of equals: owners never served go in order of arrival.
        return min(owners, key=lambda owner: last_served.get(owner, -1))

    def order(self) -> list[Job]:
        """The order in which the waiting jobs will be served, if no others arrive."""
        queues = {owner: deque(q) for owner, q in self._owners.items()}
        last = dict(self._last_served)
        tick = self._tick
        out: list[Job] = []
        while queues:
            owner = self._next_owner(queues, last)
            out.append(queues[owner].popleft())
            tick += 1
            last[owner] = tick
            if not queues[owner]:
                del queues[owner]
        return out

    async def set_paused(self, paused: bool) -> None:
        self.paused = paused
        async with self._changed:
            self._changed.notify_all()

    async def get(self) -> Job:
        async with self._changed:
            await self._changed.wait_for(lambda: bool(self._owners) and not self.paused)
            owner = self._next_owner(self._owners, self._last_served)
            queue = self._owners[owner]
            job = queue.popleft()
            if not queue:
                del self._owners[owner]
            del self._ids[job.job_id]
            self._tick += 1
            self._last_served[owner] = self._tick
            return job


WorkerFactory = Callable[[str], WorkerProcess]


class Dispatcher:
    def __init__(
        self,
        devices: Sequence[str],
        make_worker: WorkerFactory,
        listener: DispatchListener,
        *,
        restart_backoff: float = 2.0,
    ) -> None:
        if not devices:
            raise ValueError("the dispatcher needs at least one device")
        self.devices = list(devices)
        self.make_worker = make_worker
        self.listener = listener
        self.restart_backoff = restart_backoff
        self.queue = FairQueue()
        self.running: dict[str, tuple[Job, WorkerProcess]] = {}
        self.workers: dict[str, WorkerProcess | None] = dict.fromkeys(self.devices)
        self._slots: list[asyncio.Task[None]] = []
        self._positions: dict[str, int] = {}
        self._reports: set[asyncio.Task[None]] = set()
        #: Devices whose worker cannot start until the operator fixes something, with the reason.
        self.unavailable: dict[str, str] = {}
        #: Devices whose worker failed its latest start and is being retried, with what to tell.
        self.failing: dict[str, str] = {}

    # --- control ----------------------------------------------------------------------------

    async def start(self) -> None:
        for device in self.devices:
            self._slots.append(asyncio.create_task(self._slot(device), name=f"slot-{device}"))

    async def stop(self) -> None:
        for task in self._slots:
            task.cancel()
        for task in self._slots:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._slots.clear()
        for device, worker in list(self.workers.items()):
            if worker is not None:
                await worker.stop()
            self.workers[device] = None

    async def submit(self, message: Generate, owner: str) -> bool:
        """Queue a job. Idempotent by job id: a job already queued or running is not added twice."""
        if message.job_id in self.queue or message.job_id in self.running:
            return False
        await self.queue.put(Job(message=message, owner=owner))
        await self._announce_positions()
        if len(self.unavailable) == len(self.devices):
            await _quietly(self.listener.job_delayed(message.job_id, UNAVAILABLE))
        elif self.failing and not any(w is not None and w.alive for w in self.workers.values()):
            # Arrived during a failing start streak: told now, as those already waiting were.
            await _quietly(self.listener.job_delayed(message.job_id, next(iter(self.failing.values()))))
        return True

    async def cancel(self, job_id: str) -> bool:
        """Cancel a waiting or running job. A waiting one is reported as failed (cancelled) at once;
        a running one when its worker stops it (within one denoising step)."""
        job = self.queue.remove(job_id)
        if job is not None:
            self._positions.pop(job_id, None)
            # Reported from a task of its own: the caller may hold locks the listener takes.
            failed = Failed(job_id=job_id, kind=FailureKind.CANCELLED, message="cancelled while queued")
            task = asyncio.create_task(_quietly(self.listener.job_finished(job_id, failed)))
            self._reports.add(task)
            task.add_done_callback(self._reports.discard)
            await self._announce_positions()
            return True
        entry = self.running.get(job_id)
        if entry is not None:
            job, worker = entry
            job.cancelled = True
            await worker.cancel(job_id)
            return True
        return False

    def position(self, job_id: str) -> int | None:
        """1-based place in the queue; 0 while running; None when unknown."""
        if job_id in self.running:
            return 0
        for i, job in enumerate(self.queue.order(), start=1):
            if job.job_id == job_id:
                return i
        return None

    async def _announce_positions(self) -> None:
        order = self.queue.order()
        current = {job.job_id: i for i, job in enumerate(order, start=1)}
        for job_id, position in current.items():
            if self._positions.get(job_id) != position:
                await _quietly(self.listener.job_position(job_id, position))
        self._positions = current

    # --- the admins' steering (bot.conversation.admin) -----------------------------------------

    @property
    def paused(self) -> bool:
        return self.queue.paused

    async def pause(self) -> None:
        """Start nothing new: running jobs finish, waiting ones wait (and new ones queue up)."""
        await self.queue.set_paused(True)

    async def resume(self) -> None:
        await self.queue.set_paused(False)

    def facts(self) -> DispatchFacts:
        """What the dispatcher knows right now, as plain values (``bot.ops_view`` makes the
        operator's snapshot of it)."""
        running = []
        for job_id, (job, worker) in self.running.items():
            device = next((d for d, w in self.workers.items() if w is worker), None)
            running.append(RunningFacts(job_id, job.owner, device, job.tries, job.cancelled))
        slots = []
        for device in self.devices:
            process = self.workers.get(device)
            ready = process.ready if process is not None else None
            slots.append(
                SlotFacts(
                    slot=device,
                    alive=process is not None and process.alive,
                    backend=ready.backend if ready is not None else None,
                    info=dict(ready.info) if ready is not None else {},
                    unavailable=self.unavailable.get(device),
                    failing=self.failing.get(device),
                )
            )
        waiting = tuple(WaitingFacts(job.job_id, job.owner, job.tries) for job in self.queue.order())
        return DispatchFacts(paused=self.paused, running=tuple(running), waiting=waiting, slots=tuple(slots))

    # --- slots ------------------------------------------------------------------------------

    async def _give_up(self, device: str, exc: WorkerStartError) -> NoReturn:
        """Stop restarting ``device``'s worker: log the fix, tell the waiting users, wait for stop()."""
        self.unavailable[device] = str(exc)
        self.failing.pop(device, None)
        log.error(
            "worker on %s cannot start: %s. Restarting will not help: fix this (configuration, model files "
            "or packages) and restart framechain.",
            device,
            exc,
        )
        if len(self.unavailable) == len(self.devices):
            for job in self.queue.order():
                await _quietly(self.listener.job_delayed(job.job_id, UNAVAILABLE))
        await asyncio.Future()  # parked until stop() cancels the slot
        raise AssertionError("unreachable")

    async def _ensure_worker(self, device: str) -> WorkerProcess:
        failures = 0
        oom_starts = 0
        while True:
            worker = self.workers.get(device)
            if worker is not None and worker.alive:
                return worker
            if worker is not None:
                await worker.kill()
            worker = self.make_worker(device)
            try:
                await worker.start()
            except WorkerError as exc:
                kind = exc.kind if isinstance(exc, WorkerStartError) else None
                oom_starts += kind is FailureKind.OOM
                if isinstance(exc, WorkerStartError) and (
                    kind is FailureKind.BAD_INPUT or oom_starts >= MAX_OOM_STARTS
                ):
                    self.workers[device] = None
                    await self._give_up(device, exc)
                failures += 1
                self.failing[device] = _not_starting(device)
                delay = min(MAX_BACKOFF, self.restart_backoff * 2 ** (failures - 1))
                log.error("worker on %s did not start (%s); retrying in %.0f s", device, exc, delay)
                self.workers[device] = None
                # Tell the waiting owners once per streak, when no other device can serve them.
                if failures == 1 and not any(w is not None and w.alive for w in self.workers.values()):
                    for job in self.queue.order():
                        await _quietly(self.listener.job_delayed(job.job_id, _not_starting(device)))
                await asyncio.sleep(delay)
                continue
            self.workers[device] = worker
            self.failing.pop(device, None)
            return worker

    async def _slot(self, device: str) -> None:
        deaths = 0
        while True:
            # Start (or restart) the worker before waiting: loading a model takes minutes.
            await self._ensure_worker(device)
            job = await self.queue.get()
            worker = await self._ensure_worker(device)  # it may have died while idle
            self._positions.pop(job.job_id, None)
            await self._announce_positions()
            job.tries += 1
            self.running[job.job_id] = (job, worker)
            try:
                await _quietly(self.listener.job_started(job.job_id, device))
                result = await worker.run(
                    job.message,
                    self._progress_handler(job.job_id),
                    self._queued_handler(job.job_id),
                    on_preview=self._preview_handler(job.job_id),
                )
            except WorkerDied as exc:
                deaths += 1
                log.warning("worker on %s died during %s (try %d): %s", device, job.job_id, job.tries, exc)
                await worker.kill()
                self.workers[device] = None
                if job.tries < MAX_TRIES and not job.cancelled:
                    # Retry on a fresh worker, ahead of everything else (it was already running).
                    await self.queue.put(job, front=True)
                    await _quietly(self.listener.job_retrying(job.job_id, self._lost(device)))
                else:
                    kind = FailureKind.CANCELLED if job.cancelled else FailureKind.INTERNAL
                    message = "cancelled" if job.cancelled else "the GPU worker crashed twice on this segment"
                    await _quietly(self.listener.job_finished(job.job_id, Failed(job.job_id, kind, message)))
                await asyncio.sleep(min(MAX_BACKOFF, self.restart_backoff * 2 ** (deaths - 1)))
                continue
            finally:
                self.running.pop(job.job_id, None)
            deaths = 0
            await _quietly(self.listener.job_finished(job.job_id, result))

    def _lost(self, device: str) -> str:
        """What went away under a running job, and where its retry goes, for its owner."""
        if not _is_server(device):
            return "the GPU worker stopped; trying again on a fresh one"
        others = any(w is not None and w.alive for d, w in self.workers.items() if d != device)
        return f"the ComfyUI server stopped answering; trying again {'on another one' if others else 'once it is back'}"

    def _progress_handler(self, job_id: str) -> ProgressHandler:
        async def handle(event: Progress) -> None:
            await _quietly(self.listener.job_progress(job_id, event.step, event.total))

        return handle

    def _preview_handler(self, job_id: str) -> PreviewHandler:
        async def handle(event: Preview) -> None:
            await _quietly(self.listener.job_preview(job_id, event.path, event.step, event.total))

        return handle

    def _queued_handler(self, job_id: str) -> QueuedHandler:
        async def handle(event: Queued) -> None:
            await _quietly(self.listener.job_waiting(job_id, event.ahead, event.where, event.eta))

        return handle


def _not_starting(device: str) -> str:
    return "the ComfyUI server is not answering" if _is_server(device) else "the GPU worker could not start"


def _is_server(device: str) -> bool:
    """A slot that drives a server (``comfyui:N``) rather than a local device."""
    return device.startswith("comfyui:")


async def _quietly(awaitable: object) -> None:
    """Listener errors (a chat API hiccup) must never stop a slot or the queue."""
    try:
        await awaitable  # type: ignore[misc]
    except Exception:
        log.exception("dispatch listener failed")
