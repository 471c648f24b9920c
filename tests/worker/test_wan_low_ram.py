"""The four tiny Comfy files end to end under every memory profile a CPU can select, offline, and
under low_ram: the fp8 weights of both experts and of the text encoder stay memory-mapped, and
their pages are handed back once their turn is over, so the idle expert holds no RAM (measured in
/proc/self/smaps). Also the ``ready`` description and the per-job guidance check."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

from tests.comfy_files import write_comfyui_models
from worker.errors import BadInput
from worker.wan.backend import WanBackend
from worker.wan.fp8 import FP8_DTYPE, ScaledFP8Linear, scaled_linears
from worker.wan.mapped_file import MappedFile, resident_bytes
from worker.wan.options import WanOptions

HIGH = "diffusion_models/wan2.2_i2v_high_noise_14B_fp8_scaled.safetensors"
LOW = "diffusion_models/wan2.2_i2v_low_noise_14B_fp8_scaled.safetensors"
TEXT = "text_encoders/umt5_xxl_fp8_e4m3fn_scaled.safetensors"
VAE = "vae/wan_2.1_vae.safetensors"


@pytest.fixture(scope="module")
def comfy_models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_comfyui_models(tmp_path_factory.mktemp("lowram") / "models", seed=5)


@pytest.fixture(scope="module")
def reference_frames(comfy_models: Path) -> np.ndarray:
    return generate(WanBackend(WanOptions(comfyui_models=str(comfy_models))))


def generate(backend: WanBackend, on_step: Any = None, **overrides: Any) -> np.ndarray:
    pixels = np.random.default_rng(0).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    kwargs: dict[str, Any] = {
        "image": Image.fromarray(pixels), "prompt": "a cat walks on the street", "negative_prompt": "",
        "width": 32, "height": 32, "frames": 5, "steps": 4, "guidance": 3.5, "guidance_2": 3.5, "seed": 3,
        "on_step": on_step,
    }  # fmt: skip
    kwargs.update(overrides)
    frames: np.ndarray = backend.generate(**kwargs).frames
    return frames


@pytest.mark.parametrize("profile", ["auto", "full", "expert_offload", "group_offload"])
@pytest.mark.parametrize("low_ram", [False, True])
def test_a_segment_from_the_four_files_under_every_profile(
    comfy_models: Path, reference_frames: np.ndarray, profile: str, low_ram: bool
) -> None:
    assert os.environ["HF_HUB_OFFLINE"] == "1"
    options = WanOptions(comfyui_models=str(comfy_models), memory_profile=profile, low_ram=low_ram)  # type: ignore[arg-type]
    backend = WanBackend(options)
    assert backend.plan.placement == "cpu"  # without CUDA every profile runs on the CPU
    frames = generate(backend)
    assert frames.shape == (5, 32, 32, 3) and frames.std() > 0
    assert np.array_equal(frames, reference_frames)  # mapped or read, the same weights


def test_low_ram_keeps_one_expert_resident_and_drops_the_encoder(comfy_models: Path) -> None:
    backend = WanBackend(WanOptions(comfyui_models=str(comfy_models), low_ram=True))
    pipe = backend.pipe
    for model in (pipe.transformer, pipe.transformer_2, pipe.text_encoder):
        layers = scaled_linears(model)
        assert layers and all(m.host_file is not None and m.weight.dtype == FP8_DTYPE for m in layers)
    high, low, text = (comfy_models / p for p in (HIGH, LOW, TEXT))
    resident: list[tuple[int, int, int]] = []

    def on_step(step: int, total: int) -> bool:
        resident.append((resident_bytes(high), resident_bytes(low), resident_bytes(text)))
        return False

    generate(backend, on_step)
    # 4 steps at shift 8 and boundary 0.9: two high-noise steps, then two low-noise ones.
    (h0, l0, t0), (h1, l1, t1), (h2, l2, t2), (h3, l3, t3) = resident
    assert t0 == t1 == t2 == t3 == 0  # the encoder's pages went back once the prompt was encoded
    assert h0 > 0 and l0 == 0  # the high-noise expert runs from its mapped pages
    assert h1 == l1 == 0  # its turn over, they are handed back before the low-noise one starts
    assert h2 == h3 == 0 and l2 > 0 and l3 > 0  # one expert resident at a time
    assert (resident_bytes(high), resident_bytes(low), resident_bytes(text)) == (0, 0, 0)  # idle between segments
    assert np.array_equal(generate(backend), generate(backend))  # read back on the next turn


def test_moving_a_mapped_layer_to_a_device_hands_its_pages_back(tmp_path: Path) -> None:
    """What expert_offload does on a GPU: the device copy serves compute, the host pages go."""
    file = tmp_path / "weights.bin"
    values = torch.randint(0, 100, (256, 1024), dtype=torch.uint8)
    file.write_bytes(b"\0" * 4096 + values.numpy().tobytes())
    mapped = MappedFile(file)
    weight = mapped.bytes_at(4096, values.numel()).view(FP8_DTYPE).reshape(256, 1024)
    layer = ScaledFP8Linear(weight, torch.tensor(0.5), None)
    layer.map_weight(mapped, 4096)
    layer(torch.ones(1, 1024))
    assert resident_bytes(file) >= values.numel()
    layer.to("meta")  # any device other than the CPU
    # the weight's pages are gone; at most the page before it stays, mapped by the kernel's fault-around
    assert resident_bytes(file) <= 4096 and layer.host_weight is weight
    assert layer.weight.device.type == "meta"


def test_ready_reports_the_source_actually_used(comfy_models: Path) -> None:
    options = WanOptions(comfyui_models=str(comfy_models), low_ram=True)
    said = WanBackend(options, memory_plan="expert_offload (low_ram) at 640x640x81: 25.9 GiB RAM").describe()
    assert said["transformer"] == str(comfy_models / HIGH) and said["transformer_2"] == str(comfy_models / LOW)
    assert said["vae"] == str(comfy_models / VAE) and said["text_encoder"] == str(comfy_models / TEXT)
    assert said["tokenizer"] == f"the spiece_model in {comfy_models / TEXT}"
    assert said["model"].startswith("not used")
    assert said["memory_profile"] == "cpu" and said["low_ram"] is True
    assert said["memory_plan"].startswith("expert_offload (low_ram)")


def test_ready_names_the_diffusers_folder_parts(tiny_wan_dir: Path, comfy_models: Path) -> None:
    said = WanBackend(WanOptions(model=str(tiny_wan_dir), vae=str(comfy_models / VAE))).describe()
    assert said["model"] == str(tiny_wan_dir) and said["vae"] == str(comfy_models / VAE)
    assert said["transformer"] == f"{tiny_wan_dir} (transformer/)"
    assert said["tokenizer"] == f"the tokenizer folder of generation.model {tiny_wan_dir}"


def test_a_job_with_guidance_2_but_no_cfg_is_refused(comfy_models: Path) -> None:
    backend = WanBackend(WanOptions(comfyui_models=str(comfy_models)))
    with pytest.raises(BadInput, match=r"guidance_2 3.5 has no effect while guidance is 1.0"):
        generate(backend, guidance=1.0, guidance_2=3.5)
    assert generate(backend, guidance=1.0, guidance_2=1.0, steps=2).shape == (5, 32, 32, 3)  # CFG off for both
