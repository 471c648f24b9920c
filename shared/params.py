"""Generation parameters shared by the bot and the worker: the reference numbers and their checks.

The reference is the ComfyUI workflow framechain replaces (design.md): Wan2.2 I2V A14B,
640x640, 81 frames at 16 fps, 20 steps, shift 8, CFG 3.5 for both experts, boundary 0.9.
"""

from __future__ import annotations

import math
from typing import Literal

#: The standard Wan negative prompt, kept the same across all segments.
WAN_NEGATIVE_PROMPT = (
    "色调艳丽，过曝，静态，细节模糊不清，字幕，风格，作品，画作，画面，静止，整体发灰，最差质量，"
    "低质量，JPEG压缩残留，丑陋的，残缺的，多余的手指，画得不好的手部，画得不好的脸部，畸形的，"
    "毁容的，形态畸形的肢体，手指融合，静止不动的画面，杂乱的背景，三条腿，背景人很多，倒着走"
)

DEFAULT_MODEL = "Wan-AI/Wan2.2-I2V-A14B-Diffusers"
DEFAULT_WIDTH = 640
DEFAULT_HEIGHT = 640
DEFAULT_FRAMES = 81
DEFAULT_FPS = 16
DEFAULT_STEPS = 20
DEFAULT_GUIDANCE = 3.5
DEFAULT_SHIFT = 8.0
DEFAULT_BOUNDARY_RATIO = 0.9

#: Wan's VAE compresses time by 4, so clips are 4k+1 frames; at 16 fps these are 2-5 s.
SECONDS_TO_FRAMES = {2: 33, 3: 49, 4: 65, 5: 81}

#: Sides must divide by the VAE's spatial factor (8) times the transformer's patch size (2).
SIDE_MULTIPLE = 16


class ParameterError(ValueError):
    """A generation parameter is out of range; the message names it and says what is allowed."""


def check_frames(frames: int) -> int:
    if not isinstance(frames, int) or isinstance(frames, bool) or frames < 5 or (frames - 1) % 4:
        raise ParameterError(f"frames must be 4k+1 and at least 5 (33, 49, 65, 81, ...), got {frames!r}")
    return frames


def check_side(name: str, value: int) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < SIDE_MULTIPLE or value % SIDE_MULTIPLE:
        raise ParameterError(f"{name} must be a positive multiple of {SIDE_MULTIPLE}, got {value!r}")
    return value


def frames_for_seconds(seconds: int) -> int:
    try:
        return SECONDS_TO_FRAMES[seconds]
    except KeyError:
        raise ParameterError(f"segment length must be 2, 3, 4 or 5 seconds, got {seconds!r}") from None


def seconds_for_frames(frames: int, fps: int = DEFAULT_FPS) -> float:
    """Duration of a clip of ``frames`` frames at ``fps``."""
    return frames / fps


def fit_size(image_width: int, image_height: int, pixel_budget: int, multiple: int = SIDE_MULTIPLE) -> tuple[int, int]:
    """The largest (width, height) with the image's aspect ratio, sides multiples of ``multiple``,
    whose area does not exceed ``pixel_budget``.

    A square image under the reference budget of 640*640 gives exactly 640x640.
    """
    if image_width <= 0 or image_height <= 0:
        raise ParameterError(f"image size must be positive, got {image_width}x{image_height}")
    if pixel_budget < multiple * multiple:
        raise ParameterError(f"pixel budget must be at least {multiple * multiple}, got {pixel_budget}")
    aspect = image_width / image_height
    # Ideal real-valued size with the exact aspect ratio and area == budget, then round each side
    # down to the multiple; rounding down keeps us within budget.
    ideal_h = math.sqrt(pixel_budget / aspect)
    ideal_w = ideal_h * aspect
    width = max(multiple, int(ideal_w // multiple) * multiple)
    height = max(multiple, int(ideal_h // multiple) * multiple)
    # Rounding both down can leave room to grow one side by a step while staying in budget and
    # nearer the true aspect ratio; take that step when it helps.
    best = (width, height)
    best_err = abs(math.log((width / height) / aspect))
    for w, h in ((width + multiple, height), (width, height + multiple)):
        if w * h <= pixel_budget:
            err = abs(math.log((w / h) / aspect))
            if err < best_err:
                best, best_err = (w, h), err
    return best


def segment_size(
    image_width: int,
    image_height: int,
    width: int,
    height: int,
    size_mode: Literal["fit", "fixed"] = "fit",
) -> tuple[int, int]:
    """The size segments are made at from a start picture, given the configured ``width`` x
    ``height``: "fit" keeps the picture's aspect ratio within width*height pixels (see
    :func:`fit_size`); "fixed" is exactly width x height (the worker scales and centre-crops the
    picture to it). The one rule for the chat and ``framechain render``."""
    if size_mode == "fixed":
        if image_width <= 0 or image_height <= 0:
            raise ParameterError(f"image size must be positive, got {image_width}x{image_height}")
        return check_side("width", width), check_side("height", height)
    if size_mode != "fit":
        raise ParameterError(f"size_mode must be 'fit' or 'fixed', got {size_mode!r}")
    return fit_size(image_width, image_height, width * height)


def live_preview_every_steps(steps: int, share: float) -> int:
    """Steps between live previews for a ``share`` of the steps (0.25: about every quarter);
    0 when previews are off."""
    if share <= 0:
        return 0
    return max(1, round(steps * share))


def overlap_frames(continuity: str, motion_latents: int = 1, temporal: int = 4) -> int:
    """Frames a segment after the first drops at its head when joined.

    ``frame``: 1, the re-render of the hand-off frame. ``svi``: 4 per motion latent: the clip's
    first frames re-render the anchor and the previous clip's last latent (the published SVI 2.0
    Pro recipe appends ``video_frames[num_overlap_frame:]`` with ``num_overlap_frame = 4`` for its
    one motion latent, inference_svi_2.0_pro.py in vita-epfl/Stable-Video-Infinity)."""
    return temporal * motion_latents if continuity == "svi" else 1
