"""The worker process over its real pipes with the tiny Wan2.2 model, loaded through the real loader."""

from __future__ import annotations

import asyncio
import dataclasses
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from shared.config import load_config
from shared.protocol import Cancel, Generate
from tests.worker.test_process import ROOT, RawWorker
from worker.factory import build_backend
from worker.process import load_start_image
from worker.video import probe, read_frames


@pytest.fixture
async def worker(tiny_wan_dir: Path) -> AsyncIterator[RawWorker]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "worker",
        "--backend",
        "wan",
        "--device",
        "cpu",
        "--model",
        str(tiny_wan_dir),
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
    path = tmp_path / "start.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (72, 96, 3), dtype=np.uint8)).save(path)
    return path


def job(tmp_path: Path, image: Path, job_id: str = "j1", **kw: Any) -> Generate:
    # 4:3 start picture cover-cropped to 3:2; tiny sizes keep a job well under a second.
    values: dict[str, Any] = {"width": 48, "height": 32, "frames": 9, "steps": 3, "seed": 11} | kw
    return Generate(
        job_id=job_id, image=str(image), prompt="a cat walks", out_dir=str(tmp_path / "out"), name=job_id, **values
    )


async def test_ready_generate_progress_done(
    worker: RawWorker, tiny_wan_dir: Path, tmp_path: Path, start_image: Path
) -> None:
    ready = await worker.event()
    assert (ready["type"], ready["backend"], ready["device"], ready["preview"]) == ("ready", "wan", "cpu", False)
    assert ready["info"]["model"] == str(tiny_wan_dir) and ready["info"]["dtype"] == "float32"

    message = job(tmp_path, start_image)
    await worker.send(message)
    done, seen = await worker.until("done")
    progress = [(e["step"], e["total"]) for e in seen if e["type"] == "progress"]
    assert progress == [(i, 3) for i in range(1, 4)]
    assert (done["job_id"], done["frames"], done["seed"], done["preview"]) == ("j1", 9, 11, False)
    assert (done["width"], done["height"]) == (48, 32)
    info = probe(done["video"])
    assert info.frames == 9 and (info.width, info.height) == (48, 32)
    # The take's final latents lie beside its files, for a latent hand-off (continuity "svi").
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["j1.latent.safetensors", "j1.mp4", "j1.png"]
    assert done["latents"] == str(tmp_path / "out" / "j1.latent.safetensors")
    assert (done["continuity"], done["note"]) == ("frame", "")

    # The same job in this process, through the same factory, gives the same frames: the hand-off
    # PNG is the last generated frame bit for bit, and the mp4 shows those frames (lossily).
    generation = dataclasses.replace(load_config(None, env={}).generation, model=str(tiny_wan_dir))
    backend, _ = build_backend(generation, "wan", "cpu")
    expected = backend.generate(
        image=load_start_image(message.image),
        prompt=message.prompt,
        negative_prompt=message.negative_prompt,
        width=message.width,
        height=message.height,
        frames=message.frames,
        steps=message.steps,
        guidance=message.guidance,
        guidance_2=message.guidance_2,
        seed=message.seed,
    ).frames
    assert np.array_equal(np.asarray(Image.open(done["last_frame"])), expected[-1])
    decoded = read_frames(done["video"]).astype(np.int16)
    assert decoded.shape == expected.shape
    assert np.abs(decoded - expected).mean() < 8  # H.264 at the master's quality, not a different clip


async def test_cancel_mid_job_then_the_next_job_runs(worker: RawWorker, tmp_path: Path, start_image: Path) -> None:
    await worker.until("ready")
    # About 40 ms a step at this size, so 200 steps are still far from done when the cancel lands.
    await worker.send(job(tmp_path, start_image, "long", width=512, height=512, frames=17, steps=200))
    first = await worker.event()
    assert first["type"] == "progress" and first["job_id"] == "long"
    await worker.send(Cancel(job_id="long"))
    failed, seen = await worker.until("failed")
    assert failed["job_id"] == "long" and failed["kind"] == "cancelled"
    assert max(e["step"] for e in [first, *seen] if e["type"] == "progress") < 200
    assert not (tmp_path / "out" / "long.mp4").exists() and not (tmp_path / "out" / "long.png").exists()
    # The pipeline left mid-loop is fit for the next job.
    await worker.send(job(tmp_path, start_image, "after"))
    done, _ = await worker.until("done")
    assert done["job_id"] == "after" and probe(done["video"]).frames == 9


async def test_failing_jobs_leave_the_worker_up(worker: RawWorker, tmp_path: Path, start_image: Path) -> None:
    await worker.until("ready")
    not_an_image = tmp_path / "notes.png"
    not_an_image.write_text("hello")
    await worker.send(job(tmp_path, not_an_image, "broken"))
    failed, _ = await worker.until("failed")
    assert failed["job_id"] == "broken" and failed["kind"] == "bad_input"
    await worker.send(job(tmp_path, start_image, "bad-size", width=40))
    failed, _ = await worker.until("failed")
    assert failed["job_id"] == "bad-size" and failed["kind"] == "bad_input" and "width" in failed["message"]
    await worker.send(job(tmp_path, start_image, "ok"))
    done, _ = await worker.until("done")
    assert done["job_id"] == "ok" and Path(done["last_frame"]).exists()
    assert worker.proc.returncode is None
