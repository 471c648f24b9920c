"""Measuring drift on a take's frames (numpy only): what ``shared.drift.DriftFigures`` holds.

- Picture statistics: Rec. 709 luma of the encoded sRGB values (what a viewer calls brightness),
  its standard deviation (contrast), and the mean HSV saturation, all in [0, 1], from an even
  sample of at most ``STAT_PIXELS`` pixels.
- Motion: per pair of consecutive frames, the global shift by phase correlation (Kuglin & Hines,
  1975) on the luma, with a Hann window and a parabolic sub-pixel peak, and the mean absolute luma
  difference. A shift is what a pan or a walk does to the whole picture, so its change across a
  seam is the jump in speed and direction; the difference energy also sees motion that is not a
  translation. No optical-flow dependency: for a chain's seams the global figure is what matters.
"""

from __future__ import annotations

import numpy as np

from shared.drift import DriftFigures

#: Frame pairs measured at each end of a take: one latent frame's worth (Wan packs 4 frames into
#: one latent), so the figures describe the motion the next take has to continue.
SEAM_PAIRS = 4
STAT_PIXELS = 1 << 18
#: Motion is measured on pictures downscaled (by whole-block means) to at most this side: a
#: global shift needs no detail, and the FFTs stay cheap (milliseconds per pair).
MOTION_SIDE = 320

_LUMA = np.array([0.2126, 0.7152, 0.0722], dtype=np.float32)


def _check(frames: np.ndarray, *, ndim: int) -> None:
    if not isinstance(frames, np.ndarray) or frames.dtype != np.uint8 or frames.ndim != ndim:
        raise ValueError(f"expected a uint8 array with {ndim} dimensions ending in 3 colour channels")
    if frames.shape[-1] != 3:
        raise ValueError(f"expected 3 colour channels, got shape {frames.shape}")


def picture_stats(picture: np.ndarray) -> tuple[float, float, float]:
    """(mean luma, luma standard deviation, mean saturation) of a uint8 (H, W, 3) picture."""
    _check(picture, ndim=3)
    flat = picture.reshape(-1, 3)
    flat = flat[:: max(1, flat.shape[0] // STAT_PIXELS)].astype(np.float32) / 255
    luma = flat @ _LUMA
    high = flat.max(axis=1)
    low = flat.min(axis=1)
    saturation = np.where(high > 0, (high - low) / np.maximum(high, 1e-6), 0.0)
    return float(luma.mean()), float(luma.std()), float(saturation.mean())


def _luma_small(frame: np.ndarray) -> np.ndarray:
    factor = max(1, -(-max(frame.shape[:2]) // MOTION_SIDE))
    luma = frame.astype(np.float32) @ (_LUMA / 255)
    height, width = (luma.shape[0] // factor) * factor, (luma.shape[1] // factor) * factor
    blocks = luma[:height, :width].reshape(height // factor, factor, width // factor, factor)
    small: np.ndarray = blocks.mean(axis=(1, 3))
    return small


def _peak_offset(before: float, at: float, after: float) -> float:
    """Sub-pixel position of a peak from its two neighbours (a parabola through the three)."""
    denominator = before - 2 * at + after
    return 0.0 if abs(denominator) < 1e-12 else float(np.clip(0.5 * (before - after) / denominator, -0.5, 0.5))


def global_shift(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    """(dx, dy) in pixels by which picture ``b`` shows ``a``'s content moved (both uint8 (H, W, 3))."""
    _check(a, ndim=3)
    _check(b, ndim=3)
    if a.shape != b.shape:
        raise ValueError(f"pictures differ in size: {a.shape} and {b.shape}")
    factor = max(1, -(-max(a.shape[:2]) // MOTION_SIDE))
    la, lb = _luma_small(a), _luma_small(b)
    window = np.outer(np.hanning(la.shape[0]), np.hanning(la.shape[1])).astype(np.float32)
    fa = np.fft.rfft2((la - la.mean()) * window)
    fb = np.fft.rfft2((lb - lb.mean()) * window)
    cross = fb * np.conj(fa)
    cross /= np.maximum(np.abs(cross), 1e-9)
    surface = np.fft.irfft2(cross, s=la.shape)
    py, px = np.unravel_index(int(np.argmax(surface)), surface.shape)
    rows, cols = surface.shape
    dy = py + _peak_offset(surface[(py - 1) % rows, px], surface[py, px], surface[(py + 1) % rows, px])
    dx = px + _peak_offset(surface[py, (px - 1) % cols], surface[py, px], surface[py, (px + 1) % cols])
    # The correlation wraps around: past half the side, the shift is negative.
    dy = dy - rows if dy > rows / 2 else dy
    dx = dx - cols if dx > cols / 2 else dx
    return float(dx * factor), float(dy * factor)


def motion(frames: np.ndarray) -> tuple[float, float, float]:
    """Mean (dx, dy) per frame and mean absolute luma difference over consecutive pairs of
    ``frames`` (uint8 (F, H, W, 3)); zeros for a single frame."""
    _check(frames, ndim=4)
    if frames.shape[0] < 2:
        return 0.0, 0.0, 0.0
    shifts = [global_shift(frames[i], frames[i + 1]) for i in range(frames.shape[0] - 1)]
    lumas = [_luma_small(f) for f in frames]
    energy = float(np.mean([np.abs(lumas[i + 1] - lumas[i]).mean() for i in range(len(lumas) - 1)]))
    dx, dy = np.mean(shifts, axis=0)
    return float(dx), float(dy), energy


def measure_drift(
    frames: np.ndarray, reference: np.ndarray | None, *, pairs: int = SEAM_PAIRS, dropped: int = 1
) -> DriftFigures:
    """The drift figures of a take's frames (as written: after colour matching) against the
    session's first picture ``reference`` (uint8 (H, W, 3), already fitted to the frame size), or
    against nothing when it is None.

    ``dropped``: how many of the take's first frames the join drops because they repeat the end
    of the take before (1 under frame continuity: frame 0 re-renders the hand-off frame; more
    where clips overlap). The head is measured from the last dropped frame, the stand-in for the
    predecessor's last one, so its first pair is the seam as the joined video shows it."""
    _check(frames, ndim=4)
    if pairs < 1:
        raise ValueError(f"pairs must be at least 1, got {pairs}")
    if dropped < 1:
        raise ValueError(f"dropped must be at least 1, got {dropped}")
    dropped = min(dropped, frames.shape[0])  # a clip no longer than its overlap has no head motion
    luma, contrast, saturation = picture_stats(frames[-1])
    ref = picture_stats(reference) if reference is not None else (luma, contrast, saturation)
    head = motion(frames[dropped - 1 : dropped + pairs])
    tail = motion(frames[-(pairs + 1) :])
    return DriftFigures(
        luma=luma,
        contrast=contrast,
        saturation=saturation,
        ref_luma=ref[0],
        ref_contrast=ref[1],
        ref_saturation=ref[2],
        head_dx=head[0],
        head_dy=head[1],
        head_energy=head[2],
        tail_dx=tail[0],
        tail_dy=tail[1],
        tail_energy=tail[2],
        has_reference=reference is not None,
    )
