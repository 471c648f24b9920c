"""Builds the configured backend for one device. Heavy imports happen here, only when needed."""

from __future__ import annotations

import logging
from typing import Any

from shared.config import ComfyUIConfig, GenerationConfig
from worker.backend import Backend

log = logging.getLogger("framechain.worker")


def resolve_device(device: str, backend: str) -> str:
    """``auto`` means the first CUDA device where there is one, else the CPU."""
    if device.startswith("comfyui:"):
        return device  # a ComfyUI server's slot: the server has the GPU
    if device.startswith("cpu:"):
        return "cpu"  # several CPU workers are told apart by the dispatcher, not by torch
    if device != "auto":
        return device
    if backend == "preview":
        return "cpu"
    if backend == "comfyui":
        return "comfyui:0"
    import torch

    return "cuda:0" if torch.cuda.is_available() else "cpu"


def build_backend(
    generation: GenerationConfig, backend: str, device: str, *, comfyui: ComfyUIConfig | None = None
) -> tuple[Backend, dict[str, Any]]:
    """Load the backend once; returns it and a description for the ``ready`` message."""
    if backend == "comfyui" or device.startswith("comfyui:"):
        from worker.comfyui.backend import build_comfyui_backend

        return build_comfyui_backend(generation, comfyui or ComfyUIConfig(), device)
    if backend == "preview":
        from worker.preview import PreviewBackend

        preview = PreviewBackend(step_delay=generation.preview_step_delay)
        return preview, {"model": "none (preview animation)"}
    if device == "cpu":
        log.warning(
            "no CUDA device: the wan backend runs on the CPU in float32, which is only practical for tiny "
            'test models; use backend = "preview" to try framechain without a GPU'
        )
    import torch

    from shared.memory_plan import ram_available
    from worker.wan.backend import WanBackend
    from worker.wan.loader import plan_for
    from worker.wan.memory import check_memory_plan
    from worker.wan.options import wan_options_from_config

    options = wan_options_from_config(generation, device=device)
    plan = plan_for(options)
    vram_total = torch.cuda.mem_get_info(plan.device)[1] if plan.device.type == "cuda" else None
    # Before any weight loads: a profile that cannot fit is refused in one line, not killed.
    need = check_memory_plan(
        options,
        plan.placement,
        ram=ram_available(),
        vram_total=vram_total,
        size=(generation.width, generation.height, generation.frames),
    )
    wan = WanBackend(options, plan=plan, memory_plan=need.describe())
    return wan, wan.describe()
