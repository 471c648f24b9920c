"""fp8 kept as fp8: ComfyUI ``fp8_scaled`` weights stay float8_e4m3fn with their per-tensor scale
and are dequantised one layer at a time, in the forward pass (``w.to(bf16) * scale``), as ComfyUI
does. No full-precision copy of an expert exists at any time; the largest transient is one layer's
weight in the compute dtype (5120 x 13824 x 2 bytes = 141 MB for the A14B feed-forward).

The fp8 weight and its scale are buffers, not parameters: diffusers takes a module's dtype from
its first parameter (the time embedder casts the timestep to it), which must stay the compute dtype.

LoRAs on an fp8 expert are kept as their low-rank factors beside the fp8 weight and merged into
the *dequantised* weight at compute time (``w*scale + up @ down``). Fusing them into the stored
weight would round the LoRA's change to fp8 (3 mantissa bits: a step of 1/16 of the weight, while
distillation LoRAs change weights by well under that), and peft cannot wrap this module. The
cost is one (out x rank) @ (rank x in) product per layer and step, small beside the layer's own
matmul over tens of thousands of tokens; the factors take ~1 % of the expert's memory at rank 64.

``host_weight``: where the fp8 weight was read zero-copy from a memory-mapped file (the low-RAM
option, worker.wan.mapped_file), moving the module to the GPU hands the weight's pages back to the
kernel as soon as they are copied, and moving it back to the CPU re-points it at the mapped pages
instead of copying the GPU copy back: the idle expert holds no RAM, and is read again (from the
page cache, else the disk) on its next turn. On the CPU the weights are used where they are
mapped; ``release_mapped_weights`` drops them after their turn.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from worker.wan.mapped_file import MappedFile

FP8_DTYPE = torch.float8_e4m3fn


class ScaledFP8Linear(nn.Module):
    """A Linear whose weight is stored in fp8 with a scale and dequantised per call."""

    weight: torch.Tensor
    scale_weight: torch.Tensor
    lora_up: torch.Tensor | None
    lora_down: torch.Tensor | None

    def __init__(self, weight: torch.Tensor, scale: torch.Tensor, bias: torch.Tensor | None) -> None:
        super().__init__()
        if weight.dim() != 2 or weight.dtype != FP8_DTYPE:
            raise ValueError(f"weight must be a 2-d {FP8_DTYPE} tensor, got {tuple(weight.shape)} {weight.dtype}")
        self.out_features, self.in_features = int(weight.shape[0]), int(weight.shape[1])
        scale = scale.to(torch.float32)
        if scale.numel() == 1:
            scale = scale.reshape(())
        elif scale.numel() == self.out_features:
            scale = scale.reshape(-1, 1)  # per output channel
        else:
            raise ValueError(f"scale has shape {tuple(scale.shape)} for a weight of shape {tuple(weight.shape)}")
        self.register_buffer("weight", weight)
        self.register_buffer("scale_weight", scale)
        self.bias = nn.Parameter(bias, requires_grad=False) if bias is not None else None
        self.register_buffer("lora_up", None)
        self.register_buffer("lora_down", None)
        self.host_weight: torch.Tensor | None = None
        #: The map ``host_weight`` lies in, and where in the file.
        self.host_file: MappedFile | None = None
        self.host_offset = 0

    def map_weight(self, mapped: MappedFile, offset: int) -> None:
        """Mark the (already assigned) fp8 weight as a view of ``mapped`` at ``offset``."""
        self.host_weight, self.host_file, self.host_offset = self.weight, mapped, offset

    def extra_repr(self) -> str:
        rank = 0 if self.lora_down is None else int(self.lora_down.shape[0])
        return f"in_features={self.in_features}, out_features={self.out_features}, fp8, lora_rank={rank}"

    def add_lora(self, up: torch.Tensor, down: torch.Tensor, scale: float = 1.0) -> None:
        """Add ``scale * up @ down`` to the weight used in compute (factors of several LoRAs stack)."""
        if up.shape[0] != self.out_features or down.shape[1] != self.in_features or up.shape[1] != down.shape[0]:
            raise ValueError(
                f"lora factors {tuple(up.shape)} @ {tuple(down.shape)} do not fit a "
                f"{self.out_features}x{self.in_features} layer"
            )
        dtype = self.bias.dtype if self.bias is not None else torch.bfloat16
        up = (up.to(torch.float32) * scale).to(dtype=dtype, device=self.weight.device)
        down = down.to(dtype=dtype, device=self.weight.device)
        if self.lora_up is not None and self.lora_down is not None:
            up = torch.cat([self.lora_up, up], dim=1)
            down = torch.cat([self.lora_down, down], dim=0)
        self.lora_up, self.lora_down = up, down

    def dequantized_weight(self, dtype: torch.dtype) -> torch.Tensor:
        """The weight used in compute: fp8 -> ``dtype`` is exact, and a 0-d float32 scale is taken
        as a scalar in float, so the product rounds once (a per-channel scale is cast first)."""
        scale = self.scale_weight if self.scale_weight.dim() == 0 else self.scale_weight.to(dtype)
        w = self.weight.to(dtype) * scale
        if self.lora_up is not None and self.lora_down is not None:
            w = w + self.lora_up.to(dtype) @ self.lora_down.to(dtype)
        return w

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        bias = self.bias.to(x.dtype) if self.bias is not None else None
        return F.linear(x, self.dequantized_weight(x.dtype), bias)

    def _apply(self, fn: Callable[[torch.Tensor], torch.Tensor], recurse: bool = True) -> Any:
        host = self.host_weight
        if host is not None and self.weight.device.type != "cpu":
            target = fn(torch.empty(0, dtype=host.dtype, device=self.weight.device))
            if target.device.type == "cpu" and target.dtype == host.dtype:
                self._buffers["weight"] = host  # back to the mapped file: no copy, no new RAM
        moved = super()._apply(fn, recurse)  # type: ignore[no-untyped-call]
        if self.host_file is not None and host is not None and self.weight.device.type != "cpu":
            self.host_file.release(self.host_offset, host.numel())  # the device copy is the one in use
        return moved


def swap_in_scaled_linears(model: nn.Module, names: set[str]) -> None:
    """Replace the nn.Linear modules at ``names`` (dotted paths) by empty ScaledFP8Linear ones on
    the meta device; their tensors are assigned as they are read from the file."""
    for name in names:
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        linear = getattr(parent, child)
        if not isinstance(linear, nn.Linear):
            raise ValueError(f"{name} carries an fp8 scale but is a {type(linear).__name__}, not a Linear")
        with torch.device("meta"):
            weight = torch.empty(linear.out_features, linear.in_features, dtype=FP8_DTYPE)
            bias = torch.empty(linear.out_features) if linear.bias is not None else None
            replacement = ScaledFP8Linear(weight, torch.ones(()), bias)
        setattr(parent, child, replacement)


def scaled_linears(model: nn.Module) -> list[ScaledFP8Linear]:
    return [m for m in model.modules() if isinstance(m, ScaledFP8Linear)]


def release_mapped_weights(model: nn.Module) -> int:
    """Hand back every page of the files ``model``'s fp8 weights are mapped from (low_ram), once
    its turn is over; returns how many files. A no-op for weights read into RAM."""
    files = {id(m.host_file): m.host_file for m in scaled_linears(model) if m.host_file is not None}
    for mapped in files.values():
        mapped.release()
    return len(files)


def has_scaled_fp8(model: Any) -> bool:
    return any(isinstance(m, ScaledFP8Linear) for m in model.modules())
