"""fp8 kept as fp8: Comfy-Org fp8_scaled experts load with their weights still float8_e4m3fn and
their scales, dequantised per layer in the forward pass, and generate through the real loader."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from diffusers import WanTransformer3DModel
from PIL import Image
from safetensors import safe_open

from tests.tiny_wan import to_original_layout
from tests.worker.fp8_files import write_comfy_fp8_scaled
from tests.worker.test_wan_lora import lora_delta, write_lora
from worker.wan.backend import WanBackend
from worker.wan.expert_file import diffusers_names
from worker.wan.fp8 import FP8_DTYPE, ScaledFP8Linear, scaled_linears
from worker.wan.loader import load_transformer_file
from worker.wan.memory import _store_experts_in_fp8
from worker.wan.options import LoraSpec, WanOptions


def expert(tiny_wan_dir: Path, name: str = "transformer") -> WanTransformer3DModel:
    return WanTransformer3DModel.from_pretrained(tiny_wan_dir / name)


@pytest.fixture(scope="module")
def fp8_files(tiny_wan_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("fp8")
    high = write_comfy_fp8_scaled(
        to_original_layout(expert(tiny_wan_dir).state_dict()),
        folder / "wan2.2_i2v_high_noise_14B_fp8_scaled.safetensors",
    )
    low = write_comfy_fp8_scaled(
        to_original_layout(expert(tiny_wan_dir, "transformer_2").state_dict()),
        folder / "wan2.2_i2v_low_noise_14B_fp8_scaled.safetensors",
    )
    return high, low


def reference_dequant(file: Path) -> dict[str, torch.Tensor]:
    """diffusers key -> w_fp8 * scale in float32, straight from the file."""
    with safe_open(str(file), framework="pt") as f:
        keys = list(f.keys())
        names = diffusers_names(keys)
        return {
            names[k]: f.get_tensor(k).to(torch.float32) * f.get_tensor(k.removesuffix(".weight") + ".scale_weight")
            for k in keys
            if k.removesuffix(".weight") + ".scale_weight" in keys
        }


def generate(backend: WanBackend, guidance: float = 3.5) -> np.ndarray:
    image = np.random.default_rng(0).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    return backend.generate(
        image=Image.fromarray(image), prompt="a dog runs", negative_prompt="", width=32, height=32,
        frames=5, steps=4, guidance=guidance, guidance_2=guidance, seed=3,
    ).frames  # fmt: skip


def test_every_linear_stays_fp8_and_computes_with_the_scaled_weight(
    tiny_wan_dir: Path, fp8_files: tuple[Path, Path]
) -> None:
    high, _ = fp8_files
    config = tiny_wan_dir / "transformer" / "config.json"
    model = load_transformer_file(high, config=config, dtype=torch.bfloat16)
    reference = reference_dequant(high)
    layers = dict(model.named_modules())
    assert not any(type(m) is torch.nn.Linear for m in model.modules())  # every Linear was swapped
    assert len(reference) == len(scaled_linears(model)) > 10
    for name, want in reference.items():
        layer = layers[name.removesuffix(".weight")]
        assert isinstance(layer, ScaledFP8Linear)
        assert layer.weight.dtype == FP8_DTYPE and layer.scale_weight.dim() == 0  # stored as in the file
        got = layer.dequantized_weight(torch.bfloat16)
        assert got.dtype == torch.bfloat16
        torch.testing.assert_close(got.to(torch.float32), want, rtol=2**-8, atol=0)  # one bf16 rounding
    # The module's dtype (which the pipeline casts latents to) stays the compute dtype, not fp8.
    assert model.dtype == torch.bfloat16
    assert model.condition_embedder.time_embedder.linear_1.bias.dtype == torch.float32  # kept in fp32


def test_outputs_match_a_reference_dequantised_model(tiny_wan_dir: Path, fp8_files: tuple[Path, Path]) -> None:
    high, _ = fp8_files
    config = tiny_wan_dir / "transformer" / "config.json"
    model = load_transformer_file(high, config=config, dtype=torch.float32)
    # The reference: the same model with plain Linears holding w_fp8 * scale.
    ref = expert(tiny_wan_dir)
    state = ref.state_dict()
    dequantised = reference_dequant(high)
    state.update(dequantised)
    for key, value in model.state_dict().items():
        if key in state and key not in dequantised:
            state[key] = value.to(torch.float32)  # the fp16 round trip of the other tensors
    ref.load_state_dict(state)
    inputs: dict[str, Any] = {
        "hidden_states": torch.randn(1, 12, 2, 4, 4, generator=torch.Generator().manual_seed(0)),
        "timestep": torch.tensor([900.0]),
        "encoder_hidden_states": torch.randn(1, 8, 16, generator=torch.Generator().manual_seed(1)),
        "return_dict": False,
    }
    with torch.no_grad():
        torch.testing.assert_close(model(**inputs)[0], ref(**inputs)[0], rtol=1e-5, atol=1e-5)


def test_expert_offload_does_not_recast_fp8_scaled_experts(tiny_wan_dir: Path, fp8_files: tuple[Path, Path]) -> None:
    """Layerwise casting (fp8 storage without a scale) is only for bf16/fp16 experts."""
    high, _ = fp8_files
    fp8 = load_transformer_file(high, config=tiny_wan_dir / "transformer" / "config.json", dtype=torch.bfloat16)
    plain = expert(tiny_wan_dir, "transformer_2").to(torch.bfloat16)
    before = {n: t.clone() for n, t in fp8.state_dict().items()}

    class Pipe:
        transformer = fp8
        transformer_2 = plain

    _store_experts_in_fp8(Pipe(), torch.bfloat16)
    assert all(torch.equal(before[n], t) for n, t in fp8.state_dict().items())
    assert not any(hasattr(m, "_diffusers_hook") for m in fp8.modules())
    assert plain.blocks[0].attn1.to_q.weight.dtype == FP8_DTYPE  # the bf16 expert is cast as before


def test_a_segment_generates_from_two_fp8_scaled_files(tiny_wan_dir: Path, fp8_files: tuple[Path, Path]) -> None:
    high, low = fp8_files
    backend = WanBackend(WanOptions(model=str(tiny_wan_dir), transformer=str(high), transformer_2=str(low)))
    assert scaled_linears(backend.pipe.transformer) and scaled_linears(backend.pipe.transformer_2)
    frames = generate(backend)
    assert frames.shape == (5, 32, 32, 3) and frames.std() > 0
    # Close to the full-precision folder: fp8 rounding moves pixels a little, not the picture.
    folder = generate(WanBackend(WanOptions(model=str(tiny_wan_dir))))
    assert np.abs(frames.astype(int) - folder.astype(int)).mean() < 8


def test_mapped_weights_equal_read_weights(tiny_wan_dir: Path, fp8_files: tuple[Path, Path]) -> None:
    high, _ = fp8_files
    config = tiny_wan_dir / "transformer" / "config.json"
    read = load_transformer_file(high, config=config, dtype=torch.float32)
    mapped = load_transformer_file(high, config=config, dtype=torch.float32, mapped=True)
    for a, b in zip(scaled_linears(read), scaled_linears(mapped), strict=True):
        assert b.host_weight is b.weight and a.host_weight is None
        assert torch.equal(a.weight.view(torch.uint8), b.weight.view(torch.uint8))
    mapped.to("cpu")  # a no-op move keeps the mapping
    assert all(m.host_weight is m.weight for m in scaled_linears(mapped))


def test_lora_on_fp8_experts_is_merged_into_the_dequantised_weight(
    tiny_wan_dir: Path, fp8_files: tuple[Path, Path], tmp_path: Path
) -> None:
    high, low = fp8_files
    lora = write_lora(tmp_path / "lightx2v_4step.safetensors")
    options = WanOptions(model=str(tiny_wan_dir), transformer=str(high), transformer_2=str(low))
    plain = WanBackend(options)
    with_lora = WanBackend(WanOptions(**{**options.__dict__, "loras": (LoraSpec(str(lora), scale=0.5),)}))
    delta = lora_delta(lora)
    for name in ("transformer", "transformer_2"):
        base_q = getattr(plain.pipe, name).blocks[0].attn1.to_q
        q = getattr(with_lora.pipe, name).blocks[0].attn1.to_q
        assert isinstance(q, ScaledFP8Linear) and q.weight.dtype == FP8_DTYPE
        assert torch.equal(q.weight.view(torch.uint8), base_q.weight.view(torch.uint8))  # storage untouched
        torch.testing.assert_close(
            q.dequantized_weight(torch.float32), base_q.dequantized_weight(torch.float32) + 0.5 * delta
        )
    assert not np.array_equal(generate(with_lora, 1.0), generate(plain, 1.0))
