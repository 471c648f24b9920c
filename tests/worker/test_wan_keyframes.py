"""End keyframes on the tiny real Wan2.2 I2V pipeline: what the transformer and the VAE receive
when a segment is aimed at a last frame (diffusers' first-last-frame mode, ``last_image``)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

from shared.params import WAN_NEGATIVE_PROMPT
from tests.tiny_wan import Z_DIM
from worker.images import prepare_start_image
from worker.wan.backend import WanBackend
from worker.wan.options import WanOptions

FRAMES = 9  # three latent frames: the first, one in the middle, the last
SIZE = 32


def picture(seed: int, width: int = 40, height: int = 30) -> Image.Image:
    pixels = np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)
    return Image.fromarray(pixels)


@pytest.fixture(scope="module")
def backend(tiny_wan_dir: Path) -> WanBackend:
    return WanBackend(WanOptions(model=str(tiny_wan_dir)))


class Seen:
    """What the pipeline's models receive during one generate call, recorded by forward hooks."""

    def __init__(self) -> None:
        self.transformer_inputs: list[torch.Tensor] = []
        self.encoder_inputs: list[torch.Tensor] = []


@pytest.fixture
def seen(backend: WanBackend) -> Iterator[Seen]:
    record = Seen()

    def transformer_hook(module: torch.nn.Module, args: Any, kwargs: dict[str, Any]) -> None:
        record.transformer_inputs.append(kwargs["hidden_states"].detach().clone())

    def encoder_hook(module: torch.nn.Module, args: Any, kwargs: dict[str, Any]) -> None:
        record.encoder_inputs.append(args[0].detach().clone())

    handles = [
        backend.pipe.transformer.register_forward_pre_hook(transformer_hook, with_kwargs=True),
        backend.pipe.transformer_2.register_forward_pre_hook(transformer_hook, with_kwargs=True),
        backend.pipe.vae.encoder.register_forward_pre_hook(encoder_hook, with_kwargs=True),
    ]
    try:
        yield record
    finally:
        for handle in handles:
            handle.remove()


def run(backend: WanBackend, end_image: Image.Image | None) -> np.ndarray:
    result = backend.generate(
        image=picture(0), prompt="a cat walks", negative_prompt=WAN_NEGATIVE_PROMPT, width=SIZE, height=SIZE,
        frames=FRAMES, steps=2, guidance=1.0, guidance_2=1.0, seed=7, end_image=end_image,
    )  # fmt: skip
    frames: np.ndarray = result.frames
    return frames


def conditioning(seen: Seen) -> tuple[torch.Tensor, torch.Tensor]:
    """The mask and the encoded condition of the first transformer call: its input is
    latents (Z_DIM) + mask (4: the VAE's temporal factor) + condition (Z_DIM) channels."""
    hidden = seen.transformer_inputs[0]
    assert hidden.shape[1] == 2 * Z_DIM + 4
    return hidden[:, Z_DIM : Z_DIM + 4], hidden[:, Z_DIM + 4 :]


def test_the_mask_marks_the_last_latent_frame_only_with_an_end_image(backend: WanBackend, seen: Seen) -> None:
    run(backend, None)
    mask, _ = conditioning(seen)
    assert mask.shape[2] == (FRAMES - 1) // 4 + 1 == 3
    assert torch.all(mask[:, :, 0] == 1)  # the start image is given
    assert torch.all(mask[:, :, 1:] == 0)  # everything after it is generated

    seen.transformer_inputs.clear()
    run(backend, picture(1))
    mask, _ = conditioning(seen)
    assert torch.all(mask[:, :, 0] == 1)
    assert torch.all(mask[:, :, 1] == 0)  # the middle is still free
    # The last latent frame holds pixel frames 5..8; only the very last one is the keyframe.
    assert torch.all(mask[:, :3, 2] == 0)
    assert torch.all(mask[:, 3, 2] == 1)


def test_the_pipeline_encodes_the_prepared_end_image_as_the_last_frame(backend: WanBackend, seen: Seen) -> None:
    end = picture(1, 50, 30)  # another aspect ratio: cropped like the start image
    run(backend, end)
    # The VAE encodes the condition video causally, in chunks: its very last pixel frame is the
    # end image, prepared at the output size and scaled to [-1, 1] by the pipeline.
    last_frame = seen.encoder_inputs[-1][0, :, -1]
    expected = np.asarray(prepare_start_image(end, SIZE, SIZE), dtype=np.float32) / 127.5 - 1.0
    assert torch.allclose(last_frame, torch.from_numpy(expected).permute(2, 0, 1), atol=1e-5)


def test_the_condition_changes_in_the_last_latent_frame_only(backend: WanBackend, seen: Seen) -> None:
    conditions = []
    for end in (None, picture(1), picture(2)):
        seen.transformer_inputs.clear()
        run(backend, end)
        conditions.append(conditioning(seen)[1])
    plain, aimed, other = conditions
    # The causal VAE's first latent frame sees only the start image: the same in every run.
    assert torch.allclose(plain[:, :, 0], aimed[:, :, 0]) and torch.allclose(aimed[:, :, 0], other[:, :, 0])
    # The last latent frame carries the keyframe: it differs between keyframes and from none.
    assert not torch.allclose(plain[:, :, -1], aimed[:, :, -1])
    assert not torch.allclose(aimed[:, :, -1], other[:, :, -1])


def test_an_end_image_changes_the_output_and_stays_deterministic(backend: WanBackend) -> None:
    plain = run(backend, None)
    aimed = run(backend, picture(1))
    assert aimed.shape == plain.shape == (FRAMES, SIZE, SIZE, 3)
    assert not np.array_equal(plain, aimed)
    assert np.array_equal(aimed, run(backend, picture(1)))
