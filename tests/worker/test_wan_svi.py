"""Latents kept per take, and SVI 2.0 Pro latent continuity, on the tiny Wan2.2 model.

The conditioning is checked on the tensors the tiny transformer itself receives: its input is
``[noisy latents | mask (4) | condition]`` along the channels (diffusers' A14B I2V layout)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

from tests.tiny_wan import Z_DIM
from tests.worker.test_wan_lora import write_lora
from worker.hand_off import LatentHandOff
from worker.images import prepare_start_image
from worker.segment_files import write_segment_files
from worker.video import join_segments, probe
from worker.wan.backend import WanBackend
from worker.wan.latents import LatentInfo, load_latents, save_latents
from worker.wan.options import LoraSpec, WanOptions

SIZE = 32
FRAMES = 9  # 3 latent frames: anchor, the previous take's last latent, one of zeros


def picture(seed: int) -> Image.Image:
    return Image.fromarray(np.random.default_rng(seed).integers(0, 256, (SIZE, SIZE, 3), dtype=np.uint8))


class Inputs:
    """Every transformer input of the high-noise expert, per call."""

    def __init__(self, backend: WanBackend) -> None:
        self.calls: list[torch.Tensor] = []
        backend.pipe.transformer.register_forward_pre_hook(self._seen, with_kwargs=True)

    def _seen(self, module: Any, args: Any, kwargs: dict[str, Any]) -> None:
        self.calls.append(kwargs["hidden_states"].detach().clone())

    def take(self) -> torch.Tensor:
        """The first input since the last take, then forget them all."""
        first = self.calls[0]
        self.calls.clear()
        return first


def generate(backend: WanBackend, image: Image.Image, seed: int, **extra: Any) -> Any:
    return backend.generate(
        image=image, prompt="a cat walks", negative_prompt="", width=SIZE, height=SIZE, frames=FRAMES,
        steps=2, guidance=1.0, guidance_2=1.0, seed=seed, **extra,
    )  # fmt: skip


@pytest.fixture(scope="module")
def svi_backend(tiny_wan_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> WanBackend:
    """The tiny Wan with a tiny LoRA standing in for the SVI 2.0 Pro LoRAs."""
    lora = write_lora(tmp_path_factory.mktemp("svi-lora") / "svi.safetensors", seed=3, strength=0.3)
    return WanBackend(WanOptions(model=str(tiny_wan_dir), loras=(LoraSpec(path=str(lora)),)))


def test_latents_are_saved_and_reloaded_bit_for_bit_and_are_what_was_decoded(
    svi_backend: WanBackend, tmp_path: Path
) -> None:
    result = generate(svi_backend, picture(0), seed=11)
    files = write_segment_files(result.frames, tmp_path, "seg001-take1", fps=16, latents=result.latents)
    assert files.latents == tmp_path / "seg001-take1.latent.safetensors"
    latents, info = load_latents(files.latents)
    assert latents.dtype == torch.float32 and latents.shape == (1, Z_DIM, 3, SIZE // 8, SIZE // 8)
    assert torch.equal(latents, result.latents.latents)
    assert info == LatentInfo(
        seed=11, prompt="a cat walks", steps=2, width=SIZE, height=SIZE, frames=FRAMES,
        vae_hash=svi_backend.vae_hash, model_hash=svi_backend.model_hash,
    )  # fmt: skip
    # The kept latents are exactly the ones the pipeline decoded into the take's frames.
    pipe = svi_backend.pipe
    with torch.no_grad():
        raw = latents / (1.0 / torch.tensor(pipe.vae.config.latents_std).view(1, Z_DIM, 1, 1, 1))
        raw = raw + torch.tensor(pipe.vae.config.latents_mean).view(1, Z_DIM, 1, 1, 1)
        video = pipe.video_processor.postprocess_video(pipe.vae.decode(raw, return_dict=False)[0], output_type="np")
    assert np.array_equal((np.clip(video[0], 0, 1) * 255).round().astype(np.uint8), result.frames)


def test_the_model_fingerprint_names_the_lora_too(tiny_wan_dir: Path, svi_backend: WanBackend) -> None:
    plain = WanBackend(WanOptions(model=str(tiny_wan_dir)))
    assert plain.vae_hash == svi_backend.vae_hash
    assert plain.model_hash != svi_backend.model_hash


def test_an_svi_chain_of_three_segments_conditions_on_the_anchor_and_the_previous_latent(
    svi_backend: WanBackend, tmp_path: Path
) -> None:
    inputs = Inputs(svi_backend)
    first = picture(0)

    # Segment 1: ordinary I2V (the start image VAE-encoded with zero frames after it).
    seg1 = generate(svi_backend, first, seed=1)
    ordinary = inputs.take()
    assert seg1.continuity == "frame" and seg1.note == ""
    anchor = ordinary[:, Z_DIM + 4 :, :1]  # the causal VAE's first latent frame is the picture's alone
    path1 = seg1.latents.save(tmp_path / "seg001-take1.latent.safetensors")

    # Segment 2 starts from segment 1's latents; its start image is the hand-off frame.
    hand_off = LatentHandOff(anchor=first, previous=path1)
    seg2 = generate(svi_backend, Image.fromarray(seg1.frames[-1]), seed=2, hand_off=hand_off)
    given = inputs.take()
    assert seg2.continuity == "svi" and seg2.note == ""
    assert seg2.latents.info.continued_from == "seg001-take1.latent.safetensors"
    path2 = seg2.latents.save(tmp_path / "seg002-take1.latent.safetensors")

    # Segment 3 from segment 2's, anchored on the same first picture.
    seg3 = generate(svi_backend, Image.fromarray(seg2.frames[-1]), seed=3, hand_off=replace(hand_off, previous=path2))
    given3 = inputs.take()

    for clip, previous in ((given, seg1), (given3, seg2)):
        assert clip.shape == (1, 2 * Z_DIM + 4, 3, SIZE // 8, SIZE // 8)
        mask, condition = clip[:, Z_DIM : Z_DIM + 4], clip[:, Z_DIM + 4 :]
        # Only the first latent frame is marked known, on all four of its mask channels.
        assert torch.equal(mask[:, :, 0], torch.ones_like(mask[:, :, 0]))
        assert torch.equal(mask[:, :, 1:], torch.zeros_like(mask[:, :, 1:]))
        # [anchor | previous take's last latent | zeros]
        torch.testing.assert_close(condition[:, :, :1], anchor, rtol=0, atol=1e-5)
        assert torch.equal(condition[:, :, 1], previous.latents.latents[:, :, -1])
        assert torch.equal(condition[:, :, 2:], torch.zeros_like(condition[:, :, 2:]))
    # Not the ordinary I2V condition, whose later frames are an encoded grey video, not zeros.
    assert ordinary[:, Z_DIM + 4 :, 2:].abs().max() > 0
    # A new seed per clip: new noise.
    assert not torch.equal(given[:, :Z_DIM], given3[:, :Z_DIM])
    assert seg3.frames.shape == (FRAMES, SIZE, SIZE, 3)

    # Joined, each svi segment drops the 4 frames it shares with its predecessor, once.
    masters = []
    for index, take in enumerate((seg1, seg2, seg3), start=1):
        masters.append(write_segment_files(take.frames, tmp_path, f"seg{index:03d}-take1", fps=16).video)
    joined = join_segments(masters, tmp_path / "final.mp4", 16, overlaps=[0, 4, 4])
    assert joined.frames == probe(joined.path).frames == FRAMES + 2 * (FRAMES - 4)


def test_the_same_seed_without_a_hand_off_is_the_frame_path_unchanged(svi_backend: WanBackend) -> None:
    a = generate(svi_backend, picture(0), seed=5)
    b = generate(svi_backend, picture(0), seed=5)
    assert np.array_equal(a.frames, b.frames) and svi_backend.pipe.svi is None


@pytest.mark.parametrize(
    ("change", "says"),
    [
        ({"vae_hash": "0123456789abcdef"}, "made with another VAE"),
        ({"model_hash": "0123456789abcdef"}, "made with other model weights"),
        ({"width": 48}, "are 48×32, this take is 32×32"),
    ],
)
def test_mismatched_latents_are_refused_and_the_take_falls_back_to_frame(
    svi_backend: WanBackend, tmp_path: Path, change: dict[str, Any], says: str
) -> None:
    seg1 = generate(svi_backend, picture(0), seed=1)
    path = save_latents(
        tmp_path / "seg001-take1.latent.safetensors", seg1.latents.latents, replace(seg1.latents.info, **change)
    )
    start = Image.fromarray(seg1.frames[-1])
    refused = generate(svi_backend, start, seed=2, hand_off=LatentHandOff(anchor=picture(0), previous=path))
    assert refused.continuity == "frame"
    assert says in refused.note and refused.note.endswith("this take continues from the last frame instead")
    # Exactly the take the frame path makes from the start image.
    assert np.array_equal(refused.frames, generate(svi_backend, start, seed=2).frames)


def test_missing_latents_fall_back_with_a_note(svi_backend: WanBackend, tmp_path: Path) -> None:
    hand_off = LatentHandOff(anchor=picture(0), previous=tmp_path / "gone.latent.safetensors")
    result = generate(svi_backend, picture(1), seed=2, hand_off=hand_off)
    assert result.continuity == "frame" and "are gone" in result.note


def test_the_anchor_is_encoded_once_per_picture_and_size(svi_backend: WanBackend, tmp_path: Path) -> None:
    seg1 = generate(svi_backend, picture(0), seed=1)
    path = seg1.latents.save(tmp_path / "a.latent.safetensors")
    svi_backend._anchors.clear()
    vae = svi_backend.pipe.vae
    encode = vae.encode
    encodes: list[int] = []

    def counted(*args: Any, **kwargs: Any) -> Any:
        encodes.append(1)
        return encode(*args, **kwargs)

    vae.encode = counted
    try:
        for seed in (2, 3):
            generate(svi_backend, picture(1), seed=seed, hand_off=LatentHandOff(anchor=picture(0), previous=path))
    finally:
        del vae.encode
    # Two svi clips, one VAE encode: the anchor's (an svi clip encodes no start-image video).
    assert len(encodes) == 1 and len(svi_backend._anchors) == 1
    [anchor] = svi_backend._anchors.values()
    assert torch.equal(anchor, svi_backend.pipe.encode_anchor(prepare_start_image(picture(0), SIZE, SIZE), SIZE, SIZE))
