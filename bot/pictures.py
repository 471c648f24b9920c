"""Whether uploaded bytes can be a start picture, with the reason told to the user when not.

One check for the service (before saving a picture) and the adapters (before opening anything
for it, e.g. a Discord thread), so both refuse the same files with the same words.
"""

from __future__ import annotations

import io

from PIL import Image, ImageOps, UnidentifiedImageError

from shared.config import LimitsConfig

#: Smallest start picture accepted, per side.
MIN_SIDE = 64

_UNREADABLE = "I couldn't read that as a picture. Please send a PNG, JPEG or WebP image."


def picture_problem(data: bytes, limits: LimitsConfig | None = None) -> str | None:
    """Why ``data`` can't be a start picture (too large, not a raster image, too small), or None.

    Decodes the whole image (a truncated file fails here, not in the worker), so call it off the
    event loop for large files."""
    limits = limits or LimitsConfig()
    if not data:
        return "That file is empty. Please send a PNG, JPEG or WebP image."
    if len(data) > limits.image_bytes:
        return (
            f"That file is {len(data) / 1e6:.1f} MB; the limit is {limits.image_bytes / 1e6:.0f} MB. "
            "Please send a smaller picture."
        )
    try:
        with Image.open(io.BytesIO(data)) as img:
            if img.width * img.height > limits.image_pixels:
                return (
                    f"That picture is {img.width}×{img.height}; the limit is "
                    f"{limits.image_pixels / 1e6:.0f} megapixels. Please send a smaller one."
                )
            img.load()
            width, height = ImageOps.exif_transpose(img).size
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError):
        return _UNREADABLE
    if min(width, height) < MIN_SIDE:
        return f"That picture is only {width}×{height}; please send one at least {MIN_SIDE} pixels on each side."
    return None
