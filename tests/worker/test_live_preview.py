"""Live previews: which steps, the x0 formula against the schedulers and the tiny real Wan
pipeline, the latent->RGB projection, the strip, and the writer thread (failures stay cosmetic)."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

from shared.params import WAN_NEGATIVE_PROMPT
from shared.params import live_preview_every_steps as default_every
from worker.backend import PreviewFrames
from worker.live_preview import PreviewWriter, pick_frames, preview_steps, strip
from worker.preview import PreviewBackend
from worker.wan.backend import WanBackend
from worker.wan.latent_preview import WAN21_RGB_BIAS, clean_from_euler, latent_to_rgb
from worker.wan.options import WanOptions
from worker.wan.schedule import make_scheduler

SIZE = 32
FRAMES = 17  # five latent frames: four of them shown


class Recorder:
    """A PreviewCallback that makes each preview's frames at once and keeps them by step."""

    def __init__(self, steps: set[int]) -> None:
        self.steps = steps
        self.frames: dict[int, np.ndarray] = {}

    def wants(self, step: int, total: int) -> bool:
        return step in self.steps

    def __call__(self, step: int, total: int, frames: PreviewFrames) -> None:
        self.frames[step] = frames()


def picture(seed: int) -> Image.Image:
    return Image.fromarray(np.random.default_rng(seed).integers(0, 256, (30, 40, 3), dtype=np.uint8))


def test_preview_steps_come_every_quarter_and_never_on_the_last() -> None:
    assert default_every(20, 0.25) == 5
    assert preview_steps(20, 5) == {5, 10, 15}
    assert preview_steps(4, 1) == {1, 2, 3}
    assert preview_steps(20, 0) == frozenset() and default_every(20, 0) == 0
    assert pick_frames(21) == [0, 7, 13, 20] and pick_frames(3) == [0, 1, 2]


def test_projection_output_is_valid_uint8_rgb_for_any_latent() -> None:
    latents = torch.randn(16, 3, 5, 6) * 50  # far outside the usual range: clamped, never wrapped
    rgb = latent_to_rgb(latents)
    assert rgb.dtype == torch.uint8 and rgb.shape == (3, 5, 6, 3)
    assert int(rgb.min()) == 0 and int(rgb.max()) == 255
    zero = latent_to_rgb(torch.zeros(16, 1, 1, 1))[0, 0, 0]
    assert [int(v) for v in zero] == [round((b + 1) * 127.5) for b in WAN21_RGB_BIAS]
    with pytest.raises(ValueError):
        latent_to_rgb(torch.zeros(17, 1, 1, 1))


def test_euler_x0_from_two_latents_matches_the_step_prediction() -> None:
    scheduler = make_scheduler("euler", 8.0)
    scheduler.set_timesteps(6)
    x = torch.randn(1, 16, 2, 4, 4)
    velocity = torch.randn_like(x)
    for index in range(3):
        t = scheduler.timesteps[index]
        sigma, sigma_next = float(scheduler.sigmas[index]), float(scheduler.sigmas[index + 1])
        x_next = scheduler.step(velocity, t, x, return_dict=False)[0]
        expected = x - sigma * velocity  # flow matching: the clean sample the velocity points to
        assert torch.allclose(clean_from_euler(x_next, x, sigma, sigma_next), expected, atol=1e-4)
        x = x_next


def test_unipc_keeps_the_same_x0_the_formula_gives() -> None:
    scheduler = make_scheduler("unipc", 8.0)
    scheduler.set_timesteps(6)
    x = torch.randn(1, 16, 2, 4, 4)
    velocity = torch.randn_like(x)
    sigma = float(scheduler.sigmas[0])
    scheduler.step(velocity, scheduler.timesteps[0], x, return_dict=False)
    assert torch.allclose(scheduler.model_outputs[-1], x - sigma * velocity, atol=1e-5)


def test_strip_puts_the_frames_side_by_side() -> None:
    frames = np.zeros((4, 20, 40, 3), dtype=np.uint8)
    frames[1] = 255
    sheet = strip(frames, tile_side=80)
    assert sheet.size == (4 * 80 + 3 * 4, 40)
    assert sheet.getpixel((80 + 4 + 10, 10)) == (255, 255, 255)
    assert sheet.getpixel((10, 10)) == (0, 0, 0)
    with pytest.raises(ValueError):
        strip(np.zeros((0, 2, 2, 3), dtype=np.uint8))


@pytest.fixture(scope="module")
def backend(tiny_wan_dir: Path) -> WanBackend:
    return WanBackend(WanOptions(model=str(tiny_wan_dir)))


def generate(backend: Any, steps: int, on_preview: Any, frames: int = FRAMES) -> np.ndarray:
    result = backend.generate(
        image=picture(0), prompt="a cat walks", negative_prompt=WAN_NEGATIVE_PROMPT, width=SIZE, height=SIZE,
        frames=frames, steps=steps, guidance=1.0, guidance_2=1.0, seed=3, on_preview=on_preview,
    )  # fmt: skip
    out: np.ndarray = result.frames
    return out


def test_tiny_wan_previews_at_the_configured_steps_with_four_frames(backend: WanBackend) -> None:
    recorder = Recorder(set(preview_steps(5, 2)))
    generate(backend, 5, recorder)
    assert sorted(recorder.frames) == [2, 4]
    for frames in recorder.frames.values():
        # Four of the five latent frames, one RGB pixel per latent pixel (the VAE's 8x).
        assert frames.shape == (4, SIZE // 8, SIZE // 8, 3) and frames.dtype == np.uint8
    assert not np.array_equal(recorder.frames[2], recorder.frames[4])  # the picture forms


def test_tiny_wan_previews_after_consecutive_steps(backend: WanBackend) -> None:
    """Every step a preview: each but the first (whose starting latents the callback never sees)."""
    recorder = Recorder(set(preview_steps(4, 1)))
    generate(backend, 4, recorder)
    assert sorted(recorder.frames) == [2, 3]


def test_tiny_wan_preview_is_the_x0_of_the_step(backend: WanBackend) -> None:
    """The preview at step 2 is the projection of x_t - sigma_t * v, with the latents and the
    velocity the transformer actually produced in that step (no CFG: guidance 1)."""
    seen: list[tuple[torch.Tensor, torch.Tensor]] = []

    def hook(module: torch.nn.Module, args: Any, kwargs: dict[str, Any], output: Any) -> None:
        seen.append((kwargs["hidden_states"].detach().clone(), output[0].detach().clone()))

    handles = [
        m.register_forward_hook(hook, with_kwargs=True) for m in (backend.pipe.transformer, backend.pipe.transformer_2)
    ]
    try:
        recorder = Recorder({2})
        generate(backend, 4, recorder)
    finally:
        for handle in handles:
            handle.remove()
    hidden, velocity = seen[1]  # the second step's call
    z = velocity.shape[1]
    latents = hidden[:, :z]  # the noisy latents; the condition channels follow
    sigma = float(backend.pipe.scheduler.sigmas[1])
    x0 = (latents.float() - sigma * velocity.float())[0][:, pick_frames(latents.shape[2])]
    expected = latent_to_rgb(x0).numpy()
    assert np.abs(expected.astype(int) - recorder.frames[2].astype(int)).max() <= 1


def test_a_failing_preview_never_fails_the_wan_job(backend: WanBackend) -> None:
    class Broken(Recorder):
        def __call__(self, step: int, total: int, frames: PreviewFrames) -> None:
            raise RuntimeError("preview broke")

    out = generate(backend, 3, Broken({1, 2}), frames=9)
    assert out.shape == (9, SIZE, SIZE, 3)


def test_preview_backend_previews_show_motion() -> None:
    recorder = Recorder({2, 4})
    PreviewBackend().generate(
        image=picture(0), prompt="p", negative_prompt="", width=64, height=48, frames=33, steps=6,
        guidance=3.5, guidance_2=3.5, seed=1, on_preview=recorder,
    )  # fmt: skip
    assert sorted(recorder.frames) == [2, 4]
    frames = recorder.frames[4]
    assert frames.shape == (4, 48, 64, 3)
    assert not np.array_equal(frames[0], frames[-1])  # frames of different times, not one frame


def test_writer_writes_atomically_and_reports_off_the_calling_thread(tmp_path: Path) -> None:
    reports: list[tuple[int, Path, str]] = []
    writer = PreviewWriter(
        tmp_path / "preview-seg001-take1.png",
        preview_steps(8, 2),
        lambda step, total, path: reports.append((step, path, threading.current_thread().name)),
    )
    caller = threading.current_thread().name
    for step in (2, 4):
        writer(step, 8, lambda: np.full((4, 8, 8, 3), 100, dtype=np.uint8))
    writer.close()
    assert reports and all(name != caller for _, _, name in reports)
    assert reports[-1][0] == 4
    with Image.open(reports[-1][1]) as image:
        assert image.size == (4 * 160 + 3 * 4, 160)
    assert [p.name for p in tmp_path.iterdir()] == ["preview-seg001-take1.png"]  # no temporary left


def test_writer_survives_failing_frames_and_unwritable_paths(tmp_path: Path) -> None:
    reports: list[int] = []
    blocked = tmp_path / "x.preview.png"
    blocked.mkdir()  # a folder where the file should go: the rename fails

    def broken() -> np.ndarray:
        raise RuntimeError("gpu copy failed")

    writer = PreviewWriter(blocked, frozenset({1, 2}), lambda step, total, path: reports.append(step))
    writer(1, 3, broken)
    writer(2, 3, lambda: np.zeros((2, 4, 4, 3), dtype=np.uint8))
    writer.close()
    assert reports == []
    ok = PreviewWriter(tmp_path / "y.png", frozenset({1}), lambda step, total, path: reports.append(step))
    ok(1, 3, lambda: np.zeros((2, 4, 4, 3), dtype=np.uint8))
    ok.close()
    assert reports == [1]
