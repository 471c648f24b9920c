"""Cheap checks of model files before torch or diffusers are imported (no torch here).

A missing, unreadable or truncated file is found in milliseconds, and reported as ``bad_input``
with one sentence, instead of after ~8 CPU-seconds of heavy imports. The safetensors header
(8-byte little-endian length, then JSON: name -> dtype, shape, data_offsets) is parsed here and
reused by the fp8 loader, which reads the tensors one at a time from the offsets it gives.
"""

from __future__ import annotations

import json
import os
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from shared.config import GenerationConfig

#: Bytes per element of the safetensors dtypes Wan files use.
DTYPE_BYTES = {
    "F64": 8,
    "F32": 4,
    "F16": 2,
    "BF16": 2,
    "F8_E4M3": 1,
    "F8_E5M2": 1,
    "I64": 8,
    "I32": 4,
    "U8": 1,
    "I8": 1,
}
#: A header larger than this is not a real safetensors header (the format's own limit is 100 MB).
MAX_HEADER_BYTES = 100_000_000


class ModelFileError(ValueError):
    """A model file is missing, unreadable, or not what it should be. The message is one sentence
    for the operator, naming the file."""


@dataclass(frozen=True)
class TensorEntry:
    dtype: str
    shape: tuple[int, ...]
    #: Absolute byte range in the file.
    start: int
    end: int

    @property
    def nbytes(self) -> int:
        return self.end - self.start


@dataclass(frozen=True)
class SafetensorsHeader:
    path: Path
    tensors: dict[str, TensorEntry]
    metadata: dict[str, str]
    file_bytes: int

    def in_file_order(self) -> list[tuple[str, TensorEntry]]:
        """Tensors sorted by offset, so reading them one after another is one sequential pass."""
        return sorted(self.tensors.items(), key=lambda item: item[1].start)

    @property
    def is_scaled_fp8(self) -> bool:
        """ComfyUI's ``fp8_scaled`` layout: fp8 weights with a per-tensor ``scale_weight`` beside them."""
        return any(k.endswith((".scale_weight", ".weight_scale")) for k in self.tensors)


def read_safetensors_header(path: str | os.PathLike[str], what: str = "model file") -> SafetensorsHeader:
    """Parse and check the header of a .safetensors file; ModelFileError names what is wrong."""
    path = Path(path).expanduser()
    shown = f"{what} {str(path)!r}"
    if not path.exists():
        raise ModelFileError(f"{shown} does not exist")
    if not path.is_file():
        raise ModelFileError(f"{shown} is not a file")
    try:
        size = path.stat().st_size
        with path.open("rb") as fh:
            prefix = fh.read(8)
            if len(prefix) < 8:
                raise ModelFileError(f"{shown} is empty or truncated ({size} bytes): download it again")
            (length,) = struct.unpack("<Q", prefix)
            if not 2 <= length <= min(MAX_HEADER_BYTES, size - 8):
                raise ModelFileError(f"{shown} is not a safetensors file (bad header length): download it again")
            raw = fh.read(length)
    except PermissionError:
        raise ModelFileError(f"{shown} is not readable by this user (check its permissions)") from None
    except OSError as exc:
        raise ModelFileError(f"{shown} cannot be read: {exc.strerror or exc}") from None
    try:
        body = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise ModelFileError(f"{shown} has a corrupt safetensors header: download it again") from None
    if not isinstance(body, dict):
        raise ModelFileError(f"{shown} has a corrupt safetensors header: download it again")
    metadata = body.pop("__metadata__", None) or {}
    base = 8 + length
    tensors: dict[str, TensorEntry] = {}
    end_of_data = base
    for name, info in body.items():
        try:
            dtype, shape, (start, end) = str(info["dtype"]), tuple(int(d) for d in info["shape"]), info["data_offsets"]
            entry = TensorEntry(dtype=dtype, shape=shape, start=base + int(start), end=base + int(end))
        except (KeyError, TypeError, ValueError):
            raise ModelFileError(f"{shown} has a corrupt entry for tensor {name!r}: download it again") from None
        count = 1
        for d in shape:
            count *= d
        width = DTYPE_BYTES.get(dtype)
        if width is not None and entry.nbytes != count * width:
            raise ModelFileError(f"{shown}: tensor {name!r} has {entry.nbytes} bytes for shape {list(shape)} {dtype}")
        tensors[name] = entry
        end_of_data = max(end_of_data, entry.end)
    if end_of_data > size:
        missing = end_of_data - size
        raise ModelFileError(
            f"{shown} is truncated ({size:,} of {end_of_data:,} bytes, {missing:,} missing): download it again"
        )
    return SafetensorsHeader(path=path, tensors=tensors, metadata=dict(metadata), file_bytes=size)


def check_model_file(path: str | os.PathLike[str], what: str) -> None:
    """Exists, readable, and (for .safetensors) a header that parses and matches the file size."""
    p = Path(path).expanduser()
    if p.suffix.lower() == ".safetensors":
        read_safetensors_header(p, what)
        return
    if not p.exists():
        raise ModelFileError(f"{what} {str(p)!r} does not exist")
    if p.is_file() and not os.access(p, os.R_OK):
        raise ModelFileError(f"{what} {str(p)!r} is not readable by this user (check its permissions)")


def check_model_files(files: dict[str, str]) -> None:
    """Check each configured file (``{"generation.transformer": path, ...}``; empty paths skipped)."""
    for key, path in files.items():
        if path:
            check_model_file(path, key)


#: Package each diffusers attention backend needs (hub backends fetch kernels via ``kernels``).
_ATTENTION_PACKAGES = (
    ("_hub", "kernels", "kernels"),
    ("flash_varlen", "flash_attn", "flash-attn"),
    ("flash", "flash_attn", "flash-attn"),
    ("_flash_3", "flash_attn_interface", "flash-attn 3 (built from source)"),
    ("_flash_varlen_3", "flash_attn_interface", "flash-attn 3 (built from source)"),
    ("sage", "sageattention", "sageattention"),
    ("_sage", "sageattention", "sageattention"),
    ("xformers", "xformers", "xformers"),
    ("aiter", "aiter", "aiter"),
)


def check_attention_backend(name: str) -> None:
    """A configured attention backend whose package is not installed, found without importing it."""
    import importlib.util

    if not name:
        return
    for pattern, module, package in _ATTENTION_PACKAGES:
        matches = name.endswith(pattern) if pattern == "_hub" else name.startswith(pattern)
        if matches:
            if importlib.util.find_spec(module) is None:
                raise ModelFileError(
                    f"generation.attention_backend = {name!r} needs the {package} package, which is not "
                    f'installed: install it, or set attention_backend = "" for the default'
                )
            return


def preflight(generation: GenerationConfig) -> None:
    """Everything about the wan backend's files and packages that can be checked without torch."""
    files = {
        "generation.transformer": generation.transformer,
        "generation.transformer_2": generation.transformer_2,
        "generation.vae": generation.vae,
        "generation.text_encoder": generation.text_encoder,
    }
    files |= {f"generation.loras[{i}].path": lora.path for i, lora in enumerate(generation.loras)}
    check_model_files(files)
    if generation.transformer_config and not Path(generation.transformer_config).expanduser().exists():
        raise ModelFileError(f"generation.transformer_config {generation.transformer_config!r} does not exist")
    if generation.comfyui_models and not Path(generation.comfyui_models).expanduser().is_dir():
        raise ModelFileError(
            f"generation.comfyui_models {generation.comfyui_models!r} is not a folder (ComfyUI's models folder, "
            "holding diffusion_models/, vae/ and text_encoders/)"
        )
    model = generation.model
    if model.startswith(("/", ".", "~")) and not Path(model).expanduser().is_dir():
        raise ModelFileError(f"generation.model {model!r} is not a folder (a diffusers model folder or a hub id)")
    check_attention_backend(generation.attention_backend)
