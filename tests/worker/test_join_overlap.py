"""The join with per-segment overlaps: an SVI take drops the frames it shares with its
predecessor (one latent frame: 4), a frame take its re-rendered frame 0; each exactly once."""

from __future__ import annotations

from pathlib import Path

import pytest

from shared.params import overlap_frames
from tests.worker.test_video import read_codes, segment_codes, write_coded_segments
from worker.video import join_segments, probe, read_frames


def test_overlap_frames_per_continuity() -> None:
    assert overlap_frames("frame") == 1
    assert overlap_frames("svi") == 4  # one motion latent, as published
    assert overlap_frames("svi", motion_latents=2) == 8


def test_svi_segments_drop_their_overlap_once_and_frame_ones_their_first_frame(tmp_path: Path) -> None:
    masters = write_coded_segments(tmp_path, [17, 17, 17, 17])
    # Segment 2 and 4 continued from latents, segment 3 from a frame (an svi fallback).
    result = join_segments(masters, tmp_path / "final.mp4", 16, overlaps=[0, 4, 1, 4])
    expected = segment_codes(0, 17) + segment_codes(1, 17)[4:] + segment_codes(2, 17)[1:] + segment_codes(3, 17)[4:]
    assert result.frames == probe(result.path).frames == len(expected) == 17 + 13 + 16 + 13
    assert read_codes(read_frames(result.path)) == expected  # none repeated, none missing
    assert result.seconds == pytest.approx(len(expected) / 16)


def test_without_overlaps_the_join_is_unchanged(tmp_path: Path) -> None:
    masters = write_coded_segments(tmp_path, [9, 9], side=32)
    assert join_segments(masters, tmp_path / "a.mp4").frames == 17
    assert join_segments(masters, tmp_path / "b.mp4", overlaps=[0, 1]).frames == 17


@pytest.mark.parametrize(("overlaps", "says"), [([0], "names 1 segments"), ([0, 9], "cannot drop 9")])
def test_bad_overlaps_are_refused(tmp_path: Path, overlaps: list[int], says: str) -> None:
    masters = write_coded_segments(tmp_path, [9, 9], side=32)
    with pytest.raises(ValueError, match=says):
        join_segments(masters, tmp_path / "final.mp4", overlaps=overlaps)
