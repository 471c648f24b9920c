"""What a memory profile needs, in RAM and VRAM, for one frame size: plain arithmetic, no torch,
so the bot (refusing a /settings size that will not fit) and the worker (refusing to load what
will not fit, in one line, instead of being killed) share it.

The figures come from the real architecture (Wan2.2 I2V A14B: dim 5120, ffn 13824, 40 layers)
and the files' sizes. Activations are counted from the tensors alive at the peak of one
transformer block in diffusers (one forward at a time: CFG runs the two branches one after the
other) and of the Wan VAE decoder at full resolution; they are estimates (no GPU measured them
here), kept on the safe side by a fixed margin.

    tokens      = latent frames x (height / 16) x (width / 16)      latent frames = (frames-1)/4 + 1
    transformer = tokens x max(20 x dim, 4 x dim + 4 x ffn) bytes   (attention: q, k, v, rope temps
                                                                     in fp32; ffn: two bf16 ffn-wide)
    vae decode  = width x height x (2500 x dtype bytes + 12 x frames) bytes
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

GIB = 1024**3
#: From this much free VRAM "auto" keeps everything on the GPU; from EXPERT_OFFLOAD_MIN_FREE one
#: expert at a time; below, layer groups stream from RAM (worker.wan.memory uses the same).
FULL_MIN_FREE = 70 * GIB
EXPERT_OFFLOAD_MIN_FREE = 20 * GIB
#: CUDA context, cuBLAS/cuDNN workspaces and allocator fragmentation.
VRAM_OVERHEAD = int(1.5 * GIB)
#: Python, torch, diffusers and the pipeline's small parts in RAM.
RAM_OVERHEAD = 4 * GIB
#: Bytes per second an idle expert is read back at under low_ram (a good NVMe; SATA is ~0.5 GB/s).
DISK_BYTES_PER_SECOND = 2_000_000_000
PROFILES = ("full", "expert_offload", "group_offload")
#: Share of a card's memory a plan may fill: the display, other processes and allocator
#: fragmentation take the rest (1280x720x81 under expert_offload, ~22 GiB, is an OOM on 24 GB).
USABLE_VRAM = 0.9


def usable_vram(total: int) -> int:
    return int(total * USABLE_VRAM)


@dataclass(frozen=True)
class ExpertArch:
    dim: int = 5120
    ffn: int = 13824
    layers: int = 40


@dataclass(frozen=True)
class ModelSizes:
    """Resident bytes of each part in the form it is kept in (fp8 experts: their file size)."""

    experts: tuple[int, int] = (14_290_000_000, 14_290_000_000)
    #: UMT5-XXL, kept in fp8 with its scales (the Comfy file); bf16 would be 11.4e9.
    text_encoder: int = 6_730_000_000
    #: Wan 2.1 VAE parameters.
    vae_params: int = 127_000_000
    arch: ExpertArch = field(default_factory=ExpertArch)
    #: Both experts are fp8_scaled files, which low_ram keeps memory-mapped (else it changes nothing).
    experts_mapped: bool = True
    #: Bytes of the text encoder's fp8 weights, which low_ram keeps memory-mapped (the UMT5-XXL
    #: Linears; the 2.1 GB embedding stays in RAM).
    text_encoder_mapped: int = 4_630_000_000
    #: Extra bytes while one expert loads: a bf16/fp16 expert exists in the compute dtype until
    #: it is cast to its fp8 storage (0 for fp8_scaled and GGUF files).
    expert_loading: int = 0


#: The seed's four files (Comfy-Org repackaged).
COMFY_FP8 = ModelSizes()


@dataclass(frozen=True)
class Plan:
    profile: str
    width: int
    height: int
    frames: int
    ram: int
    vram: int
    #: Seconds spent per segment reading idle experts (and the text encoder) back from disk
    #: (low_ram), else 0.
    reload_seconds: float = 0.0
    low_ram: bool = False

    def fits(self, *, ram: int | None, vram: int | None) -> bool:
        return (ram is None or self.ram <= ram) and (vram is None or self.vram <= vram)

    def describe(self) -> str:
        reload = f", reloads ~{self.reload_seconds:.0f} s per segment" if self.reload_seconds else ""
        return (
            f"{self.profile}{' (low_ram)' if self.low_ram else ''} at {self.width}x{self.height}x{self.frames}: "
            f"{self.ram / GIB:.1f} GiB RAM, {self.vram / GIB:.1f} GiB VRAM{reload}"
        )


def latent_tokens(width: int, height: int, frames: int) -> int:
    return ((frames - 1) // 4 + 1) * (height // 16) * (width // 16)


def transformer_activations(arch: ExpertArch, width: int, height: int, frames: int) -> int:
    per_token = max(20 * arch.dim, 4 * arch.dim + 4 * arch.ffn)
    return latent_tokens(width, height, frames) * per_token


def vae_decode(width: int, height: int, frames: int, vae_bytes_per_value: int) -> int:
    return width * height * (2500 * vae_bytes_per_value + 12 * frames)


def plan(
    profile: str,
    width: int,
    height: int,
    frames: int,
    sizes: ModelSizes = COMFY_FP8,
    *,
    vae_bytes_per_value: int = 4,
    low_ram: bool = False,
) -> Plan:
    """RAM and VRAM ``profile`` needs for one ``width x height x frames`` segment."""
    if profile not in PROFILES:
        raise ValueError(f"profile must be one of {', '.join(PROFILES)}, got {profile!r}")
    experts, te = sizes.experts, sizes.text_encoder
    vae_weights = sizes.vae_params * vae_bytes_per_value
    act = transformer_activations(sizes.arch, width, height, frames)
    # One layer's weight dequantised to bf16 (the feed-forward is the largest), plus its LoRA.
    dequant = 2 * 2 * sizes.arch.dim * sizes.arch.ffn
    decode = vae_decode(width, height, frames, vae_bytes_per_value)
    reload = 0.0
    low_ram = low_ram and profile == "expert_offload" and sizes.experts_mapped
    # Experts load one at a time, each stored before the next: the peak while loading.
    loading = sum(experts) + sizes.expert_loading
    if profile == "full":
        vram = sum(experts) + te + vae_weights + max(act + dequant, decode)
        # experts go to the GPU one by one as they load
        ram = max(max(experts) + sizes.expert_loading, te + vae_weights)
    elif profile == "expert_offload":
        vram = max(max(experts) + act + dequant, te + GIB, vae_weights + decode)
        if low_ram:
            # Mapped weights are handed back after their turn: one expert or the text encoder's
            # fp8 Linears at a time, beside the encoder's embedding and the VAE; each is read
            # back (from the page cache if it kept them, else from disk) on its next turn.
            mapped_te = min(sizes.text_encoder_mapped, te)
            ram = max(max(experts), mapped_te) + te - mapped_te + vae_weights
            reload = (sum(experts) + mapped_te) / DISK_BYTES_PER_SECOND
        else:
            ram = max(sum(experts) + te + vae_weights, loading)
    else:
        per_layer = max(experts) // sizes.arch.layers
        vram = vae_weights + max(2 * per_layer + act + dequant, decode)
        ram = max(sum(experts) + te + vae_weights, loading)
    return Plan(profile, width, height, frames, ram + RAM_OVERHEAD, vram + VRAM_OVERHEAD, reload, low_ram)


def vae_dtype_name(choice: str, placement: str) -> str:
    """The VAE's precision, "float32" or "bfloat16": float32 (diffusers' advice for the Wan VAE:
    each hand-off frame is re-encoded, so its error compounds along a chain) unless asked
    otherwise or the card is a small one (group_offload); always float32 on the CPU. One rule for
    the worker (worker.wan.memory.vae_dtype) and the plans made without torch (the doctor)."""
    if choice == "float32" or placement == "cpu":
        return "float32"
    if choice == "bfloat16":
        return "bfloat16"
    return "bfloat16" if placement == "group_offload" else "float32"


def vae_bytes(choice: str, placement: str) -> int:
    """Bytes per VAE value under ``vae_dtype_name`` (the ``vae_bytes_per_value`` of a plan)."""
    return 4 if vae_dtype_name(choice, placement) == "float32" else 2


def auto_profile(vram: int) -> str:
    if vram >= FULL_MIN_FREE:
        return "full"
    if vram >= EXPERT_OFFLOAD_MIN_FREE:
        return "expert_offload"
    return "group_offload"


def largest_pixels(profile: str, vram: int, frames: int = 81, sizes: ModelSizes = COMFY_FP8, **kw: object) -> int:
    """The largest width x height (in pixels, in 16 x 16 steps) whose segment needs at most
    ``vram`` (pass ``usable_vram(total)`` for a card); 0 when not even the weights fit."""
    low, high = 0, 4096 * 4096 // 256  # in 16x16 cells
    while low < high:
        mid = (low + high + 1) // 2
        side = 16 * mid  # a 16 x (16 * mid) strip has the same tokens as any shape of that area
        if plan(profile, side, 16, frames, sizes, **kw).vram <= vram:  # type: ignore[arg-type]
            low = mid
        else:
            high = mid - 1
    return low * 256


def ram_available() -> int | None:
    """MemAvailable from /proc/meminfo (what can be used without swapping), else free pages."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError):
        return None


@lru_cache(maxsize=1)
def gpu_memory_total() -> int | None:
    """Total memory of the first NVIDIA GPU via nvidia-smi (the bot has no torch); None if unknown."""
    exe = shutil.which("nvidia-smi")
    if exe is None:
        return None
    try:
        out = subprocess.run(
            [exe, "--query-gpu=memory.total", "--format=csv,noheader,nounits"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout
        return int(out.split()[0]) * 1024 * 1024
    except (OSError, subprocess.SubprocessError, ValueError, IndexError):
        return None


def max_pixels_for(
    *, backend: str, profile: str, transformer: str, transformer_2: str, vae_dtype: str, low_ram: bool, frames: int = 81
) -> int | None:
    """The largest area a segment of ``frames`` may have on this machine's first GPU under the
    configured profile, for the bot's /settings limit; None when unknown (no GPU visible, or the
    preview backend)."""
    total = gpu_memory_total()
    if backend != "wan" or total is None:
        return None
    chosen = auto_profile(total) if profile == "auto" else profile
    vae_bytes = 2 if vae_dtype == "bfloat16" or (vae_dtype == "auto" and chosen == "group_offload") else 4
    sizes = file_sizes(transformer, transformer_2)
    return largest_pixels(chosen, usable_vram(total), frames, sizes, vae_bytes_per_value=vae_bytes, low_ram=low_ram)


def file_sizes(transformer: str, transformer_2: str, default: ModelSizes = COMFY_FP8) -> ModelSizes:
    """``default`` with the expert sizes of the configured files where they exist (an fp8 file is
    kept at its size; a bf16/fp16 one in fp8 under expert_offload: half its size)."""
    sizes = list(default.experts)
    for i, path in enumerate((transformer, transformer_2)):
        p = Path(path).expanduser() if path else None
        if p is not None and p.is_file():
            size = p.stat().st_size
            sizes[i] = size if "fp8" in p.name.lower() or p.suffix == ".gguf" else size // 2
    return ModelSizes(experts=(sizes[0], sizes[1]), text_encoder=default.text_encoder, vae_params=default.vae_params)
