"""Single-file experts as ComfyUI users have them: original and ComfyUI key layouts, fp8_scaled
files whose scale_weight tensors must be applied, and GGUF. Written from the tiny model's own
experts, loaded back through the real loader, and compared with the originals."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from diffusers import WanTransformer3DModel
from safetensors.torch import save_file

from tests.tiny_wan import to_original_layout, write_gguf
from worker.wan.backend import WanBackend
from worker.wan.loader import SHIPPED_TRANSFORMER_CONFIG, load_transformer_file
from worker.wan.options import WanOptions

FP8_MAX = 448.0  # largest float8_e4m3fn value


def expert(tiny_wan_dir: Path, name: str = "transformer") -> WanTransformer3DModel:
    return WanTransformer3DModel.from_pretrained(tiny_wan_dir / name)


def generate(backend: WanBackend) -> np.ndarray:
    image = np.random.default_rng(0).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    from PIL import Image

    return backend.generate(
        image=Image.fromarray(image), prompt="a dog runs", negative_prompt="", width=32, height=32,
        frames=5, steps=4, guidance=3.5, guidance_2=3.5, seed=3,
    ).frames  # fmt: skip


def to_scaled_fp8(original: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], dict[str, float]]:
    """Comfy-Org style fp8_scaled: matrices stored as fp8(w / scale) with a scale_weight each,
    everything else in bf16, plus the format's marker and input-scale keys."""
    out: dict[str, torch.Tensor] = {"scaled_fp8": torch.zeros(0, dtype=torch.float8_e4m3fn)}
    scales: dict[str, float] = {}
    for key, tensor in original.items():
        if key.endswith(".weight") and tensor.dim() == 2:
            scale = float(tensor.abs().max()) / FP8_MAX
            out[key] = (tensor / scale).to(torch.float8_e4m3fn)
            base = key.removesuffix(".weight")
            out[base + ".scale_weight"] = torch.tensor([scale], dtype=torch.float32)
            out[base + ".scale_input"] = torch.tensor([1.0], dtype=torch.float32)
            scales[key] = scale
        else:
            out[key] = tensor.to(torch.bfloat16)
    return out, scales


def assert_same_weights(a: torch.nn.Module, b: torch.nn.Module) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for key in sa:
        assert torch.equal(sa[key], sb[key]), key


@pytest.mark.parametrize("prefix", ["", "model.diffusion_model."], ids=["original", "comfyui"])
def test_single_file_layouts_load_the_same_weights(tiny_wan_dir: Path, tmp_path: Path, prefix: str) -> None:
    reference = expert(tiny_wan_dir)
    file = tmp_path / "high_noise.safetensors"
    save_file(to_original_layout(reference.state_dict(), prefix=prefix), file)
    loaded = load_transformer_file(file, config=tiny_wan_dir / "transformer" / "config.json", dtype=torch.float32)
    assert_same_weights(loaded, reference)


def test_backend_with_single_files_matches_the_folder(tiny_wan_dir: Path, tmp_path: Path) -> None:
    high, low = tmp_path / "high.safetensors", tmp_path / "low.safetensors"
    save_file(to_original_layout(expert(tiny_wan_dir).state_dict(), "model.diffusion_model."), high)
    save_file(to_original_layout(expert(tiny_wan_dir, "transformer_2").state_dict()), low)
    from_folder = WanBackend(WanOptions(model=str(tiny_wan_dir)))
    from_files = WanBackend(WanOptions(model=str(tiny_wan_dir), transformer=str(high), transformer_2=str(low)))
    assert np.array_equal(generate(from_files), generate(from_folder))


def test_fp8_scaled_file_weights_are_rescaled(tiny_wan_dir: Path, tmp_path: Path) -> None:
    reference = expert(tiny_wan_dir)
    scaled, scales = to_scaled_fp8(to_original_layout(reference.state_dict()))
    file = tmp_path / "wan2.2_i2v_high_noise_14B_fp8_scaled.safetensors"
    save_file(scaled, file)
    config = tiny_wan_dir / "transformer" / "config.json"
    model = load_transformer_file(file, config=config, dtype=torch.float32)
    layers = dict(model.named_modules())
    loaded = model.state_dict()
    original = reference.state_dict()
    converted = to_original_layout(original)
    rescaled = 0
    for key, value in original.items():
        original_key = next(k for k, v in converted.items() if torch.equal(v, value))
        if original_key in scales:
            # fp8 e4m3: 3 mantissa bits, so within 1/16 relative, plus the subnormal step near 0
            scale = scales[original_key]
            tolerance = value.abs() / 16 + scale * 2**-9
            weight = layers[key.removesuffix(".weight")].dequantized_weight(torch.float32)  # type: ignore[operator]
            assert ((weight - value).abs() <= tolerance).all(), key
            rescaled += 1
        else:
            torch.testing.assert_close(loaded[key], value, atol=0, rtol=2**-8)  # bf16 round trip
    assert rescaled == len(scales) > 10

    # What diffusers alone makes of the same file: the raw fp8 values, off by the whole scale.
    raw = WanTransformer3DModel.from_single_file(str(file), config=str(config), torch_dtype=torch.float32)
    q = "blocks.0.attn1.to_q.weight"
    assert not torch.allclose(raw.state_dict()[q], original[q], atol=1e-2)


def test_gguf_file_loads_quantized_and_runs(tiny_wan_dir: Path, tmp_path: Path) -> None:
    reference = expert(tiny_wan_dir)
    file = write_gguf(to_original_layout(reference.state_dict()), tmp_path / "high_noise-Q8_0.gguf")
    config = tiny_wan_dir / "transformer" / "config.json"
    loaded = load_transformer_file(file, config=config, dtype=torch.float32)
    quantized = [k for k, v in loaded.state_dict().items() if getattr(v, "quant_type", None) is not None]
    assert "blocks.0.ffn.net.2.weight" in quantized

    inputs: dict[str, Any] = {
        "hidden_states": torch.randn(1, 12, 2, 4, 4, generator=torch.Generator().manual_seed(0)),
        "timestep": torch.tensor([900.0]),
        "encoder_hidden_states": torch.randn(1, 8, 16, generator=torch.Generator().manual_seed(1)),
        "return_dict": False,
    }
    with torch.no_grad():
        want = reference(**inputs)[0]
        got = loaded(**inputs)[0]
    torch.testing.assert_close(got, want, atol=2e-2, rtol=2e-2)  # Q8_0: 8-bit blocks of 32

    backend = WanBackend(WanOptions(model=str(tiny_wan_dir), transformer=str(file)))
    assert generate(backend).shape == (5, 32, 32, 3)


def test_config_resolution(tiny_wan_dir: Path, tmp_path: Path) -> None:
    from worker.wan.loader import transformer_config_path

    # the model folder's own expert config first
    assert transformer_config_path(WanOptions(model=str(tiny_wan_dir)), "transformer_2") == (
        tiny_wan_dir / "transformer_2" / "config.json"
    )
    # a hub id has no local config: the shipped A14B one, never a download
    assert transformer_config_path(WanOptions(), "transformer") == SHIPPED_TRANSFORMER_CONFIG
    # an explicit folder or file wins
    explicit = WanOptions(model=str(tiny_wan_dir), transformer_config=str(tiny_wan_dir))
    assert transformer_config_path(explicit, "transformer") == tiny_wan_dir / "transformer" / "config.json"
    with pytest.raises(FileNotFoundError, match="transformer_config"):
        transformer_config_path(WanOptions(transformer_config=str(tmp_path)), "transformer")


def test_shipped_config_is_the_a14b_i2v_expert() -> None:
    config = json.loads(SHIPPED_TRANSFORMER_CONFIG.read_text())
    assert config["_class_name"] == "WanTransformer3DModel"
    assert (config["in_channels"], config["out_channels"], config["num_layers"]) == (36, 16, 40)
    assert (config["num_attention_heads"] * config["attention_head_dim"], config["ffn_dim"]) == (5120, 13824)
    assert config["image_dim"] is None and config["added_kv_proj_dim"] is None  # Wan2.2: no CLIP image input
    with torch.device("meta"):
        model = WanTransformer3DModel.from_config(config)
    assert sum(p.numel() for p in model.parameters()) == pytest.approx(14.3e9, rel=0.02)


def test_missing_or_mismatched_files_are_clear_errors(tiny_wan_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_transformer_file(tmp_path / "none.safetensors", config=SHIPPED_TRANSFORMER_CONFIG, dtype=torch.float32)
    file = tmp_path / "tiny.safetensors"
    save_file(to_original_layout(expert(tiny_wan_dir).state_dict()), file)
    with pytest.raises(ValueError, match="could not load transformer file"):
        load_transformer_file(file, config=SHIPPED_TRANSFORMER_CONFIG, dtype=torch.float32)
