"""Memory-profile choice, device resolution and option checks: pure logic, tested on the CPU."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from shared.config import GenerationConfig, LoraConfig
from worker.wan.loader import plan_for, resolve_device
from worker.wan.memory import GIB, apply_memory_profile, choose_memory_profile, compute_dtype
from worker.wan.options import LoraSpec, WanOptions, wan_options_from_config


@pytest.mark.parametrize(
    ("free_gib", "expected"),
    [
        (79.0, "full"),  # H100 80 GB
        (139.0, "full"),  # H200
        (70.0, "full"),
        (69.5, "expert_offload"),
        (47.5, "expert_offload"),  # A6000 / L40S 48 GB
        (31.0, "expert_offload"),  # RTX 5090
        (23.0, "expert_offload"),  # RTX 4090 / 3090 24 GB
        (20.0, "expert_offload"),
        (19.5, "group_offload"),
        (15.5, "group_offload"),  # 16 GB cards
        (11.0, "group_offload"),  # 12 GB cards
    ],
)
def test_auto_profile_follows_free_memory(free_gib: float, expected: str) -> None:
    free = int(free_gib * GIB)
    assert choose_memory_profile("auto", cuda_available=True, free_bytes=free) == expected


@pytest.mark.parametrize("requested", ["auto", "full", "expert_offload", "group_offload"])
def test_cpu_always_runs_without_offload(requested: str) -> None:
    assert choose_memory_profile(requested, cuda_available=False, free_bytes=0) == "cpu"  # type: ignore[arg-type]


@pytest.mark.parametrize("requested", ["full", "expert_offload", "group_offload"])
def test_a_configured_profile_wins_over_memory(requested: str) -> None:
    assert choose_memory_profile(requested, cuda_available=True, free_bytes=200 * GIB) == requested  # type: ignore[arg-type]
    assert choose_memory_profile(requested, cuda_available=True, free_bytes=1 * GIB) == requested  # type: ignore[arg-type]


def test_dtypes() -> None:
    assert compute_dtype("cpu") == torch.float32
    for placement in ("full", "expert_offload", "group_offload"):
        assert compute_dtype(placement) == torch.bfloat16  # type: ignore[arg-type]


def test_resolve_device() -> None:
    assert resolve_device("auto", cuda_available=False) == torch.device("cpu")
    assert resolve_device("auto", cuda_available=True) == torch.device("cuda:0")
    assert resolve_device("cuda", cuda_available=True) == torch.device("cuda:0")
    assert resolve_device("cuda:1", cuda_available=True) == torch.device("cuda:1")
    assert resolve_device("cpu", cuda_available=True) == torch.device("cpu")
    with pytest.raises(ValueError, match="CUDA is not available"):
        resolve_device("cuda:0", cuda_available=False)


def test_plan_on_this_machine_is_cpu_float32_without_offload() -> None:
    plan = plan_for(WanOptions(memory_profile="expert_offload"))
    assert torch.cuda.is_available() or (plan.device.type, plan.placement, plan.dtype) == ("cpu", "cpu", torch.float32)


def test_plan_for_a_24_gb_card() -> None:
    plan = plan_for(WanOptions(), cuda_available=True, free_bytes=23 * GIB)
    assert (str(plan.device), plan.placement, plan.dtype) == ("cuda:0", "expert_offload", torch.bfloat16)
    plan = plan_for(WanOptions(device="cpu"), cuda_available=True, free_bytes=23 * GIB)
    assert (str(plan.device), plan.placement, plan.dtype) == ("cpu", "cpu", torch.float32)


def test_gpu_profiles_refuse_a_cpu_device() -> None:
    module = torch.nn.Linear(2, 2)
    with pytest.raises(ValueError, match="needs a CUDA device"):
        apply_memory_profile(module, "expert_offload", torch.device("cpu"))
    apply_memory_profile(module, "cpu", torch.device("cpu"))
    assert module.weight.device.type == "cpu"


def test_options_defaults_are_the_reference() -> None:
    o = WanOptions()
    assert (o.model, o.sampler, o.shift, o.boundary_ratio) == ("Wan-AI/Wan2.2-I2V-A14B-Diffusers", "euler", 8.0, 0.9)
    assert (o.memory_profile, o.device, o.compile, o.loras) == ("auto", "auto", False, ())


@pytest.mark.parametrize(
    ("kwargs", "named"),
    [
        ({"sampler": "dpm"}, "sampler"),
        ({"shift": 0.0}, "shift"),
        ({"boundary_ratio": 1.5}, "boundary_ratio"),
        ({"memory_profile": "tiny"}, "memory_profile"),
        ({"device": "gpu0"}, "device"),
        ({"model": ""}, "model"),
    ],
)
def test_bad_options_name_the_option(kwargs: dict[str, object], named: str) -> None:
    with pytest.raises(ValueError, match=named):
        WanOptions(**kwargs)  # type: ignore[arg-type]


def test_bad_lora_specs() -> None:
    with pytest.raises(ValueError, match="target"):
        LoraSpec("x.safetensors", target="middle")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="path"):
        LoraSpec("")


def test_options_from_config(tmp_path: Path) -> None:
    generation = GenerationConfig(
        model=str(tmp_path),
        transformer="high.gguf",
        transformer_2="low.gguf",
        sampler="unipc",
        shift=5.0,
        memory_profile="group_offload",
        attention_backend="sage",
        compile=True,
        loras=(LoraConfig(path="fast.safetensors", scale=0.8, target="low"),),
    )
    options = wan_options_from_config(generation, device="cuda:1")
    assert options == WanOptions(
        model=str(tmp_path),
        transformer="high.gguf",
        transformer_2="low.gguf",
        sampler="unipc",
        shift=5.0,
        memory_profile="group_offload",
        attention_backend="sage",
        compile=True,
        loras=(LoraSpec(path="fast.safetensors", scale=0.8, target="low"),),
        device="cuda:1",
    )
