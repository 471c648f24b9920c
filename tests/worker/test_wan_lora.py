"""LoRA files (ComfyUI / Kijai key layout, as 4-step distillation LoRAs ship) load into one or both
experts at their scale and change the output."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import save_file

from worker.wan.backend import WanBackend
from worker.wan.options import LoraSpec, WanOptions

RANK = 4


def write_lora(path: Path, seed: int = 0, strength: float = 0.5) -> Path:
    """A rank-4 LoRA over the tiny experts' attention and feed-forward layers."""
    g = torch.Generator().manual_seed(seed)
    shapes = {
        "self_attn.q": (12, 12),
        "self_attn.k": (12, 12),
        "self_attn.v": (12, 12),
        "self_attn.o": (12, 12),
        "ffn.0": (32, 12),
        "ffn.2": (12, 32),
    }
    state: dict[str, torch.Tensor] = {}
    for layer, (out_features, in_features) in shapes.items():
        base = f"diffusion_model.blocks.0.{layer}"
        state[f"{base}.lora_down.weight"] = torch.randn(RANK, in_features, generator=g) * strength
        state[f"{base}.lora_up.weight"] = torch.randn(out_features, RANK, generator=g) * strength
        state[f"{base}.alpha"] = torch.tensor(float(RANK))
    save_file(state, path)
    return path


@pytest.fixture(scope="module")
def lora_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_lora(tmp_path_factory.mktemp("lora") / "lightx2v_4step.safetensors")


def generate(backend: WanBackend) -> np.ndarray:
    image = np.random.default_rng(0).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    return backend.generate(
        image=Image.fromarray(image), prompt="a dog runs", negative_prompt="", width=32, height=32,
        frames=5, steps=4, guidance=1.0, guidance_2=1.0, seed=3,
    ).frames  # fmt: skip


def has_adapter(model: torch.nn.Module) -> bool:
    return any("lora_A" in name for name, _ in model.named_modules())


def q_weight(model: torch.nn.Module) -> torch.Tensor:
    return model.state_dict()["blocks.0.attn1.to_q.weight"]


def lora_delta(path: Path) -> torch.Tensor:
    """What the LoRA adds to the self-attention query weight at scale 1: alpha/rank * up @ down."""
    from safetensors.torch import load_file

    state = load_file(path)
    base = "diffusion_model.blocks.0.self_attn.q"
    alpha = float(state[f"{base}.alpha"])
    return alpha / RANK * state[f"{base}.lora_up.weight"] @ state[f"{base}.lora_down.weight"]


@pytest.fixture(scope="module")
def base_frames(tiny_wan_dir: Path) -> np.ndarray:
    return generate(WanBackend(WanOptions(model=str(tiny_wan_dir))))


@pytest.fixture(scope="module")
def base(tiny_wan_dir: Path) -> WanBackend:
    return WanBackend(WanOptions(model=str(tiny_wan_dir)))


def test_lora_on_both_experts_changes_the_output(
    tiny_wan_dir: Path, lora_file: Path, base: WanBackend, base_frames: np.ndarray
) -> None:
    backend = WanBackend(WanOptions(model=str(tiny_wan_dir), loras=(LoraSpec(str(lora_file)),)))
    assert not np.array_equal(generate(backend), base_frames)
    delta = lora_delta(lora_file)
    for name in ("transformer", "transformer_2"):
        fused = q_weight(getattr(backend.pipe, name))
        torch.testing.assert_close(fused, q_weight(getattr(base.pipe, name)) + delta)
        assert not has_adapter(getattr(backend.pipe, name))  # fused, adapter layers dropped
    assert backend.describe()["loras"] == [{"path": str(lora_file), "scale": 1.0, "target": "both"}]


@pytest.mark.parametrize(("target", "high", "low"), [("high", True, False), ("low", False, True)])
def test_lora_can_target_one_expert(
    tiny_wan_dir: Path, lora_file: Path, base: WanBackend, base_frames: np.ndarray, target: str, high: bool, low: bool
) -> None:
    spec = LoraSpec(str(lora_file), target=target)  # type: ignore[arg-type]
    backend = WanBackend(WanOptions(model=str(tiny_wan_dir), loras=(spec,)))
    for name, changed in (("transformer", high), ("transformer_2", low)):
        same = torch.equal(q_weight(getattr(backend.pipe, name)), q_weight(getattr(base.pipe, name)))
        assert same is not changed, name
    assert not np.array_equal(generate(backend), base_frames)


def test_lora_scale_is_applied(tiny_wan_dir: Path, lora_file: Path, base: WanBackend, base_frames: np.ndarray) -> None:
    off = WanBackend(WanOptions(model=str(tiny_wan_dir), loras=(LoraSpec(str(lora_file), scale=0.0),)))
    assert np.array_equal(generate(off), base_frames)
    half = WanBackend(WanOptions(model=str(tiny_wan_dir), loras=(LoraSpec(str(lora_file), scale=0.5),)))
    torch.testing.assert_close(
        q_weight(half.pipe.transformer_2), q_weight(base.pipe.transformer_2) + 0.5 * lora_delta(lora_file)
    )


def test_two_loras_add_up(tiny_wan_dir: Path, lora_file: Path, base: WanBackend, tmp_path: Path) -> None:
    other = write_lora(tmp_path / "style.safetensors", seed=1)
    specs = (LoraSpec(str(lora_file), scale=1.0), LoraSpec(str(other), scale=0.25, target="high"))
    backend = WanBackend(WanOptions(model=str(tiny_wan_dir), loras=specs))
    expected = q_weight(base.pipe.transformer) + lora_delta(lora_file) + 0.25 * lora_delta(other)
    torch.testing.assert_close(q_weight(backend.pipe.transformer), expected)
    torch.testing.assert_close(
        q_weight(backend.pipe.transformer_2), q_weight(base.pipe.transformer_2) + lora_delta(lora_file)
    )


def test_lora_stays_an_adapter_on_a_gguf_expert(tiny_wan_dir: Path, lora_file: Path, tmp_path: Path) -> None:
    from diffusers import WanTransformer3DModel

    from tests.tiny_wan import to_original_layout, write_gguf

    reference = WanTransformer3DModel.from_pretrained(tiny_wan_dir / "transformer")
    gguf_file = write_gguf(to_original_layout(reference.state_dict()), tmp_path / "high-Q8_0.gguf")
    plain = WanBackend(WanOptions(model=str(tiny_wan_dir), transformer=str(gguf_file)))
    with_lora = WanBackend(
        WanOptions(
            model=str(tiny_wan_dir), transformer=str(gguf_file), loras=(LoraSpec(str(lora_file), target="high"),)
        )
    )
    assert has_adapter(with_lora.pipe.transformer)
    assert not np.array_equal(generate(with_lora), generate(plain))


def test_missing_lora_file_is_a_clear_error(tiny_wan_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="lora file"):
        WanBackend(WanOptions(model=str(tiny_wan_dir), loras=(LoraSpec(str(tmp_path / "none.safetensors")),)))
