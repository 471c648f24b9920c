"""Drift figures on synthetic frames: a known brightness ramp, known colours, known shifts."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image, ImageFilter

from shared.drift import DriftFigures, change_text, drift_line, seam
from worker.drift import global_shift, measure_drift, motion, picture_stats


def _texture(height: int = 800, width: int = 1000, seed: int = 0) -> np.ndarray:
    """A smooth random picture, larger than the frames cut from it (so shifts are not circular)."""
    noise = np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)
    return np.asarray(Image.fromarray(noise).filter(ImageFilter.GaussianBlur(3)))


def _panning(steps: list[tuple[int, int]], size: tuple[int, int] = (240, 320)) -> np.ndarray:
    """Frames of a camera moving by ``steps[i]`` (dx, dy) pixels between frame i and i+1."""
    big = _texture()
    x, y = 150, 150
    frames = [big[y : y + size[0], x : x + size[1]]]
    for dx, dy in steps:
        # The camera moves right by dx: the content moves left by dx.
        x, y = x + dx, y + dy
        frames.append(big[y : y + size[0], x : x + size[1]])
    return np.stack(frames)


def _grey_ramp(levels: list[int]) -> np.ndarray:
    return np.stack([np.full((16, 16, 3), v, dtype=np.uint8) for v in levels])


def test_picture_stats_of_known_pictures() -> None:
    luma, contrast, saturation = picture_stats(np.full((8, 8, 3), 51, dtype=np.uint8))
    assert luma == pytest.approx(0.2, abs=1e-6)
    assert contrast == pytest.approx(0.0, abs=1e-6)
    assert saturation == pytest.approx(0.0, abs=1e-6)

    half = np.zeros((8, 8, 3), dtype=np.uint8)
    half[:4] = 255
    luma, contrast, _ = picture_stats(half)
    assert (luma, contrast) == (pytest.approx(0.5), pytest.approx(0.5))

    red = np.zeros((8, 8, 3), dtype=np.uint8)
    red[..., 0] = 255
    red[4:, :, 1:] = 128  # half pure red (saturation 1), half pink (1 - 128/255)
    luma, _, saturation = picture_stats(red)
    assert saturation == pytest.approx((1 + (1 - 128 / 255)) / 2, abs=1e-6)
    assert luma == pytest.approx(0.2126 + 0.5 * (0.7152 + 0.0722) * 128 / 255, abs=1e-5)


def test_a_brightness_ramp_is_measured_against_the_first_picture() -> None:
    # A take that brightens from 100 to 145 (5 levels a frame); the first picture is at 100.
    frames = _grey_ramp([100 + 5 * i for i in range(10)])
    figures = measure_drift(frames, frames[0])
    assert figures.luma == pytest.approx(145 / 255, abs=1e-6)
    assert figures.ref_luma == pytest.approx(100 / 255, abs=1e-6)
    luma_change, contrast_change, saturation_change = figures.change()
    assert luma_change == pytest.approx(0.45, abs=1e-4)
    assert (contrast_change, saturation_change) == (0.0, 0.0)
    # The difference energy is the ramp's step, at both ends; a flat picture has no shift.
    assert figures.head_energy == pytest.approx(5 / 255, abs=1e-5)
    assert figures.tail_energy == pytest.approx(5 / 255, abs=1e-5)
    assert change_text(figures) == "luma +45% · contrast ±0% · saturation ±0%"
    assert change_text(figures, short=True) == "L+45% C±0% S±0%"


def test_global_shift_finds_a_known_pan() -> None:
    frames = _panning([(3, -2)])
    dx, dy = global_shift(frames[0], frames[1])
    assert (dx, dy) == (pytest.approx(-3, abs=0.15), pytest.approx(2, abs=0.15))


def test_global_shift_on_frames_larger_than_the_motion_side() -> None:
    # 640 wide: measured at half size, reported in full-size pixels.
    frames = _panning([(6, 0)], size=(480, 640))
    dx, dy = global_shift(frames[0], frames[1])
    assert (dx, dy) == (pytest.approx(-6, abs=0.3), pytest.approx(0, abs=0.3))


def test_head_and_tail_see_a_change_of_speed_within_a_take() -> None:
    # 2 px a frame for the first half, then 5 px a frame.
    frames = _panning([(2, 0)] * 6 + [(5, 0)] * 6)
    figures = measure_drift(frames, None)
    assert figures.head_dx == pytest.approx(-2, abs=0.15)
    assert figures.tail_dx == pytest.approx(-5, abs=0.2)
    assert figures.head_speed < figures.tail_speed
    assert figures.has_reference is False
    assert figures.change() == (0.0, 0.0, 0.0)
    dx, dy, energy = motion(frames[:1])
    assert (dx, dy, energy) == (0.0, 0.0, 0.0)


def test_seam_pairs_the_predecessors_tail_with_the_takes_head() -> None:
    previous = measure_drift(_panning([(4, 0)] * 5), None)
    # The next take starts by moving the other way: a direction jump at the seam.
    take = measure_drift(_panning([(-4, 0)] * 5), None)
    s = seam(previous, take)
    assert s.before == pytest.approx(4, abs=0.2)
    assert s.after == pytest.approx(4, abs=0.2)
    assert s.jump == pytest.approx(8, abs=0.4)
    smooth = seam(previous, measure_drift(_panning([(4, 0)] * 5), None))
    assert smooth.jump == pytest.approx(0, abs=0.3)


def test_figures_round_trip_through_json_and_refuse_a_foreign_shape() -> None:
    figures = measure_drift(_grey_ramp([90, 100, 110]), _grey_ramp([100])[0])
    again = DriftFigures.from_json(figures.to_json())
    assert again is not None
    assert again.luma == pytest.approx(figures.luma, abs=1e-5)
    assert again.has_reference is True
    assert DriftFigures.from_json({"luma": 0.5}) is None
    assert DriftFigures.from_json(figures.to_json() | {"luma": "bright"}) is None


def test_drift_line_says_change_and_seam() -> None:
    first = measure_drift(_grey_ramp([100, 100]), _grey_ramp([100])[0])
    second = measure_drift(_grey_ramp([100, 110]), _grey_ramp([100])[0])
    assert drift_line(1, first, None) == (
        "📈 Drift at segment 1: luma ±0% · contrast ±0% · saturation ±0% against the first picture."
    )
    line = drift_line(2, second, first)
    assert line.startswith("📈 Drift at segment 2: luma +10%")
    assert "seam 1→2: motion 0.0 → 0.0 px/frame (velocity jump 0.0)" in line
    unreferenced = measure_drift(_grey_ramp([100, 110]), None)
    assert drift_line(1, unreferenced, None) == ""


def test_bad_frames_are_refused() -> None:
    with pytest.raises(ValueError, match="uint8"):
        measure_drift(np.zeros((2, 4, 4, 3), dtype=np.float32), None)
    with pytest.raises(ValueError, match="differ in size"):
        global_shift(np.zeros((4, 4, 3), np.uint8), np.zeros((4, 6, 3), np.uint8))


def test_the_head_starts_where_the_join_takes_over_from_the_predecessor() -> None:
    # Four frames repeat the end of the take before (an overlap), then the camera moves 3 px a frame.
    frames = _panning([(0, 0)] * 3 + [(3, 0)] * 8)
    assert measure_drift(frames, None).head_dx == pytest.approx(-0.75, abs=0.2)  # 3 still pairs, one moving
    assert measure_drift(frames, None, dropped=4).head_dx == pytest.approx(-3, abs=0.15)
    with pytest.raises(ValueError, match="dropped"):
        measure_drift(frames, None, dropped=0)
