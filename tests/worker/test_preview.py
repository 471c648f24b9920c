"""The preview backend: the Wan backend's promises, without a model."""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from PIL import Image

from worker.backend import Backend
from worker.errors import BadInput, Cancelled
from worker.images import prepare_start_image
from worker.preview import PreviewBackend, camera_path


def textured_image(width: int = 120, height: int = 90) -> Image.Image:
    y, x = np.mgrid[0:height, 0:width]
    rgb = np.stack([x * 255 // width, y * 255 // height, ((x // 8 + y // 8) % 2) * 200], axis=-1)
    return Image.fromarray(rgb.astype(np.uint8), "RGB")


def call(backend: PreviewBackend, **overrides: Any) -> Any:
    args: dict[str, Any] = dict(
        image=textured_image(), prompt="a slow pan", negative_prompt="", width=64, height=48,
        frames=9, steps=4, guidance=3.5, guidance_2=3.5, seed=3,
    )  # fmt: skip
    args.update(overrides)
    return backend.generate(**args)


def recorder(calls: list[int], stop_at: int | None = None) -> Callable[[int, int], bool]:
    """A progress callback that notes each step and asks to stop at ``stop_at``."""

    def on_step(step: int, total: int) -> bool:
        calls.append(step)
        return step == stop_at

    return on_step


def test_it_is_a_backend_marked_as_preview() -> None:
    backend: Backend = PreviewBackend()
    assert (backend.name, backend.preview) == ("preview", True)


@pytest.mark.parametrize(("width", "height", "frames"), [(64, 48, 5), (48, 64, 9), (96, 96, 33)])
def test_shape_and_frame_zero_is_the_prepared_start_image(width: int, height: int, frames: int) -> None:
    image = textured_image()
    result = call(PreviewBackend(), image=image, width=width, height=height, frames=frames)
    assert result.frames.shape == (frames, height, width, 3)
    assert result.frames.dtype == np.uint8
    assert np.array_equal(result.frames[0], np.asarray(prepare_start_image(image, width, height)))
    assert not np.array_equal(result.frames[-1], result.frames[0])  # it moves


def test_a_chain_continues_from_the_hand_off_frame() -> None:
    backend = PreviewBackend()
    first = call(backend, seed=1)
    second = call(backend, image=Image.fromarray(first.frames[-1]), seed=2)
    assert np.array_equal(second.frames[0], first.frames[-1])


def test_the_same_seed_gives_the_same_frames() -> None:
    backend = PreviewBackend()
    a, b = call(backend, seed=42), call(backend, seed=42)
    assert a.seed == b.seed == 42
    assert np.array_equal(a.frames, b.frames)
    assert not np.array_equal(a.frames, call(backend, seed=43).frames)


def test_a_missing_seed_is_drawn_and_reported() -> None:
    backend = PreviewBackend()
    result = call(backend, seed=None)
    assert isinstance(result.seed, int) and 0 <= result.seed < 2**63
    assert np.array_equal(result.frames, call(backend, seed=result.seed).frames)


def test_progress_is_reported_once_per_step() -> None:
    calls: list[tuple[int, int]] = []

    def on_step(step: int, total: int) -> bool:
        calls.append((step, total))
        return False

    call(PreviewBackend(), steps=6, on_step=on_step)
    assert calls == [(s, 6) for s in range(1, 7)]


def test_more_steps_than_frames_still_reports_every_step() -> None:
    calls: list[int] = []
    call(PreviewBackend(), frames=5, steps=10, on_step=recorder(calls))
    assert calls == list(range(1, 11))


def test_cancel_stops_at_the_step_that_asked() -> None:
    calls: list[int] = []
    with pytest.raises(Cancelled, match="step 2 of 5"):
        call(PreviewBackend(), steps=5, on_step=recorder(calls, stop_at=2))
    assert calls == [1, 2]


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"prompt": "  "}, "prompt"),
        ({"frames": 10}, "frames"),
        ({"width": 50}, "width"),
        ({"steps": 0}, "steps"),
        ({"seed": -1}, "seed"),
        ({"image": "not an image"}, "image"),
    ],
)
def test_bad_input_is_refused_before_any_work(overrides: dict[str, Any], message: str) -> None:
    calls: list[int] = []
    with pytest.raises(BadInput, match=message):
        call(PreviewBackend(), on_step=recorder(calls), **overrides)
    assert calls == []


def test_frames_users_see_carry_a_preview_badge_but_the_ends_stay_clean() -> None:
    white = Image.new("RGB", (160, 160), (255, 255, 255))
    frames = call(PreviewBackend(), image=white, width=160, height=160, frames=9).frames
    # Zooming into white gives white: any dark pixel is the badge.
    assert (frames[0] == 255).all() and (frames[-1] == 255).all()
    for frame in frames[1:-1]:
        dark = frame.min(axis=-1) < 128
        assert dark.any()
        rows, cols = np.nonzero(dark)
        assert rows.max() < 40 and cols.min() > 80  # top-right corner


def test_camera_path_stays_inside_the_image() -> None:
    for seed in range(50):
        boxes = camera_path(640, 480, 81, seed)
        assert boxes[0] == (0.0, 0.0, 640.0, 480.0)
        for left, top, right, bottom in boxes:
            assert left >= -1e-9 and top >= -1e-9 and right <= 640 + 1e-9 and bottom <= 480 + 1e-9
        widths = [right - left for left, _, right, _ in boxes]
        assert widths == sorted(widths, reverse=True)  # always zooming in


def test_a_step_delay_paces_the_steps() -> None:
    start = time.perf_counter()
    call(PreviewBackend(step_delay=0.05), steps=4)
    assert time.perf_counter() - start >= 0.2


def test_an_end_keyframe_is_cross_faded_into_and_is_the_last_frame() -> None:
    end_picture = Image.new("RGB", (80, 60), (250, 20, 20))
    plain = call(PreviewBackend()).frames
    aimed = call(PreviewBackend(), end_image=end_picture).frames
    end = np.asarray(prepare_start_image(end_picture, 64, 48)).astype(int)
    assert np.array_equal(aimed[0], plain[0])  # frame 0 is still the start image
    assert np.array_equal(aimed[-1], end)  # the hand-off frame is the keyframe itself
    # Each frame comes closer to the keyframe than the one before it.
    distances = [np.abs(frame.astype(int) - end).mean() for frame in aimed]
    assert all(a > b for a, b in itertools.pairwise(distances))
    assert not np.array_equal(plain[-1], aimed[-1])


def test_a_bad_end_image_is_refused() -> None:
    with pytest.raises(BadInput, match="end_image"):
        call(PreviewBackend(), end_image="picture.png")
