"""The worker process over its real pipes, on the preview backend: the JSON-lines protocol."""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from shared.drift import DriftFigures
from shared.protocol import Cancel, Generate, Shutdown, encode
from worker.drift import picture_stats
from worker.video import probe

ROOT = Path(__file__).resolve().parents[2]


class RawWorker:
    """Speaks to `python -m worker` through its stdin/stdout, line by line."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc

    async def send_line(self, line: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(line.encode())
        await self.proc.stdin.drain()

    async def send(self, message: Any) -> None:
        await self.send_line(encode(message))

    async def event(self, timeout: float = 60) -> dict[str, Any]:
        assert self.proc.stdout is not None
        line = await asyncio.wait_for(self.proc.stdout.readline(), timeout)
        assert line, "worker closed stdout"
        event: dict[str, Any] = json.loads(line)  # every stdout line must be a JSON message
        return event

    async def until(self, kind: str, timeout: float = 60) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        seen = []
        while True:
            event = await self.event(timeout)
            seen.append(event)
            if event["type"] == kind:
                return event, seen


@pytest.fixture
async def worker() -> AsyncIterator[RawWorker]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "worker",
        "--backend",
        "preview",
        "--device",
        "cpu",
        cwd=ROOT,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
    )
    raw = RawWorker(proc)
    yield raw
    if proc.returncode is None:
        proc.kill()
        await proc.wait()


@pytest.fixture
def start_image(tmp_path: Path) -> Path:
    rng = np.random.default_rng(0)
    path = tmp_path / "start.png"
    Image.fromarray(rng.integers(0, 255, (72, 96, 3), dtype=np.uint8)).save(path)
    return path


def job(tmp_path: Path, image: Path, job_id: str = "j1", **kw: Any) -> Generate:
    values: dict[str, Any] = {"width": 64, "height": 48, "frames": 9, "steps": 4, "seed": 7} | kw
    return Generate(
        job_id=job_id, image=str(image), prompt="a slow pan", out_dir=str(tmp_path / "out"), name=job_id, **values
    )


async def test_ready_generate_progress_done(worker: RawWorker, tmp_path: Path, start_image: Path) -> None:
    ready = await worker.event()
    assert ready == {"type": "ready", "backend": "preview", "device": "cpu", "preview": True, "info": ready["info"]}
    await worker.send(job(tmp_path, start_image))
    done, seen = await worker.until("done")
    progress = [e for e in seen if e["type"] == "progress"]
    assert [(e["step"], e["total"]) for e in progress] == [(i, 4) for i in range(1, 5)]
    assert done["job_id"] == "j1" and done["frames"] == 9 and done["seed"] == 7 and done["preview"] is True
    assert (done["width"], done["height"]) == (64, 48)
    info = probe(Path(done["video"]))
    assert info.frames == 9 and (info.width, info.height) == (64, 48)
    last = np.asarray(Image.open(done["last_frame"]))
    assert last.shape == (48, 64, 3)
    # No temporary files are left beside the results.
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["j1.mp4", "j1.png"]


async def test_done_carries_the_takes_drift_against_the_first_picture(
    worker: RawWorker, tmp_path: Path, start_image: Path
) -> None:
    await worker.event()
    await worker.send(job(tmp_path, start_image, drift_reference=str(start_image)))
    done, _ = await worker.until("done")
    figures = DriftFigures.from_json(done["drift"])
    assert figures is not None and figures.has_reference
    fitted = np.asarray(Image.open(start_image).convert("RGB").resize((64, 48), Image.Resampling.LANCZOS))
    assert figures.ref_luma == pytest.approx(picture_stats(fitted)[0], abs=1e-3)
    last = np.asarray(Image.open(done["last_frame"]))
    assert figures.luma == pytest.approx(picture_stats(last)[0], abs=1e-4)


async def test_failing_job_and_malformed_lines_leave_the_worker_up(
    worker: RawWorker, tmp_path: Path, start_image: Path
) -> None:
    await worker.until("ready")
    await worker.send_line("this is not json\n")
    failed = await worker.event()
    assert failed["type"] == "failed" and failed["job_id"] is None and failed["kind"] == "bad_input"
    await worker.send_line('{"type": "generate", "job_id": 5}\n')
    assert (await worker.event())["kind"] == "bad_input"
    not_an_image = tmp_path / "notes.png"
    not_an_image.write_text("hello")
    await worker.send(job(tmp_path, not_an_image, "broken"))
    failed, _ = await worker.until("failed")
    assert failed["job_id"] == "broken" and failed["kind"] == "bad_input"
    await worker.send(job(tmp_path, start_image, "bad-frames", frames=10))
    failed, _ = await worker.until("failed")
    assert failed["kind"] == "bad_input" and "frames" in failed["message"]
    await worker.send(job(tmp_path, start_image, "ok"))
    done, _ = await worker.until("done")
    assert done["job_id"] == "ok"


async def test_cancel_running_and_not_running(worker: RawWorker, tmp_path: Path, start_image: Path) -> None:
    await worker.until("ready")
    await worker.send(Cancel(job_id="nothing-like-it"))
    ack = await worker.event()
    assert ack == {"type": "failed", "job_id": "nothing-like-it", "kind": "cancelled", "message": ack["message"]}
    # Many steps so the job is still running when the cancel arrives after its first step.
    await worker.send(job(tmp_path, start_image, "long", width=640, height=640, frames=81, steps=200))
    first = await worker.event()
    assert first["type"] == "progress"
    await worker.send(Cancel(job_id="long"))
    failed, seen = await worker.until("failed")
    assert failed["job_id"] == "long" and failed["kind"] == "cancelled"
    steps = [e["step"] for e in seen if e["type"] == "progress"]
    assert not steps or max(steps) < 200
    assert not (tmp_path / "out" / "long.mp4").exists()
    await worker.send(job(tmp_path, start_image, "after"))
    done, _ = await worker.until("done")
    assert done["job_id"] == "after"


async def test_shutdown_exits_cleanly(worker: RawWorker) -> None:
    await worker.until("ready")
    await worker.send(Shutdown())
    assert await asyncio.wait_for(worker.proc.wait(), 30) == 0


async def test_stdin_closed_exits_cleanly(worker: RawWorker) -> None:
    await worker.until("ready")
    assert worker.proc.stdin is not None
    worker.proc.stdin.close()
    assert await asyncio.wait_for(worker.proc.wait(), 30) == 0


async def test_an_end_image_is_read_like_the_start_image_and_ends_the_clip(
    worker: RawWorker, tmp_path: Path, start_image: Path
) -> None:
    await worker.event()
    end = tmp_path / "end.png"
    Image.new("RGB", (96, 72), (10, 200, 30)).save(end)
    await worker.send(job(tmp_path, start_image, end_image=str(end)))
    done, _ = await worker.until("done")
    last = np.asarray(Image.open(done["last_frame"])).astype(int)
    assert np.abs(last - [10, 200, 30]).max() <= 1  # the preview backend fades into it
    # A broken end picture fails the job as bad input, with the picture policy's words.
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not a picture")
    await worker.send(job(tmp_path, start_image, "j2", end_image=str(broken)))
    failed, _ = await worker.until("failed")
    assert failed["job_id"] == "j2" and failed["kind"] == "bad_input"
