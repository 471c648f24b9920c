"""What a worker writes for one generated segment: the mp4 master, the hand-off PNG and, where
the backend keeps them, the take's final latents (``<name>.latent.safetensors``, for a latent
hand-off to the next segment; removed with the rest of the session's media) and, with smooth
playback on, a 2x copy (``<name>.x2.mp4``, shared.smooth_playback) for a 32 fps final."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from shared.drift import DriftFigures
from shared.smooth_playback import FACTOR, x2_path
from worker.color import match_colors
from worker.drift import measure_drift
from worker.hand_off import SavableLatents
from worker.images import prepare_start_image
from worker.video import save_hand_off_frame, write_segment_master

log = logging.getLogger("framechain.worker")


@dataclass(frozen=True)
class SegmentFiles:
    video: Path
    last_frame: Path
    #: Measured on the frames as written (after colour matching).
    drift: DriftFigures
    latents: Path | None = None
    #: The take at twice the frame rate (smooth playback), or None.
    x2: Path | None = None


#: What a take's latent file is called after its basename.
LATENT_SUFFIX = ".latent.safetensors"


def write_segment_files(
    frames: np.ndarray,
    out_dir: Path,
    name: str,
    *,
    fps: int,
    color_reference: Image.Image | None = None,
    color_strength: float = 1.0,
    color_lightness: bool = True,
    drift_reference: Image.Image | None = None,
    join_drops: int = 1,
    latents: SavableLatents | None = None,
    smooth: Callable[[np.ndarray], np.ndarray] | None = None,
) -> SegmentFiles:
    """Colour-match (optional), then write ``<name>.mp4`` and ``<name>.png`` atomically, and
    measure the take's drift against ``drift_reference`` (the session's first picture);
    ``join_drops`` is how many of its first frames the join drops (``worker.drift.measure_drift``).
    ``smooth`` (worker.interpolate) makes the frames of the 2x copy, written at twice ``fps``.

    The PNG is the last of exactly the frames that were encoded, taken from memory, so the next
    segment starts from the same pixels the joined video shows, without a lossy round trip.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    height, width = frames.shape[1:3]
    if color_reference is not None and color_strength > 0:
        reference = np.asarray(prepare_start_image(color_reference, width, height))
        frames = match_colors(frames, reference, strength=color_strength, lightness=color_lightness)
    video = write_segment_master(frames, out_dir / f"{name}.mp4", fps=fps)
    last_frame = save_hand_off_frame(frames, out_dir / f"{name}.png")
    first = np.asarray(prepare_start_image(drift_reference, width, height)) if drift_reference is not None else None
    drift = measure_drift(frames, first, dropped=join_drops)
    # Latents are what the model made, before any colour matching: the next clip continues the model's picture.
    kept = latents.save(out_dir / f"{name}{LATENT_SUFFIX}") if latents is not None else None
    x2 = _write_x2(frames, video, fps, smooth) if smooth is not None else None
    return SegmentFiles(video=video, last_frame=last_frame, drift=drift, latents=kept, x2=x2)


def _write_x2(frames: np.ndarray, master: Path, fps: int, smooth: Callable[[np.ndarray], np.ndarray]) -> Path | None:
    """The 2x copy, interpolated from the frames as written (so it shows the master's colours).
    It is optional: when it fails the take is kept and its final is joined at 1x (and says so)."""
    try:
        return write_segment_master(smooth(frames), x2_path(master), fps=FACTOR * fps)
    except Exception:
        log.exception("the 2x copy of %s failed; its final will be joined at %d fps", master.name, fps)
        return None
