"""Where the weights live: chosen from the card's free memory, then applied to a loaded pipeline.

Wan2.2 A14B in bfloat16 is two 28.6 GB experts, an 11 GB text encoder and a small VAE.

    full            >= 70 GiB free: H100, H200, A100 80 GB
                    everything resident on the GPU in bfloat16
    expert_offload  20-70 GiB free: RTX 3090/4090 (24 GB), 5090 (32 GB), A6000/L40S (48 GB)
                    each model moves to the GPU when it runs (model CPU offload), so one expert
                    is resident at a time; fp8_scaled experts stay in their fp8 with scales
                    (worker.wan.fp8), bf16 ones are stored in fp8 and computed in bfloat16
                    (enable_layerwise_casting)
    group_offload   below 20 GiB: 12-16 GB cards
                    layers stream in from CPU memory on a CUDA stream, overlapped with compute;
                    GGUF experts cut the RAM and transfer cost further
    cpu             no CUDA: float32 on the CPU, no offload (tests, tiny models)

The choice is a pure function so it can be tested without a GPU; ``apply_memory_profile`` is only
reached where CUDA is present.
"""

from __future__ import annotations

import logging
from typing import Any, Literal, cast

import torch

from shared import memory_plan
from worker.errors import OutOfMemory
from worker.wan.fp8 import has_scaled_fp8
from worker.wan.options import MemoryProfile, WanOptions
from worker.wan.source_sizes import source_sizes

log = logging.getLogger("framechain.worker")

Placement = Literal["cpu", "full", "expert_offload", "group_offload"]

GIB = memory_plan.GIB


def choose_memory_profile(requested: MemoryProfile, *, cuda_available: bool, free_bytes: int = 0) -> Placement:
    """The placement for a pipeline: the requested profile, or for "auto" the one the card's free
    memory calls for. Without CUDA it is always "cpu" (float32, no offload)."""
    if not cuda_available:
        return "cpu"
    if requested != "auto":
        return requested
    return cast(Placement, memory_plan.auto_profile(free_bytes))


def compute_dtype(placement: Placement) -> torch.dtype:
    """bfloat16 on a GPU (what Wan2.2 was trained in); float32 on the CPU, where bf16 is slow."""
    return torch.float32 if placement == "cpu" else torch.bfloat16


def vae_dtype(choice: str, placement: Placement) -> torch.dtype:
    """The VAE's precision (shared.memory_plan.vae_dtype_name: float32 unless asked otherwise or
    on a small card)."""
    return torch.float32 if memory_plan.vae_dtype_name(choice, placement) == "float32" else torch.bfloat16


def is_quantized(model: Any) -> bool:
    # GGUF weights are already stored small; layerwise casting would fight their quantizer.
    return getattr(model, "hf_quantizer", None) is not None or bool(getattr(model, "is_quantized", False))


def _layerwise_cast(model: Any) -> bool:
    registry = getattr(model, "_diffusers_hook", None)
    return registry is not None and registry.get_hook("layerwise_casting") is not None


def store_expert(model: Any, placement: Placement, device: torch.device) -> None:
    """Put one freshly loaded expert in its storage form at once, before the next one loads, so
    load-time RAM holds one expert in full precision at most: on the GPU for "full", in fp8 for
    "expert_offload" (fp8_scaled experts already are)."""
    if placement == "full" and device.type == "cuda":
        model.to(device)
    elif placement == "expert_offload" and not is_quantized(model) and not has_scaled_fp8(model):
        model.enable_layerwise_casting(storage_dtype=torch.float8_e4m3fn, compute_dtype=compute_dtype(placement))


def _store_experts_in_fp8(pipe: Any, dtype: torch.dtype) -> None:
    """bf16/fp16 experts are stored in fp8 per tensor, without a scale (layerwise casting);
    fp8_scaled experts already are fp8, with their scales, and are left as they are."""
    for name in ("transformer", "transformer_2"):
        model = getattr(pipe, name, None)
        if model is not None and not is_quantized(model) and not has_scaled_fp8(model) and not _layerwise_cast(model):
            model.enable_layerwise_casting(storage_dtype=torch.float8_e4m3fn, compute_dtype=dtype)


def apply_memory_profile(pipe: Any, placement: Placement, device: torch.device) -> None:
    """Place a freshly loaded pipeline (weights still on the CPU) per ``placement``."""
    if placement == "cpu":
        pipe.to("cpu")
        return
    if device.type != "cuda":
        raise ValueError(f"memory profile {placement!r} needs a CUDA device, got {device}")
    dtype = compute_dtype(placement)
    if placement == "full":
        pipe.to(device)
    elif placement == "expert_offload":
        _store_experts_in_fp8(pipe, dtype)
        # Moves each model to the GPU when its forward runs and the previous one back to the CPU:
        # text encoder -> high expert -> low expert -> VAE.
        pipe.enable_model_cpu_offload(device=device)
    elif placement == "group_offload":
        # Pinning happens per transfer (low_cpu_mem_usage): pre-pinning every weight would hold a
        # second copy of ~70 GB in RAM. The VAE is small; keep it resident rather than streaming
        # its many small convolutions.
        pipe.enable_group_offload(
            onload_device=device,
            offload_device=torch.device("cpu"),
            offload_type="leaf_level",
            use_stream=True,
            low_cpu_mem_usage=True,
            exclude_modules=["vae"],
        )
    else:
        raise ValueError(f"unknown memory profile {placement!r}")


def check_memory_plan(
    options: WanOptions, placement: Placement, *, ram: int | None, vram_total: int | None, size: tuple[int, int, int]
) -> memory_plan.Plan:
    """Compare what ``placement`` needs (shared.memory_plan, with the sizes of the configured
    source read from its files' headers: single files, a diffusers folder, or the published sizes
    for a hub id) with the machine, before any weight loads; raise OutOfMemory with one line when
    it cannot fit."""
    sizes = source_sizes(options, placement)
    profile = "expert_offload" if placement == "cpu" else placement  # the CPU holds what offload holds
    width, height, frames = size
    vae_bytes = memory_plan.vae_bytes(options.vae_dtype, placement)
    need = memory_plan.plan(
        profile, width, height, frames, sizes, vae_bytes_per_value=vae_bytes, low_ram=options.low_ram
    )
    log.info("memory plan: %s", need.describe())
    if options.low_ram and not need.low_ram and profile == "expert_offload":
        log.warning("generation.low_ram only maps fp8_scaled expert files; these experts are held in RAM")
    if ram is not None and need.ram > ram:
        hint = ""
        if profile == "expert_offload" and not options.low_ram and sizes.experts_mapped:
            low = memory_plan.plan(profile, width, height, frames, sizes, vae_bytes_per_value=vae_bytes, low_ram=True)
            hint = f"; generation.low_ram = true needs {low.ram / GIB:.0f} GiB"
        raise OutOfMemory(
            f"the {profile} profile needs ~{need.ram / GIB:.0f} GiB of RAM for these model files and this "
            f"machine has {ram / GIB:.0f} GiB available{hint}"
        )
    if placement != "cpu" and vram_total is not None and need.vram > memory_plan.usable_vram(vram_total):
        raise OutOfMemory(
            f"the {profile} profile needs ~{need.vram / GIB:.0f} GiB of GPU memory at {width}x{height}x{frames} "
            f"and the card has {vram_total / GIB:.0f} GiB: choose a smaller memory_profile or size"
        )
    return need
