"""Shared pieces of the ComfyUI backend tests: a backend on a stand-in, a start picture, a job."""

from __future__ import annotations

import asyncio
import dataclasses
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from shared.config import ComfyUIConfig, ComfyUIMappingConfig, ComfyUIServerConfig, GenerationConfig
from worker.backend import SegmentFrames
from worker.comfyui.backend import ComfyUIBackend, ComfyUIOptions, options_from_config

TRACE = json.loads((Path(__file__).parent / "ws_trace.json").read_text(encoding="utf-8"))


def start_picture(width: int = 96, height: int = 80) -> Image.Image:
    rgb = np.random.default_rng(3).integers(0, 256, (height, width, 3), dtype=np.uint8)
    return Image.fromarray(rgb)


def options(url: str, **changes: Any) -> ComfyUIOptions:
    comfyui = ComfyUIConfig(urls=(url,), poll_interval=0.1, server_lost_after=0.5, connect_timeout=2.0)
    comfyui = dataclasses.replace(comfyui, **{k: v for k, v in changes.items() if hasattr(comfyui, k)})
    generation = GenerationConfig(backend="comfyui")
    return options_from_config(generation, comfyui, "comfyui:0")


async def open_backend(opts: ComfyUIOptions) -> ComfyUIBackend:
    # The backend blocks its caller (the worker's main thread): keep the stand-in's loop free.
    return await asyncio.to_thread(ComfyUIBackend, opts)


async def generate(
    backend: ComfyUIBackend,
    image: Image.Image,
    *,
    on_step: Callable[[int, int], bool] | None = None,
    on_wait: Callable[[int, str, float | None], bool] | None = None,
    size: int = 64,
    frames: int = 5,
    steps: int = 4,
    seed: int | None = 7,
) -> SegmentFrames:
    def run() -> SegmentFrames:
        return backend.generate(
            image=image, prompt="a fox in the snow", negative_prompt="blurry", width=size, height=size,
            frames=frames, steps=steps, guidance=3.5, guidance_2=3.0, seed=seed, on_step=on_step,
            on_wait=on_wait,
        )  # fmt: skip

    return await asyncio.wait_for(asyncio.to_thread(run), 30)


def user_workflow(tmp_path: Path) -> tuple[Path, ComfyUIMappingConfig]:
    """The trace's graph, as a user's "Export (API)" workflow, with the mapping for it."""
    path = tmp_path / "workflow_api.json"
    path.write_text(json.dumps(TRACE["graph_api_format"]), encoding="utf-8")
    mapping = ComfyUIMappingConfig(
        image="1.image", prompt="8.text", negative_prompt="9.text", seed=("11.noise_seed", "12.noise_seed"),
        width=("10.width",), height=("10.height",), length=("10.length",), steps=("11.steps", "12.steps"),
        cfg=("11.cfg",), cfg_2=("12.cfg",), output="14",
    )  # fmt: skip
    return path, mapping


def server(url: str, *headers: str) -> ComfyUIServerConfig:
    return ComfyUIServerConfig(url=url, headers=headers)
