"""Joining 12 segments of 81 frames at 640x640: one join_segments against the naive way.

The naive way decodes each segment, re-encodes it on its own (without its frame 0) and
concatenates the parts by stream copy, as a "decode, save, concatenate" workflow would.

    .venv/bin/python bench/bench_join.py [--segments 12] [--frames 81] [--side 640] [--budget-mb 10]

Segments are a preview-backend chain over examples/start.png (each starts from the last frame of
the one before, as in real use), written as segment masters first; that part is not timed.
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from worker.preview import PreviewBackend
from worker.video import (
    FINAL_CRF,
    ffmpeg_exe,
    join_segments,
    probe,
    read_frames,
    write_segment_master,
)

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "start.png"


def make_masters(directory: Path, segments: int, frames: int, side: int, grain: float) -> list[Path]:
    backend = PreviewBackend()
    image = Image.open(EXAMPLE).convert("RGB")
    rng = np.random.default_rng(0)
    masters = []
    for index in range(segments):
        result = backend.generate(
            image=image, prompt="bench", negative_prompt="", width=side, height=side, frames=frames,
            steps=4, guidance=3.5, guidance_2=3.5, seed=index,
        )  # fmt: skip
        clip = result.frames
        if grain:
            # Film grain on frames 1.. makes the clip cost bits the way real footage does.
            noise = rng.normal(0, grain, clip[1:].shape).astype(np.float32)
            clip[1:] = np.clip(clip[1:] + noise, 0, 255).astype(np.uint8)
        masters.append(write_segment_master(clip, directory / f"segment{index:02d}.mp4"))
        image = Image.fromarray(clip[-1])
    return masters


def naive_join(masters: list[Path], out: Path, work: Path) -> None:
    parts = []
    for index, master in enumerate(masters):
        frames = read_frames(master)
        if index:
            frames = frames[1:]
        parts.append(write_segment_master(frames, work / f"part{index:02d}.mp4", crf=FINAL_CRF))
    listing = work / "parts.txt"
    listing.write_text("".join(f"file '{p}'\n" for p in parts))
    subprocess.run(
        [ffmpeg_exe(), "-nostdin", "-loglevel", "error", "-f", "concat", "-safe", "0", "-i", str(listing),
         "-c", "copy", "-movflags", "+faststart", "-y", str(out)],
        check=True,
    )  # fmt: skip


class Stopwatch:
    def __enter__(self) -> Stopwatch:
        self.start = time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        self.seconds = time.perf_counter() - self.start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--segments", type=int, default=12)
    parser.add_argument("--frames", type=int, default=81)
    parser.add_argument("--side", type=int, default=640)
    parser.add_argument("--grain", type=float, default=0.0, help="film grain sigma added to frames 1..")
    parser.add_argument("--budget-mb", type=float, default=10.0, help="size budget for the budget run")
    args = parser.parse_args()

    version = subprocess.run([ffmpeg_exe(), "-version"], capture_output=True, text=True).stdout.split("\n")[0]
    cpu = platform.processor() or platform.machine()
    print(f"machine: {cpu}, {os.cpu_count()} CPUs, {platform.system()}")
    print(f"ffmpeg: {version}")
    print(f"{args.segments} segments x {args.frames} frames at {args.side}x{args.side}, grain {args.grain}")

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        start = time.perf_counter()
        masters = make_masters(work, args.segments, args.frames, args.side, args.grain)
        print(f"  (masters written in {time.perf_counter() - start:.1f} s, "
              f"{sum(p.stat().st_size for p in masters) / 1e6:.1f} MB)")  # fmt: skip

        with Stopwatch() as one:
            joined = join_segments(masters, work / "joined.mp4")
        naive_dir = work / "naive"
        naive_dir.mkdir()
        with Stopwatch() as naive:
            naive_join(masters, work / "naive.mp4", naive_dir)
        budget = int(args.budget_mb * 1_000_000)
        with Stopwatch() as budgeted:
            fitted = join_segments(masters, work / "fitted.mp4", size_budget=budget)

        expected = args.frames + (args.frames - 1) * (args.segments - 1)
        naive_info = probe(work / "naive.mp4")
        print(
            f"  join_segments, one encode:              {one.seconds:7.2f} s  "
            f"{joined.frames} frames, {joined.bytes / 1e6:.2f} MB"
        )
        print(
            f"  naive: decode, re-encode each, concat:  {naive.seconds:7.2f} s  "
            f"{naive_info.frames} frames, {naive_info.bytes / 1e6:.2f} MB"
        )
        print(
            f"  join_segments, {args.budget_mb:g} MB budget:           {budgeted.seconds:7.2f} s  "
            f"{fitted.frames} frames, {fitted.bytes / 1e6:.2f} MB, bitrate {fitted.bitrate}, "
            f"attempts {fitted.attempts}, within budget {fitted.within_budget}"
        )
        print(f"  expected frames {expected}; join_segments is {naive.seconds / one.seconds:.2f}x "
              "as fast as the naive way")  # fmt: skip


if __name__ == "__main__":
    main()
