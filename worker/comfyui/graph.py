"""The API-format prompts framechain sends to ComfyUI: the reference graph, or a user's mapped workflow.

An API-format prompt maps node ids to ``{"class_type": ..., "inputs": {...}}``; an input is a
literal or a link ``[source_node_id, output_slot]``. Everything here is pure: no I/O.

The reference graph is the seed workflow's, node for node: the two Wan2.2 experts each behind
``ModelSamplingSD3`` (shift 8), ``WanImageToVideo`` conditioning on the uploaded start image, two
``KSamplerAdvanced`` sharing one schedule (the high-noise expert adds the noise and hands over its
leftover noise after half the steps, the low-noise expert finishes), ``VAEDecode``, and a PNG
image output, so every frame comes back losslessly.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from shared.config import ComfyUIConfig, ComfyUIMappingConfig, GenerationConfig

Graph = dict[str, dict[str, Any]]

#: Input that takes the uploaded start image (LoadImage's); checked by the upload, not the list.
IMAGE_INPUT = "image"
#: Stands for the start image while a graph is only being checked against a server.
PLACEHOLDER_IMAGE = "framechain-start.png"


@dataclass(frozen=True)
class JobValues:
    """What changes from one segment to the next."""

    image: str
    prompt: str
    negative_prompt: str
    width: int
    height: int
    frames: int
    steps: int
    guidance: float
    guidance_2: float
    seed: int


@dataclass(frozen=True)
class ModelFiles:
    unet_high: str
    unet_low: str
    text_encoder: str
    vae: str
    weight_dtype: str = "default"
    #: (file name, strength) per expert, applied with LoraLoaderModelOnly in order.
    loras_high: tuple[tuple[str, float], ...] = ()
    loras_low: tuple[tuple[str, float], ...] = ()


@dataclass(frozen=True)
class Prompt:
    """A graph ready to submit, and how to read its progress and its frames."""

    graph: Graph
    #: The node whose output images are the frames.
    output: str
    #: Nodes whose ``progress`` counts as denoising steps (their latest values add up); empty
    #: means every node's.
    progress_nodes: tuple[str, ...] = ()


def high_noise_steps(steps: int) -> int:
    """Steps of the high-noise expert: the first half (10 of 20), as in the seed workflow."""
    return (steps + 1) // 2


def model_files(comfyui: ComfyUIConfig, generation: GenerationConfig) -> ModelFiles:
    high: list[tuple[str, float]] = []
    low: list[tuple[str, float]] = []
    for lora in generation.loras:
        # ComfyUI names a LoRA by its file name inside models/loras.
        entry = (Path(lora.path).name, lora.scale)
        if lora.target in ("both", "high"):
            high.append(entry)
        if lora.target in ("both", "low"):
            low.append(entry)
    return ModelFiles(
        unet_high=comfyui.unet_high,
        unet_low=comfyui.unet_low,
        text_encoder=comfyui.text_encoder,
        vae=comfyui.vae,
        weight_dtype=comfyui.weight_dtype,
        loras_high=tuple(high),
        loras_low=tuple(low),
    )


def reference_graph(
    job: JobValues, models: ModelFiles, *, shift: float = 8.0, frames_output: str = "PreviewImage"
) -> Prompt:
    """The seed workflow as an API-format prompt for one segment."""
    split = high_noise_steps(job.steps)
    graph: Graph = {
        "1": {"class_type": "LoadImage", "inputs": {"image": job.image}},
        "2": {
            "class_type": "CLIPLoader",
            "inputs": {"clip_name": models.text_encoder, "type": "wan", "device": "default"},
        },
        "3": {
            "class_type": "UNETLoader",
            "inputs": {"unet_name": models.unet_high, "weight_dtype": models.weight_dtype},
        },
        "4": {
            "class_type": "UNETLoader",
            "inputs": {"unet_name": models.unet_low, "weight_dtype": models.weight_dtype},
        },
        "5": {"class_type": "VAELoader", "inputs": {"vae_name": models.vae}},
    }
    high: list[Any] = ["3", 0]
    low: list[Any] = ["4", 0]
    # LoRAs sit between each expert's loader and its sampling shift, as in Comfy-Org's template.
    next_id = 16
    for loras, source in ((models.loras_high, "high"), (models.loras_low, "low")):
        for name, strength in loras:
            node = str(next_id)
            next_id += 1
            model = high if source == "high" else low
            graph[node] = {
                "class_type": "LoraLoaderModelOnly",
                "inputs": {"model": model, "lora_name": name, "strength_model": strength},
            }
            if source == "high":
                high = [node, 0]
            else:
                low = [node, 0]
    sampler = {"sampler_name": "euler", "scheduler": "simple", "steps": job.steps, "noise_seed": job.seed}
    graph |= {
        "6": {"class_type": "ModelSamplingSD3", "inputs": {"model": high, "shift": shift}},
        "7": {"class_type": "ModelSamplingSD3", "inputs": {"model": low, "shift": shift}},
        "8": {"class_type": "CLIPTextEncode", "inputs": {"text": job.prompt, "clip": ["2", 0]}},
        "9": {"class_type": "CLIPTextEncode", "inputs": {"text": job.negative_prompt, "clip": ["2", 0]}},
        "10": {
            "class_type": "WanImageToVideo",
            "inputs": {
                "positive": ["8", 0],
                "negative": ["9", 0],
                "vae": ["5", 0],
                "width": job.width,
                "height": job.height,
                "length": job.frames,
                "batch_size": 1,
                "start_image": ["1", 0],
            },
        },
        "11": {
            "class_type": "KSamplerAdvanced",
            "inputs": {
                "model": ["6", 0],
                "add_noise": "enable",
                **sampler,
                "cfg": job.guidance,
                "positive": ["10", 0],
                "negative": ["10", 1],
                "latent_image": ["10", 2],
                "start_at_step": 0,
                "end_at_step": split,
                "return_with_leftover_noise": "enable",
            },
        },
        "12": {
            "class_type": "KSamplerAdvanced",
            "inputs": {
                "model": ["7", 0],
                "add_noise": "disable",
                **sampler,
                "cfg": job.guidance_2,
                "positive": ["10", 0],
                "negative": ["10", 1],
                "latent_image": ["11", 0],
                "start_at_step": split,
                "end_at_step": 10000,
                "return_with_leftover_noise": "disable",
            },
        },
        "13": {"class_type": "VAEDecode", "inputs": {"samples": ["12", 0], "vae": ["5", 0]}},
    }
    output: dict[str, Any] = {"images": ["13", 0]}
    if frames_output == "SaveImage":
        output["filename_prefix"] = "framechain/segment"
    graph["14"] = {"class_type": frames_output, "inputs": output}
    return Prompt(graph=graph, output="14", progress_nodes=("11", "12"))


class MappingError(ValueError):
    """A mapping that does not fit its workflow; the message names the role and the node."""


def load_workflow(path: Path) -> Graph:
    """Read an API-format workflow ("Export (API)" in ComfyUI)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise MappingError(f"comfyui.workflow: {path} not found") from None
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise MappingError(f"comfyui.workflow: {path} is not readable JSON ({exc})") from None
    if not isinstance(data, dict) or not all(
        isinstance(node, dict) and isinstance(node.get("class_type"), str) and isinstance(node.get("inputs"), dict)
        for node in data.values()
    ):
        raise MappingError(
            f"comfyui.workflow: {path} is not an API-format workflow (export it with 'Export (API)'; "
            "each node needs class_type and inputs)"
        )
    return data


def _targets(mapping: ComfyUIMappingConfig) -> dict[str, tuple[str, ...]]:
    roles: dict[str, tuple[str, ...]] = {}
    for role in ("image", "prompt", "negative_prompt"):
        value: str = getattr(mapping, role)
        roles[role] = (value,) if value else ()
    for role in ("seed", "width", "height", "length", "steps", "cfg", "cfg_2"):
        roles[role] = getattr(mapping, role)
    return roles


def check_mapping(workflow: Graph, mapping: ComfyUIMappingConfig) -> list[str]:
    """Problems of the mapping against the workflow itself: every node and input it names exist."""
    problems = []
    for role, targets in _targets(mapping).items():
        for target in targets:
            node, _, name = target.partition(".")
            if node not in workflow:
                problems.append(f"mapping.{role}: the workflow has no node {node}")
            elif name not in workflow[node]["inputs"]:
                class_type = workflow[node]["class_type"]
                problems.append(f"mapping.{role}: node {node} ({class_type}) has no input {name!r} in the workflow")
    if mapping.output not in workflow:
        problems.append(f"mapping.output: the workflow has no node {mapping.output}")
    return problems


def mapped_graph(workflow: Graph, mapping: ComfyUIMappingConfig, job: JobValues) -> Prompt:
    """The user's workflow with this segment's values put where the mapping says."""
    graph = copy.deepcopy(workflow)
    values: dict[str, Any] = {
        "image": job.image,
        "prompt": job.prompt,
        "negative_prompt": job.negative_prompt,
        "seed": job.seed,
        "width": job.width,
        "height": job.height,
        "length": job.frames,
        "steps": job.steps,
        "cfg": job.guidance,
        "cfg_2": job.guidance_2,
    }
    for role, targets in _targets(mapping).items():
        for target in targets:
            node, _, name = target.partition(".")
            graph[node]["inputs"][name] = values[role]
    samplers = tuple(dict.fromkeys(target.partition(".")[0] for target in mapping.steps))
    return Prompt(graph=graph, output=mapping.output, progress_nodes=samplers)


def class_types(graph: Mapping[str, Mapping[str, Any]]) -> set[str]:
    return {str(node["class_type"]) for node in graph.values()}
