"""The worker process's side of the latent hand-off: which jobs ask a backend for one, and what
``done`` says when a take could not be made from latents."""

from __future__ import annotations

import io
import threading
from pathlib import Path

import numpy as np
from PIL import Image

from shared.protocol import Done, Generate, decode, encode
from worker.preview import PreviewBackend
from worker.process import ProtocolOut, Worker


def picture(path: Path) -> Path:
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(path)
    return path


def run(tmp_path: Path, **fields: object) -> Done:
    worker = Worker(PreviewBackend(), ProtocolOut(io.StringIO()), device="cpu")
    job = Generate(
        job_id="j1", image=str(picture(tmp_path / "start.png")), prompt="a slow pan", out_dir=str(tmp_path / "out"),
        name="seg002-take1", width=32, height=32, frames=9, steps=2, seed=1, **fields,  # type: ignore[arg-type]
    )  # fmt: skip
    done = worker.run_job(job, threading.Event())
    assert isinstance(done, Done)
    return done


def test_a_backend_without_latents_makes_a_frame_take_and_says_why(tmp_path: Path) -> None:
    anchor = picture(tmp_path / "first.png")
    done = run(
        tmp_path,
        continuity="svi",
        anchor_image=str(anchor),
        previous_latents=str(tmp_path / "seg001.latent.safetensors"),
    )
    assert (done.continuity, done.latents) == ("frame", None)
    assert done.note == "the preview backend keeps no latents; this take continues from the last frame instead"
    # The preview backend writes no latent stand-in: the take's files are its mp4 and PNG.
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["seg002-take1.mp4", "seg002-take1.png"]


def test_an_svi_job_without_the_previous_latents_says_so(tmp_path: Path) -> None:
    done = run(tmp_path, continuity="svi", anchor_image=str(picture(tmp_path / "first.png")))
    assert done.continuity == "frame" and done.note.startswith("the previous segment kept no latents")


def test_a_frame_job_asks_for_no_hand_off(tmp_path: Path) -> None:
    done = run(tmp_path)
    assert (done.continuity, done.note, done.latents) == ("frame", "", None)


def test_the_new_fields_round_trip_and_old_messages_still_decode() -> None:
    job = Generate(
        job_id="j", image="a.png", prompt="p", out_dir="/o", continuity="svi", anchor_image="f.png",
        previous_latents="seg001-take2.latent.safetensors", motion_latents=1,
    )  # fmt: skip
    assert decode(encode(job)) == job
    old = '{"type": "generate", "job_id": "j", "image": "a.png", "prompt": "p", "out_dir": "/o"}'
    assert decode(old) == Generate(job_id="j", image="a.png", prompt="p", out_dir="/o")
    old_done = (
        '{"type": "done", "job_id": "j", "video": "v.mp4", "last_frame": "v.png", "frames": 9, '
        '"seconds": 1.0, "seed": 1, "width": 32, "height": 32}'
    )
    done = decode(old_done)
    assert isinstance(done, Done) and (done.latents, done.continuity, done.note) == (None, "frame", "")
