"""What the worker path adds to a segment, against a bare pipeline call on the same tiny Wan model.

A real worker process (``python -m worker --backend wan``) runs a chain of segments through the
JSON-lines protocol with colour matching on (reference: each segment's own start image, the
default), each segment starting from the previous one's hand-off PNG. Beside each worker job
(before or after it, alternately) the same inputs (start image, prompt, seed, size) go through
``WanBackend.generate`` in this process; the difference is what the worker path adds: reading the
start image, colour matching, the mp4 master, the hand-off PNG and the messaging. Those parts are
also timed one by one here, on the bare call's frames, to explain the difference. The load count
comes from the worker's own log (one "loading ... backend" line per load) and its pid staying the
same over the chain.

Targets: the pipeline loads once per worker, not per segment; the added time stays under 2 s per
81-frame 640x640 segment.

    .venv/bin/python -m bench.bench_worker [--size 640] [--frames 81] [--steps 4] [--segments 5]

The tiny model's compute does not depend on pixel values, but its cost at the reference size is
the real VAE's full-resolution work (tens of seconds a segment on a small CPU), so the default is
4 steps rather than the reference 20: the steps change the bare time, not what the worker adds.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import logging
import os
import platform
import re
import statistics
import sys
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import ParamSpec, TypeVar

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bot.worker_client import WorkerProcess, worker_command
from shared.config import load_config
from shared.protocol import Done, Generate
from tests.tiny_wan import build_tiny_wan
from worker.backend import SegmentFrames
from worker.color import match_colors
from worker.factory import build_backend
from worker.images import prepare_start_image
from worker.process import load_start_image
from worker.video import save_hand_off_frame, write_segment_master

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "start.png"
PROMPT = "a woman walks slowly forward, the camera moves left"
#: The worker logs this once each time it loads its backend (worker/__main__.py).
LOAD_LINE = re.compile(r"loading \w+ backend on ")

P = ParamSpec("P")
T = TypeVar("T")


@dataclasses.dataclass
class Segment:
    end_to_end: float  # send generate -> done received, in the bench process
    in_worker: float  # Done.seconds: the worker's own time for the job
    bare: float  # WanBackend.generate alone, same inputs, in this process
    decode: float  # reading the start image and the colour reference (two PNG decodes)
    colour: float  # fitting the reference to the frame size + Lab mean/std transfer
    mp4: float  # the H.264 segment master
    png: float  # the hand-off PNG
    same_output: bool  # the worker's PNG equals this process's colour-matched last frame

    @property
    def difference(self) -> float:
        """Added time as measured: worker end to end minus the bare call (as noisy as either)."""
        return self.end_to_end - self.bare

    @property
    def parts(self) -> float:
        """Added time as the sum of what the worker does besides generating, each part timed."""
        return self.decode + self.colour + self.mp4 + self.png + self.messaging

    @property
    def messaging(self) -> float:
        return self.end_to_end - self.in_worker


def parse_size(text: str) -> tuple[int, int]:
    parts = text.lower().split("x")
    if len(parts) == 1:
        return int(parts[0]), int(parts[0])
    if len(parts) == 2:
        return int(parts[0]), int(parts[1])
    raise argparse.ArgumentTypeError(f"size must be N or WxH, got {text!r}")


@contextlib.contextmanager
def stderr_to(path: Path) -> Iterator[None]:
    """Point fd 2 at ``path`` while a child is spawned: it inherits the file as its stderr."""
    sys.stderr.flush()
    saved = os.dup(2)
    with open(path, "ab") as log:
        os.dup2(log.fileno(), 2)
    try:
        yield
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)


def timed(fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> tuple[float, T]:
    start = time.perf_counter()
    result = fn(*args, **kwargs)
    return time.perf_counter() - start, result


def quiet() -> None:
    """Keep this process's output to the figures: no loading bars or library notices."""
    import diffusers
    import transformers

    diffusers.utils.logging.disable_progress_bar()
    diffusers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()  # type: ignore[no-untyped-call]
    transformers.utils.logging.set_verbosity_error()  # type: ignore[no-untyped-call]
    logging.getLogger("framechain").setLevel(logging.ERROR)
    warnings.simplefilter("ignore", FutureWarning)


def machine() -> str:
    import torch

    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as info:
        names = [line.split(":", 1)[1].strip() for line in info if line.startswith("model name")]
        cpu = names[0] if names else cpu
    return (
        f"{cpu}, {os.cpu_count()} CPUs, torch {torch.__version__} ({torch.get_num_threads()} threads), "
        f"python {platform.python_version()}"
    )


async def run(args: argparse.Namespace) -> None:
    width, height = args.size
    quiet()
    print(f"machine: {machine()}")
    print(
        f"tiny Wan2.2 I2V on the CPU, {width}x{height}, {args.frames} frames, {args.steps} steps "
        f"(reference: 20), guidance {args.guidance:g}/{args.guidance:g}, {args.segments}-segment chain, "
        "colour matching on (reference: each segment's start image)"
    )
    with tempfile.TemporaryDirectory(prefix="bench-worker-") as tmp_name:
        tmp = Path(tmp_name)
        began = time.perf_counter()
        model = build_tiny_wan(tmp / "model")
        print(f"  (tiny model built in {time.perf_counter() - began:.1f} s)")

        # The bare side: the same factory and loader the worker uses, in this process.
        generation = dataclasses.replace(load_config(None, env={}).generation, model=str(model))
        bare_load, (backend, _) = timed(build_backend, generation, "wan", "cpu")

        log = tmp / "worker.log"
        worker = WorkerProcess(worker_command(device="cpu", backend="wan", model=str(model)), name="bench-worker")
        began = time.perf_counter()
        with stderr_to(log):
            await worker.start()
        worker_load = time.perf_counter() - began
        pid = worker.pid
        pids: set[int | None] = set()
        print(
            f"  loads: in-process {bare_load:.2f} s; "
            f"worker start -> ready {worker_load:.2f} s (python and torch import included)"
        )

        image = EXAMPLE
        out_dir, scratch = tmp / "out", tmp / "scratch"
        scratch.mkdir()
        segments: list[Segment] = []
        print(
            "  seg  worker e2e  in-worker    bare  e2e-bare | messaging  decode  colour     mp4    png   parts"
            " | same output"
        )
        try:
            for index in range(args.segments):
                seed = 1000 + index
                job = Generate(
                    job_id=f"s{index}", image=str(image), prompt=PROMPT, out_dir=str(out_dir), name=f"segment{index}",
                    width=width, height=height, frames=args.frames, steps=args.steps, guidance=args.guidance,
                    guidance_2=args.guidance, seed=seed, color_reference=str(image),
                )  # fmt: skip

                async def through_worker(job: Generate = job) -> tuple[float, Done]:
                    began = time.perf_counter()
                    done = await worker.run(job)
                    seconds = time.perf_counter() - began
                    if not isinstance(done, Done):
                        raise SystemExit(f"worker job {job.job_id} failed: {done.kind.value}: {done.message}")
                    pids.add(worker.pid)
                    return seconds, done

                def bare_call(job: Generate = job) -> tuple[float, SegmentFrames]:
                    # Exactly the worker's inputs; the start image is decoded untimed.
                    start = load_start_image(job.image)
                    return timed(
                        backend.generate, image=start, prompt=job.prompt, negative_prompt=job.negative_prompt,
                        width=width, height=height, frames=job.frames, steps=job.steps, guidance=job.guidance,
                        guidance_2=job.guidance_2, seed=job.seed,
                    )  # fmt: skip

                # Which side goes first alternates, so neither always inherits a warm (or busy) CPU.
                if index % 2 == 0:
                    end_to_end, done = await through_worker()
                    bare, result = bare_call()
                else:
                    bare, result = bare_call()
                    end_to_end, done = await through_worker()
                frames = result.frames

                # The worker path's parts, one by one, on the bare call's frames.
                began = time.perf_counter()
                load_start_image(str(image))
                reference_image = load_start_image(str(image))
                decode = time.perf_counter() - began
                began = time.perf_counter()
                reference = np.asarray(prepare_start_image(reference_image, width, height))
                matched = match_colors(frames, reference, strength=job.color_strength, lightness=job.color_lightness)
                colour = time.perf_counter() - began
                mp4, _ = timed(write_segment_master, matched, scratch / f"segment{index}.mp4", fps=job.fps)
                png, _ = timed(save_hand_off_frame, matched, scratch / f"segment{index}.png")
                same = np.array_equal(np.asarray(Image.open(done.last_frame)), matched[-1])

                segment = Segment(end_to_end, done.seconds, bare, decode, colour, mp4, png, same)
                segments.append(segment)
                print(
                    f"  {index + 1:>3}  {end_to_end:8.2f} s {done.seconds:8.2f} s {bare:6.2f} s"
                    f" {segment.difference:6.2f} s"
                    f" |  {segment.messaging:6.3f} s {decode:5.3f} s {colour:5.2f} s {mp4:5.2f} s {png:4.2f} s"
                    f" {segment.parts:5.2f} s | {'yes' if same else 'NO'}"
                )
                image = Path(done.last_frame)  # the chain goes on from the hand-off PNG
        finally:
            await worker.stop()

        bare_times = [s.bare for s in segments]
        bare_mean = statistics.mean(bare_times)
        parts = [s.parts for s in segments]
        difference = [s.difference for s in segments]
        means = {
            "messaging": statistics.mean(s.messaging for s in segments),
            "decode": statistics.mean(s.decode for s in segments),
            "colour": statistics.mean(s.colour for s in segments),
            "mp4": statistics.mean(s.mp4 for s in segments),
            "png": statistics.mean(s.png for s in segments),
        }
        print(
            f"  added per segment, timed parts: median {statistics.median(parts):.2f} s, "
            f"mean {statistics.mean(parts):.2f} s "
            f"({statistics.mean(parts) / bare_mean:.1%} of the bare call's mean {bare_mean:.2f} s); means: "
            + ", ".join(f"{name} {seconds:.3f} s" for name, seconds in means.items())
        )
        print(
            f"  added per segment, e2e - bare: median {statistics.median(difference):.2f} s, "
            f"mean {statistics.mean(difference):.2f} s, range {min(difference):.2f} .. {max(difference):.2f} s; "
            f"the bare call alone ranged {min(bare_times):.2f} .. {max(bare_times):.2f} s, "
            "so this is only as exact as that spread"
        )
        loads = sum(1 for line in log.read_text(errors="replace").splitlines() if LOAD_LINE.search(line))
        one_load = loads == 1 and pids == {pid}
        print(
            f'  load count over the {len(segments)}-segment chain: {loads} "loading" line(s) in the worker\'s log, '
            f"one worker pid ({pid}) for all jobs: {pids == {pid}}"
        )
        target = 2.0
        verdict = "met" if statistics.median(parts) < target else "NOT met"
        print(
            f"  targets: one load per worker: {'met' if one_load else 'NOT met'}; added < {target:g} s per segment "
            f"(timed parts; the target is for 640x640x81): {verdict} at {width}x{height}x{args.frames} on this machine"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=parse_size, default=(640, 640), help="N or WxH, multiples of 16 (640)")
    parser.add_argument("--frames", type=int, default=81, help="4k+1 (81)")
    parser.add_argument("--steps", type=int, default=4, help="denoising steps (4; the reference is 20)")
    parser.add_argument("--guidance", type=float, default=3.5, help="CFG for both experts (3.5)")
    parser.add_argument("--segments", type=int, default=5, help="segments in the chain (5)")
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
