"""An ``fp8_scaled`` expert file (ComfyUI / Comfy-Org layout) loaded into a WanTransformer3DModel
that keeps it fp8.

1. The model is built on the meta device (accelerate's ``init_empty_weights``): no memory yet.
2. Every Linear whose weight carries a ``scale_weight`` becomes a ScaledFP8Linear (worker.wan.fp8).
3. Tensors are read one at a time, in file order, straight into their storage dtype: fp8 weights
   as they are, scales as 0-d float32, everything else in the compute dtype (float32 where
   diffusers keeps a module in float32). Each read fills a fresh buffer with ``readinto``, so the
   process holds the file's bytes once: no memory map whose touched pages would count a second time.
   With ``mapped=True`` (the low-RAM option) the fp8 weights are instead zero-copy views of a
   private memory map of the file (worker.wan.mapped_file), whose pages are handed back after
   each turn and read again on the next.
4. Every parameter and buffer must have come from the file, with the shape the config expects.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from accelerate import init_empty_weights
from diffusers import WanTransformer3DModel
from diffusers.loaders.single_file_utils import convert_wan_transformer_to_diffusers
from torch import nn

from worker.model_check import SafetensorsHeader, TensorEntry, read_safetensors_header
from worker.wan.fp8 import FP8_DTYPE, ScaledFP8Linear, swap_in_scaled_linears
from worker.wan.mapped_file import MappedFile
from worker.wan.safetensors_header import SCALE_SUFFIXES

log = logging.getLogger("framechain.worker")

TORCH_DTYPES = {
    "F64": torch.float64,
    "F32": torch.float32,
    "F16": torch.float16,
    "BF16": torch.bfloat16,
    "F8_E4M3": torch.float8_e4m3fn,
    "F8_E5M2": torch.float8_e5m2,
    "I64": torch.int64,
    "I32": torch.int32,
    "I8": torch.int8,
    "U8": torch.uint8,
}
#: Keys that are not weights: input scales (for fp8 matmuls, not used here), format markers.
IGNORED_SUFFIXES = (".scale_input", ".input_scale", ".comfy_quant")
IGNORED_KEYS = ("scaled_fp8",)


def diffusers_names(keys: list[str]) -> dict[str, str]:
    """Original / ComfyUI Wan key -> diffusers key, from diffusers' own converter (for the I2V
    A14B layout it only renames, so it runs on the names alone, without any tensor)."""
    converted: dict[str, Any] = convert_wan_transformer_to_diffusers({k: k for k in keys})  # type: ignore[no-untyped-call]
    return {original: new for new, original in converted.items()}


def read_tensor(fh: Any, entry: TensorEntry) -> torch.Tensor:
    """One tensor from an open file, into a buffer of its own."""
    raw = torch.empty(entry.nbytes, dtype=torch.uint8)
    view = memoryview(raw.numpy())  # type: ignore[arg-type]
    fh.seek(entry.start)
    done = 0
    while done < entry.nbytes:
        n = fh.readinto(view[done:])
        if not n:
            raise ValueError(f"file ended inside a tensor at byte {entry.start + done}")
        done += n
    return _typed(raw, entry)


def _typed(raw: torch.Tensor, entry: TensorEntry) -> torch.Tensor:
    dtype = TORCH_DTYPES.get(entry.dtype)
    if dtype is None:
        raise ValueError(f"unsupported tensor dtype {entry.dtype}")
    return raw.view(dtype).reshape(entry.shape)


def _scale_target(key: str) -> str | None:
    for suffix in SCALE_SUFFIXES:
        if key.endswith(suffix):
            return key[: -len(suffix)] + ".weight"
    return None


def _keeps_fp32(model: nn.Module, name: str, dtype: torch.dtype) -> bool:
    keep = getattr(model, "_keep_in_fp32_modules", None) or []
    return dtype in (torch.float16, torch.bfloat16) and any(m in name.split(".") for m in keep)


def _assign(model: nn.Module, name: str, tensor: torch.Tensor) -> None:
    module_name, _, leaf = name.rpartition(".")
    module = model.get_submodule(module_name) if module_name else model
    if leaf in module._parameters:
        current = module._parameters[leaf]
        expected = tuple(current.shape) if current is not None else None
        if expected != tuple(tensor.shape):
            raise ValueError(f"tensor {name} has shape {list(tensor.shape)}, the config expects {list(expected or ())}")
        module._parameters[leaf] = nn.Parameter(tensor, requires_grad=False)
    elif leaf in module._buffers:
        current_buffer = module._buffers[leaf]
        shaped = leaf != "scale_weight"  # a scale is 0-d or one per output channel
        if shaped and current_buffer is not None and tuple(current_buffer.shape) != tuple(tensor.shape):
            raise ValueError(
                f"tensor {name} has shape {list(tensor.shape)}, the config expects {list(current_buffer.shape)}"
            )
        module._buffers[leaf] = tensor
    else:
        raise ValueError(f"tensor {name} has no place in the model")


def fp8_weights(header: SafetensorsHeader, names: dict[str, str]) -> dict[str, str]:
    """Model weight name -> model scale name, for each weight stored fp8 with a scale beside it:
    the Linears that stay fp8."""
    scale_of: dict[str, str] = {}
    for key in header.tensors:
        target = _scale_target(key)
        if target is not None and target in header.tensors and header.tensors[target].dtype == "F8_E4M3":
            scale_of[names[target]] = names[key]
    return scale_of


def fill_scaled_fp8(
    model: nn.Module,
    header: SafetensorsHeader,
    names: dict[str, str],
    *,
    dtype: torch.dtype,
    mapped: bool,
    keeps_fp32: Callable[[str], bool],
) -> None:
    """Fill ``model`` (built on the meta device) from a scaled-fp8 file: swap in a ScaledFP8Linear
    for each fp8 weight with a scale, then read the tensors one at a time in file order (see the
    module doc). ``names``: file key -> model name, for every key to load (others are skipped)."""
    scale_of = fp8_weights(header, names)
    swap_in_scaled_linears(model, {w.removesuffix(".weight") for w in scale_of})
    scales = set(scale_of.values())
    mapping = MappedFile(header.path) if mapped else None
    offsets: dict[str, int] = {}
    with header.path.open("rb") as fh:
        for key, entry in header.in_file_order():
            if key in IGNORED_KEYS or key.endswith(IGNORED_SUFFIXES) or key not in names:
                continue
            name = names[key]
            if name in scale_of and mapping is not None:
                tensor = _typed(mapping.bytes_at(entry.start, entry.nbytes), entry)
                offsets[name.removesuffix(".weight")] = entry.start
            else:
                tensor = read_tensor(fh, entry)
            if name in scale_of:
                pass  # fp8 as stored
            elif name in scales:
                tensor = tensor.to(torch.float32)
                tensor = tensor.reshape(()) if tensor.numel() == 1 else tensor.reshape(-1, 1)
                name = name.rsplit(".", 1)[0] + ".scale_weight"
            else:
                tensor = tensor.to(torch.float32 if keeps_fp32(name) else dtype)
            _assign(model, name, tensor)
    if mapping is not None:
        for module_name, offset in offsets.items():
            layer = model.get_submodule(module_name)
            assert isinstance(layer, ScaledFP8Linear)
            layer.map_weight(mapping, offset)


def load_scaled_fp8_expert(
    path: Path, *, config: Path, dtype: torch.dtype, mapped: bool = False, header: SafetensorsHeader | None = None
) -> WanTransformer3DModel:
    """A Wan expert from an ``fp8_scaled`` file, its Linear weights kept in fp8 (see module doc)."""
    header = header or read_safetensors_header(path, "transformer file")
    names = diffusers_names(list(header.tensors))
    with init_empty_weights():
        model: Any = WanTransformer3DModel.from_config(json.loads(config.read_text()))  # type: ignore[no-untyped-call]
    fill_scaled_fp8(
        model, header, names, dtype=dtype, mapped=mapped, keeps_fp32=lambda name: _keeps_fp32(model, name, dtype)
    )
    missing = [n for n, t in [*model.named_parameters(), *model.named_buffers()] if t is not None and t.is_meta]
    if missing:
        raise ValueError(f"the file lacks {len(missing)} tensor(s) the config needs, e.g. {missing[0]}")
    fp8 = sum(1 for m in model.modules() if isinstance(m, ScaledFP8Linear) and m.weight.dtype == FP8_DTYPE)
    log.info("%s: %d linear layers kept in fp8 with their scales", path.name, fp8)
    return model.eval()  # type: ignore[no-any-return]
