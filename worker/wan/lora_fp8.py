"""LoRAs on fp8_scaled experts, and a record of the LoRA keys that were not applied.

diffusers converts a LoRA file (ComfyUI / Kijai / musubi layouts) to its own
``transformer.<module>.lora_A/lora_B`` keys, with ``alpha / rank`` folded in; peft cannot wrap a
ScaledFP8Linear, so the factors are handed to the layer itself (worker.wan.fp8 says why they are
merged at compute time rather than into the stored fp8 weight).
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch
from safetensors import safe_open
from torch import nn

from worker.wan.expert_file import diffusers_names
from worker.wan.fp8 import ScaledFP8Linear

log = logging.getLogger("framechain.worker")

_RAW_SUFFIXES = (
    ".lora_down.weight",
    ".lora_up.weight",
    ".lora_A.weight",
    ".lora_B.weight",
    ".alpha",
    ".diff_b",
    ".diff",
)


def _module_of(key: str) -> str:
    return key.removeprefix("transformer.").rsplit(".lora_", 1)[0]


def merge_lora_at_compute_time(
    model: nn.Module, converted: dict[str, torch.Tensor], scale: float, *, name: str
) -> None:
    """Give every layer the LoRA targets its factors at ``scale``; plain Linears (layers the file
    left unscaled) get the product fused into their weight. Keys for no layer are logged."""
    modules: dict[str, dict[str, torch.Tensor]] = {}
    for key, tensor in converted.items():
        part = key.removeprefix("transformer.").rsplit(".lora_", 1)
        if len(part) == 2:
            modules.setdefault(part[0], {})[part[1]] = tensor
    layers = dict(model.named_modules())
    dropped: list[str] = []
    for module_name, parts in modules.items():
        layer = layers.get(module_name)
        down, up, bias = parts.get("A.weight"), parts.get("B.weight"), parts.get("B.bias")
        if not isinstance(layer, (ScaledFP8Linear, nn.Linear)) or down is None or up is None:
            dropped.append(module_name)
            continue
        with torch.no_grad():
            if isinstance(layer, ScaledFP8Linear):
                layer.add_lora(up, down, scale)
            else:
                delta = (up.to(torch.float32) @ down.to(torch.float32)) * scale
                layer.weight.add_(delta.to(layer.weight.dtype))
            if bias is not None and layer.bias is not None:
                layer.bias.add_((bias.to(torch.float32) * scale).to(layer.bias.dtype))
    log.info("lora %s: %d layers merged at compute time", name, len(modules) - len(dropped))
    if dropped:
        log.warning(
            "lora %s: %d layer(s) not in the model, not applied: %s", name, len(dropped), ", ".join(dropped[:8])
        )


def dropped_lora_keys(path: Path, converted: dict[str, torch.Tensor]) -> list[str]:
    """Keys of the LoRA file (original ``diffusion_model.`` layout) that diffusers' conversion left
    out, e.g. norm ``diff`` keys; other layouts are not checked."""
    with safe_open(str(path), framework="pt") as f:
        raw = list(f.keys())
    if not raw or not all(k.startswith("diffusion_model.") for k in raw):
        return []
    kept = {_module_of(k) for k in converted}
    bases = {}
    for key in raw:
        body = key.removeprefix("diffusion_model.")
        for suffix in _RAW_SUFFIXES:
            if body.endswith(suffix):
                body = body[: -len(suffix)]
                break
        bases[key] = body
    renamed = diffusers_names([b + ".weight" for b in set(bases.values())])
    return sorted(k for k, base in bases.items() if renamed[base + ".weight"].removesuffix(".weight") not in kept)


def log_dropped_lora_keys(path: Path, converted: dict[str, torch.Tensor]) -> None:
    dropped = dropped_lora_keys(path, converted)
    if dropped:
        log.warning(
            "lora %s: %d key(s) are not applied (diffusers does not convert them): %s",
            path.name,
            len(dropped),
            ", ".join(dropped[:8]) + (" ..." if len(dropped) > 8 else ""),
        )
