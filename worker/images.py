"""Start-image preparation: honour EXIF orientation, then resize and centre-crop to the exact size."""

from __future__ import annotations

from PIL import Image, ImageOps


def prepare_start_image(image: Image.Image, width: int, height: int) -> Image.Image:
    """Return an RGB image of exactly ``width`` x ``height``.

    The image is rotated per its EXIF orientation, scaled so it covers the target, and cropped
    around its centre. Deterministic: the same input always gives the same pixels.
    """
    image = ImageOps.exif_transpose(image)
    if image.mode != "RGB":
        image = image.convert("RGB")
    if image.size == (width, height):
        return image
    return ImageOps.fit(image, (width, height), method=Image.Resampling.LANCZOS, centering=(0.5, 0.5))
