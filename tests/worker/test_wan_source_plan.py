"""The memory plan of every model source, from the files' headers alone (no weight read): the
four Comfy files at their real size, a diffusers folder, a mix, a hub id; and the profile
choice that only a CUDA machine acts on, checked here on the CPU."""

from __future__ import annotations

from pathlib import Path

import pytest

from shared.memory_plan import COMFY_FP8, GIB, plan
from tests.comfy_files import (
    real_expert_shapes,
    umt5_comfy_shapes,
    wan_vae_original_shapes,
    write_real_size_comfyui_models,
    write_sparse_safetensors,
)
from worker.errors import OutOfMemory
from worker.wan.loader import plan_for
from worker.wan.memory import check_memory_plan
from worker.wan.options import WanOptions
from worker.wan.source_sizes import source_sizes

CARD_24GB = 24564 * 1024 * 1024
CARD_48GB = 49140 * 1024 * 1024
SIZE = (640, 640, 81)


@pytest.fixture(scope="module")
def comfy_models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_real_size_comfyui_models(tmp_path_factory.mktemp("real") / "models")


@pytest.fixture(scope="module")
def diffusers_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Wan2.2-I2V-A14B-Diffusers' layout at real size (bf16 shards, sparse)."""
    root = tmp_path_factory.mktemp("diffusers") / "Wan2.2-I2V-A14B-Diffusers"
    expert = {k: ("BF16", s) for k, s in real_expert_shapes().items()}
    for name in ("transformer", "transformer_2"):
        half = len(expert) // 2
        keys = list(expert)
        write_sparse_safetensors(root / name / "model-00001.safetensors", {k: expert[k] for k in keys[:half]})
        write_sparse_safetensors(root / name / "model-00002.safetensors", {k: expert[k] for k in keys[half:]})
    text = {k: ("BF16", s) for k, s in umt5_comfy_shapes().items()}
    write_sparse_safetensors(root / "text_encoder" / "model.safetensors", text)
    vae = {k: ("F32", s) for k, s in wan_vae_original_shapes().items()}
    write_sparse_safetensors(root / "vae" / "model.safetensors", vae)
    return root


def test_the_four_files_plan_as_the_published_sizes(comfy_models: Path) -> None:
    sizes = source_sizes(WanOptions(comfyui_models=str(comfy_models)), "expert_offload")
    assert sizes.experts == pytest.approx(COMFY_FP8.experts, rel=0.001)
    assert sizes.text_encoder == pytest.approx(COMFY_FP8.text_encoder, rel=0.001)  # fp8 kept: 6.27 GiB
    assert sizes.text_encoder_mapped == pytest.approx(COMFY_FP8.text_encoder_mapped, rel=0.001)
    assert sizes.vae_params == pytest.approx(COMFY_FP8.vae_params, rel=0.01)
    assert sizes.experts_mapped and sizes.expert_loading == 0
    need = plan("expert_offload", *SIZE, sizes)
    assert 38e9 < need.ram <= 44 * GIB  # about 40 GB of RAM in all: a 48 GB machine
    low = plan("expert_offload", *SIZE, sizes, low_ram=True)
    assert low.ram <= 29 * GIB and low.low_ram  # a 32 GB machine
    assert low.reload_seconds == pytest.approx((sum(sizes.experts) + sizes.text_encoder_mapped) / 2e9)


def test_a_diffusers_folder_is_planned_from_its_shard_headers(diffusers_folder: Path) -> None:
    options = WanOptions(model=str(diffusers_folder))
    offload = source_sizes(options, "expert_offload")
    full = source_sizes(options, "full")
    # bf16 experts: stored in fp8 (1 byte) under expert_offload, bf16 while loading and on "full"
    assert offload.experts[0] == pytest.approx(14.28e9, rel=0.01) and full.experts[0] == 2 * offload.experts[0]
    assert offload.expert_loading == offload.experts[0] and not offload.experts_mapped
    assert offload.text_encoder == pytest.approx(11.4e9, rel=0.01)  # UMT5-XXL in bf16
    with pytest.raises(OutOfMemory, match=r"expert_offload profile needs ~\d+ GiB of RAM") as refused:
        check_memory_plan(options, "expert_offload", ram=32 * GIB, vram_total=CARD_24GB, size=SIZE)
    assert "low_ram" not in str(refused.value)  # it cannot help bf16 experts
    need = check_memory_plan(options, "expert_offload", ram=64 * GIB, vram_total=CARD_24GB, size=SIZE)
    assert need.ram > plan("expert_offload", *SIZE).ram  # the bf16 encoder: 11.4 GB, not 6.7
    with pytest.raises(OutOfMemory, match="GPU memory"):
        check_memory_plan(options, "full", ram=64 * GIB, vram_total=CARD_48GB, size=SIZE)


def test_single_files_over_a_folder_and_a_hub_id(comfy_models: Path, diffusers_folder: Path) -> None:
    high = comfy_models / "diffusion_models/wan2.2_i2v_high_noise_14B_fp8_scaled.safetensors"
    low = comfy_models / "diffusion_models/wan2.2_i2v_low_noise_14B_fp8_scaled.safetensors"
    mixed = source_sizes(
        WanOptions(model=str(diffusers_folder), transformer=str(high), transformer_2=str(low)), "expert_offload"
    )
    assert mixed.experts == pytest.approx(COMFY_FP8.experts, rel=0.001) and mixed.experts_mapped
    assert mixed.text_encoder == pytest.approx(11.4e9, rel=0.01)  # the folder's
    hub = source_sizes(WanOptions(), "expert_offload")  # the default hub id, nothing on disk
    assert hub.experts[0] == pytest.approx(COMFY_FP8.experts[0], rel=0.01) and not hub.experts_mapped
    assert check_memory_plan(WanOptions(), "expert_offload", ram=None, vram_total=CARD_24GB, size=SIZE)


@pytest.mark.parametrize(
    ("card", "profile", "fits_640"),
    [(CARD_24GB, "expert_offload", True), (CARD_48GB, "expert_offload", True), (80 * GIB, "full", True),
     (16 * GIB, "group_offload", True), (12 * GIB, "group_offload", True)],
)  # fmt: skip
def test_the_cuda_profile_choice_and_its_plan(comfy_models: Path, card: int, profile: str, fits_640: bool) -> None:
    """What a CUDA machine would do, decided on this one: the profile from the card's free memory,
    the plan checked for it, with no GPU."""
    options = WanOptions(comfyui_models=str(comfy_models))
    chosen = plan_for(options, cuda_available=True, free_bytes=card - GIB)
    assert chosen.placement == profile and chosen.device.type == "cuda"
    need = check_memory_plan(options, chosen.placement, ram=128 * GIB, vram_total=card, size=SIZE)
    assert need.profile == profile and need.vram <= 0.9 * card


def test_a_missing_comfyui_models_file_is_named_before_planning(tmp_path: Path) -> None:
    (tmp_path / "models" / "vae").mkdir(parents=True)
    with pytest.raises(FileNotFoundError, match="lacks diffusion_models/"):
        source_sizes(WanOptions(comfyui_models=str(tmp_path / "models")), "expert_offload")
