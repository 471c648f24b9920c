"""What each component of the configured model source will hold in RAM, read from the files'
safetensors headers (tensor counts and dtypes) without loading a weight, for the memory plan
(shared.memory_plan). No torch here: it runs before the heavy imports.

Every source is planned: the four single files (given one by one or found in
``comfyui_models``), a diffusers folder (its ``transformer/``, ``transformer_2/``,
``text_encoder/`` and ``vae/`` shards), any mix of the two, and a hub id, for which the published
Wan2.2 I2V A14B sizes stand in.

Bytes per weight, as the loader keeps them:
- an fp8 weight with a scale (``fp8_scaled``): 1, on every profile, and memory-mapped under
  low_ram (experts and text encoder);
- any other expert weight: 1 under expert_offload (layerwise fp8 storage), else the compute
  dtype's (bf16 on a GPU, float32 on the CPU); while it loads, in the compute dtype;
- GGUF experts: their file size;
- any other text-encoder / VAE weight: the compute dtype's.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from shared.memory_plan import COMFY_FP8, ModelSizes
from worker.wan.options import WanOptions
from worker.wan.safetensors_header import SCALE_SUFFIXES, Header, read_header
from worker.wan.sources import resolve_files

#: Published parameter counts, for a hub id that is not on disk: one A14B expert, the UMT5-XXL
#: encoder, the Wan 2.1 VAE.
_EXPERT_PARAMS = 14_290_000_000
_TEXT_ENCODER_PARAMS = 5_680_000_000
_EXPERTS = ("transformer", "transformer_2")


@dataclass(frozen=True)
class PartSize:
    #: Resident bytes in the form the loader keeps the part in.
    resident: int
    #: Of which fp8 weights that low_ram keeps memory-mapped (0 for a part that is not mapped).
    mapped: int = 0
    #: Extra bytes while it loads (a bf16 expert before its fp8 storage cast).
    loading: int = 0


def _numel(shape: tuple[int, ...]) -> int:
    n = 1
    for d in shape:
        n *= d
    return n


def _header_sizes(headers: list[Header], *, other_bytes: int) -> tuple[int, int]:
    """(bytes of fp8 weights that have a scale, bytes of everything else at ``other_bytes`` a value)."""
    fp8, other = 0, 0
    for header in headers:
        scaled = {k[: -len(s)] + ".weight" for k in header.tensors for s in SCALE_SUFFIXES if k.endswith(s)}
        for key, info in header.tensors.items():
            if key == "spiece_model" or key == "scaled_fp8" or key.endswith((*SCALE_SUFFIXES, ".scale_input")):
                continue
            if key in scaled and info.dtype.startswith("F8"):
                fp8 += _numel(info.shape)
            else:
                other += _numel(info.shape) * other_bytes
    return fp8, other


def _folder_headers(folder: Path) -> list[Header] | None:
    shards = sorted(folder.glob("*.safetensors")) if folder.is_dir() else []
    return [read_header(p) for p in shards] or None


def _compute_bytes(placement: str) -> int:
    return 4 if placement == "cpu" else 2


def expert_size(headers: list[Header] | None, gguf: Path | None, placement: str) -> PartSize:
    if gguf is not None:
        return PartSize(gguf.stat().st_size)
    compute = _compute_bytes(placement)
    stored = 1 if placement == "expert_offload" else compute
    if headers is None:
        return PartSize(_EXPERT_PARAMS * stored, loading=_EXPERT_PARAMS * (compute - stored))
    fp8, other_values = _header_sizes(headers, other_bytes=1)
    if fp8:  # fp8_scaled: kept as it is, the rest in the compute dtype, nothing cast at load
        return PartSize(fp8 + other_values * compute, mapped=fp8)
    return PartSize(other_values * stored, loading=other_values * (compute - stored))


def text_encoder_size(headers: list[Header] | None, placement: str) -> PartSize:
    compute = _compute_bytes(placement)
    if headers is None:
        return PartSize(_TEXT_ENCODER_PARAMS * compute)
    fp8, other = _header_sizes(headers, other_bytes=compute)
    return PartSize(fp8 + other, mapped=fp8)


def vae_params(headers: list[Header] | None) -> int:
    if headers is None:
        return COMFY_FP8.vae_params
    return sum(_numel(i.shape) for h in headers for i in h.tensors.values())


def source_sizes(options: WanOptions, placement: str) -> ModelSizes:
    """The sizes of what ``options`` loads under ``placement`` ("cpu", "full", "expert_offload",
    "group_offload"), from the headers of its files and folders."""
    files = resolve_files(options)
    folder = Path(options.model).expanduser()

    def headers(role: str) -> list[Header] | None:
        path = files.get(role)
        if path is not None:
            return [read_header(path)] if path.suffix.lower() == ".safetensors" else None
        return _folder_headers(folder / role)

    experts: list[PartSize] = []
    for role in _EXPERTS:
        path = files.get(role)
        gguf = path if path is not None and path.suffix.lower() == ".gguf" else None
        experts.append(expert_size(headers(role) if gguf is None else None, gguf, placement))
    text = text_encoder_size(headers("text_encoder"), placement)
    vae = vae_params(headers("vae"))
    all_mapped = all(e.mapped > 0 for e in experts)
    return ModelSizes(
        experts=(experts[0].resident, experts[1].resident),
        text_encoder=text.resident,
        vae_params=vae,
        experts_mapped=all_mapped,
        text_encoder_mapped=text.mapped,
        expert_loading=max(e.loading for e in experts),
    )
