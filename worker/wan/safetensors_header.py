"""The header of a ``.safetensors`` file, read without torch: tensor names, dtypes, shapes and
where each tensor's bytes lie. Enough to tell what a file is, and whether it is whole, before a
single weight is read (and before the heavy imports).

Layout: 8 bytes little-endian header length N, N bytes of JSON
(``{name: {"dtype", "shape", "data_offsets": [begin, end]}, "__metadata__": {...}}``), then the
data, whose offsets count from the end of the header.
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from worker.errors import BadInput

#: Per-weight scale keys of ComfyUI scaled-fp8 files (older ``scale_weight``, newer ``weight_scale``).
SCALE_SUFFIXES = (".scale_weight", ".weight_scale")
#: A header larger than this is not a model's (safetensors itself caps it at 100 MB).
_MAX_HEADER = 100 * 1024 * 1024


@dataclass(frozen=True)
class TensorInfo:
    #: safetensors dtype name: "F8_E4M3", "F16", "BF16", "F32", "U8", ...
    dtype: str
    shape: tuple[int, ...]
    #: Byte range in the file (absolute, header included).
    begin: int
    end: int


@dataclass(frozen=True)
class Header:
    path: Path
    tensors: dict[str, TensorInfo]
    metadata: dict[str, str]

    def shape(self, key: str) -> tuple[int, ...]:
        return self.tensors[key].shape

    def __contains__(self, key: object) -> bool:
        return key in self.tensors


def read_header(path: Path) -> Header:
    """The header of ``path``; a file that is not safetensors, or whose size does not match what
    its header describes (a download cut short), is refused with one sentence naming it."""
    name = str(path)
    try:
        size = path.stat().st_size
        with path.open("rb") as f:
            prefix = f.read(8)
            if len(prefix) < 8:
                raise BadInput(f"{name} is not a safetensors file: it is only {size} bytes long.")
            (length,) = struct.unpack("<Q", prefix)
            if length > _MAX_HEADER or 8 + length > size:
                raise BadInput(f"{name} is not a safetensors file, or is truncated: its header cannot be read.")
            raw = f.read(length)
    except OSError as exc:
        raise BadInput(f"{name} cannot be read: {exc.strerror or exc}.") from exc
    try:
        parsed: dict[str, Any] = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise BadInput(f"{name} is not a safetensors file: its header is not valid JSON.") from None
    start = 8 + length
    tensors: dict[str, TensorInfo] = {}
    data_end = 0
    try:
        for key, entry in parsed.items():
            if key == "__metadata__":
                continue
            begin, end = (int(v) for v in entry["data_offsets"])
            tensors[key] = TensorInfo(
                dtype=str(entry["dtype"]),
                shape=tuple(int(d) for d in entry["shape"]),
                begin=start + begin,
                end=start + end,
            )
            data_end = max(data_end, end)
    except (KeyError, TypeError, ValueError):
        raise BadInput(f"{name} is not a safetensors file: its header is malformed.") from None
    if start + data_end != size:
        whole = start + data_end
        how = "truncated (a download cut short?)" if size < whole else "corrupt"
        raise BadInput(f"{name} is {how}: its header describes {whole} bytes, the file has {size}.")
    metadata = parsed.get("__metadata__") or {}
    return Header(path=path, tensors=tensors, metadata={str(k): str(v) for k, v in metadata.items()})


def read_bytes(header: Header, key: str) -> bytes:
    """The raw bytes of one (small) tensor, e.g. the sentencepiece model stored as uint8."""
    info = header.tensors[key]
    with header.path.open("rb") as f:
        f.seek(info.begin)
        return f.read(info.end - info.begin)
