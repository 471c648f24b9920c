"""Drift figures along a chain of segments, per continuity mode and colour-match mode (issue 16).

    .venv/bin/python -m bench.bench_continuity [--segments 6] [--size 256] [--frames 33]
        [--steps 2] [--sources tiny,preview,creep] [--matchers]

THE NUMBERS ARE ONLY MEANINGFUL WITH REAL WEIGHTS. The tiny Wan model is randomly initialised:
its frames are noise, so its drift says nothing about Wan2.2; what it proves is the code path
(the worker's job, colour matching, drift measured on the frames as written, the chain handing
each last frame on). The preview backend is a zoom and pan over the start picture: its seams are
real motion figures of a camera path, and its colours do not drift on their own. ``creep`` is
the preview backend with a stand-in for the drift users report (each segment ends 4 % brighter,
6 % more contrasty and 6 % more saturated than it started, growing over the clip), the only CPU
source where colour matching has something to correct; the creep is invented, not measured.

Each chain runs through ``worker.process.Worker.run_job``, the code a worker runs for a
``generate`` job, in this process. Per mode it prints the last segment's luma, contrast and
saturation against the first picture, the largest of them along the chain, and the seams' motion
jump (|velocity after − velocity before|, pixels per frame; ``shared.drift``).

``--matchers`` also compares the colour-matching methods on the ``creep`` source, in process:
the hand-written Lab transfer (``worker.color``) and, when the ``color-matcher`` package is
importable, its MKL, histogram and combined methods: drift after the chain, the error against
the creep-free frames of one segment, and the time per segment.
"""

from __future__ import annotations

import argparse
import io
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from shared.color_reference import ColorMatch, color_reference
from shared.config import GenerationConfig
from shared.drift import DriftFigures, seam
from shared.protocol import Done, Generate
from worker.backend import Backend, SegmentFrames
from worker.color import match_colors
from worker.drift import measure_drift
from worker.factory import build_backend
from worker.process import ProtocolOut, Worker

_GENERATE_FIELDS = {f.name for f in fields(Generate)}

#: Continuity modes: the ``generate`` fields each one sets. A mode the protocol does not know
#: (yet) is left out, so the table grows by itself when it lands: one line per mode.
CONTINUITY_MODES: dict[str, dict[str, Any]] = {"frame": {}}
if "continuity" in _GENERATE_FIELDS:
    CONTINUITY_MODES["svi"] = {"continuity": "svi"}

COLOR_MODES: tuple[ColorMatch, ...] = ("auto", "first", "start", "off")
#: The stand-in drift per segment (multipliers reached at its last frame).
CREEP = {"exposure": 1.04, "contrast": 1.06, "saturation": 1.06}

WARNING = (
    "NOTE: only meaningful with real weights. tiny = random Wan (noise: proves the code path only);\n"
    "preview = a camera path over the picture (real seam motion, no colour drift of its own);\n"
    "creep = preview + an invented drift of +4 % exposure, +6 % contrast, +6 % saturation per segment."
)


def creep(frames: np.ndarray) -> np.ndarray:
    """``frames`` with the stand-in drift, growing from none at frame 0 to ``CREEP`` at the last."""
    n = frames.shape[0]
    x = frames.astype(np.float32) / 255
    t = (np.arange(n, dtype=np.float32) / max(1, n - 1))[:, None, None, None]
    grey = x.mean(axis=-1, keepdims=True)
    x = grey + (x - grey) * (1 + (CREEP["saturation"] - 1) * t)
    mean = x.mean(axis=(1, 2, 3), keepdims=True)
    x = (x - mean) * (1 + (CREEP["contrast"] - 1) * t) + mean
    x = x * (1 + (CREEP["exposure"] - 1) * t)
    out: np.ndarray = (np.clip(x, 0, 1) * 255 + 0.5).astype(np.uint8)
    return out


class CreepingBackend:
    """The preview backend's frames with the stand-in drift (``creep``)."""

    name = "creep"
    preview = True

    def __init__(self, inner: Backend) -> None:
        self.inner = inner

    def generate(self, **kwargs: Any) -> SegmentFrames:
        made = self.inner.generate(**kwargs)
        return SegmentFrames(frames=creep(made.frames), seed=made.seed)


def first_picture(size: int) -> Image.Image:
    """A picture with something to drift: a graded sky and ground, and coloured blocks."""
    rng = np.random.default_rng(1)
    y, x = np.mgrid[0:size, 0:size].astype(np.float32) / size
    img = np.stack([0.3 + 0.4 * y, 0.4 + 0.2 * x, 0.7 - 0.4 * y], axis=-1)
    block = max(4, size // 9)
    for _ in range(30):
        cy, cx = rng.integers(0, size - block, 2)
        img[cy : cy + block, cx : cx + block] = rng.random(3)
    return Image.fromarray((img * 255).astype(np.uint8))


@dataclass(frozen=True)
class ChainResult:
    figures: list[DriftFigures]
    seconds: float

    def row(self) -> str:
        last = self.figures[-1].change()
        worst = [max(abs(f.change()[i]) for f in self.figures) for i in range(3)]
        jumps = [seam(a, b).jump for a, b in zip(self.figures, self.figures[1:], strict=False)]
        jump = f"{np.mean(jumps):5.2f} {max(jumps):5.2f}" if jumps else "    -     -"
        cells = " ".join(f"{v * 100:+6.1f}" for v in last)
        worst_cells = " ".join(f"{v * 100:5.1f}" for v in worst)
        return f"{cells} | {worst_cells} | {jump} | {self.seconds / len(self.figures):6.2f}"


HEADER = (
    f"{'source':8} {'continuity':10} {'colour':6} | {'last: L%':>8} {'C%':>6} {'S%':>6} | "
    f"{'max|L|':>5} {'|C|':>5} {'|S|':>5} | {'jump':>5} {'max':>5} | {'s/seg':>6}"
)


def run_chain(
    worker: Worker, folder: Path, *, mode: dict[str, Any], colour: ColorMatch, args: argparse.Namespace
) -> ChainResult:
    """A chain of ``args.segments`` through the worker's job code, each starting from the last's
    hand-off PNG, colour-matched by the chat's rule (``shared.color_reference``)."""
    first = folder / "first.png"
    first_picture(args.size).save(first)
    start = first
    figures: list[DriftFigures] = []
    started = time.perf_counter()
    for k in range(args.segments):
        reference = color_reference(
            colour, number=k + 1, start_image=start, first_image=first, continuity=mode.get("continuity", "frame")
        )
        job = Generate(
            job_id=f"{k}",
            image=str(start),
            prompt="the camera slowly moves forward",
            out_dir=str(folder),
            width=args.size,
            height=args.size,
            frames=args.frames,
            steps=args.steps,
            guidance=1.0,
            guidance_2=1.0,
            seed=k,
            name=f"seg{k + 1:03d}",
            color_reference=str(reference) if reference is not None else None,
            drift_reference=str(first),
            **mode,
        )
        result = worker.run_job(job, threading.Event())
        if not isinstance(result, Done) or result.drift is None:
            raise SystemExit(f"segment {k + 1} failed: {result}")
        parsed = DriftFigures.from_json(result.drift)
        assert parsed is not None
        figures.append(parsed)
        start = Path(result.last_frame)
    return ChainResult(figures, time.perf_counter() - started)


def backends(names: list[str]) -> dict[str, Backend]:
    made: dict[str, Backend] = {}
    for name in names:
        if name == "tiny":
            from tests.tiny_wan import build_tiny_wan

            model = build_tiny_wan(Path(tempfile.mkdtemp(prefix="fc-tiny-")) / "tiny")
            made[name] = build_backend(GenerationConfig(model=str(model)), "wan", "cpu")[0]
        elif name == "preview":
            made[name] = build_backend(GenerationConfig(), "preview", "cpu")[0]
        elif name == "creep":
            made[name] = CreepingBackend(build_backend(GenerationConfig(), "preview", "cpu")[0])
        else:
            raise SystemExit(f"unknown source {name!r} (tiny, preview, creep)")
    return made


# --------------------------------------------------------------------------- matchers

Matcher = Callable[[np.ndarray, np.ndarray], np.ndarray]


def matchers() -> dict[str, Matcher]:
    found: dict[str, Matcher] = {"lab (ours)": lambda frames, ref: match_colors(frames, ref)}
    try:
        from color_matcher import ColorMatcher  # type: ignore[import-not-found]
    except ImportError:
        print("color-matcher is not importable: only the Lab transfer is measured")
        return found

    def method(name: str) -> Matcher:
        def run(frames: np.ndarray, ref: np.ndarray) -> np.ndarray:
            count, height, width, _ = frames.shape
            # One transform from the whole clip (stacked as one tall picture), as ours does.
            tall = frames.reshape(count * height, width, 3).astype(np.float64)
            out = ColorMatcher().transfer(src=tall, ref=ref.astype(np.float64), method=name)
            matched: np.ndarray = np.clip(np.rint(out), 0, 255).astype(np.uint8).reshape(frames.shape)
            return matched

        return run

    for name in ("mkl", "hm", "hm-mkl-hm", "reinhard"):
        found[f"color-matcher {name}"] = method(name)
    return found


def compare_matchers(args: argparse.Namespace) -> None:
    preview = build_backend(GenerationConfig(), "preview", "cpu")[0]
    first = np.asarray(first_picture(args.size))

    def segment(start: np.ndarray, seed: int) -> np.ndarray:
        return preview.generate(
            image=Image.fromarray(start),
            prompt="p",
            negative_prompt="",
            width=args.size,
            height=args.size,
            frames=args.frames,
            steps=1,
            guidance=1.0,
            guidance_2=1.0,
            seed=seed,
        ).frames

    print(f"\ncolour matchers on the creep source, {args.segments} segments (the creep is invented)")
    print(f"{'matcher':24} {'ref':5} | {'last: L%':>8} {'C%':>6} {'S%':>6} | {'error':>5} | {'ms/seg':>7}")
    clean = segment(first, 0)
    for name, match in matchers().items():
        # One segment: how close matching brings the crept frames back to the creep-free ones
        # (mean absolute error in levels; 0 would undo the creep exactly).
        error = float(np.abs(match(creep(clean), first).astype(np.int16) - clean).mean())
        for ref_mode in ("start", "first"):
            start, spent = first, 0.0
            figures = None
            for k in range(args.segments):
                frames = creep(segment(start, k))
                began = time.perf_counter()
                frames = match(frames, start if ref_mode == "start" else first)
                spent += time.perf_counter() - began
                figures = measure_drift(frames, first)
                start = frames[-1]
            assert figures is not None
            cells = " ".join(f"{v * 100:+6.1f}" for v in figures.change())
            print(f"{name:24} {ref_mode:5} | {cells:>22} | {error:5.2f} | {spent / args.segments * 1000:7.1f}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--segments", type=int, default=6)
    parser.add_argument("--size", type=int, default=256, help="square side, a multiple of 16")
    parser.add_argument("--frames", type=int, default=33, help="4k+1")
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--sources", default="tiny,preview,creep")
    parser.add_argument("--matchers", action="store_true", help="also compare colour-matching methods")
    args = parser.parse_args(argv)
    print(WARNING)
    print(
        f"{args.segments} segments of {args.frames} frames at {args.size}x{args.size}; continuity modes: "
        f"{', '.join(CONTINUITY_MODES)}; colour match 'auto' switches to the first picture at segment 4\n"
    )
    print(HEADER)
    worker = Worker(build_backend(GenerationConfig(), "preview", "cpu")[0], ProtocolOut(io.StringIO()), device="cpu")
    for source, backend in backends(args.sources.split(",")).items():
        worker.backend = backend
        for mode_name, mode in CONTINUITY_MODES.items():
            for colour in COLOR_MODES:
                with tempfile.TemporaryDirectory(prefix="fc-continuity-") as tmp:
                    result = run_chain(worker, Path(tmp), mode=mode, colour=colour, args=args)
                print(f"{source:8} {mode_name:10} {colour:6} | {result.row()}")
    if args.matchers:
        compare_matchers(args)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
