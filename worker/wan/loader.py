"""Loading a Wan2.2 I2V pipeline from a diffusers folder or hub id, or from the single files a
ComfyUI user already has, then placing it in memory and applying the speed options.

Single-file experts come in three shapes, all read here without any download:
- original Wan / ComfyUI key layout ``.safetensors`` (ComfyUI's carry ``model.diffusion_model.``);
  diffusers converts the keys;
- ``*_fp8_scaled.safetensors``: fp8 weights plus a ``scale_weight`` per weight. diffusers would load
  the fp8 values and drop the scales, giving wrong weights; worker.wan.expert_file keeps the
  weights in fp8 with their scales and dequantises per layer at compute time;
- ``.gguf``: loaded quantized through ``GGUFQuantizationConfig``.
The architecture is read from the file's own tensor shapes (worker.wan.detect), unless a
diffusers config is configured. The VAE and the text encoder may be single files too
(worker.wan.components): with all four, the diffusers ``model`` is not used at all.
"""

from __future__ import annotations

import gc
import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import torch
from diffusers import GGUFQuantizationConfig, WanImageToVideoPipeline, WanTransformer3DModel

from worker.model_check import read_safetensors_header
from worker.wan.components import (
    EXPERTS,
    ModelSource,
    config_folder,
    expert_config_file,
    inspect_model_files,
    load_single_file_components,
    load_single_file_tokenizer,
    model_source,
)
from worker.wan.detect import SHIPPED_TRANSFORMER_CONFIG as SHIPPED_TRANSFORMER_CONFIG
from worker.wan.detect import ExpertArchitecture
from worker.wan.expert_file import load_scaled_fp8_expert
from worker.wan.fp8 import has_scaled_fp8
from worker.wan.lora_fp8 import log_dropped_lora_keys, merge_lora_at_compute_time
from worker.wan.memory import (
    Placement,
    apply_memory_profile,
    choose_memory_profile,
    compute_dtype,
    is_quantized,
    store_expert,
    vae_dtype,
)
from worker.wan.options import LoraSpec, WanOptions
from worker.wan.schedule import make_scheduler
from worker.wan.svi import SviImageToVideoPipeline

log = logging.getLogger("framechain.worker")

_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


@dataclass(frozen=True)
class Plan:
    """Where and in what precision the pipeline runs."""

    device: torch.device
    placement: Placement
    dtype: torch.dtype


def resolve_device(device: str, *, cuda_available: bool) -> torch.device:
    """ "auto" is the first CUDA device where there is one, else the CPU."""
    if device == "auto":
        return torch.device("cuda:0" if cuda_available else "cpu")
    if device.startswith("cuda") and not cuda_available:
        raise ValueError(f"device {device!r} was asked for but CUDA is not available")
    return torch.device("cuda:0" if device == "cuda" else device)


def plan_for(options: WanOptions, *, cuda_available: bool | None = None, free_bytes: int | None = None) -> Plan:
    """Device, memory placement and dtype for ``options`` on this machine."""
    cuda = torch.cuda.is_available() if cuda_available is None else cuda_available
    device = resolve_device(options.device, cuda_available=cuda)
    on_cuda = device.type == "cuda"
    if free_bytes is None:
        free_bytes = torch.cuda.mem_get_info(device)[0] if on_cuda else 0
    placement = choose_memory_profile(options.memory_profile, cuda_available=on_cuda, free_bytes=free_bytes)
    return Plan(device=device, placement=placement, dtype=compute_dtype(placement))


def _local_model_path(model: str) -> Path | None:
    """The model's folder when it is a local path; None for a hub id. A missing path that cannot be
    a hub id is an error here rather than a confusing download attempt."""
    path = Path(model).expanduser()
    if path.is_dir():
        return path
    if path.exists():
        raise ValueError(f"model must be a diffusers folder or hub id, {model!r} is a file")
    if not _HUB_ID.match(model):
        raise FileNotFoundError(f"model folder {model!r} does not exist")
    return None


def transformer_config_path(options: WanOptions, expert: str) -> Path:
    """The config.json describing the single-file expert ``expert`` ("transformer" or
    "transformer_2"): the configured one, else the model folder's, else the shipped A14B one."""
    if options.transformer_config:
        given = Path(options.transformer_config).expanduser()
        for candidate in (given, given / "config.json", given / expert / "config.json"):
            if candidate.is_file():
                return candidate
        raise FileNotFoundError(f"transformer_config {options.transformer_config!r} holds no config.json")
    local = _local_model_path(options.model)
    if local is not None and (local / expert / "config.json").is_file():
        return local / expert / "config.json"
    return SHIPPED_TRANSFORMER_CONFIG


def load_transformer_file(
    path: str | Path, *, config: Path, dtype: torch.dtype, mapped: bool = False
) -> WanTransformer3DModel:
    """One expert from a single file (.safetensors in original/ComfyUI layout, fp8_scaled, or .gguf).

    An ``fp8_scaled`` file stays fp8 with its scales (worker.wan.expert_file); ``mapped`` leaves its
    fp8 weights in a memory map of the file (the low-RAM option)."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"transformer file {str(path)!r} does not exist")
    common: dict[str, Any] = {"config": str(config), "torch_dtype": dtype, "local_files_only": True}
    try:
        if path.suffix.lower() == ".gguf":
            model = WanTransformer3DModel.from_single_file(
                str(path),
                quantization_config=GGUFQuantizationConfig(compute_dtype=dtype),  # type: ignore[no-untyped-call]
                **common,
            )
        else:
            header = read_safetensors_header(path, "transformer file")
            if header.is_scaled_fp8:
                return load_scaled_fp8_expert(path, config=config, dtype=dtype, mapped=mapped, header=header)
            model = WanTransformer3DModel.from_single_file(str(path), **common)
    except (RuntimeError, KeyError, ValueError) as exc:
        raise ValueError(f"could not load transformer file {str(path)!r} with config {str(config)!r}: {exc}") from exc
    return cast(WanTransformer3DModel, model)


def load_loras(pipe: Any, loras: tuple[LoraSpec, ...]) -> None:
    """Load each LoRA into the expert(s) it targets, at its scale.

    The options are fixed for the worker's life, so LoRAs are fused into a bf16/fp32 expert's
    weights and the adapter layers dropped: no extra matmuls per step. On an fp8_scaled expert
    they are merged per layer into the dequantised weight at compute time (worker.wan.fp8 says
    why). GGUF experts cannot take fused weights; they keep the LoRAs as adapters."""
    per_expert: dict[str, tuple[list[str], list[float]]] = {"high": ([], []), "low": ([], [])}
    for index, lora in enumerate(loras):
        path = Path(lora.path).expanduser()
        if not path.is_file():
            raise FileNotFoundError(f"lora file {lora.path!r} does not exist")
        converted: dict[str, torch.Tensor] | None = None
        for expert in ("high", "low"):
            if lora.target not in ("both", expert):
                continue
            model = pipe.transformer if expert == "high" else pipe.transformer_2
            if has_scaled_fp8(model):
                if converted is None:
                    converted = pipe.lora_state_dict(str(path))
                    log_dropped_lora_keys(path, converted)
                merge_lora_at_compute_time(model, converted, lora.scale, name=f"{path.name} ({expert})")
                continue
            name = f"lora{index}_{expert}"
            pipe.load_lora_weights(str(path), adapter_name=name, load_into_transformer_2=expert == "low")
            per_expert[expert][0].append(name)
            per_expert[expert][1].append(lora.scale)
        if converted is None:
            log_dropped_lora_keys(path, pipe.lora_state_dict(str(path)))
    for expert, model_name in (("high", "transformer"), ("low", "transformer_2")):
        names, weights = per_expert[expert]
        if not names:
            continue
        model = getattr(pipe, model_name)
        model.set_adapters(names, weights=weights)
        if not is_quantized(model):
            model.fuse_lora(lora_scale=1.0, adapter_names=names)
            model.unload_lora()


def _expert_config(options: WanOptions, name: str, path: Path, architecture: ExpertArchitecture, folder: Path) -> Path:
    """The config.json for single-file expert ``name``: ``transformer_config`` when set, else the
    one derived from the file (the model folder's where the file's width leaves heads unknown)."""
    if options.transformer_config:
        return transformer_config_path(options, name)
    fallback = None
    if not architecture.complete:
        local = _local_model_path(options.model)
        if local is not None and (local / name / "config.json").is_file():
            fallback = local / name / "config.json"
    return expert_config_file(name, path, architecture, fallback=fallback, folder=folder)


@dataclass(frozen=True)
class LoadedModel:
    pipe: WanImageToVideoPipeline
    source: ModelSource


def _stored(model: Any, name: str, options: WanOptions, plan: Plan) -> Any:
    """``model`` put in its storage form at once, before the next expert loads (a LoRA to fuse
    into a bf16 expert needs its full-precision weights, so that expert waits for step 4)."""
    expert = "high" if name == "transformer" else "low"
    if has_scaled_fp8(model) or not any(lo.target in ("both", expert) for lo in options.loras):
        store_expert(model, plan.placement, plan.device)
    gc.collect()
    return model


def load_pipeline(options: WanOptions, plan: Plan | None = None) -> WanImageToVideoPipeline:
    """The ready-to-run pipeline for ``options`` (see load_model)."""
    return load_model(options, plan).pipe


def load_model(options: WanOptions, plan: Plan | None = None) -> LoadedModel:
    """The ready-to-run pipeline for ``options``: loaded, LoRAs in, placed per the memory plan,
    attention backend and compilation applied; and where each part came from."""
    plan = plan or plan_for(options)

    # 0. Every single file is read from its header and checked, and the tokenizer found, before
    #    any weights load.
    inspection = inspect_model_files(options)
    files = inspection.files
    text = inspection.text_encoder
    tokenizer_from_model = text is not None and not text.has_spiece_model and not options.tokenizer
    local = _local_model_path(options.model) if not files.complete or tokenizer_from_model else None
    components, tokenizer_source = load_single_file_tokenizer(options, inspection, local_model=local)

    # 1. Single-file experts, when given, replace the folder's (which then need not exist). Their
    #    architecture comes from a configured config, else from the file's own tensor shapes.
    #    One at a time, each put in its storage form before the next loads.
    experts: dict[str, WanTransformer3DModel] = {}
    with config_folder() as folder:
        for name, architecture in inspection.experts.items():
            path = files.get(name)
            assert path is not None  # inspected experts all have files
            config = _expert_config(options, name, path, architecture, Path(folder))
            model = load_transformer_file(path, config=config, dtype=plan.dtype, mapped=options.low_ram)
            log.info("%s: %s", name, path)
            experts[name] = _stored(model, name, options, plan)
    #    The experts of the diffusers folder (or hub id) that no file replaces, the same way: one
    #    at a time rather than both in bf16 inside from_pretrained.
    source = str(local) if local is not None else options.model
    for name in EXPERTS:
        if name in experts or (local is not None and not (local / name).is_dir()):
            continue  # a folder lacking an expert is reported below
        model = WanTransformer3DModel.from_pretrained(  # type: ignore[no-untyped-call]
            source, subfolder=name, torch_dtype=plan.dtype, local_files_only=local is not None
        )
        log.info("%s: %s (%s/)", name, source, name)
        experts[name] = _stored(model, name, options, plan)

    # 2. The VAE and text encoder from their single files.
    components.update(experts)
    components.update(load_single_file_components(inspection, dtype=plan.dtype, mapped=options.low_ram))

    # 3. Whatever has no file from the diffusers folder or hub id; with all four files, nothing.
    pipe: Any
    if all(name in components for name in ("transformer", "transformer_2", "vae", "text_encoder", "tokenizer")):
        # The SVI subclass is the parent until a call asks for latent conditioning (worker.wan.svi).
        pipe = SviImageToVideoPipeline(  # type: ignore[no-untyped-call]
            scheduler=make_scheduler(options.sampler, options.shift),
            boundary_ratio=options.boundary_ratio,
            **components,
        )
    else:
        pipe = SviImageToVideoPipeline.from_pretrained(  # type: ignore[no-untyped-call]
            str(local) if local is not None else options.model,
            torch_dtype=plan.dtype,
            local_files_only=local is not None,
            **components,
        )
    if pipe.transformer is None or pipe.transformer_2 is None:
        raise ValueError(f"model {options.model!r} lacks transformer or transformer_2: not a Wan2.2 A14B I2V model")
    pipe.vae.to(vae_dtype(options.vae_dtype, plan.placement))  # (memory) VAE precision
    pipe.register_to_config(boundary_ratio=options.boundary_ratio)
    pipe.scheduler = make_scheduler(options.sampler, options.shift)
    pipe.set_progress_bar_config(disable=True)

    # 3. Adapters before placement: offload hooks must see the final modules.
    if options.loras:
        load_loras(pipe, options.loras)

    # 4. Memory placement (offload hooks only where CUDA is present).
    apply_memory_profile(pipe, plan.placement, plan.device)

    # 5. Speed options.
    for model in (pipe.transformer, pipe.transformer_2):
        if options.attention_backend:
            model.set_attention_backend(options.attention_backend)
        if options.compile and plan.device.type == "cuda":
            # Offload and layerwise-casting hooks break graphs; only a resident model compiles whole.
            model.compile_repeated_blocks(fullgraph=plan.placement == "full" and not is_quantized(model))
    gc.collect()
    return LoadedModel(cast(WanImageToVideoPipeline, pipe), model_source(options, files, tokenizer_source))
