"""What live previews cost a denoising step, on the tiny Wan model at the reference size.

One ``WanBackend.generate`` call at 640x640x81 with a preview after every step but the last (the
most previews a run can ask for) and one without, same inputs. Timed:

- **step**: the time between two step callbacks (the denoising loop's own pace);
- **in the loop**: what the step callback spends on a preview (x0 for the shown frames, the
  projection, handing it over), the only part the loop waits for;
- **off the loop**: what the preview writer's thread spends (the frames to numpy, the strip, the
  PNG, the rename), which the loop does not wait for.

Target: the in-loop part is at most 2 % of a step.

    .venv/bin/python -m bench.bench_previews [--size 640] [--frames 81] [--steps 4]
"""

from __future__ import annotations

import argparse
import itertools
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from shared.params import WAN_NEGATIVE_PROMPT
from tests.tiny_wan import build_tiny_wan
from worker.backend import PreviewCallback, PreviewFrames
from worker.live_preview import PreviewWriter, preview_steps, strip
from worker.wan.backend import WanBackend
from worker.wan.latent_preview import CleanPrediction
from worker.wan.options import WanOptions


class TimedBackend(WanBackend):
    """The Wan backend, timing what its step callback spends on previews."""

    in_loop: list[float]

    def _preview(  # type: ignore[override]
        self, on_preview: PreviewCallback, clean: CleanPrediction, pipe: Any, index: int, steps: int, latents: Any
    ) -> None:
        started = time.perf_counter()
        WanBackend._preview(on_preview, clean, pipe, index, steps, latents)
        if on_preview.wants(index + 1, steps):
            self.in_loop.append(time.perf_counter() - started)


class TimedWriter(PreviewWriter):
    """The preview writer, timing each preview made on its thread."""

    def __init__(self, path: Path, steps: frozenset[int]) -> None:
        self.off_loop: list[float] = []
        super().__init__(path, steps, lambda step, total, path: None)

    def __call__(self, step: int, total: int, frames: PreviewFrames) -> None:
        def timed() -> np.ndarray:
            started = time.perf_counter()
            out = frames()
            self.off_loop.append(time.perf_counter() - started)
            return out

        super().__call__(step, total, timed)


def run(backend: TimedBackend, size: int, frames: int, steps: int, writer: PreviewWriter | None) -> list[float]:
    marks: list[float] = []

    def on_step(step: int, total: int) -> bool:
        marks.append(time.perf_counter())
        return False

    image = Image.fromarray(np.random.default_rng(0).integers(0, 256, (size, size, 3), dtype=np.uint8))
    backend.generate(
        image=image, prompt="a cat walks", negative_prompt=WAN_NEGATIVE_PROMPT, width=size, height=size,
        frames=frames, steps=steps, guidance=1.0, guidance_2=1.0, seed=1, on_step=on_step, on_preview=writer,
    )  # fmt: skip
    return [b - a for a, b in itertools.pairwise(marks)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=640)
    parser.add_argument("--frames", type=int, default=81)
    parser.add_argument("--steps", type=int, default=4)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        folder = build_tiny_wan(Path(tmp) / "tiny")
        backend = TimedBackend(WanOptions(model=str(folder)))
        backend.in_loop = []
        plain = run(backend, args.size, args.frames, args.steps, None)
        writer = TimedWriter(Path(tmp) / "preview-seg001-take1.png", preview_steps(args.steps, 1))
        timed = run(backend, args.size, args.frames, args.steps, writer)
        writer.close()
        started = time.perf_counter()
        with Image.open(writer.path) as made:
            made.load()
        sheet = strip(np.zeros((4, args.size // 8, args.size // 8, 3), dtype=np.uint8))
        sheet.save(Path(tmp) / "again.png", compress_level=3)
        picture = time.perf_counter() - started

    step = statistics.median(plain + timed)
    in_loop = statistics.median(backend.in_loop)
    size = f"{args.size}x{args.size}x{args.frames}"
    print(f"tiny Wan, {size}, {args.steps} steps, a preview after steps 1..{args.steps - 1}")
    print(f"step (median of {len(plain) + len(timed)}):      {step:8.3f} s")
    print(f"steps without / with previews: {statistics.median(plain):.3f} s / {statistics.median(timed):.3f} s")
    print(
        f"in the loop, per preview ({len(backend.in_loop)}): {in_loop * 1000:8.2f} ms = {in_loop / step:.3%} of a step"
    )
    print(f"off the loop, frames to numpy:  {statistics.median(writer.off_loop) * 1000:8.2f} ms")
    print(f"off the loop, strip + PNG:      {picture * 1000:8.2f} ms")
    print("target: in the loop <= 2 % of a step:", "met" if in_loop <= 0.02 * step else "NOT met")


if __name__ == "__main__":
    main()
