"""The one policy for start pictures, for the chat and ``framechain render`` alike.

A picture is decoded once, here: either it is refused with a sentence the user can act on, or it
comes back normalised (EXIF orientation applied, RGB, scaled down to what a segment can use) as
PNG bytes with its size, ready to be written under a name the caller chooses.

Accepted: PNG, JPEG (MPO too: its first picture), WebP, BMP, single-page TIFF, a still GIF, and
AVIF/HEIC where Pillow has a decoder for them. Refused, each with its own sentence: empty files,
files over ``limits.image_bytes``, SVG, HEIC without a decoder, anything else Pillow can't
identify, damaged or cut-off files, animations and multi-page files, more than
``limits.image_pixels`` pixels (checked from the header, before decoding), a side under
``limits.image_min_side``, sides further apart than ``limits.image_max_aspect``, and more than
``limits.image_text_bytes`` of decompressed text chunks.

Pillow only, no torch. :func:`check_picture` is synchronous; on an event loop await
:func:`check_picture_off_loop`, which decodes in a small pool of its own: never on the loop, and
at most :data:`DECODERS` pictures at once, as a 40-megapixel one takes ~300 MB while it decodes.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import importlib
import importlib.util
import io
import logging
import math
import os
import sys
import threading
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Literal

from PIL import Image, ImageOps, PngImagePlugin, UnidentifiedImageError

from shared.config import LimitsConfig

log = logging.getLogger("framechain.pictures")

#: Smallest start picture accepted, per side (the default of ``limits.image_min_side``).
MIN_SIDE = LimitsConfig().image_min_side

#: A stored start picture keeps at most this many pixels (or four times ``limits.max_pixels``,
#: if more): segments are never larger, so more would only cost disk and decoding time.
STORED_PIXELS = 4 * 1024 * 1024

#: Pictures decoded at once by :func:`check_picture_off_loop`, process-wide because memory is:
#: four 40-megapixel pictures sent together peak at ~0.7 GB instead of ~1.3 GB, and the others
#: wait their turn (a second or two each) in the pool, not on the event loop.
DECODERS = 2
#: How much lower than the rest of the process the decoding threads run (Linux ``nice``).
DECODER_NICENESS = 10

#: Formats Pillow may try; everything else (EPS, PSD, ICO, ...) is refused unopened.
_FORMATS = ("PNG", "JPEG", "WEBP", "BMP", "TIFF", "GIF")
#: Formats accepted only when their decoder is installed (pillow-heif registers "HEIF").
_OPTIONAL_FORMATS = ("AVIF", "HEIF")
#: ISO-BMFF brands of HEIC/HEIF pictures (the iPhone's default format).
_HEIC_BRANDS = {b"heic", b"heix", b"hevc", b"hevx", b"heim", b"heis", b"hevm", b"hevs"}

RefusalCode = Literal[
    "empty", "bytes", "svg", "heic", "unreadable", "corrupt", "animated", "pages", "pixels", "small", "aspect", "text"
]

_UNREADABLE = "I couldn't read that as a picture. Please send a PNG, JPEG or WebP image."


@dataclass(frozen=True)
class Accepted:
    """A usable start picture: ``png`` is RGB, upright, at most ``STORED_PIXELS`` pixels."""

    png: bytes
    width: int
    height: int
    #: What the upload was (Pillow's name: "PNG", "JPEG", "MPO", ...), for logs.
    source_format: str


@dataclass(frozen=True)
class Refused:
    """Not a usable start picture; ``reason`` is the sentence to show the user."""

    reason: str
    code: RefusalCode


class PictureRefused(ValueError):
    """Raised by :func:`read_picture`; carries the same sentence and code as :class:`Refused`."""

    def __init__(self, reason: str, code: RefusalCode) -> None:
        super().__init__(reason)
        self.reason = reason
        self.code = code


def check_picture(data: bytes, limits: LimitsConfig | None = None) -> Accepted | Refused:
    """Decode ``data`` once under every start-picture rule; the normalised picture or the refusal."""
    limits = limits or LimitsConfig()
    try:
        image, source_format = _decode(data, limits, start=True)
        image = _shrink(image, max(STORED_PIXELS, 4 * limits.max_pixels))
    except PictureRefused as refusal:
        return Refused(refusal.reason, refusal.code)
    buffer = io.BytesIO()
    image.save(buffer, "PNG", compress_level=3)
    return Accepted(png=buffer.getvalue(), width=image.width, height=image.height, source_format=source_format)


async def check_picture_off_loop(data: bytes, limits: LimitsConfig | None = None) -> Accepted | Refused:
    """:func:`check_picture` in the decoding pool, for callers on an event loop."""
    return await asyncio.get_running_loop().run_in_executor(_decoding_pool(), check_picture, data, limits)


@functools.cache
def _decoding_pool() -> ThreadPoolExecutor:
    return ThreadPoolExecutor(max_workers=DECODERS, thread_name_prefix="picture-decode", initializer=_yield_to_the_loop)


def _yield_to_the_loop() -> None:
    """Lower this decoding thread's CPU priority (Linux, where a thread has a nice value of its
    own): Pillow releases the GIL while it decodes, so what a big decode takes from the event
    loop is CPU time, and the scheduler then gives the loop its turn first."""
    if sys.platform == "linux":
        with contextlib.suppress(OSError):
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), DECODER_NICENESS)


def picture_problem(data: bytes, limits: LimitsConfig | None = None) -> str | None:
    """Why ``data`` can't be a start picture, or None: :func:`check_picture`'s refusal, without
    encoding the picture to keep. Decodes the whole picture: call it off the event loop."""
    try:
        _decode(data, limits or LimitsConfig(), start=True)
    except PictureRefused as refusal:
        return refusal.reason
    return None


def check_file_size(size: int, limits: LimitsConfig | None = None) -> Refused | None:
    """The refusal for a file of ``size`` bytes, if it is over the limit: for callers that know
    the size before reading the file (an attachment, a file on disk)."""
    limits = limits or LimitsConfig()
    if size <= limits.image_bytes:
        return None
    return Refused(too_large_text(size, limits.image_bytes), "bytes")


def too_large_text(size: int, limit: int) -> str:
    """The one sentence for a file over a byte limit (the configured one, or a platform's lower
    download limit), so every way in refuses it with the same words."""
    shown = f"{size / 2**20:.1f} MB" if size else "too large"
    return f"That file is {shown}; the limit is {_amount(limit)}. Please send a smaller picture."


def _amount(size: int) -> str:
    mb = size / 2**20
    return f"{mb:.0f} MB" if mb >= 10 else f"{mb:.1f} MB" if mb >= 0.1 else f"{size / 1024:.0f} KB"


def read_picture(data: bytes, limits: LimitsConfig | None = None) -> Image.Image:
    """Decode a picture the worker is handed (a stored start picture or a hand-off frame) into
    upright RGB, or raise :class:`PictureRefused`.

    The last line of defence, so only the rules that keep decoding safe and unambiguous apply
    (readable, a still, within the pixel and text limits); the size and shape rules for what a
    user may start from were applied before the picture was stored."""
    image, _ = _decode(data, limits or LimitsConfig(), start=False)
    return image


def _decode(data: bytes, limits: LimitsConfig, *, start: bool) -> tuple[Image.Image, str]:
    if not data:
        raise PictureRefused("That file is empty. Please send a PNG, JPEG or WebP image.", "empty")
    too_large = check_file_size(len(data), limits) if start else None
    if too_large is not None:
        raise PictureRefused(too_large.reason, too_large.code)
    formats = _formats()
    if _is_svg(data):
        raise PictureRefused(
            "That is an SVG drawing, which can't be a start picture. Please send it as a PNG or JPEG.", "svg"
        )
    if _is_heic(data) and "HEIF" not in formats:
        raise PictureRefused(
            "That is a HEIC picture, which I can't read. Please send it as a JPEG or PNG "
            "(on an iPhone: Settings → Camera → Formats → Most Compatible).",
            "heic",
        )
    # Pillow reads these module settings on every text chunk; one config per process sets them.
    PngImagePlugin.MAX_TEXT_CHUNK = limits.image_text_bytes
    PngImagePlugin.MAX_TEXT_MEMORY = limits.image_text_bytes
    try:
        # Pillow only warns between its own bomb limit and twice that; make it refuse. (Not
        # thread-safe before Python 3.14, but a lost filter only lets a warning through:
        # the pixel check below still refuses the picture.)
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data), formats=formats)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise PictureRefused(_too_many_pixels(None, limits), "pixels") from None
    except UnidentifiedImageError:
        raise PictureRefused(_UNREADABLE, "unreadable") from None
    except ValueError as exc:
        raise _text_or_corrupt(exc) from None
    except Exception as exc:  # a crafted header can make any plugin raise anything
        log.debug("picture header rejected: %r", exc)
        raise _corrupt() from None
    with image:
        source_format = image.format or "?"
        width, height = image.size
        count: int = getattr(image, "n_frames", 1)
        if count > 1 and source_format != "MPO":  # MPO: a photo and its previews; the photo is first
            if source_format == "TIFF":
                raise PictureRefused(f"That file holds {count} pages. Please send a single still picture.", "pages")
            raise PictureRefused(
                "That picture is animated. Please send a still picture (PNG, JPEG or WebP).", "animated"
            )
        if width * height > limits.image_pixels:
            raise PictureRefused(_too_many_pixels((width, height), limits), "pixels")
        if start:
            _check_shape(width, height, limits)
        try:
            image.load()
            upright = ImageOps.exif_transpose(image)
            rgb = _to_rgb(upright)
        except ValueError as exc:
            raise _text_or_corrupt(exc) from None
        except Exception as exc:
            log.debug("picture failed to decode: %r", exc)
            raise _corrupt() from None
    return rgb, source_format


@functools.cache
def _formats() -> tuple[str, ...]:
    """The formats Pillow may try, with AVIF and HEIF where their decoders are installed."""
    if importlib.util.find_spec("pillow_heif") is not None:
        importlib.import_module("pillow_heif").register_heif_opener()
    Image.init()  # loads every plugin, so OPEN lists what this Pillow can decode
    return _FORMATS + tuple(f for f in _OPTIONAL_FORMATS if f in Image.OPEN)


def _check_shape(width: int, height: int, limits: LimitsConfig) -> None:
    # EXIF rotation swaps the sides but changes neither rule.
    if min(width, height) < limits.image_min_side:
        raise PictureRefused(
            f"That picture is only {width}×{height}; please send one at least "
            f"{limits.image_min_side} pixels on each side.",
            "small",
        )
    if max(width, height) > limits.image_max_aspect * min(width, height):
        raise PictureRefused(
            f"That picture is {width}×{height}, too long and thin for a video: one side may be at most "
            f"{limits.image_max_aspect:g} times the other. Please crop it closer to the shape you want.",
            "aspect",
        )


def _to_rgb(image: Image.Image) -> Image.Image:
    """RGB, with transparency flattened onto white and 16/32-bit levels scaled, not clipped."""
    if image.mode.startswith("I;16"):
        image = image.convert("I").point(lambda v: v * (1 / 257))
    elif image.mode in ("I", "F"):
        high = image.getextrema()[1]
        if isinstance(high, (int, float)) and high > 255:
            image = image.point(lambda v: v * (255 / high))
    if image.mode in ("I", "F"):
        image = image.convert("L")
    if image.has_transparency_data:
        rgba = image.convert("RGBA")
        flat = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        flat.alpha_composite(rgba)
        return flat.convert("RGB")
    return image.convert("RGB") if image.mode != "RGB" else image


def _shrink(image: Image.Image, pixels: int) -> Image.Image:
    if image.width * image.height <= pixels:
        return image
    scale = math.sqrt(pixels / (image.width * image.height))
    size = (max(1, int(image.width * scale)), max(1, int(image.height * scale)))
    return image.resize(size, Image.Resampling.LANCZOS, reducing_gap=3.0)


def _is_svg(data: bytes) -> bool:
    head = data[:2048].lstrip(b"\xef\xbb\xbf \t\r\n").lower()
    return head.startswith((b"<svg", b"<?xml", b"<!doctype svg")) and b"<svg" in head


def _is_heic(data: bytes) -> bool:
    if data[4:8] != b"ftyp":
        return False
    size = int.from_bytes(data[:4], "big")
    box = data[8 : max(12, min(size, 256))]
    brands = {box[i : i + 4] for i in range(0, len(box) - 3, 4)}  # major, version, compatibles
    return bool(brands & _HEIC_BRANDS)


def _too_many_pixels(size: tuple[int, int] | None, limits: LimitsConfig) -> str:
    limit = f"the limit is {limits.image_pixels / 1e6:g} megapixels"
    shown = f"{size[0]}×{size[1]}" if size else "too large"
    return f"That picture is {shown}; {limit}. Please send a smaller one."


def _text_or_corrupt(exc: ValueError) -> PictureRefused:
    # Pillow's words for a text chunk over MAX_TEXT_CHUNK, or text chunks over MAX_TEXT_MEMORY.
    if "MAX_TEXT_CHUNK" in str(exc) or "text chunks" in str(exc):
        return PictureRefused(
            "That picture carries too much embedded text (metadata). "
            "Please re-save it without metadata, or send a screenshot of it.",
            "text",
        )
    log.debug("picture rejected: %r", exc)
    return _corrupt()


def _corrupt() -> PictureRefused:
    return PictureRefused(
        "That picture is damaged or cut off, so I can't read it. Please send the file again, or another one.",
        "corrupt",
    )
