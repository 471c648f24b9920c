"""Smooth playback (``final_fps = 2 x fps``): the names and frame arithmetic the worker and the
join share. The worker writes a 2x copy of each take beside its master, interpolated only
within the take (F frames -> 2F-1: one new frame between each pair); the join uses those copies
at twice the frame rate. The 16 fps masters stay the source of truth."""

from __future__ import annotations

from pathlib import Path

#: What a take's 2x copy is called beside its master ``<name>.mp4``.
X2_SUFFIX = ".x2.mp4"
#: Interpolated frames per original: 2x.
FACTOR = 2


def x2_path(master: str | Path) -> Path:
    """``seg001-take1.mp4`` -> ``seg001-take1.x2.mp4``."""
    master = Path(master)
    return master.with_name(master.stem + X2_SUFFIX)


def x2_frames(frames: int) -> int:
    """Frames of a take's 2x copy: the originals and one between each pair."""
    return FACTOR * frames - (FACTOR - 1)


def x2_overlap(drop: int) -> int:
    """Head frames a 2x copy drops in the join for ``drop`` dropped at 1x.

    Dropping the first ``drop`` originals drops them and the ``drop - 1`` frames between them;
    the frame between the last dropped original and the first kept one stays, as it is the step
    from the predecessor's last frame (which the dropped original re-renders). So J joined frames
    at 1x give exactly 2J - 1 at 2x."""
    return FACTOR * drop - (FACTOR - 1) if drop > 0 else 0
