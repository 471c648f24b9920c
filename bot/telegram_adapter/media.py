"""Media preparation for Telegram: video thumbnails, photo-sized frames, MP4 dimensions.

Pure functions on files (Pillow and the standard library; run them in a thread)."""

from __future__ import annotations

import io
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from PIL import Image

#: Telegram ignores a video thumbnail that is not a JPEG of at most 200 kB and 320 px a side.
THUMBNAIL_SIDE = 320
THUMBNAIL_BYTES = 200 * 1000
#: sendPhoto takes at most 10 MB, and width + height at most 10000.
PHOTO_BYTES = 10 * 1000 * 1000
PHOTO_SIDES_SUM = 10000


def thumbnail_jpeg(image_path: Path) -> bytes:
    """A JPEG of the image, fitted within 320×320 and under 200 kB."""
    with Image.open(image_path) as opened:
        image = opened.convert("RGB")
    image.thumbnail((THUMBNAIL_SIDE, THUMBNAIL_SIDE))
    data = b""
    for quality in (85, 70, 50, 30):
        buffer = io.BytesIO()
        image.save(buffer, "JPEG", quality=quality)
        data = buffer.getvalue()
        if len(data) <= THUMBNAIL_BYTES:
            break
    return data


def photo_upload(image_path: Path) -> tuple[bytes, str]:
    """The image as sendPhoto accepts it: the file itself when it fits, else a JPEG that does.
    Returns the bytes and a file name."""
    data = image_path.read_bytes()
    with Image.open(io.BytesIO(data)) as opened:
        width, height = opened.size
        if len(data) <= PHOTO_BYTES and width + height <= PHOTO_SIDES_SUM:
            return data, image_path.name
        image = opened.convert("RGB")
    scale = min(1.0, (PHOTO_SIDES_SUM - 1) / (width + height))
    if scale < 1.0:
        image = image.resize((max(1, int(width * scale)), max(1, int(height * scale))))
    for quality in (92, 80, 60):
        buffer = io.BytesIO()
        image.save(buffer, "JPEG", quality=quality)
        if buffer.tell() <= PHOTO_BYTES:
            break
    return buffer.getvalue(), image_path.with_suffix(".jpg").name


@dataclass(frozen=True)
class Mp4Info:
    width: int
    height: int
    seconds: float


def mp4_info(path: Path) -> Mp4Info | None:
    """Width, height and duration from an MP4's ``moov`` box (wherever it sits), or None when the
    file is not a readable MP4. Telegram shows a video without them, but in the wrong shape."""
    try:
        with path.open("rb") as fh:
            moov = _find_box(fh, b"moov", path.stat().st_size)
            if moov is None or moov > 64 * 1024 * 1024:
                return None
            return _parse_moov(fh.read(moov))
    except (OSError, struct.error, ValueError):
        return None


def _find_box(fh: BinaryIO, wanted: bytes, end: int) -> int | None:
    """Seek to the payload of the first top-level ``wanted`` box; return its payload size."""
    position = 0
    while position + 8 <= end:
        fh.seek(position)
        size, kind = struct.unpack(">I4s", fh.read(8))
        header = 8
        if size == 1:
            (size,) = struct.unpack(">Q", fh.read(8))
            header = 16
        elif size == 0:
            size = end - position
        if size < header:
            return None
        if kind == wanted:
            return int(size - header)
        position += size
    return None


def _boxes(data: bytes) -> list[tuple[bytes, bytes]]:
    found = []
    position = 0
    while position + 8 <= len(data):
        size, kind = struct.unpack_from(">I4s", data, position)
        header = 8
        if size == 1:
            (size,) = struct.unpack_from(">Q", data, position + 8)
            header = 16
        elif size == 0:
            size = len(data) - position
        if size < header:
            break
        found.append((kind, data[position + header : position + size]))
        position += size
    return found


def _parse_moov(moov: bytes) -> Mp4Info | None:
    seconds = 0.0
    width = height = 0
    for kind, payload in _boxes(moov):
        if kind == b"mvhd":
            if payload[0] == 1:
                timescale, duration = struct.unpack_from(">IQ", payload, 20)
            else:
                timescale, duration = struct.unpack_from(">II", payload, 12)
            seconds = duration / timescale if timescale else 0.0
        elif kind == b"trak" and not width:
            for inner, tkhd in _boxes(payload):
                if inner == b"tkhd" and len(tkhd) >= 8:
                    # Width and height are 16.16 fixed point, the box's last eight bytes.
                    w, h = struct.unpack_from(">II", tkhd, len(tkhd) - 8)
                    width, height = w >> 16, h >> 16
    if not width or not height:
        return None
    return Mp4Info(width=width, height=height, seconds=seconds)
