"""The dispatcher's fair queue and job bookkeeping (worker processes are exercised in
test_service.py; here no worker is started)."""

from __future__ import annotations

import asyncio
import json
import sys

from bot.dispatcher import MAX_OOM_STARTS, UNAVAILABLE, Dispatcher, FairQueue, Job
from bot.worker_client import WorkerProcess
from shared.protocol import Done, Failed, FailureKind, Generate


def job(job_id: str, owner: str) -> Job:
    return Job(message=Generate(job_id=job_id, image="x.png", prompt="p", out_dir="/tmp"), owner=owner)


async def test_round_robin_over_owners() -> None:
    queue = FairQueue()
    for job_id, owner in [("a1", "A"), ("a2", "A"), ("a3", "A"), ("b1", "B"), ("c1", "C"), ("b2", "B")]:
        await queue.put(job(job_id, owner))
    expected = ["a1", "b1", "c1", "a2", "b2", "a3"]
    assert [j.job_id for j in queue.order()] == expected
    served = [(await queue.get()).job_id for _ in range(6)]
    assert served == expected
    assert len(queue) == 0


async def test_served_order_matches_predicted_order_as_jobs_arrive() -> None:
    queue = FairQueue()
    await queue.put(job("a1", "A"))
    await queue.put(job("a2", "A"))
    assert (await queue.get()).job_id == "a1"
    await queue.put(job("a3", "A"))
    await queue.put(job("b1", "B"))  # B arrives after A was served once: B goes next
    predicted = [j.job_id for j in queue.order()]
    assert predicted == ["b1", "a2", "a3"]
    assert [(await queue.get()).job_id for _ in range(3)] == predicted


async def test_a_retried_job_goes_first() -> None:
    queue = FairQueue()
    await queue.put(job("a1", "A"))
    await queue.put(job("b1", "B"))
    await queue.put(job("c1", "C"), front=True)
    assert (await queue.get()).job_id == "c1"


async def test_remove() -> None:
    queue = FairQueue()
    await queue.put(job("a1", "A"))
    await queue.put(job("a2", "A"))
    assert queue.remove("a1") is not None and queue.remove("a1") is None
    assert "a2" in queue and "a1" not in queue
    assert [j.job_id for j in queue.order()] == ["a2"]


class Recorder:
    """Stands in for the service: records what the dispatcher reports."""

    def __init__(self) -> None:
        self.positions: list[tuple[str, int]] = []
        self.finished: list[tuple[str, Done | Failed]] = []
        self.delayed: list[tuple[str, str]] = []
        self.retrying: list[tuple[str, str]] = []

    async def job_delayed(self, job_id: str, reason: str) -> None:
        self.delayed.append((job_id, reason))

    async def job_position(self, job_id: str, position: int) -> None:
        self.positions.append((job_id, position))

    async def job_started(self, job_id: str, device: str) -> None: ...

    async def job_progress(self, job_id: str, step: int, total: int) -> None: ...

    async def job_waiting(self, job_id: str, ahead: int, where: str, eta: float | None) -> None: ...

    async def job_retrying(self, job_id: str, reason: str) -> None:
        self.retrying.append((job_id, reason))

    async def job_finished(self, job_id: str, result: Done | Failed) -> None:
        self.finished.append((job_id, result))


def never_started(device: str) -> WorkerProcess:
    raise AssertionError("no worker is started in these tests")


async def test_submit_is_idempotent_and_positions_are_announced() -> None:
    listener = Recorder()
    dispatcher = Dispatcher(["cpu"], never_started, listener)
    message = job("1", "A").message
    assert await dispatcher.submit(message, "A") is True
    assert await dispatcher.submit(message, "A") is False
    assert await dispatcher.submit(job("2", "A").message, "A") is True
    assert await dispatcher.submit(job("3", "B").message, "B") is True
    assert dispatcher.position("1") == 1 and dispatcher.position("3") == 2 and dispatcher.position("2") == 3
    assert dispatcher.position("nope") is None
    # Each job's position was announced when it changed; B's job overtook A's second one.
    assert ("2", 2) in listener.positions and ("2", 3) in listener.positions


async def test_cancel_while_queued_reports_and_reorders() -> None:
    listener = Recorder()
    dispatcher = Dispatcher(["cpu"], never_started, listener)
    for job_id, owner in [("1", "A"), ("2", "B")]:
        await dispatcher.submit(job(job_id, owner).message, owner)
    assert await dispatcher.cancel("1") is True
    assert await dispatcher.cancel("1") is False
    await asyncio.sleep(0)  # the report goes out from its own task
    await asyncio.sleep(0)
    [(job_id, result)] = listener.finished
    assert job_id == "1" and isinstance(result, Failed) and result.kind is FailureKind.CANCELLED
    assert dispatcher.position("2") == 1 and ("2", 1) in listener.positions


async def test_waiting_jobs_hear_when_no_worker_can_start() -> None:
    listener = Recorder()

    def broken(device: str) -> WorkerProcess:  # a worker that exits before it is ready
        return WorkerProcess([sys.executable, "-c", "import sys; sys.exit(3)"], name=f"worker-{device}")

    dispatcher = Dispatcher(["cpu"], broken, listener, restart_backoff=0.05)
    await dispatcher.submit(job("1", "A").message, "A")
    await dispatcher.start()
    try:
        for _ in range(200):
            if listener.delayed:
                break
            await asyncio.sleep(0.02)
        await asyncio.sleep(0.3)  # further failures in the streak say nothing more
        assert listener.delayed == [("1", "the GPU worker could not start")]
        assert dispatcher.position("1") == 1 and listener.finished == []  # still queued, not lost
    finally:
        await dispatcher.stop()


def reporting_failure(kind: str, starts: list[str]):  # type: ignore[no-untyped-def]
    """Workers that report ``failed`` with ``kind`` at start, as `python -m worker` does."""
    line = json.dumps({"type": "failed", "job_id": None, "kind": kind, "message": "generation.transformer x is gone"})

    def make(device: str) -> WorkerProcess:
        starts.append(device)
        return WorkerProcess([sys.executable, "-c", f"print({line!r}); import sys; sys.exit(1)"], name="w")

    return make


async def wait_for(condition, timeout: float = 10.0) -> None:  # type: ignore[no-untyped-def]
    for _ in range(int(timeout / 0.02)):
        if condition():
            return
        await asyncio.sleep(0.02)


async def test_a_start_that_failed_on_bad_input_is_not_retried() -> None:
    listener = Recorder()
    starts: list[str] = []
    dispatcher = Dispatcher(["cpu"], reporting_failure("bad_input", starts), listener, restart_backoff=0.01)
    await dispatcher.submit(job("1", "A").message, "A")
    await dispatcher.start()
    try:
        await wait_for(lambda: bool(listener.delayed))
        await asyncio.sleep(0.5)  # a retrying slot would have started several more by now
        assert starts == ["cpu"]
        assert listener.delayed == [("1", UNAVAILABLE)] and "cpu" in dispatcher.unavailable
        await dispatcher.submit(job("2", "B").message, "B")  # later arrivals hear it at once
        assert listener.delayed[-1] == ("2", UNAVAILABLE)
        assert listener.finished == []  # still queued: they run once the operator fixes it
    finally:
        await dispatcher.stop()


async def test_a_start_that_ran_out_of_memory_is_tried_a_few_times() -> None:
    listener = Recorder()
    starts: list[str] = []
    dispatcher = Dispatcher(["cpu"], reporting_failure("oom", starts), listener, restart_backoff=0.01)
    await dispatcher.start()
    try:
        await wait_for(lambda: "cpu" in dispatcher.unavailable)
        await asyncio.sleep(0.3)
        assert len(starts) == MAX_OOM_STARTS
    finally:
        await dispatcher.stop()
