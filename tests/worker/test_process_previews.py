"""The worker's live previews on the preview backend: files in the session folder and ``preview``
messages before ``done``; a preview that cannot be written never fails the job."""

from __future__ import annotations

import io
import threading
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from shared.protocol import Done, Generate, Preview, decode
from worker.preview import PreviewBackend
from worker.process import ProtocolOut, Worker


@pytest.fixture
def start_image(tmp_path: Path) -> Path:
    path = tmp_path / "start.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (48, 64, 3), dtype=np.uint8)).save(path)
    return path


def run(tmp_path: Path, start_image: Path, every: int) -> tuple[Done, list[Preview]]:
    stream = io.StringIO()
    worker = Worker(PreviewBackend(), ProtocolOut(stream), device="cpu")
    job = Generate(
        job_id="7", image=str(start_image), prompt="p", out_dir=str(tmp_path / "session"),
        width=64, height=48, frames=17, steps=8, name="seg001-take1", preview_every=every,
    )  # fmt: skip
    result = worker.run_job(job, threading.Event())
    assert isinstance(result, Done), result
    previews = [m for m in map(decode, stream.getvalue().splitlines()) if isinstance(m, Preview)]
    return result, previews


def test_previews_are_written_and_reported_before_the_result(tmp_path: Path, start_image: Path) -> None:
    _, previews = run(tmp_path, start_image, every=2)
    # Written on a thread that drops a preview overtaken by a newer one: the last always lands.
    assert previews and previews[-1].step == 6 and {p.step for p in previews} <= {2, 4, 6}
    assert all(p.job_id == "7" and p.total == 8 for p in previews)
    path = Path(previews[-1].path)
    assert path == tmp_path / "session" / "preview-seg001-take1.png"
    with Image.open(path) as image:
        assert image.size == (4 * 160 + 3 * 4, 120)  # four frames of 64x48, scaled to 160 wide


def test_no_previews_when_off(tmp_path: Path, start_image: Path) -> None:
    _, previews = run(tmp_path, start_image, every=0)
    assert previews == []
    assert not list((tmp_path / "session").glob("preview-*.png"))


def test_an_unwritable_preview_never_fails_the_job(tmp_path: Path, start_image: Path) -> None:
    (tmp_path / "session" / "preview-seg001-take1.png").mkdir(parents=True)
    done, previews = run(tmp_path, start_image, every=2)
    assert previews == [] and Path(done.video).exists()
