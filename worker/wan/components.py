"""The pipeline's components from single files, each checked before any of them loads.

``inspect_model_files`` resolves the four files (``comfyui_models`` or one by one), reads every
header and derives every architecture, so a wrong, truncated or mismatched file is refused with
its sentence before a single weight is read. The loaders below then build each component from
its file; whatever has no file comes from the diffusers ``model`` as before.
"""

from __future__ import annotations

import json
import logging
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from worker.errors import BadInput
from worker.wan.detect import (
    ExpertArchitecture,
    Role,
    TextEncoderArchitecture,
    VaeArchitecture,
    check_together,
    umt5_encoder,
    wan_expert,
    wan_vae,
)
from worker.wan.options import WanOptions
from worker.wan.sources import ModelFiles, resolve_files

log = logging.getLogger("framechain.worker")

EXPERTS: tuple[Role, Role] = ("transformer", "transformer_2")


@dataclass(frozen=True)
class ModelInspection:
    """The files and what each holds, read from the headers only."""

    files: ModelFiles
    experts: dict[str, ExpertArchitecture] = field(default_factory=dict)
    vae: VaeArchitecture | None = None
    text_encoder: TextEncoderArchitecture | None = None


def inspect_model_files(options: WanOptions) -> ModelInspection:
    """Every single file's architecture, with the checks of worker.wan.detect; raises BadInput
    (wrong or damaged file) or FileNotFoundError before any weights load."""
    files = resolve_files(options)
    experts: dict[str, ExpertArchitecture] = {}
    for name in EXPERTS:
        path = files.get(name)
        if path is not None:
            experts[name] = wan_expert(path, name)
    vae = wan_vae(files.vae) if files.vae is not None else None
    text = umt5_encoder(files.text_encoder) if files.text_encoder is not None else None
    check_together(experts, vae, text)
    return ModelInspection(files=files, experts=experts, vae=vae, text_encoder=text)


def expert_config_file(
    name: str, path: Path, architecture: ExpertArchitecture, *, fallback: Path | None, folder: Path
) -> Path:
    """The config.json to load expert ``name`` with: the one derived from the file, written into
    ``folder``; where the file's width leaves the heads unknown, ``fallback`` (a configured or
    model-folder config)."""
    if architecture.complete:
        target = folder / name / "config.json"
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(json.dumps(architecture.config))
        return target
    if fallback is None:
        raise BadInput(
            f"{path} is a Wan expert of a width that is not a multiple of 128, so its heads cannot be read "
            "from the file; set generation.transformer_config to its diffusers config."
        )
    return fallback


@dataclass(frozen=True)
class ModelSource:
    """Where each component actually came from, for the worker's ``ready`` message."""

    #: Per component: its single file, or the ``model`` subfolder it was read from.
    components: dict[str, str]
    #: Where the tokenizer came from, in the words of the log.
    tokenizer: str
    #: The diffusers folder or hub id, where any part came from it; "" where none did.
    model: str


def model_source(options: WanOptions, files: ModelFiles, tokenizer: str) -> ModelSource:
    """``tokenizer``: load_single_file_tokenizer's description ("" without a text-encoder file)."""
    roles = (*EXPERTS, "vae", "text_encoder")
    where = {role: str(p) if (p := files.get(role)) is not None else f"{options.model} ({role}/)" for role in roles}
    tokenizer = tokenizer or f"the tokenizer folder of generation.model {options.model}"
    uses_model = not files.complete or "generation.model" in tokenizer
    return ModelSource(components=where, tokenizer=tokenizer, model=options.model if uses_model else "")


def load_single_file_tokenizer(
    options: WanOptions, inspection: ModelInspection, *, local_model: Path | None
) -> tuple[dict[str, Any], str]:
    """The tokenizer that goes with a text-encoder file (``{}`` without one) and where it came
    from. Light, so it is loaded before the weights: a missing tokenizer is found in a second,
    not after minutes."""
    from worker.wan.comfy_text import load_tokenizer

    if inspection.files.text_encoder is None:
        return {}, ""
    source = load_tokenizer(
        inspection.files.text_encoder, tokenizer=options.tokenizer, model=options.model, local_model=local_model
    )
    log.info("tokenizer: %s", source.description)
    return {"tokenizer": source.tokenizer}, source.description


def load_single_file_components(
    inspection: ModelInspection, *, dtype: torch.dtype, mapped: bool = False
) -> dict[str, Any]:
    """The VAE and text encoder that have single files, by pipeline component name; ``mapped``:
    the text encoder's fp8 weights stay in a memory map of its file (the low-RAM option)."""
    from worker.wan.comfy_text import load_text_encoder_file
    from worker.wan.comfy_vae import load_vae_file

    files = inspection.files
    out: dict[str, Any] = {}
    if files.vae is not None and inspection.vae is not None:
        out["vae"] = load_vae_file(files.vae, inspection.vae, dtype=dtype)
        log.info("vae: %s", files.vae)
    if files.text_encoder is not None and inspection.text_encoder is not None:
        out["text_encoder"] = load_text_encoder_file(
            files.text_encoder, inspection.text_encoder, dtype=dtype, mapped=mapped
        )
        log.info("text encoder: %s", files.text_encoder)
    return out


def config_folder() -> tempfile.TemporaryDirectory[str]:
    """Where derived expert configs are written for diffusers to read (removed after loading)."""
    return tempfile.TemporaryDirectory(prefix="framechain-config-")
