"""Segment masters, hand-off frames, joining and splitting, through the real ffmpeg binary."""

from __future__ import annotations

import itertools
import struct
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from worker.files import atomic_path, atomic_write_bytes
from worker.video import (
    VideoError,
    ffmpeg_exe,
    join_segments,
    probe,
    read_frames,
    save_hand_off_frame,
    split_to_fit,
    write_segment_master,
)

SIDE = 64
BITS = 8


def coded_frames(codes: list[int], side: int = SIDE) -> np.ndarray:
    """Frames whose number survives lossy encoding: 8 vertical stripes, each black or white, one
    bit each, on a grey band so no frame is flat black."""
    frames = np.full((len(codes), side, side, 3), 128, dtype=np.uint8)
    stripe = side // BITS
    for i, code in enumerate(codes):
        for bit in range(BITS):
            value = 255 if code >> (BITS - 1 - bit) & 1 else 0
            frames[i, : side * 3 // 4, bit * stripe : (bit + 1) * stripe] = value
    return frames


def read_codes(frames: np.ndarray) -> list[int]:
    stripe = frames.shape[2] // BITS
    rows = frames.shape[1] * 3 // 4
    codes = []
    for frame in frames:
        code = 0
        for bit in range(BITS):
            # The centre of each stripe, away from the chroma and block edges.
            cell = frame[rows // 4 : rows * 3 // 4, bit * stripe + 2 : (bit + 1) * stripe - 2]
            code = code << 1 | int(cell.mean() > 128)
        codes.append(code)
    return codes


def segment_codes(segment: int, frames: int) -> list[int]:
    return [segment * 32 + f for f in range(frames)]


def noisy_frames(count: int, side: int, seed: int = 0) -> np.ndarray:
    """Moving texture that costs real bits, for the size tests."""
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 256, (side, side * 2, 3), dtype=np.uint8)
    return np.stack([np.roll(base, 3 * i, axis=1)[:, :side] for i in range(count)])


def frame_timestamps(path: Path) -> tuple[list[int], list[int]]:
    """(decoded frames' pts in presentation order, packets' dts in file order)."""

    def column(args: list[str], index: int) -> list[int]:
        out = subprocess.run(
            [ffmpeg_exe(), "-nostdin", "-loglevel", "error", "-i", str(path), "-map", "0:v:0", *args,
             "-f", "framemd5", "-"],
            capture_output=True, check=True, text=True,
        ).stdout  # fmt: skip
        return [int(line.split(",")[index]) for line in out.splitlines() if line and not line.startswith("#")]

    return column(["-fps_mode", "passthrough"], 2), column(["-c", "copy"], 1)


def top_level_boxes(path: Path) -> list[str]:
    data = path.read_bytes()
    boxes, offset = [], 0
    while offset + 8 <= len(data):
        size, kind = struct.unpack(">I4s", data[offset : offset + 8])
        if size == 1:
            size = struct.unpack(">Q", data[offset + 8 : offset + 16])[0]
        boxes.append(kind.decode("latin-1"))
        if size == 0:
            break
        offset += size
    return boxes


# --------------------------------------------------------------------------- segment files


def test_hand_off_frame_is_bit_exact_with_the_last_frame(tmp_path: Path) -> None:
    frames = np.random.default_rng(1).integers(0, 256, (5, 48, 80, 3), dtype=np.uint8)
    path = save_hand_off_frame(frames, tmp_path / "seg" / "last.png")
    with Image.open(path) as image:
        assert image.format == "PNG" and image.mode == "RGB"
        assert np.array_equal(np.asarray(image), frames[-1])
    assert [p.name for p in path.parent.iterdir()] == ["last.png"]  # no temporary left behind


def test_segment_master_is_h264_yuv420p_at_the_right_rate_and_size(tmp_path: Path) -> None:
    frames = coded_frames(list(range(9)), side=SIDE)
    path = write_segment_master(frames, tmp_path / "seg.mp4", fps=16)
    info = probe(path)
    assert (info.frames, info.fps, info.width, info.height) == (9, 16.0, SIDE, SIDE)
    assert (info.codec, info.pix_fmt, info.has_audio) == ("h264", "yuv420p", False)
    assert info.duration == pytest.approx(9 / 16)
    assert info.bytes == path.stat().st_size
    # +faststart: the index (moov) comes before the media data, so players start at once.
    boxes = top_level_boxes(path)
    assert boxes.index("moov") < boxes.index("mdat")
    decoded = read_frames(path)
    assert decoded.shape == frames.shape
    assert np.abs(decoded.astype(int) - frames).mean() < 2  # visually lossless
    assert read_codes(decoded) == list(range(9))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["seg.mp4"]


def test_segment_master_keeps_colours(tmp_path: Path) -> None:
    colours = [(200, 30, 40), (20, 180, 60), (40, 60, 220), (240, 220, 120), (90, 90, 90)]
    frames = np.stack([np.full((32, 32, 3), c, dtype=np.uint8) for c in colours])
    decoded = read_frames(write_segment_master(frames, tmp_path / "c.mp4", fps=8))
    assert np.abs(decoded.astype(int) - frames).max() <= 3
    assert probe(tmp_path / "c.mp4").fps == 8.0


@pytest.mark.parametrize(
    ("frames", "message"),
    [
        (np.zeros((3, 31, 32, 3), np.uint8), "even"),
        (np.zeros((3, 32, 32, 3), np.float32), "uint8"),
        (np.zeros((32, 32, 3), np.uint8), "shape"),
        (np.zeros((0, 32, 32, 3), np.uint8), "shape"),
    ],
)
def test_segment_master_rejects_bad_frames(tmp_path: Path, frames: np.ndarray, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        write_segment_master(frames, tmp_path / "bad.mp4")
    assert not list(tmp_path.iterdir())


def test_a_failed_encode_leaves_neither_the_file_nor_a_temporary(tmp_path: Path) -> None:
    (tmp_path / "seg.mp4").write_bytes(b"the previous, whole file")
    with pytest.raises(VideoError, match="ffmpeg failed"):
        write_segment_master(coded_frames([1, 2, 3]), tmp_path / "seg.mp4", preset="no-such-preset")
    assert [p.name for p in tmp_path.iterdir()] == ["seg.mp4"]
    assert (tmp_path / "seg.mp4").read_bytes() == b"the previous, whole file"


def test_atomic_path_replaces_only_on_success(tmp_path: Path) -> None:
    target = tmp_path / "a.bin"
    atomic_write_bytes(target, b"one")
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_bytes(b"half")
        raise RuntimeError("crash mid-write")
    assert target.read_bytes() == b"one"
    assert [p.name for p in tmp_path.iterdir()] == ["a.bin"]


# --------------------------------------------------------------------------- joining


def write_coded_segments(directory: Path, lengths: list[int], side: int = SIDE) -> list[Path]:
    """Segments like Wan's: segment s+1's frame 0 repeats segment s's last frame (its code is
    still its own, so a wrongly kept frame 0 shows up in the order check)."""
    return [
        write_segment_master(coded_frames(segment_codes(s, n), side), directory / f"seg{s}.mp4")
        for s, n in enumerate(lengths)
    ]


def test_join_drops_frame_zero_of_later_segments_and_keeps_order(tmp_path: Path) -> None:
    lengths = [9, 13, 5]
    masters = write_coded_segments(tmp_path, lengths)
    result = join_segments(masters, tmp_path / "final.mp4", fps=16)

    expected = segment_codes(0, 9) + segment_codes(1, 13)[1:] + segment_codes(2, 5)[1:]
    assert result.frames == len(expected) == 9 + 12 + 4
    decoded = read_frames(result.path)
    assert read_codes(decoded) == expected
    info = probe(result.path)
    assert (info.frames, info.fps, info.codec, info.pix_fmt, info.has_audio) == (
        len(expected), 16.0, "h264", "yuv420p", False,
    )  # fmt: skip
    assert result.seconds == pytest.approx(len(expected) / 16)
    assert result.bytes == result.path.stat().st_size
    assert (result.crf, result.bitrate) == (18, None)
    assert not result.reencoded_to_budget and result.within_budget
    assert result.attempts == 1


def test_n_segments_of_f_frames_give_f_plus_f_minus_one_times_n_minus_one(tmp_path: Path) -> None:
    masters = write_coded_segments(tmp_path, [9] * 4, side=32)
    result = join_segments(masters, tmp_path / "final.mp4")
    assert result.frames == probe(result.path).frames == 9 + 8 * 3


def test_join_timestamps_are_strictly_monotonic_and_evenly_spaced(tmp_path: Path) -> None:
    masters = write_coded_segments(tmp_path, [9, 9, 9])
    result = join_segments(masters, tmp_path / "final.mp4")
    pts, dts = frame_timestamps(result.path)
    assert len(pts) == len(dts) == result.frames == 25
    assert all(b > a for a, b in itertools.pairwise(dts))
    steps = {b - a for a, b in itertools.pairwise(pts)}
    assert len(steps) == 1 and steps.pop() > 0


def test_a_single_segment_is_kept_whole(tmp_path: Path) -> None:
    [master] = write_coded_segments(tmp_path, [9])
    result = join_segments([master], tmp_path / "final.mp4")
    assert read_codes(read_frames(result.path)) == segment_codes(0, 9)


def test_join_refuses_segments_of_different_sizes(tmp_path: Path) -> None:
    a = write_segment_master(coded_frames([1, 2, 3], side=64), tmp_path / "a.mp4")
    b = write_segment_master(coded_frames([4, 5, 6], side=32), tmp_path / "b.mp4")
    with pytest.raises(ValueError, match=r"segment 2 \(b.mp4\) is 32x32.*64x64"):
        join_segments([a, b], tmp_path / "final.mp4")
    assert not (tmp_path / "final.mp4").exists()


def test_join_refuses_nothing_and_missing_files(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="at least one"):
        join_segments([], tmp_path / "final.mp4")
    with pytest.raises(FileNotFoundError):
        join_segments([tmp_path / "gone.mp4"], tmp_path / "final.mp4")


def test_join_meets_a_size_budget_by_choosing_a_bitrate(tmp_path: Path) -> None:
    masters = [write_segment_master(noisy_frames(17, 128, seed=s), tmp_path / f"seg{s}.mp4") for s in range(3)]
    quality = join_segments(masters, tmp_path / "quality.mp4")
    budget = quality.bytes // 4
    result = join_segments(masters, tmp_path / "final.mp4", size_budget=budget)
    assert result.reencoded_to_budget and result.within_budget
    assert result.crf is None and result.bitrate is not None
    assert result.bytes == result.path.stat().st_size <= budget
    # It used the room it had: not a needlessly tiny file.
    assert result.bytes > budget * 0.6
    assert result.frames == probe(result.path).frames == 17 + 16 * 2


def test_join_keeps_the_quality_encode_when_it_fits(tmp_path: Path) -> None:
    masters = write_coded_segments(tmp_path, [9, 9])
    result = join_segments(masters, tmp_path / "final.mp4", size_budget=10_000_000)
    assert (result.crf, result.bitrate) == (18, None)
    assert not result.reencoded_to_budget and result.within_budget


def test_join_reports_a_budget_it_cannot_meet(tmp_path: Path) -> None:
    masters = [write_segment_master(noisy_frames(9, 96, seed=s), tmp_path / f"s{s}.mp4") for s in range(2)]
    result = join_segments(masters, tmp_path / "final.mp4", size_budget=2_000, min_bitrate=400_000)
    assert result.reencoded_to_budget and not result.within_budget
    assert result.bitrate == 400_000
    assert result.path.exists() and result.bytes > 2_000


def test_split_to_fit_cuts_into_parts_within_the_budget(tmp_path: Path) -> None:
    codes = list(range(200))
    frames = coded_frames(codes)
    frames[:, -8:] = noisy_frames(200, SIDE)[:, -8:]  # some weight, away from the code stripes
    video = write_segment_master(frames, tmp_path / "final.mp4", fps=16)
    budget = int(probe(video).bytes / 2.5)
    parts = split_to_fit(video, budget)
    assert len(parts) >= 3
    assert all(p.stat().st_size <= budget for p in parts)
    assert [p.name for p in parts] == [f"final-part{i}of{len(parts)}.mp4" for i in range(1, len(parts) + 1)]
    joined = [code for p in parts for code in read_codes(read_frames(p))]
    assert joined == codes
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["final.mp4", *(p.name for p in parts)])


def test_split_to_fit_leaves_a_video_within_budget_alone(tmp_path: Path) -> None:
    video = write_segment_master(coded_frames([1, 2, 3]), tmp_path / "final.mp4")
    assert split_to_fit(video, 10_000_000) == [video]


def test_join_keeps_colours(tmp_path: Path) -> None:
    # Regression: relayed YUV frames must be re-encoded with the masters' colour properties, or
    # ffmpeg converts them and the whole final shifts in brightness and colour.
    y, x = np.mgrid[0:48, 0:64]
    gradient = np.stack([x * 4, y * 5, 255 - x * 2 - y], axis=-1).clip(0, 255).astype(np.uint8)
    frames = np.stack([np.roll(gradient, i, axis=1) for i in range(9)])
    master = write_segment_master(frames, tmp_path / "a.mp4")
    joined = join_segments([master], tmp_path / "joined.mp4")
    decoded_master = read_frames(master).astype(int)
    decoded_joined = read_frames(joined.path).astype(int)
    assert np.abs(decoded_joined - decoded_master).mean() < 2.5
    assert np.abs(decoded_joined - frames.astype(int)).mean() < 3.5
