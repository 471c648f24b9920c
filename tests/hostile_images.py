"""A corpus of hostile and odd start images, built in memory: each case is a name, a way to make
its bytes, and what the start-picture policy (``shared.pictures``) must answer.

Reusable by any harness (``framechain render``, the chat front ends, a flood benchmark):

    for case in IMAGE_CASES:
        data = case.build()
        ...  # expect case.refusal (a ``shared.pictures.RefusalCode``), or acceptance at case.size

Every case is cheap: the largest build is a 100-megapixel PNG, made as a valid header with an
image stream that stops short, because the policy refuses it from the header alone.
"""

from __future__ import annotations

import io
import struct
import zlib
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from PIL import Image, PngImagePlugin

from shared.pictures import RefusalCode


@dataclass(frozen=True)
class ImageCase:
    name: str
    build: Callable[[], bytes]
    #: What the policy refuses it as; None = accepted.
    refusal: RefusalCode | None
    #: The size of the accepted picture (after EXIF orientation).
    size: tuple[int, int] | None = None
    #: The name it arrives under (never used by the policy: only bytes count).
    filename: str = "picture.png"
    #: Words the refusal sentence must contain.
    words: str = ""


def gradient(width: int = 96, height: int = 96, mode: str = "RGB") -> Image.Image:
    """A smooth picture whose orientation can be told: red grows to the right, green downwards."""
    y, x = np.mgrid[0:height, 0:width]
    rgb = np.stack([x * 255 // max(width - 1, 1), y * 255 // max(height - 1, 1), np.full_like(x, 128)], axis=-1)
    return Image.fromarray(rgb.astype(np.uint8), "RGB").convert(mode)


def encode(image: Image.Image, fmt: str, **options: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


def png(width: int = 96, height: int = 96) -> bytes:
    return encode(gradient(width, height), "PNG")


def half(data: bytes) -> bytes:
    """The file cut off in the middle, as an interrupted download leaves it."""
    return data[: len(data) // 2]


def _chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def png_header_only(width: int, height: int, idat: bytes | None = None) -> bytes:
    """A PNG that claims ``width`` x ``height``; its pixel data (``idat``, by default one row)
    is not what the header promises."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    data = zlib.compress(b"\0" * (1 + 3 * width)) if idat is None else idat
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", data) + _chunk(b"IEND", b"")


def png_with_text(*, zipped: bool, size: int, chunks: int = 1) -> bytes:
    info = PngImagePlugin.PngInfo()
    for i in range(chunks):
        info.add_text(f"comment{i}", "a" * size, zip=zipped)
    return encode(gradient(), "PNG", pnginfo=info)


def frames(count: int, size: tuple[int, int] = (96, 96)) -> list[Image.Image]:
    return [Image.new("RGB", size, (40 * i, 255 - 40 * i, 90)) for i in range(count)]


def animated(fmt: str) -> bytes:
    first, *rest = frames(3)
    return encode(first, fmt, save_all=True, append_images=rest, duration=100, loop=0)


def exif_rotated_jpeg() -> bytes:
    """Stored 120x80; EXIF orientation 6 says: turn 90° clockwise to view, so it shows 80x120."""
    exif = Image.Exif()
    exif[0x0112] = 6
    return encode(gradient(120, 80), "JPEG", quality=95, exif=exif)


def palette_with_transparency() -> bytes:
    image = Image.new("P", (96, 96), 0)
    image.putpalette([0, 0, 0, 200, 30, 30] + [0] * (254 * 3))
    image.paste(1, (48, 0, 96, 96))  # right half red, left half transparent
    return encode(image, "PNG", transparency=0)


def gray_16bit() -> bytes:
    level = np.tile(np.linspace(0, 65535, 96).astype(np.uint16), (96, 1))
    return encode(Image.fromarray(level), "PNG")  # mode I;16


def half_transparent(mode: str) -> bytes:
    image = gradient(96, 96, "RGBA")
    alpha = Image.new("L", (96, 96), 255)
    alpha.paste(0, (0, 0, 48, 96))  # left half fully transparent
    image.putalpha(alpha)
    return encode(image.convert(mode), "PNG")


def heic_header() -> bytes:
    """The start of an iPhone HEIC file: an ftyp box with the heic brand, then a meta box."""
    ftyp = b"ftypheic" + b"\0\0\0\0" + b"mif1heic"
    return struct.pack(">I", len(ftyp) + 4) + ftyp + struct.pack(">I", 16) + b"meta" + b"\0" * 8 + b"\0" * 200


SVG = b'<?xml version="1.0"?>\n<svg xmlns="http://www.w3.org/2000/svg" width="96" height="96"><rect/></svg>'
HTML = b"<!DOCTYPE html><html><head><title>404 Not Found</title></head><body>nope</body></html>"

IMAGE_CASES: list[ImageCase] = [
    # Accepted: every format the policy reads, and every colour layout it normalises.
    ImageCase("png", png, None, (96, 96)),
    ImageCase("jpeg", lambda: encode(gradient(), "JPEG"), None, (96, 96), "photo.jpg"),
    ImageCase("webp", lambda: encode(gradient(), "WEBP"), None, (96, 96), "photo.webp"),
    ImageCase("bmp", lambda: encode(gradient(), "BMP"), None, (96, 96), "picture.bmp"),
    ImageCase("tiff", lambda: encode(gradient(), "TIFF"), None, (96, 96), "scan.tiff"),
    ImageCase("still_gif", lambda: encode(gradient().convert("P"), "GIF"), None, (96, 96), "still.gif"),
    ImageCase("cmyk_jpeg", lambda: encode(gradient(96, 96, "CMYK"), "JPEG"), None, (96, 96), "print.jpg"),
    ImageCase("palette_transparent_png", palette_with_transparency, None, (96, 96)),
    ImageCase("gray_16bit_png", gray_16bit, None, (96, 96)),
    ImageCase("la_png", lambda: half_transparent("LA"), None, (96, 96)),
    ImageCase("rgba_png", lambda: half_transparent("RGBA"), None, (96, 96)),
    ImageCase("exif_rotated_jpeg", exif_rotated_jpeg, None, (80, 120), "phone.jpg"),
    ImageCase("heic_named_jpeg", lambda: encode(gradient(), "JPEG"), None, (96, 96), "IMG_0001.HEIC"),
    ImageCase("exactly_4_to_1", lambda: png(256, 64), None, (256, 64)),
    ImageCase("smallest_side", lambda: png(64, 64), None, (64, 64)),
    # Refused before decoding anything.
    ImageCase("zero_bytes", lambda: b"", "empty", words="empty"),
    ImageCase("over_byte_limit", lambda: png() + b"\0" * (21 * 1024 * 1024), "bytes", words="the limit is 20 MB"),
    ImageCase("html_named_png", lambda: HTML, "unreadable", words="couldn't read"),
    ImageCase("text_named_png", lambda: b"not an image", "unreadable", words="couldn't read"),
    ImageCase("ppm_named_png", lambda: encode(gradient(), "PPM"), "unreadable", words="couldn't read"),
    ImageCase("svg", lambda: SVG, "svg", filename="drawing.svg", words="SVG"),
    ImageCase("svg_named_png", lambda: SVG.split(b"\n", 1)[1], "svg", words="SVG"),
    ImageCase("heic", heic_header, "heic", filename="IMG_0002.HEIC", words="HEIC"),
    # Refused from the header.
    ImageCase("animated_gif", lambda: animated("GIF"), "animated", filename="funny.gif", words="still picture"),
    ImageCase("animated_webp", lambda: animated("WEBP"), "animated", filename="funny.webp", words="still picture"),
    ImageCase("animated_png", lambda: animated("PNG"), "animated", words="still picture"),
    ImageCase("multipage_tiff", lambda: animated("TIFF"), "pages", filename="scan.tiff", words="3 pages"),
    ImageCase("png_1x1", lambda: png(1, 1), "small", words="only 1×1"),
    ImageCase("png_63x200", lambda: png(63, 200), "small", words="at least 64 pixels"),
    ImageCase("png_4000x16", lambda: png(4000, 16), "small", words="only 4000×16"),
    ImageCase("png_5_to_1", lambda: png(500, 100), "aspect", words="4 times the other"),
    ImageCase("png_1_to_5", lambda: png(100, 500), "aspect", words="4 times the other"),
    ImageCase("png_60_megapixels", lambda: png_header_only(10000, 6000), "pixels", words="10000×6000"),
    ImageCase("png_100_megapixels", lambda: png_header_only(10000, 10000), "pixels", words="50 megapixels"),
    ImageCase("png_huge_ztxt", lambda: png_with_text(zipped=True, size=20 * 1024 * 1024), "text", words="text"),
    ImageCase("png_many_text_chunks", lambda: png_with_text(zipped=False, size=300_000, chunks=5), "text"),
    # Refused while decoding.
    ImageCase("truncated_png", lambda: half(png(200, 200)), "corrupt", words="damaged or cut off"),
    ImageCase("truncated_png_header", lambda: png()[:20], "corrupt", words="damaged or cut off"),
    ImageCase("truncated_jpeg", lambda: half(encode(gradient(200, 200), "JPEG")), "corrupt", filename="photo.jpg"),
    ImageCase("png_garbage_pixels", lambda: png_header_only(640, 480, bytes(range(256)) * 4), "corrupt"),
]

CASES_BY_NAME = {case.name: case for case in IMAGE_CASES}
