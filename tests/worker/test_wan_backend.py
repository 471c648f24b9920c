"""The wan backend end to end on a tiny real Wan2.2 I2V pipeline, loaded through the real loader."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

from shared.params import WAN_NEGATIVE_PROMPT, fit_size
from worker.backend import Backend
from worker.errors import BadInput, Cancelled, GenerationError, OutOfMemory
from worker.wan.backend import WanBackend
from worker.wan.options import WanOptions


def start_image(width: int = 40, height: int = 30, seed: int = 0) -> Image.Image:
    pixels = np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)
    return Image.fromarray(pixels)


def run(backend: WanBackend, **overrides: Any) -> Any:
    kwargs: dict[str, Any] = {
        "image": start_image(),
        "prompt": "a cat walks",
        "negative_prompt": WAN_NEGATIVE_PROMPT,
        "width": 32,
        "height": 32,
        "frames": 5,
        "steps": 4,
        "guidance": 3.5,
        "guidance_2": 3.5,
        "seed": 7,
    }
    kwargs.update(overrides)
    return backend.generate(**kwargs)


@pytest.fixture(scope="module")
def backend(tiny_wan_dir: Path) -> WanBackend:
    return WanBackend(WanOptions(model=str(tiny_wan_dir)))


def test_is_a_backend_and_describes_itself(backend: WanBackend) -> None:
    as_protocol: Backend = backend
    assert (as_protocol.name, as_protocol.preview) == ("wan", False)
    info = backend.describe()
    assert (info["device"], info["dtype"], info["memory_profile"]) == ("cpu", "float32", "cpu")
    assert (info["sampler"], info["shift"], info["boundary_ratio"]) == ("euler", 8.0, 0.9)


def test_generates_uint8_frames_of_the_asked_shape(backend: WanBackend) -> None:
    result = run(backend, width=48, height=32, frames=9)
    assert result.frames.shape == (9, 32, 48, 3)
    assert result.frames.dtype == np.uint8
    assert result.seed == 7
    assert result.frames.std() > 0  # not a blank clip


def test_sides_above_512_work(backend: WanBackend) -> None:
    # rope_max_seq_len must stay at its default for this; lowered values broke sides > 512
    assert run(backend, width=544, height=16, steps=1).frames.shape == (5, 16, 544, 3)


def test_aspect_ratio_fitted_size_generates(backend: WanBackend) -> None:
    image = start_image(64, 48)
    width, height = fit_size(*image.size, pixel_budget=48 * 48)
    assert (width, height) == (48, 32)  # 4:3 within 48*48 pixels, sides multiples of 16
    assert run(backend, image=image, width=width, height=height, steps=1).frames.shape == (5, 32, 48, 3)


@pytest.mark.parametrize(
    ("size", "budget", "expected"),
    [
        ((1024, 1024), 640 * 640, (640, 640)),
        ((1920, 1080), 640 * 640, (848, 480)),
        ((1080, 1920), 640 * 640, (480, 848)),
        ((1024, 768), 640 * 640, (736, 544)),
        ((3000, 1000), 640 * 640, (1104, 368)),
        ((4000, 3000), 832 * 480, (720, 544)),
    ],
)
def test_aspect_ratio_sizing_table(size: tuple[int, int], budget: int, expected: tuple[int, int]) -> None:
    width, height = fit_size(*size, pixel_budget=budget)
    assert (width, height) == expected
    assert width % 16 == 0 and height % 16 == 0 and width * height <= budget


def test_same_seed_same_frames_and_a_drawn_seed_is_reported(backend: WanBackend) -> None:
    first = run(backend, seed=123)
    assert np.array_equal(first.frames, run(backend, seed=123).frames)
    assert not np.array_equal(first.frames, run(backend, seed=124).frames)
    drawn = run(backend, seed=None)
    assert isinstance(drawn.seed, int) and 0 <= drawn.seed < 2**53
    assert np.array_equal(drawn.frames, run(backend, seed=drawn.seed).frames)


@pytest.mark.parametrize("sampler", ["euler", "unipc"])
def test_expert_split_counted_with_forward_hooks(tiny_wan_dir: Path, sampler: str) -> None:
    backend = WanBackend(WanOptions(model=str(tiny_wan_dir), sampler=sampler))  # type: ignore[arg-type]
    calls = {"high": 0, "low": 0}
    order: list[str] = []

    def counter(expert: str) -> Any:
        def hook(module: torch.nn.Module, args: Any, output: Any) -> None:
            calls[expert] += 1
            order.append(expert)

        return hook

    handles = [
        backend.pipe.transformer.register_forward_hook(counter("high")),
        backend.pipe.transformer_2.register_forward_hook(counter("low")),
    ]
    try:
        run(backend, steps=20, guidance=1.0, guidance_2=1.0)  # no CFG: one forward per step
        assert calls == {"high": 10, "low": 10}
        assert order == ["high"] * 10 + ["low"] * 10
        calls.update(high=0, low=0)
        run(backend, steps=20)  # CFG 3.5: a conditional and an unconditional forward per step
        assert calls == {"high": 20, "low": 20}
    finally:
        for handle in handles:
            handle.remove()


def test_progress_sees_every_step(backend: WanBackend) -> None:
    seen: list[tuple[int, int]] = []

    def record(step: int, total: int) -> bool:
        seen.append((step, total))
        return False

    run(backend, steps=6, on_step=record)
    assert seen == [(step, 6) for step in range(1, 7)]


def test_progress_can_stop_generation_and_the_backend_stays_usable(backend: WanBackend) -> None:
    seen: list[int] = []

    def stop_at_3(step: int, total: int) -> bool:
        seen.append(step)
        return step == 3

    with pytest.raises(Cancelled, match="step 3 of 10"):
        run(backend, steps=10, on_step=stop_at_3)
    assert seen == [1, 2, 3]
    assert run(backend).frames.shape == (5, 32, 32, 3)


@pytest.mark.parametrize(
    ("overrides", "named"),
    [
        ({"frames": 80}, "frames"),
        ({"frames": 3}, "frames"),
        ({"width": 650}, "width"),
        ({"height": 0}, "height"),
        ({"prompt": "   "}, "prompt"),
        ({"image": "start.png"}, "image"),
        ({"steps": 0}, "steps"),
        ({"guidance": -1.0}, "guidance"),
        ({"seed": -5}, "seed"),
        ({"negative_prompt": None}, "negative_prompt"),
    ],
)
def test_bad_inputs_raise_clear_errors(backend: WanBackend, overrides: dict[str, Any], named: str) -> None:
    with pytest.raises(BadInput, match=named):
        run(backend, **overrides)


class _FailingPipeline:
    """Stands in for diffusers' pipeline (the outside world) failing the way it can on a GPU."""

    def __init__(self, error: BaseException) -> None:
        self.error = error
        self.freed = 0

    def __call__(self, **kwargs: Any) -> Any:
        raise self.error

    def maybe_free_model_hooks(self) -> None:
        self.freed += 1


@pytest.mark.parametrize(
    ("error", "kind"),
    [
        (torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB"), OutOfMemory),
        (MemoryError(), OutOfMemory),
        (RuntimeError("cuDNN error"), GenerationError),
    ],
)
def test_pipeline_failures_become_error_kinds(tiny_wan_dir: Path, error: BaseException, kind: type) -> None:
    backend = WanBackend(WanOptions(model=str(tiny_wan_dir)))
    backend.pipe = failing = _FailingPipeline(error)
    with pytest.raises(kind) as caught:
        run(backend)
    assert type(caught.value) is kind
    assert failing.freed == 1  # offload hooks released for the next job


def test_attention_backend_option(tiny_wan_dir: Path) -> None:
    backend = WanBackend(WanOptions(model=str(tiny_wan_dir), attention_backend="native"))
    assert run(backend, steps=1).frames.shape == (5, 32, 32, 3)
    with pytest.raises(ValueError, match="bogus"):
        WanBackend(WanOptions(model=str(tiny_wan_dir), attention_backend="bogus"))


def test_missing_model_folder_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="does not exist"):
        WanBackend(WanOptions(model=str(tmp_path / "nowhere" / "wan")))
