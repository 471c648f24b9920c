"""Expert files in the Comfy-Org ``fp8_scaled`` layout, written from a state dict, for tests and
the load benchmark: no ``model.diffusion_model.`` prefix, an empty ``scaled_fp8`` marker, every
linear weight float8_e4m3fn with a 0-d float32 ``.scale_weight`` and ``.scale_input`` beside it,
every other tensor fp16."""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors.torch import save_file

FP8_MAX = 448.0  # largest float8_e4m3fn value


def comfy_fp8_scaled(original: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """``original``: a state dict in the original Wan key layout (tests.tiny_wan.to_original_layout)."""
    out: dict[str, torch.Tensor] = {"scaled_fp8": torch.empty(0, dtype=torch.float8_e4m3fn)}
    for key, tensor in original.items():
        if key.endswith(".weight") and tensor.dim() == 2:
            scale = tensor.abs().max().to(torch.float32) / FP8_MAX
            out[key] = (tensor.to(torch.float32) / scale).to(torch.float8_e4m3fn)
            base = key.removesuffix(".weight")
            out[base + ".scale_weight"] = scale.reshape(())
            out[base + ".scale_input"] = torch.tensor(1.0, dtype=torch.float32)
        else:
            out[key] = tensor.to(torch.float16)
    return out


def write_comfy_fp8_scaled(original: dict[str, torch.Tensor], path: Path) -> Path:
    save_file(comfy_fp8_scaled(original), path)
    return path
