"""Smooth playback in the worker: RIFE 4.26 with random weights saved to a file and read back
through the real loader; a take's 2x copy and the 32 fps join, with exact frame counts and timing."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from shared.smooth_playback import x2_frames, x2_overlap, x2_path
from tests.worker.rife_weights import write_rife_weights
from worker.interpolate import InterpolationError, TakeInterpolator
from worker.segment_files import write_segment_files
from worker.video import join_segments, probe, read_frames


def moving_square(count: int, size: int = 64) -> np.ndarray:
    """A bright square moving right by 2 pixels a frame on a grey ground."""
    frames = np.full((count, size, size, 3), 90, np.uint8)
    for index in range(count):
        frames[index, 20:36, 8 + 2 * index : 24 + 2 * index] = (230, 180, 40)
    return frames


@pytest.fixture(scope="module")
def interpolator(tmp_path_factory: pytest.TempPathFactory) -> TakeInterpolator:
    return TakeInterpolator(write_rife_weights(tmp_path_factory.mktemp("rife") / "rife-v4.26.pkl"), "cpu")


def test_doubling_keeps_the_originals_and_draws_one_frame_between_each_pair(interpolator: TakeInterpolator) -> None:
    frames = moving_square(5)
    doubled = interpolator.double(frames)
    assert doubled.shape == (9, 64, 64, 3) and doubled.dtype == np.uint8
    np.testing.assert_array_equal(doubled[0::2], frames)
    # The in-between frames are the network's: neither neighbour repeated.
    for index in range(4):
        between = doubled[2 * index + 1]
        assert not np.array_equal(between, frames[index]) and not np.array_equal(between, frames[index + 1])
    # A single frame has nothing to interpolate.
    assert interpolator.double(frames[:1]).shape == (1, 64, 64, 3)


def test_a_take_gets_its_2x_copy_at_twice_the_frame_rate(tmp_path: Path, interpolator: TakeInterpolator) -> None:
    files = write_segment_files(moving_square(9), tmp_path, "seg001-take1", fps=16, smooth=interpolator.double)
    assert files.x2 == x2_path(files.video) == tmp_path / "seg001-take1.x2.mp4"
    master, copy = probe(files.video), probe(files.x2)
    assert (master.frames, master.fps) == (9, 16.0)
    assert (copy.frames, copy.fps) == (17, 32.0)
    # 2F-1 frames at 32 fps: the master's duration less half a frame (nothing past its last frame).
    assert copy.duration == pytest.approx(master.duration - 1 / 32)
    # Without smooth playback there is no copy.
    plain = write_segment_files(moving_square(9), tmp_path, "seg002-take1", fps=16)
    assert plain.x2 is None and not x2_path(plain.video).exists()


@pytest.mark.parametrize("drop", [1, 4])
def test_the_32_fps_join_has_exactly_2j_minus_1_frames(
    tmp_path: Path, interpolator: TakeInterpolator, drop: int
) -> None:
    """``drop``: a frame take's first frame, or an svi take's 4 overlapping frames."""
    takes = [
        write_segment_files(moving_square(n), tmp_path, f"seg{i:03d}-take1", fps=16, smooth=interpolator.double)
        for i, n in enumerate((9, 13, 9), start=1)
    ]
    overlaps = [0, drop, drop]
    at_16 = join_segments([t.video for t in takes], tmp_path / "final16.mp4", 16, overlaps=overlaps)
    copies = [t.x2 for t in takes]
    assert all(c is not None for c in copies)
    at_32 = join_segments(copies, tmp_path / "final32.mp4", 32, overlaps=[x2_overlap(n) for n in overlaps])  # type: ignore[arg-type]
    joined = 9 + (13 - drop) + (9 - drop)
    assert at_16.frames == joined
    assert at_32.frames == probe(at_32.path).frames == 2 * joined - 1 == x2_frames(joined)
    assert probe(at_32.path).fps == 32.0
    assert at_32.seconds == pytest.approx(at_16.seconds - 1 / 32)
    # The 32 fps final shows the 16 fps final's frames at its even indices (one encode apart).
    low, high = read_frames(at_16.path), read_frames(at_32.path)
    assert np.abs(high[0::2].astype(int) - low.astype(int)).mean() < 3


def test_weights_that_are_missing_or_not_rife_are_refused_with_the_file_named(tmp_path: Path) -> None:
    with pytest.raises(InterpolationError, match="is not a file"):
        TakeInterpolator(tmp_path / "missing.pkl")
    import torch

    wrong = tmp_path / "other.pkl"
    torch.save({"module.conv.weight": torch.zeros(1)}, wrong)
    with pytest.raises(InterpolationError, match=r"cannot load other\.pkl"):
        TakeInterpolator(wrong).double(moving_square(2))


def test_a_failed_2x_copy_keeps_the_take(tmp_path: Path) -> None:
    def broken(frames: np.ndarray) -> np.ndarray:
        raise InterpolationError("generation.rife_weights: cannot load rife.pkl")

    files = write_segment_files(moving_square(5), tmp_path, "seg001-take1", fps=16, smooth=broken)
    assert files.x2 is None and not x2_path(files.video).exists()
    assert probe(files.video).frames == 5 and files.last_frame.is_file()
