"""Colour-drift control: Lab conversions and mean/spread transfer toward a reference."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from worker.color import lab_stats, lab_to_rgb, match_colors, rgb_to_lab


def reference_image(height: int = 48, width: int = 64) -> np.ndarray:
    """A colourful scene: sky-to-ground gradient, a sun, some texture."""
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    image = np.empty((height, width, 3), np.float32)
    image[..., 0] = 60 + 150 * y / height
    image[..., 1] = 90 + 80 * np.sin(x / 9)
    image[..., 2] = 200 - 120 * y / height
    sun = (x - width * 0.7) ** 2 + (y - height * 0.3) ** 2 < (height / 6) ** 2
    image[sun] = (250, 230, 150)
    image += np.random.default_rng(0).normal(0, 6, image.shape)
    result: np.ndarray = np.clip(image, 0, 255).astype(np.uint8)
    return result


def drifted_clip(reference: np.ndarray, frames: int = 9) -> np.ndarray:
    """The reference, moving, with a growing warm cast and lost contrast: what chains drift into."""
    clip = []
    for i in range(frames):
        frame = np.roll(reference, i, axis=1).astype(np.float32)
        drift = (i + 1) / frames
        mean = frame.mean(axis=(0, 1))
        frame = (frame - mean) * (1 - 0.35 * drift) + mean  # flatter
        frame += np.array([30, 8, -25]) * drift  # warmer
        clip.append(frame)
    result: np.ndarray = np.clip(np.stack(clip), 0, 255).astype(np.uint8)
    return result


def lab_distance(frames: np.ndarray, reference: np.ndarray) -> tuple[float, float]:
    """(distance of the Lab means, distance of the Lab spreads)."""
    mean_a, std_a = lab_stats(frames)
    mean_b, std_b = lab_stats(reference)
    return float(np.linalg.norm(mean_a - mean_b)), float(np.linalg.norm(std_a - std_b))


def test_lab_conversion_matches_known_values() -> None:
    rgb = np.array([[255, 255, 255], [0, 0, 0], [255, 0, 0], [0, 255, 0], [0, 0, 255]], np.uint8)
    expected = np.array(
        [[100, 0, 0], [0, 0, 0], [53.24, 80.09, 67.20], [87.73, -86.18, 83.18], [32.30, 79.19, -107.86]]
    )
    np.testing.assert_allclose(rgb_to_lab(rgb), expected, atol=0.02)


def test_lab_round_trip_is_exact_for_every_byte_colour_sampled() -> None:
    rgb = np.random.default_rng(0).integers(0, 256, (200_000, 3), dtype=np.uint8)
    assert np.array_equal(lab_to_rgb(rgb_to_lab(rgb)), rgb)
    grey = np.repeat(np.arange(256, dtype=np.uint8)[:, None], 3, axis=1)
    assert np.array_equal(lab_to_rgb(rgb_to_lab(grey)), grey)


def test_a_drifted_clip_is_pulled_back_toward_its_reference() -> None:
    reference = reference_image()
    clip = drifted_clip(reference)
    before_mean, before_std = lab_distance(clip, reference)
    assert before_mean > 10 and before_std > 3  # the drift is real

    matched = match_colors(clip, reference)
    after_mean, after_std = lab_distance(matched, reference)
    assert matched.shape == clip.shape and matched.dtype == np.uint8
    assert after_mean < 0.1 * before_mean
    assert after_std < 0.25 * before_std
    # Colours moved, content did not: the frames still differ from each other as before.
    assert not np.array_equal(matched[0], matched[-1])


def test_strength_zero_is_the_identity() -> None:
    reference = reference_image()
    clip = drifted_clip(reference)
    matched = match_colors(clip, reference, strength=0.0)
    assert np.array_equal(matched, clip)
    assert matched is not clip


def test_strength_applies_proportionally() -> None:
    reference = reference_image()
    clip = drifted_clip(reference)
    before, _ = lab_distance(clip, reference)
    distances = [lab_distance(match_colors(clip, reference, s), reference)[0] for s in (0.25, 0.5, 0.75, 1.0)]
    assert distances == sorted(distances, reverse=True)
    for strength, distance in zip((0.25, 0.5, 0.75), distances, strict=False):
        assert distance == pytest.approx((1 - strength) * before, rel=0.15)


def test_reference_can_be_a_pil_image_of_another_size() -> None:
    reference = reference_image(96, 128)
    clip = drifted_clip(reference_image())
    from_array = match_colors(clip, reference)
    from_image = match_colors(clip, Image.fromarray(reference).convert("RGBA"))
    assert np.array_equal(from_array, from_image)


def test_a_flat_clip_is_not_blown_up() -> None:
    flat = np.full((3, 16, 16, 3), 40, np.uint8)
    matched = match_colors(flat, reference_image())
    assert matched.reshape(-1, 3).std(axis=0).max() < 1  # still flat: the spread ratio is capped
    assert matched.mean() > flat.mean()  # but the mean moved toward the brighter reference


def test_lightness_can_be_left_alone() -> None:
    reference = reference_image()
    clip = drifted_clip(reference)
    matched = match_colors(clip, reference, lightness=False)
    clip_mean, clip_std = lab_stats(clip)
    matched_mean, matched_std = lab_stats(matched)
    ref_mean, _ = lab_stats(reference)
    # L keeps the clip's own mean and spread (a darkening scene stays dark) ...
    assert abs(matched_mean[0] - clip_mean[0]) < 1 and abs(matched_std[0] - clip_std[0]) < 1
    # ... while the colour cast in a and b is taken out.
    cast_before = np.linalg.norm(clip_mean[1:] - ref_mean[1:])
    assert np.linalg.norm(matched_mean[1:] - ref_mean[1:]) < 0.1 * cast_before


@pytest.mark.parametrize("strength", [-0.1, 1.5])
def test_strength_out_of_range_is_refused(strength: float) -> None:
    with pytest.raises(ValueError, match="strength"):
        match_colors(np.zeros((1, 4, 4, 3), np.uint8), np.zeros((4, 4, 3), np.uint8), strength)


def test_bad_frames_are_refused() -> None:
    with pytest.raises(ValueError, match="uint8"):
        match_colors(np.zeros((1, 4, 4, 3), np.float32), np.zeros((4, 4, 3), np.uint8))
    with pytest.raises(ValueError, match="reference"):
        match_colors(np.zeros((1, 4, 4, 3), np.uint8), np.zeros((4, 4), np.uint8))
