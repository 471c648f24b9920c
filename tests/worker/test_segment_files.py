"""What the worker writes per segment: the master, and the hand-off PNG of exactly its last frame."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from worker.color import lab_stats
from worker.drift import picture_stats
from worker.segment_files import write_segment_files
from worker.video import probe


def clip(brightness: int) -> np.ndarray:
    y, x = np.mgrid[0:32, 0:48]
    base = np.stack([x * 4, y * 6, np.full_like(x, 90)], axis=-1) + brightness
    return np.stack([np.roll(base, i, axis=1) for i in range(5)]).clip(0, 255).astype(np.uint8)


def test_hand_off_png_is_the_exact_last_frame(tmp_path: Path) -> None:
    frames = clip(0)
    files = write_segment_files(frames, tmp_path, "seg", fps=16)
    assert np.array_equal(np.asarray(Image.open(files.last_frame)), frames[-1])
    assert probe(files.video).frames == 5


def test_colour_matching_is_applied_to_video_and_hand_off_alike(tmp_path: Path) -> None:
    frames = clip(60)  # drifted brighter than its reference
    reference = Image.fromarray(clip(0)[0])
    files = write_segment_files(frames, tmp_path, "seg", fps=16, color_reference=reference)
    hand_off = np.asarray(Image.open(files.last_frame))
    (drifted_mean, _), (matched_mean, _), (ref_mean, _) = (
        lab_stats(x) for x in (frames[-1:], hand_off[None], np.asarray(reference)[None])
    )
    assert abs(matched_mean[0] - ref_mean[0]) < abs(drifted_mean[0] - ref_mean[0]) / 2


def test_colour_only_matching_leaves_lightness_alone(tmp_path: Path) -> None:
    frames = clip(60)
    reference = Image.fromarray(clip(0)[0])
    files = write_segment_files(frames, tmp_path, "seg", fps=16, color_reference=reference, color_lightness=False)
    hand_off = np.asarray(Image.open(files.last_frame))
    drifted_l = lab_stats(frames[-1:])[0][0]
    assert abs(lab_stats(hand_off[None])[0][0] - drifted_l) < 1.5


def test_drift_is_measured_on_the_frames_as_written_against_the_first_picture(tmp_path: Path) -> None:
    frames = clip(60)
    first = Image.fromarray(clip(0)[0])
    unmatched = write_segment_files(frames, tmp_path, "raw", fps=16, drift_reference=first).drift
    matched = write_segment_files(
        frames, tmp_path, "matched", fps=16, color_reference=first, drift_reference=first
    ).drift
    assert unmatched.has_reference and matched.has_reference
    assert unmatched.ref_luma == matched.ref_luma == picture_stats(np.asarray(first))[0]
    # Matching to the first picture takes most of the brightness drift away, and the figures show it.
    assert unmatched.change()[0] > 0.2
    assert abs(matched.change()[0]) < unmatched.change()[0] / 2
    # The clip rolls one pixel a frame to the right.
    assert matched.head_dx == pytest.approx(1, abs=0.2)
    alone = write_segment_files(frames, tmp_path, "alone", fps=16).drift
    assert alone.has_reference is False
