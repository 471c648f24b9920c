"""Draw examples/start.png: a sunset over layered hills and a lake, procedurally, deterministic.

python examples/make_start_image.py
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageFilter

WIDTH, HEIGHT = 640, 480
HORIZON = 300


def ridge(x: np.ndarray, rng: np.random.Generator, base: float, amplitude: float) -> np.ndarray:
    """A hill line: a few sines of falling wavelength, summed."""
    y = np.full_like(x, base)
    for octave in range(5):
        freq = (octave + 1) ** 1.6 / WIDTH * 2 * np.pi
        y += amplitude / (octave + 1) ** 1.3 * np.sin(x * freq * rng.uniform(0.8, 1.3) + rng.uniform(0, 6.3))
    return y


def draw() -> Image.Image:
    rng = np.random.default_rng(2024)
    ys, xs = np.mgrid[0:HEIGHT, 0:WIDTH].astype(np.float32)

    # Sky: deep blue at the top to a warm orange at the horizon.
    t = np.clip(ys / HORIZON, 0, 1)[..., None]
    top, mid, low = np.array([28, 40, 96]), np.array([150, 90, 140]), np.array([255, 170, 90])
    sky = np.where(t < 0.6, top + (mid - top) * (t / 0.6), mid + (low - mid) * ((t - 0.6) / 0.4))

    # Sun with a soft glow, low over the hills.
    sun_x, sun_y, radius = WIDTH * 0.62, HORIZON - 70, 34
    dist = np.hypot(xs - sun_x, ys - sun_y)[..., None]
    glow = np.exp(-((dist / 150) ** 2)) * 0.55
    sky = sky * (1 - glow) + np.array([255, 225, 160]) * glow
    sky = np.where(dist < radius, np.array([255, 244, 214]), sky)
    image = sky

    # Three ranges of hills, lighter (hazier) the further away.
    x = np.arange(WIDTH, dtype=np.float32)
    for base, amp, colour in (
        (HORIZON - 60, 28, (120, 80, 120)),
        (HORIZON - 30, 22, (78, 52, 92)),
        (HORIZON - 5, 14, (40, 30, 58)),
    ):
        line = ridge(x, rng, base, amp)[None, :, None]
        image = np.where(ys[..., None] > line, np.array(colour), image)

    # Lake: the scene above the waterline, mirrored, darkened and rippled.
    water_top = HORIZON + 10
    depth = HEIGHT - water_top
    rows = water_top - 1 - np.arange(depth)
    ripple = (np.sin(np.arange(depth) * 0.45) * np.linspace(1, 4, depth)).astype(int)
    mirror = image[np.clip(rows, 0, water_top - 1)]
    mirror = np.stack([np.roll(mirror[i], ripple[i], axis=0) for i in range(depth)])
    fade = np.linspace(0.75, 0.45, depth)[:, None, None]
    image[water_top:] = mirror * fade + np.array([20, 30, 60]) * (1 - fade)

    picture = Image.fromarray(np.clip(image, 0, 255).astype(np.uint8), "RGB")
    return picture.filter(ImageFilter.GaussianBlur(0.6))


if __name__ == "__main__":
    out = Path(__file__).with_name("start.png")
    draw().save(out, optimize=True)
    print(f"wrote {out} ({out.stat().st_size // 1024} KB)")
