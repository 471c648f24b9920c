"""Our prompt waiting behind other people's jobs on a ComfyUI server: the backend reports its place
there (and an estimate once it has timed a job there), and the worker process writes each change
once, never the same progress twice."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bot.conversation import progress
from bot.worker_client import WorkerProcess, worker_command
from shared.protocol import Done, Generate, Progress, Queued, decode, encode
from tests.bot.service_harness import picture_bytes, write_config
from tests.comfyui.helpers import generate, open_backend, options, start_picture
from tests.comfyui_standin import ComfyStandIn
from worker.backend import SegmentFrames
from worker.comfyui.backend import WHERE

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
async def standin() -> AsyncIterator[ComfyStandIn]:
    server = ComfyStandIn(step_delay=0.01)
    await server.start()
    yield server
    await server.stop()


async def test_the_backend_reports_its_place_behind_other_jobs_then_an_estimate(standin: ComfyStandIn) -> None:
    backend = await open_backend(options(standin.url))
    loop = asyncio.get_running_loop()
    try:
        # A first job of ours, with the server to itself: nothing to wait for, and it is timed.
        waits: list[tuple[int, str, float | None]] = []
        await generate(backend, start_picture(), on_wait=lambda a, w, e: waits.append((a, w, e)) and False)
        assert waits == [] and len(backend.job_seconds) == 1

        # Two other people's jobs: one running, one waiting before ours.
        holds = [await standin.hold_foreign_job(), await standin.hold_foreign_job()]
        steps: list[tuple[int, int]] = []

        def on_wait(ahead: int, where: str, eta: float | None) -> bool:
            if not waits or waits[-1][0] != ahead:
                waits.append((ahead, where, eta))
                # The job ahead ends as soon as ours has been told its place.
                hold = holds.pop(0) if holds else None
                if hold is not None:
                    loop.call_soon_threadsafe(hold.set)
            return False

        def on_step(step: int, total: int) -> bool:
            steps.append((step, total))
            return False

        result = await generate(backend, start_picture(), on_wait=on_wait, on_step=on_step)
    finally:
        backend.close()
    assert isinstance(result, SegmentFrames)
    assert [(a, w) for a, w, _ in waits] == [(2, WHERE), (1, WHERE)]
    # The estimate: each job ahead as long as ours took there.
    timed = backend.job_seconds[0]
    assert waits[0][2] == pytest.approx(2 * timed) and waits[1][2] == pytest.approx(timed)
    # Steps are reported only once ours runs: never a "step 0" while it waits.
    assert steps and steps[-1] == (4, 4)


async def test_cancel_while_waiting_comes_through_the_wait_report(standin: ComfyStandIn) -> None:
    hold = await standin.hold_foreign_job()
    backend = await open_backend(options(standin.url))
    steps: list[int] = []
    try:
        with pytest.raises(Exception, match="waiting in the ComfyUI queue"):
            await generate(
                backend, start_picture(), on_wait=lambda a, w, e: True, on_step=lambda s, t: steps.append(s) or False
            )
    finally:
        backend.close()
        hold.set()
    assert len(standin.deletes) == 1 and standin.interrupts == [] and steps == []


async def test_the_worker_writes_its_place_and_each_step_once(tmp_path: Path, standin: ComfyStandIn) -> None:
    standin.step_delay = 0.15  # several of the backend's quiet-moment checks (0.1 s) per step
    extra = f'[comfyui]\nurls = ["{standin.url}"]\npoll_interval = 0.1\nconnect_timeout = 2.0\n'
    config = write_config(tmp_path, backend="comfyui", frames=33, steps=4, size=64, extra=extra)
    image = tmp_path / "start.png"
    image.write_bytes(picture_bytes())
    worker = WorkerProcess(worker_command(device="comfyui:0", config_path=config), name="worker-comfyui")
    await worker.start(timeout=60)
    hold = await standin.hold_foreign_job()
    events: list[Progress | Queued] = []

    def on_queued(event: Queued) -> None:
        events.append(event)
        asyncio.get_running_loop().call_later(0.5, hold.set)  # quiet checks meanwhile

    try:
        job = Generate(job_id="j1", image=str(image), prompt="a fox", out_dir=str(tmp_path), width=64, height=64,
                       frames=33, steps=4, seed=3)  # fmt: skip
        result = await asyncio.wait_for(worker.run(job, events.append, on_queued), 30)
    finally:
        await worker.stop()
    assert isinstance(result, Done)
    assert events[0] == Queued(job_id="j1", ahead=1, where=WHERE, eta=None)
    assert [e for e in events if isinstance(e, Queued)] == [events[0]]
    progress = [(e.step, e.total) for e in events if isinstance(e, Progress)]
    # Each step once, in order, though the backend asked about stopping many times per step.
    assert progress == sorted(set(progress)) and progress[-1] == (4, 4)
    assert [s for s, _ in progress if s > 0] == [1, 2, 3, 4]


def test_the_place_and_estimate_read_as_one_line_and_cross_the_pipe() -> None:
    assert progress.waiting("Segment 2 · take 1", 2, WHERE, 170.0) == (
        "⏳ Segment 2 · take 1 — waiting on the ComfyUI server: 2 other jobs ahead there, about 3 min until it starts."
    )
    assert progress.waiting("Segment 2 · take 1", 1, WHERE) == (
        "⏳ Segment 2 · take 1 — waiting on the ComfyUI server: 1 other job ahead there."
    )
    for message in (Queued("j", 2, WHERE, 170.5), Queued("j", 1)):
        assert decode(encode(message)) == message
