"""Segment masters, hand-off frames and the joined final video, through imageio-ffmpeg's ffmpeg.

- A segment master is H.264 yuv420p at a visually lossless CRF, +faststart, no audio.
- The hand-off frame is the raw last frame as PNG, never a frame decoded from the mp4.
- ``join_segments`` decodes the masters one at a time and streams their frames (yuv420p, no
  colour conversion) into a single encoder, dropping frame 0 of every segment after the first:
  Wan's frame 0 re-renders the previous hand-off frame, so keeping it would show a stutter. A
  segment continued from latents (SVI) overlaps its predecessor by one latent frame and drops
  its first 4 frames instead (``overlap_frames``).
- Every file is written under a temporary name and renamed into place (worker.files).
"""

from __future__ import annotations

import contextlib
import functools
import math
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import imageio_ffmpeg
import numpy as np
from PIL import Image

from shared.params import DEFAULT_FPS
from shared.params import overlap_frames as overlap_frames
from worker.files import atomic_path, fsync_dir

#: Segment masters are re-encoded once more when joined, so they keep more than the eye needs.
MASTER_CRF = 14
#: The joined final: 18 is x264's usual "visually lossless" point.
FINAL_CRF = 18
DEFAULT_PRESET = "medium"
#: Masters are encoded while the user waits for each segment: x264's veryfast gives the same
#: quality at this CRF (a slightly larger file) in a third of medium's time (bench/README.md).
MASTER_PRESET = "veryfast"
#: A keyframe at least every few seconds lets players seek and lets split_to_fit cut by copying.
KEYFRAME_SECONDS = 4
#: Below this a 640x640 H.264 picture is mush; split_to_fit is the better answer then.
MIN_BITRATE = 64_000
#: Share of a size budget the encoder aims at: x264's rate control and the mp4 index need room.
BUDGET_MARGIN = 0.95

# BT.709 is what players assume for H.264 without other hints; tagging it (and converting with
# it) keeps colours the same in ffmpeg, browsers and the chat apps' players.
_COLOUR_TAGS = [
    "-colorspace", "bt709", "-color_primaries", "bt709", "-color_trc", "bt709", "-color_range", "tv",
]  # fmt: skip


class VideoError(RuntimeError):
    """ffmpeg failed; the message carries the end of its log."""


@functools.cache
def ffmpeg_exe() -> str:
    return str(imageio_ffmpeg.get_ffmpeg_exe())


def _ffmpeg(*args: str) -> list[str]:
    return [ffmpeg_exe(), "-nostdin", "-hide_banner", *args]


def _run(cmd: list[str], *, input: memoryview | None = None) -> subprocess.CompletedProcess[bytes]:
    proc = subprocess.run(cmd, input=input, capture_output=True, check=False)
    if proc.returncode != 0:
        raise VideoError(_failure("ffmpeg", proc.returncode, proc.stderr))
    return proc


def _failure(what: str, code: int | None, log: bytes) -> str:
    tail = log.decode("utf-8", "replace").strip().splitlines()[-5:]
    return f"{what} failed (exit {code}): " + " | ".join(tail)


def _check_frames(frames: np.ndarray) -> np.ndarray:
    if not isinstance(frames, np.ndarray) or frames.dtype != np.uint8:
        raise ValueError("frames must be a uint8 numpy array")
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.shape[0] < 1:
        raise ValueError(f"frames must have shape (frames, height, width, 3), got {frames.shape}")
    height, width = frames.shape[1:3]
    if height % 2 or width % 2:
        # yuv420p stores colour per 2x2 block; odd sides would be cropped or padded silently.
        raise ValueError(f"width and height must be even for yuv420p, got {width}x{height}")
    return np.ascontiguousarray(frames)


def _encoder_args(*, fps: int, crf: int | None, bitrate: int | None, preset: str) -> list[str]:
    rate = ["-crf", str(crf)] if bitrate is None else ["-b:v", str(bitrate)]
    return [
        "-an",
        "-c:v", "libx264", "-preset", preset, *rate,
        "-g", str(KEYFRAME_SECONDS * fps),
        "-pix_fmt", "yuv420p", *_COLOUR_TAGS,
        "-movflags", "+faststart",
        "-f", "mp4",
    ]  # fmt: skip


# --------------------------------------------------------------------------- segment files


def write_segment_master(
    frames: np.ndarray,
    path: str | os.PathLike[str],
    fps: int = DEFAULT_FPS,
    *,
    crf: int = MASTER_CRF,
    preset: str = MASTER_PRESET,
) -> Path:
    """Encode ``frames`` (uint8, (F, H, W, 3) RGB) as the segment's H.264 master, atomically."""
    frames = _check_frames(frames)
    if fps < 1:
        raise ValueError(f"fps must be positive, got {fps}")
    height, width = frames.shape[1:3]
    with atomic_path(path) as tmp:
        cmd = _ffmpeg(
            "-loglevel", "error",
            "-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{width}x{height}", "-framerate", str(fps),
            "-i", "pipe:0",
            *_encoder_args(fps=fps, crf=crf, bitrate=None, preset=preset),
            "-y", str(tmp),
        )  # fmt: skip
        _run(cmd, input=frames.reshape(-1).data)
    return Path(path)


def save_hand_off_frame(frames: np.ndarray, path: str | os.PathLike[str]) -> Path:
    """Save the raw last frame as a lossless PNG: the next segment's start image, bit for bit."""
    if not isinstance(frames, np.ndarray) or frames.dtype != np.uint8 or frames.ndim != 4:
        raise ValueError("frames must be a uint8 numpy array of shape (frames, height, width, 3)")
    if frames.shape[-1] != 3 or frames.shape[0] < 1:
        raise ValueError(f"frames must have shape (frames, height, width, 3), got {frames.shape}")
    last = np.ascontiguousarray(frames[-1])
    with atomic_path(path) as tmp:
        Image.fromarray(last).save(tmp, format="PNG")
    return Path(path)


# --------------------------------------------------------------------------- reading


@dataclass(frozen=True)
class VideoInfo:
    frames: int
    fps: float
    width: int
    height: int
    #: frames / fps: what a player shows.
    duration: float
    codec: str
    pix_fmt: str
    has_audio: bool
    bytes: int


_STREAM = re.compile(r"Stream #\d+:\d+.*?: Video: (\w+).*?, (\w+)(?:\([^)]*\))?, (\d+)x(\d+)")
_FPS = re.compile(r"([\d.]+) fps")
_FRAME_COUNT = re.compile(r"frame=\s*(\d+)")


def probe(path: str | os.PathLike[str]) -> VideoInfo:
    """Frame count, fps, size and codec of a video's first video stream.

    Counts packets by copying them to nowhere, without decoding: exact and cheap (milliseconds).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no such video: {path}")
    proc = _run(_ffmpeg("-i", str(path), "-map", "0:v:0", "-c", "copy", "-f", "null", "-"))
    log = proc.stderr.decode("utf-8", "replace")
    head = log.split("Output #0", 1)[0]
    stream = _STREAM.search(head)
    counts = _FRAME_COUNT.findall(log)
    if stream is None or not counts:
        raise VideoError(f"cannot read video stream of {path}")
    stream_line = head[stream.start() :].splitlines()[0]
    fps_match = _FPS.search(stream_line)
    fps = float(fps_match.group(1)) if fps_match else float(DEFAULT_FPS)
    frames = int(counts[-1])
    return VideoInfo(
        frames=frames,
        fps=fps,
        width=int(stream.group(3)),
        height=int(stream.group(4)),
        duration=frames / fps,
        codec=stream.group(1),
        pix_fmt=stream.group(2),
        has_audio=" Audio: " in head,
        bytes=path.stat().st_size,
    )


def read_frames(path: str | os.PathLike[str]) -> np.ndarray:
    """Decode every frame of a video as uint8 RGB, shape (F, H, W, 3)."""
    info = probe(path)
    cmd = _ffmpeg(
        "-loglevel", "error", "-i", str(path), "-map", "0:v:0",
        "-fps_mode", "passthrough", "-f", "rawvideo", "-pix_fmt", "rgb24", "pipe:1",
    )  # fmt: skip
    proc = _run(cmd)
    frame_size = info.width * info.height * 3
    count = len(proc.stdout) // frame_size
    return np.frombuffer(proc.stdout, np.uint8, count * frame_size).reshape(count, info.height, info.width, 3)


# --------------------------------------------------------------------------- joining


@dataclass(frozen=True)
class JoinResult:
    path: Path
    frames: int
    fps: int
    seconds: float
    bytes: int
    #: The CRF used, when the quality encode was kept.
    crf: int | None
    #: Video bitrate in bits/s, when the final was encoded to a size budget.
    bitrate: int | None
    #: True when the quality encode was over (or would be over) the budget and a bitrate was chosen.
    reencoded_to_budget: bool
    #: False when a budget was given and even the minimum bitrate could not meet it.
    within_budget: bool
    #: Encodes it took (1 without a budget).
    attempts: int


def join_segments(
    masters: Sequence[str | os.PathLike[str]],
    out: str | os.PathLike[str],
    fps: int = DEFAULT_FPS,
    size_budget: int | None = None,
    *,
    crf: int = FINAL_CRF,
    preset: str = DEFAULT_PRESET,
    min_bitrate: int = MIN_BITRATE,
    max_attempts: int = 3,
    overlaps: Sequence[int] | None = None,
) -> JoinResult:
    """Join segment masters, in order, into one seamless video, encoded once.

    Segment 1 is kept whole; every later segment loses its frame 0 (a re-render of the previous
    hand-off frame), so N segments of F frames give F + (F-1)(N-1) frames. ``overlaps`` says
    instead how many head frames each segment drops (``overlap_frames``; 0 for the first), so an
    SVI segment drops the 4 frames it shares with its predecessor, exactly once. Segments may
    differ in length but not in size.

    With ``size_budget`` (bytes) the quality encode is kept when it fits. Otherwise the bitrate
    is chosen from the duration, and when x264's rate control still overshoots, the encode is
    repeated at a bitrate scaled by the measured overshoot. ``within_budget`` is False when even
    ``min_bitrate`` does not fit; the file is still written (see ``split_to_fit``).
    """
    if not masters:
        raise ValueError("join_segments needs at least one segment")
    if fps < 1:
        raise ValueError(f"fps must be positive, got {fps}")
    if size_budget is not None and size_budget <= 0:
        raise ValueError(f"size_budget must be positive, got {size_budget}")
    paths = [Path(m) for m in masters]
    infos = [probe(p) for p in paths]
    first = infos[0]
    for index, info in enumerate(infos[1:], start=2):
        if (info.width, info.height) != (first.width, first.height):
            raise ValueError(
                f"segment {index} ({paths[index - 1].name}) is {info.width}x{info.height}, "
                f"segment 1 is {first.width}x{first.height}: segments must share a size"
            )
    drops = [0, *[1] * (len(paths) - 1)] if overlaps is None else [int(n) for n in overlaps]
    if len(drops) != len(paths):
        raise ValueError(f"overlaps names {len(drops)} segments, there are {len(paths)}")
    for index, (drop, info) in enumerate(zip(drops, infos, strict=True), start=1):
        if not 0 <= drop < info.frames:
            raise ValueError(f"segment {index} has {info.frames} frames and cannot drop {drop}")
    expected = sum(info.frames - drop for info, drop in zip(infos, drops, strict=True))

    with atomic_path(out) as tmp:

        def encode(crf: int | None, bitrate: int | None) -> tuple[int, int]:
            frames = _encode_joined(paths, infos, drops, tmp, fps=fps, crf=crf, bitrate=bitrate, preset=preset)
            return frames, tmp.stat().st_size

        used_crf: int | None = crf
        bitrate: int | None = None
        frames = size = attempts = 0
        # The masters are a higher-quality encode of the same frames: when even they fit, the
        # quality encode almost surely does; when they do not, go straight to a bitrate.
        if size_budget is None or sum(info.bytes for info in infos) <= size_budget:
            frames, size = encode(crf, None)
            attempts += 1
        if size_budget is not None and (attempts == 0 or size > size_budget):
            used_crf = None
            bitrate = max(budget_bitrate(size_budget, expected, fps), min_bitrate)
            for tries in range(1, max_attempts + 1):
                frames, size = encode(None, bitrate)
                attempts += 1
                if size <= size_budget or tries == max_attempts or bitrate <= min_bitrate:
                    break
                # x264's one-pass rate control overshoots on short clips: scale by what it did.
                bitrate = max(int(bitrate * BUDGET_MARGIN * size_budget / size), min_bitrate)

    return JoinResult(
        path=Path(out),
        frames=frames,
        fps=fps,
        seconds=frames / fps,
        bytes=size,
        crf=used_crf,
        bitrate=bitrate,
        reencoded_to_budget=bitrate is not None,
        within_budget=size_budget is None or size <= size_budget,
        attempts=attempts,
    )


def budget_bitrate(size_budget: int, frames: int, fps: int) -> int:
    """Video bitrate (bits/s) whose file should land under ``size_budget`` bytes.

    The mp4 index costs about 16 bytes a frame plus a few KB of headers.
    """
    duration = frames / fps
    overhead = 4096 + 16 * frames
    payload = max(size_budget * BUDGET_MARGIN - overhead, 1)
    return max(int(payload * 8 / duration), 1)


def _encode_joined(
    paths: Sequence[Path],
    infos: Sequence[VideoInfo],
    drops: Sequence[int],
    dest: Path,
    *,
    fps: int,
    crf: int | None,
    bitrate: int | None,
    preset: str,
) -> int:
    """Stream the masters' frames, minus each one's ``drops`` head frames, into one encoder. Returns frames."""
    width, height = infos[0].width, infos[0].height
    frame_size = width * height + 2 * ((width + 1) // 2) * ((height + 1) // 2)  # yuv420p
    written = 0
    with tempfile.TemporaryFile() as enc_log:
        cmd = _ffmpeg(
            "-loglevel", "error",
            "-f", "rawvideo", "-pix_fmt", "yuv420p", "-s", f"{width}x{height}", "-framerate", str(fps),
            # The relayed frames are the masters' BT.709 limited-range YUV: say so, or ffmpeg
            # assumes other properties and converts them, shifting every colour of the final.
            *_COLOUR_TAGS,
            "-i", "pipe:0",
            *_encoder_args(fps=fps, crf=crf, bitrate=bitrate, preset=preset),
            "-y", str(dest),
        )  # fmt: skip
        encoder = subprocess.Popen(cmd, stdin=subprocess.PIPE, stderr=enc_log)
        assert encoder.stdin is not None
        try:
            for path, drop in zip(paths, drops, strict=True):
                written += _relay(path, encoder.stdin, frame_size, skip=drop)
        except BrokenPipeError:
            pass  # the encoder died; its exit status and log say why
        except BaseException:
            encoder.kill()
            encoder.wait()
            raise
        finally:
            with contextlib.suppress(BrokenPipeError):
                encoder.stdin.close()
        code = encoder.wait()
        if code != 0:
            enc_log.seek(0)
            raise VideoError(_failure("encoding the joined video", code, enc_log.read()))
    return written


def _relay(path: Path, sink: IO[bytes], frame_size: int, *, skip: int) -> int:
    """Decode ``path`` to raw yuv420p and copy its frames but the first ``skip`` to ``sink``.
    Returns frames copied."""
    copied = 0
    with tempfile.TemporaryFile() as dec_log:
        cmd = _ffmpeg(
            "-loglevel", "error", "-i", str(path), "-map", "0:v:0",
            "-fps_mode", "passthrough", "-f", "rawvideo", "-pix_fmt", "yuv420p", "pipe:1",
        )  # fmt: skip
        decoder = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=dec_log)
        assert decoder.stdout is not None
        try:
            seen = 0
            while chunk := decoder.stdout.read(frame_size):
                if len(chunk) != frame_size:
                    raise VideoError(f"decoding {path.name}: truncated frame")
                if seen >= skip:
                    sink.write(chunk)
                    copied += 1
                seen += 1
        except BaseException:
            decoder.kill()
            decoder.wait()
            raise
        finally:
            decoder.stdout.close()
        code = decoder.wait()
        if code != 0:
            dec_log.seek(0)
            raise VideoError(_failure(f"decoding {path.name}", code, dec_log.read()))
    return copied


# --------------------------------------------------------------------------- splitting


def split_to_fit(path: str | os.PathLike[str], size_budget: int, *, max_attempts: int = 4) -> list[Path]:
    """Split a video into parts of at most ``size_budget`` bytes each, beside it.

    For a platform whose upload limit a whole video cannot meet even at a low bitrate. Parts are
    cut at keyframes and copied, not re-encoded, so they keep the quality they have; they are
    named ``<stem>-part<i>of<n>.mp4``. A video already within budget is returned as is.
    """
    path = Path(path)
    info = probe(path)
    if size_budget <= 0:
        raise ValueError(f"size_budget must be positive, got {size_budget}")
    if info.bytes <= size_budget:
        return [path]
    parts = math.ceil(info.bytes / (size_budget * 0.9))
    for _ in range(max_attempts):
        work = Path(tempfile.mkdtemp(prefix=f".{path.stem}-split-", dir=path.parent))
        try:
            cmd = _ffmpeg(
                "-loglevel", "error", "-i", str(path), "-map", "0:v:0", "-c", "copy",
                "-f", "segment", "-segment_time", f"{info.duration / parts:.3f}",
                "-reset_timestamps", "1", "-segment_format", "mp4",
                "-segment_format_options", "movflags=+faststart",
                str(work / "%04d.mp4"),
            )  # fmt: skip
            _run(cmd)
            pieces = sorted(work.glob("*.mp4"))
            largest = max(p.stat().st_size for p in pieces)
            if largest <= size_budget:
                finals = []
                for i, piece in enumerate(pieces, start=1):
                    final = path.with_name(f"{path.stem}-part{i}of{len(pieces)}{path.suffix}")
                    os.replace(piece, final)
                    finals.append(final)
                fsync_dir(path.parent)
                return finals
            # Parts are cut only at keyframes, so they come out uneven; ask for more, smaller ones.
            parts = max(parts + 1, math.ceil(parts * largest / (size_budget * 0.9)))
        finally:
            shutil.rmtree(work, ignore_errors=True)
    raise VideoError(
        f"cannot split {path.name} into parts of at most {size_budget} bytes: its keyframes are too far apart"
    )
