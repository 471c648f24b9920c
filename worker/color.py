"""Colour-drift control: pull a segment's colours back toward a reference image.

Long chains drift (each segment starts from the last, and small casts compound), so each new
segment can be matched to a reference: per Lab channel, the clip's mean and spread are moved to
the reference's (Reinhard et al., "Color Transfer between Images", 2001), blended by a strength.
One transform for the whole clip, from the whole clip's statistics, so colours do not flicker
from frame to frame.

sRGB <-> CIE Lab (D65) is done here in float32 numpy, with lookup tables for the two
non-linear curves that cost the most (sRGB decoding from uint8, and encoding back to uint8).
"""

from __future__ import annotations

import numpy as np
from PIL import Image

# sRGB (D65) linear RGB -> XYZ, normalised by the D65 white so that white maps to (1, 1, 1).
_RGB_TO_XYZ = np.array(
    [
        [0.4124564, 0.3575761, 0.1804375],
        [0.2126729, 0.7151522, 0.0721750],
        [0.0193339, 0.1191920, 0.9503041],
    ],
    dtype=np.float64,
)
_WHITE = _RGB_TO_XYZ.sum(axis=1)
_RGB_TO_XYZN = (_RGB_TO_XYZ / _WHITE[:, None]).astype(np.float32)
_XYZN_TO_RGB = np.linalg.inv(_RGB_TO_XYZN.astype(np.float64)).astype(np.float32)

_EPSILON = 216 / 24389  # CIE: where f(t) switches from the cube root to a line
_KAPPA = 24389 / 27
_DELTA = 6 / 29

#: Ratio limits for the spread transfer: a nearly flat clip (a fade to black) must not be
#: stretched into noise, nor a busy one squashed flat.
_MIN_SCALE, _MAX_SCALE = 0.5, 2.0
#: Pixels converted at a time: keeps the float32 temporaries in the CPU cache (2x faster than 1M).
_CHUNK_PIXELS = 1 << 16
#: The clip's statistics come from at most this many pixels, spread evenly over all frames.
_STAT_PIXELS = 1 << 21


def _srgb_decode_lut() -> np.ndarray:
    c = np.arange(256, dtype=np.float64) / 255
    linear = np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)
    return linear.astype(np.float32)


_DECODE = _srgb_decode_lut()
# Linear light quantised to 16 bits -> sRGB uint8. A linear step of 1/65535 moves sRGB by at
# most 0.05 of a level (at black, where the curve is steepest), so this is exact after rounding.
_ENCODE_STEPS = 65535


def _srgb_encode_lut() -> np.ndarray:
    linear = np.arange(_ENCODE_STEPS + 1, dtype=np.float64) / _ENCODE_STEPS
    c = np.where(linear <= 0.0031308, linear * 12.92, 1.055 * linear ** (1 / 2.4) - 0.055)
    encoded: np.ndarray = np.clip(np.rint(c * 255), 0, 255).astype(np.uint8)
    return encoded


_ENCODE = _srgb_encode_lut()


def _mix(m: np.ndarray, planes: np.ndarray) -> np.ndarray:
    """Apply a 3x3 matrix to planar (3, N) data. Three multiply-adds per row: far faster than
    a (N, 3) @ (3, 3) matmul, which numpy hands to BLAS one tiny row at a time."""
    out = np.empty_like(planes)
    for row in range(3):
        np.multiply(planes[0], m[row, 0], out=out[row])
        out[row] += planes[1] * m[row, 1]
        out[row] += planes[2] * m[row, 2]
    return out


def _rgb_to_lab_planar(rgb: np.ndarray) -> np.ndarray:
    """uint8 (N, 3) -> float32 planar Lab (3, N)."""
    xyz = _mix(_RGB_TO_XYZN, np.take(_DECODE, rgb.T))
    f: np.ndarray = np.cbrt(xyz)
    np.copyto(f, (_KAPPA / 116) * xyz + 16 / 116, where=xyz <= _EPSILON)
    lab = np.empty_like(f)
    np.multiply(f[1], 116, out=lab[0])
    lab[0] -= 16
    np.subtract(f[0], f[1], out=lab[1])
    lab[1] *= 500
    np.subtract(f[1], f[2], out=lab[2])
    lab[2] *= 200
    return lab


def _lab_planar_to_rgb(lab: np.ndarray) -> np.ndarray:
    """float32 planar Lab (3, N) -> uint8 (N, 3), out-of-gamut colours clipped."""
    f = np.empty_like(lab)
    np.add(lab[0], 16, out=f[1])
    f[1] /= 116
    np.add(f[1], lab[1] / 500, out=f[0])
    np.subtract(f[1], lab[2] / 200, out=f[2])
    xyz = f * f * f
    np.copyto(xyz, (f - 16 / 116) * (3 * _DELTA * _DELTA), where=f <= _DELTA)
    linear = _mix(_XYZN_TO_RGB, xyz)
    np.clip(linear, 0, 1, out=linear)
    linear *= _ENCODE_STEPS
    linear += 0.5
    return np.take(_ENCODE, linear.astype(np.int32)).T


def rgb_to_lab(rgb: np.ndarray) -> np.ndarray:
    """uint8 sRGB (..., 3) -> float32 Lab (..., 3): L in [0, 100], a and b roughly [-128, 127]."""
    return _rgb_to_lab_planar(rgb.reshape(-1, 3)).T.reshape(rgb.shape)


def lab_to_rgb(lab: np.ndarray) -> np.ndarray:
    """float32 Lab (..., 3) -> uint8 sRGB (..., 3), out-of-gamut colours clipped."""
    planar = np.ascontiguousarray(lab.reshape(-1, 3).T, dtype=np.float32)
    return _lab_planar_to_rgb(planar).reshape(lab.shape)


def lab_stats(rgb: np.ndarray, max_pixels: int = _STAT_PIXELS) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel Lab mean and standard deviation of an image or clip (uint8, (..., 3))."""
    flat = rgb.reshape(-1, 3)
    stride = max(1, flat.shape[0] // max_pixels)
    lab = _rgb_to_lab_planar(flat[::stride]).astype(np.float64)
    return lab.mean(axis=1), lab.std(axis=1)


def match_colors(
    frames: np.ndarray,
    reference: np.ndarray | Image.Image,
    strength: float = 1.0,
    *,
    lightness: bool = True,
) -> np.ndarray:
    """Move the clip's Lab mean and spread, per channel, toward the reference's.

    ``frames`` is uint8 (F, H, W, 3); ``reference`` an RGB image (any size). ``strength`` in
    [0, 1] blends the transfer's parameters: 0 returns the frames unchanged, 1 matches fully,
    0.5 moves each channel's mean and spread half way. With ``lightness=False`` only the colour
    channels (a, b) are matched, so a scene meant to darken (dusk, a fade) is left to do so.
    """
    if not isinstance(frames, np.ndarray) or frames.dtype != np.uint8 or frames.ndim != 4:
        raise ValueError("frames must be a uint8 numpy array of shape (frames, height, width, 3)")
    if frames.shape[-1] != 3:
        raise ValueError(f"frames must have 3 colour channels, got shape {frames.shape}")
    if not 0.0 <= strength <= 1.0:
        raise ValueError(f"strength must be between 0 and 1, got {strength}")
    if isinstance(reference, Image.Image):
        reference = np.asarray(reference.convert("RGB"))
    if not isinstance(reference, np.ndarray) or reference.dtype != np.uint8 or reference.shape[-1:] != (3,):
        raise ValueError("reference must be an RGB image or a uint8 array of shape (height, width, 3)")
    if strength == 0.0:
        return frames.copy()

    clip_mean, clip_std = lab_stats(frames)
    ref_mean, ref_std = lab_stats(reference)
    ratio = np.clip(ref_std / np.maximum(clip_std, 1e-6), _MIN_SCALE, _MAX_SCALE)
    # out = (lab - clip_mean) * scale + clip_mean + shift, with scale and shift at ``strength``
    # of the way from the identity to the full transfer.
    weight = np.array([strength if lightness else 0.0, strength, strength])
    scale = 1.0 + weight * (ratio - 1.0)
    target_mean = clip_mean + weight * (ref_mean - clip_mean)
    offset = target_mean - clip_mean * scale
    scale32, offset32 = scale.astype(np.float32), offset.astype(np.float32)

    out = np.empty_like(frames)
    flat_in = frames.reshape(-1, 3)
    flat_out = out.reshape(-1, 3)
    for start in range(0, flat_in.shape[0], _CHUNK_PIXELS):
        stop = start + _CHUNK_PIXELS
        lab = _rgb_to_lab_planar(flat_in[start:stop])
        lab *= scale32[:, None]
        lab += offset32[:, None]
        flat_out[start:stop] = _lab_planar_to_rgb(lab)
    return out
