"""The preview backend: a slow zoom and pan over the start image, no model and no GPU.

It lets the whole flow (chat, worker, segment files, joining) be tried on any machine. It keeps
the promises the Wan backend keeps: exactly ``frames`` frames at the prepared size, frame 0 equal
to the prepared start image (Wan re-renders it, and joining drops it), the same seed giving the
same frames, progress over ``steps`` and cancellation between them. Given an end keyframe, the
clip cross-fades into it, so its last frame (the next hand-off) is the keyframe.

The frames users see carry a small "PREVIEW" badge. Frame 0 and the last frame stay clean: the
last is the next segment's start image, and a badge baked into it would drift about inside the
next segment's zoom, then pile up over a chain.
"""

from __future__ import annotations

import functools
import math
import secrets
import time

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from worker.backend import PreviewCallback, SegmentFrames, StepCallback, WaitCallback, check_inputs
from worker.errors import Cancelled
from worker.images import prepare_start_image
from worker.live_preview import pick_frames

#: Zoom reached over an 81-frame (5 s) clip, drawn per seed; shorter clips zoom proportionally
#: less, so the speed is the same whatever the length and chained segments flow into each other.
ZOOM_PER_81_FRAMES = (0.08, 0.16)
#: Share of the room the zoom leaves at the end that the pan may use.
PAN_SHARE = (0.3, 0.9)


class PreviewBackend:
    name = "preview"
    preview = True

    def __init__(self, *, step_delay: float = 0.0) -> None:
        #: Seconds to wait per pseudo-step, to stand in for a real model's pace (tests of
        #: cancellation and progress reporting use it).
        self.step_delay = step_delay

    def generate(
        self,
        *,
        image: Image.Image,
        prompt: str,
        negative_prompt: str,
        width: int,
        height: int,
        frames: int,
        steps: int,
        guidance: float,
        guidance_2: float,
        seed: int | None,
        on_step: StepCallback | None = None,
        on_wait: WaitCallback | None = None,  # never called: its jobs wait on no one else's queue
        end_image: Image.Image | None = None,
        on_preview: PreviewCallback | None = None,
    ) -> SegmentFrames:
        # 1. Check inputs, as every backend does, before any work.
        check_inputs(
            image=image, prompt=prompt, width=width, height=height, frames=frames,
            steps=steps, guidance=guidance, guidance_2=guidance_2, seed=seed, end_image=end_image,
        )  # fmt: skip
        if seed is None:
            seed = secrets.randbelow(2**31)

        # 2. Prepare the start image (and an end keyframe) and draw this seed's motion.
        start = prepare_start_image(image, width, height)
        end = None if end_image is None else np.asarray(prepare_start_image(end_image, width, height), dtype=np.float32)
        boxes = camera_path(width, height, frames, seed)
        out = np.empty((frames, height, width, 3), dtype=np.uint8)
        out[0] = np.asarray(start)

        # 3. Render frames 1.. in ``steps`` chunks, so progress and cancellation are real.
        chunks = np.array_split(np.arange(1, frames), steps)
        rendered = 1
        for step, chunk in enumerate(chunks, start=1):
            for index in chunk:
                frame = start.resize((width, height), Image.Resampling.BILINEAR, box=boxes[index])
                out[index] = np.asarray(frame) if end is None else cross_fade(np.asarray(frame), end, index, frames)
                rendered = int(index) + 1
            if on_preview is not None and on_preview.wants(step, steps):
                # What is rendered so far, so the flow can be watched without a model.
                on_preview(step, steps, functools.partial(np.copy, out[pick_frames(rendered)]))
            if self.step_delay:
                time.sleep(self.step_delay)
            if on_step is not None and on_step(step, steps):
                raise Cancelled(f"cancelled at step {step} of {steps}")

        # 4. Mark what users see as a preview; frame 0 and the hand-off frame stay clean.
        stamp_preview_badge(out[1:-1])
        return SegmentFrames(frames=out, seed=seed)


def cross_fade(frame: np.ndarray, end: np.ndarray, index: int, frames: int) -> np.ndarray:
    """Frame ``index`` blended towards the end keyframe, smoothly (smoothstep in time), so the
    last frame is the keyframe itself: what Wan's first-last-frame mode aims at, made visible."""
    t = index / max(frames - 1, 1)
    weight = t * t * (3 - 2 * t)
    blended = frame.astype(np.float32) * (1 - weight) + end * weight
    return np.clip(blended + 0.5, 0, 255).astype(np.uint8)


def camera_path(width: int, height: int, frames: int, seed: int) -> list[tuple[float, float, float, float]]:
    """The crop box (left, top, right, bottom) of each frame; frame 0 is the whole image.

    The zoom grows geometrically (a steady apparent speed) and the centre moves in a straight
    line. The room left around a box, (1 - 1/zoom) / 2 of a side, grows faster than the pan
    early on (it is concave in time), so every box stays inside the image.
    """
    rng = np.random.default_rng(seed)
    last = max(frames - 1, 1)
    zoom_end = 1.0 + rng.uniform(*ZOOM_PER_81_FRAMES) * last / 80
    angle = rng.uniform(0, 2 * np.pi)
    share = rng.uniform(*PAN_SHARE)
    room_x = width * (1 - 1 / zoom_end) / 2
    room_y = height * (1 - 1 / zoom_end) / 2
    pan_x, pan_y = share * room_x * np.cos(angle), share * room_y * np.sin(angle)
    boxes = []
    for index in range(frames):
        t = index / last
        zoom = zoom_end**t
        cx, cy = width / 2 + t * pan_x, height / 2 + t * pan_y
        half_w, half_h = width / zoom / 2, height / zoom / 2
        boxes.append((cx - half_w, cy - half_h, cx + half_w, cy + half_h))
    return boxes


@functools.cache
def _badge(side: int) -> tuple[np.ndarray, np.ndarray] | None:
    """Colour and alpha of a "PREVIEW" badge sized for frames whose short side is ``side``."""
    size = max(8, side // 28)
    font = ImageFont.load_default(size=size)
    left, top, right, bottom = font.getbbox("PREVIEW")
    pad = max(2, size // 3)
    w, h = math.ceil(right - left) + 2 * pad, math.ceil(bottom - top) + 2 * pad
    if w + 4 > side:
        return None  # too small a frame to carry it legibly
    badge = Image.new("RGBA", (w, h), (0, 0, 0, 0))
    draw = ImageDraw.Draw(badge)
    draw.rounded_rectangle((0, 0, w - 1, h - 1), radius=pad, fill=(0, 0, 0, 140))
    draw.text((pad - left, pad - top), "PREVIEW", font=font, fill=(255, 255, 255, 230))
    rgba = np.asarray(badge, dtype=np.float32) / 255
    return rgba[..., :3] * 255, rgba[..., 3:]


def stamp_preview_badge(frames: np.ndarray) -> None:
    """Blend a small "PREVIEW" badge into the top-right corner of each frame, in place."""
    if frames.shape[0] == 0:
        return
    height, width = frames.shape[1:3]
    badge = _badge(min(width, height))
    if badge is None:
        return
    colour, alpha = badge
    h, w = alpha.shape[:2]
    margin = max(2, min(width, height) // 64)
    y0, x0 = margin, width - margin - w
    region = frames[:, y0 : y0 + h, x0 : x0 + w].astype(np.float32)
    blended = region * (1 - alpha) + colour * alpha
    frames[:, y0 : y0 + h, x0 : x0 + w] = np.clip(blended + 0.5, 0, 255).astype(np.uint8)
