"""Live previews while a segment renders: which steps get one, the picture (a strip of a few
frames, so motion shows), and the thread that writes it and reports it, off the denoising loop.

A preview is cosmetic: anything that goes wrong making or sending one is logged and dropped, and
the job carries on.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image

from worker.backend import PreviewFrames
from worker.files import atomic_path

log = logging.getLogger("framechain.worker")

#: Frames of the segment a preview shows, evenly spread from the first to the last.
STRIP_FRAMES = 4
#: Longest side of one frame in the strip, in pixels (the strip is STRIP_FRAMES of them wide).
TILE_SIDE = 160
_GAP = 4


def preview_steps(total: int, every: int) -> frozenset[int]:
    """Steps (1-based) after which a preview is made: every ``every`` steps, never the last
    (its result comes as the segment itself); none when ``every`` is 0."""
    if every <= 0:
        return frozenset()
    return frozenset(range(every, total, every))


def pick_frames(count: int, wanted: int = STRIP_FRAMES) -> list[int]:
    """Indices of ``wanted`` frames spread evenly over ``count`` (all of them when fewer)."""
    if count <= wanted:
        return list(range(count))
    return [round(i * (count - 1) / (wanted - 1)) for i in range(wanted)]


def strip(frames: np.ndarray, tile_side: int = TILE_SIDE) -> Image.Image:
    """The frames (uint8 RGB, (n, h, w, 3)) side by side, each scaled so its longer side is
    ``tile_side``, on a dark background with a small gap between them."""
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8 or frames.shape[0] == 0:
        raise ValueError(f"preview frames must be uint8 (n, h, w, 3), got {frames.dtype} {frames.shape}")
    n, h, w = frames.shape[:3]
    scale = tile_side / max(h, w)
    tw, th = max(1, round(w * scale)), max(1, round(h * scale))
    sheet = Image.new("RGB", (n * tw + (n - 1) * _GAP, th), (24, 24, 24))
    for i, frame in enumerate(frames):
        tile = Image.fromarray(frame).resize((tw, th), Image.Resampling.BILINEAR)
        sheet.paste(tile, (i * (tw + _GAP), 0))
    return sheet


#: Told once a preview file is in place: (step, total, path).
Written = Callable[[int, int, Path], None]


class PreviewWriter:
    """Makes, writes and reports one job's previews on a thread of its own.

    ``submit`` never waits: a preview still being made when the next comes is replaced by the
    newer one. Each preview overwrites the same file (atomically), so a session folder holds one
    per take at most.
    """

    def __init__(self, path: Path, steps: frozenset[int], written: Written) -> None:
        self.path = path
        self.steps = steps
        self.written = written
        self._queue: queue.Queue[tuple[int, int, PreviewFrames] | None] = queue.Queue(maxsize=1)
        self._thread = threading.Thread(target=self._run, name="preview-writer", daemon=True)
        self._thread.start()

    def wants(self, step: int, total: int) -> bool:
        return step in self.steps

    def __call__(self, step: int, total: int, frames: PreviewFrames) -> None:
        item = (step, total, frames)
        try:
            self._queue.put_nowait(item)
        except queue.Full:
            # The older one is not made yet: the newer replaces it.
            with contextlib.suppress(queue.Empty):
                self._queue.get_nowait()
            try:
                self._queue.put_nowait(item)
            except queue.Full:
                log.debug("preview for step %s dropped", step)

    def close(self, timeout: float = 5.0) -> None:
        """Finish what was handed over (its file and message), then stop the thread."""
        self._queue.put(None)  # the thread never stops early, so this slot frees up
        self._thread.join(timeout)

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            step, total, frames = item
            try:
                picture = strip(frames())
                with atomic_path(self.path) as tmp:
                    picture.save(tmp, format="PNG", optimize=False, compress_level=3)
                self.written(step, total, self.path)
            except Exception as exc:  # cosmetic: the job never fails for a preview
                log.warning("preview for step %s failed: %s: %s", step, type(exc).__name__, exc)
