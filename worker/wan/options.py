"""Every loading and speed knob of the Wan backend, as one frozen value. No torch here: the
worker's configuration is read and checked before anything heavy is imported."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal, get_args

from shared import params

if TYPE_CHECKING:
    from shared.config import GenerationConfig

Sampler = Literal["euler", "unipc"]
MemoryProfile = Literal["auto", "full", "expert_offload", "group_offload"]
LoraTarget = Literal["both", "high", "low"]
VaeDtype = Literal["auto", "float32", "bfloat16"]

_DEVICE = re.compile(r"^(auto|cpu|cuda|cuda:\d+)$")


@dataclass(frozen=True)
class LoraSpec:
    #: A LoRA .safetensors file (diffusers, ComfyUI/Kijai or musubi key layout).
    path: str
    #: Strength the adapter is applied with.
    scale: float = 1.0
    #: "both" experts, "high" (``transformer``) or "low" (``transformer_2``).
    target: LoraTarget = "both"

    def __post_init__(self) -> None:
        if not self.path:
            raise ValueError("lora path must not be empty")
        if self.target not in get_args(LoraTarget):
            raise ValueError(f"lora target must be 'both', 'high' or 'low', got {self.target!r}")


@dataclass(frozen=True)
class WanOptions:
    #: A diffusers Wan2.2 I2V folder or hub id: VAE, text encoder, tokenizer and, unless the
    #: single files below are given, both experts.
    model: str = params.DEFAULT_MODEL
    #: Single-file experts (ComfyUI / original layout .safetensors, fp8_scaled included, or .gguf);
    #: empty = from ``model``.
    transformer: str = ""
    transformer_2: str = ""
    #: Architecture config for the single files: a diffusers config.json or a folder holding one
    #: (directly, or under transformer/). Empty = read from the file itself (safetensors and
    #: GGUF), else the model folder's, else the shipped A14B one.
    transformer_config: str = ""
    #: A ComfyUI ``models`` folder: the experts under diffusion_models/, the VAE under vae/, the
    #: text encoder under text_encoders/. With it (or the four files given one by one) ``model``
    #: is not used at all.
    comfyui_models: str = ""
    #: Single files of the Wan 2.1 VAE and of the UMT5-XXL encoder (ComfyUI layout, fp8_scaled
    #: included); empty = from ``comfyui_models``, else from ``model``.
    vae: str = ""
    text_encoder: str = ""
    #: A tokenizer folder or hub id, for a text-encoder file without its own ``spiece_model``;
    #: empty = the tokenizer/ of ``model``.
    tokenizer: str = ""
    sampler: Sampler = "euler"
    shift: float = params.DEFAULT_SHIFT
    #: Steps with timestep >= boundary_ratio * 1000 go to the high-noise expert.
    boundary_ratio: float = params.DEFAULT_BOUNDARY_RATIO
    memory_profile: MemoryProfile = "auto"
    #: A diffusers attention backend name ("flash", "sage", "_native_cudnn", ...); empty = default.
    attention_backend: str = ""
    #: Regional compilation of the repeated transformer blocks; only acted on where CUDA is present.
    compile: bool = False
    loras: tuple[LoraSpec, ...] = ()
    #: "auto" (first CUDA device, else the CPU), "cpu", "cuda" or "cuda:N".
    device: str = "auto"
    #: Keep fp8_scaled experts' weights in a memory map of their files instead of in RAM: the
    #: kernel holds what fits and reads the rest back when that expert's turn comes.
    low_ram: bool = False
    #: Precision of the VAE; "auto" = float32 (diffusers' advice for Wan) unless memory is short.
    vae_dtype: VaeDtype = "auto"

    def __post_init__(self) -> None:
        if not self.model:
            raise ValueError("model must name a diffusers folder or hub id")
        if self.sampler not in get_args(Sampler):
            raise ValueError(f"sampler must be 'euler' or 'unipc', got {self.sampler!r}")
        if not self.shift > 0:
            raise ValueError(f"shift must be positive, got {self.shift!r}")
        if not 0.0 <= self.boundary_ratio <= 1.0:
            raise ValueError(f"boundary_ratio must be between 0 and 1, got {self.boundary_ratio!r}")
        if self.memory_profile not in get_args(MemoryProfile):
            raise ValueError(
                "memory_profile must be 'auto', 'full', 'expert_offload' or 'group_offload', "
                f"got {self.memory_profile!r}"
            )
        if not _DEVICE.match(self.device):
            raise ValueError(f"device must be 'auto', 'cpu', 'cuda' or 'cuda:N', got {self.device!r}")
        if self.vae_dtype not in get_args(VaeDtype):
            raise ValueError(f"vae_dtype must be 'auto', 'float32' or 'bfloat16', got {self.vae_dtype!r}")
        for lora in self.loras:
            if not isinstance(lora, LoraSpec):
                raise ValueError(f"loras must be LoraSpec values, got {type(lora).__name__}")


def wan_options_from_config(generation: GenerationConfig, *, device: str = "auto") -> WanOptions:
    """The Wan backend's options from the ``[generation]`` section of the configuration."""
    return WanOptions(
        model=generation.model,
        transformer=generation.transformer,
        transformer_2=generation.transformer_2,
        transformer_config=generation.transformer_config,
        comfyui_models=generation.comfyui_models,
        vae=generation.vae,
        text_encoder=generation.text_encoder,
        tokenizer=generation.tokenizer,
        sampler=generation.sampler,
        shift=generation.shift,
        boundary_ratio=generation.boundary_ratio,
        memory_profile=generation.memory_profile,
        attention_backend=generation.attention_backend,
        compile=generation.compile,
        loras=tuple(LoraSpec(path=lo.path, scale=lo.scale, target=lo.target) for lo in generation.loras),
        device=device,
        low_ram=generation.low_ram,
        vae_dtype=generation.vae_dtype,
    )
