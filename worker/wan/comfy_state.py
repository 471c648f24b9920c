"""Reading a ComfyUI-layout file into the state dict of a diffusers / transformers model: keys
renamed, ComfyUI scaled-fp8 weights multiplied by their scale, every tensor read one at a time
from the memory-mapped file straight into its compute dtype, and the result checked key by key
against the model it is for."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path

import torch
from safetensors import safe_open

from worker.errors import BadInput
from worker.wan.safetensors_header import SCALE_SUFFIXES

#: Keys that are not weights: input scales, format markers, the tokenizer's sentencepiece model.
_NOT_WEIGHTS = (".scale_input", ".input_scale", ".comfy_quant")
_NOT_WEIGHT_KEYS = ("scaled_fp8", "spiece_model")


def _scale_key(key: str, keys: set[str]) -> str | None:
    base = key.removesuffix(".weight")
    if base == key:
        return None
    return next((base + s for s in SCALE_SUFFIXES if base + s in keys), None)


def is_weight(key: str) -> bool:
    return key not in _NOT_WEIGHT_KEYS and not key.endswith(_NOT_WEIGHTS + SCALE_SUFFIXES)


def dequantized(weight: torch.Tensor, scale: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """A scaled-fp8 weight as ComfyUI computes with it: ``fp8 value x scale`` (per tensor, or per
    output channel), rounded once into ``dtype``."""
    scale = scale.to(torch.float32)
    if scale.numel() == 1:
        scale = scale.reshape(())
    elif scale.numel() == weight.shape[0]:
        scale = scale.reshape(-1, *([1] * (weight.dim() - 1)))
    else:
        raise ValueError(f"scale of shape {tuple(scale.shape)} for a weight of shape {tuple(weight.shape)}")
    return (weight.to(torch.float32) * scale).to(dtype)


def read_state_dict(
    path: Path,
    *,
    rename: Callable[[str], str],
    dtype: torch.dtype,
    keep_float32: Callable[[str], bool] = lambda key: False,
) -> dict[str, torch.Tensor]:
    """Every weight of ``path`` under its new name, scales applied, in ``dtype`` (or float32 where
    ``keep_float32`` says so of the new name)."""
    out: dict[str, torch.Tensor] = {}
    with safe_open(str(path), framework="pt") as f:
        keys = set(f.keys())
        for key in sorted(keys):
            if not is_weight(key):
                continue
            new = rename(key)
            want = torch.float32 if keep_float32(new) else dtype
            tensor = f.get_tensor(key)
            scale = _scale_key(key, keys)
            out[new] = dequantized(tensor, f.get_tensor(scale), want) if scale else tensor.to(want)
    return out


def mismatches(got: Mapping[str, tuple[int, ...]], expected: Mapping[str, tuple[int, ...]]) -> list[str]:
    """Missing, unexpected and mis-shaped keys of a converted state dict, in words; empty = a match."""
    missing = sorted(set(expected) - set(got))
    unexpected = sorted(set(got) - set(expected))
    shapes = sorted(k for k in set(got) & set(expected) if tuple(got[k]) != tuple(expected[k]))
    return (
        [f"missing {k}" for k in missing]
        + [f"unexpected {k}" for k in unexpected]
        + [f"{k} has shape {tuple(got[k])}, expected {tuple(expected[k])}" for k in shapes]
    )


def load_into(model: torch.nn.Module, state: dict[str, torch.Tensor], path: Path, what: str) -> None:
    """Put ``state`` into ``model`` (built on the meta device) as its own tensors, no copy; a file
    that does not fit the architecture derived from it is refused naming the first difference."""
    problems = mismatches(
        {k: tuple(v.shape) for k, v in state.items()}, {k: tuple(v.shape) for k, v in model.state_dict().items()}
    )
    if problems:
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        raise BadInput(f"{path} does not load as {what}: {problems[0]}{more}.")
    model.load_state_dict(state, strict=True, assign=True)
    model.requires_grad_(False)
    model.eval()
