"""The memory plan at real size: the A14B architecture on the meta device, the seed's file sizes,
and what fits a 24 GB card and 32 / 48 GB of RAM."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from shared import memory_plan
from shared.config import ConfigError, load_config
from shared.memory_plan import COMFY_FP8, GIB, largest_pixels, latent_tokens, plan, usable_vram

CARD_24GB = 24564 * 1024 * 1024  # what nvidia-smi reports for an RTX 3090 / 4090


def test_expert_size_matches_the_real_architecture_on_the_meta_device() -> None:
    import json

    import torch
    from diffusers import WanTransformer3DModel

    from worker.wan.loader import SHIPPED_TRANSFORMER_CONFIG

    config = json.loads(SHIPPED_TRANSFORMER_CONFIG.read_text())
    with torch.device("meta"):
        model = WanTransformer3DModel.from_config(config)
    linear = sum(m.weight.numel() for m in model.modules() if isinstance(m, torch.nn.Linear))
    total = sum(p.numel() for p in model.parameters())
    # fp8 file: one byte per linear weight, two per everything else (fp16)
    assert COMFY_FP8.experts[0] == pytest.approx(linear + 2 * (total - linear), rel=0.02)
    arch = COMFY_FP8.arch
    assert (arch.dim, arch.ffn, arch.layers) == (
        config["num_attention_heads"] * config["attention_head_dim"], config["ffn_dim"], config["num_layers"]
    )  # fmt: skip
    assert latent_tokens(640, 640, 81) == 21 * 40 * 40


def test_what_fits_a_24_gb_card_under_expert_offload() -> None:
    vram = usable_vram(CARD_24GB)
    assert plan("expert_offload", 640, 640, 81).vram <= vram
    assert plan("expert_offload", 832, 480, 81).vram <= vram
    assert plan("expert_offload", 1280, 720, 81).vram > vram  # the OOM limits.max_pixels allowed
    largest = largest_pixels("expert_offload", vram)
    assert 832 * 480 <= largest < 1280 * 720
    assert plan("full", 640, 640, 81).vram > vram and largest_pixels("full", vram) == 0


def test_ram_per_profile() -> None:
    offload = plan("expert_offload", 640, 640, 81)
    low = plan("expert_offload", 640, 640, 81, low_ram=True)
    assert offload.ram <= 44 * GIB  # a 48 GB machine
    assert low.ram <= 29 * GIB and low.reload_seconds > 5  # a 32 GB machine, at the cost of reloads
    assert "reloads" in low.describe() and "reloads" not in offload.describe()
    with pytest.raises(ValueError, match="profile"):
        plan("tiny", 640, 640, 81)


def test_ram_available_reads_meminfo() -> None:
    available = memory_plan.ram_available()
    assert available is not None and 0 < available <= os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")


def fake_nvidia_smi(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, mib: int) -> None:
    """nvidia-smi is part of the outside world: a script prints what the real one would."""
    script = tmp_path / "nvidia-smi"
    script.write_text(f"#!/bin/sh\necho {mib}\n")
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
    memory_plan.gpu_memory_total.cache_clear()


def test_settings_limit_follows_the_card(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from bot.service import _memory_max_pixels

    config = load_config(None)
    fake_nvidia_smi(tmp_path, monkeypatch, 24564)
    try:
        limit = _memory_max_pixels(config)
        assert 832 * 480 <= limit < 1280 * 720
        fake_nvidia_smi(tmp_path, monkeypatch, 143771)  # H200: the configured limit stands
        assert _memory_max_pixels(config) == config.limits.max_pixels
    finally:
        memory_plan.gpu_memory_total.cache_clear()


def test_guidance_2_without_cfg_is_refused(tmp_path: Path) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text("[generation]\nguidance = 1.0\nguidance_2 = 3.5\n")
    with pytest.raises(ConfigError, match="guidance_2"):
        load_config(cfg)
    cfg.write_text('[generation]\nlow_ram = true\nvae_dtype = "bfloat16"\n')
    g = load_config(cfg).generation
    assert g.low_ram and g.vae_dtype == "bfloat16"


def test_worker_refuses_a_plan_that_cannot_fit(tmp_path: Path) -> None:
    from tests.comfy_files import write_real_size_comfyui_models
    from worker.errors import OutOfMemory
    from worker.wan.memory import check_memory_plan
    from worker.wan.options import WanOptions

    models = str(write_real_size_comfyui_models(tmp_path / "models"))  # sparse: only the headers are read
    options = WanOptions(comfyui_models=models)
    with pytest.raises(OutOfMemory, match=r"needs ~\d+ GiB of RAM.*low_ram = true needs"):
        check_memory_plan(options, "expert_offload", ram=32 * GIB, vram_total=CARD_24GB, size=(640, 640, 81))
    assert check_memory_plan(options, "expert_offload", ram=48 * GIB, vram_total=CARD_24GB, size=(640, 640, 81))
    low = WanOptions(comfyui_models=models, low_ram=True)
    need = check_memory_plan(low, "expert_offload", ram=32 * GIB, vram_total=CARD_24GB, size=(640, 640, 81))
    assert need.low_ram and "(low_ram)" in need.describe() and need.reload_seconds > 0
    with pytest.raises(OutOfMemory, match="GPU memory at 1280x720x81"):
        check_memory_plan(low, "expert_offload", ram=32 * GIB, vram_total=CARD_24GB, size=(1280, 720, 81))
