"""A ComfyUI user's four files as the whole model: a segment generates from tiny files in the
Comfy-Org layouts alone, offline, with no ``generation.model``; the tokenizer comes from the
text-encoder file, or from where the log says when the file lacks it."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from diffusers import AutoencoderKLWan
from PIL import Image
from transformers import UMT5EncoderModel

from shared import params
from shared.config import load_config
from tests.comfy_files import train_spiece, write_comfyui_models
from worker.errors import BadInput
from worker.wan.backend import WanBackend
from worker.wan.comfy_text import tokenizer_from_spiece
from worker.wan.loader import load_pipeline
from worker.wan.options import WanOptions, wan_options_from_config

HIGH = "diffusion_models/wan2.2_i2v_high_noise_14B_fp8_scaled.safetensors"
LOW = "diffusion_models/wan2.2_i2v_low_noise_14B_fp8_scaled.safetensors"
VAE = "vae/wan_2.1_vae.safetensors"
TEXT = "text_encoders/umt5_xxl_fp8_e4m3fn_scaled.safetensors"


@pytest.fixture(scope="module")
def comfy_models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_comfyui_models(tmp_path_factory.mktemp("comfyui") / "models")


@pytest.fixture(scope="module")
def comfy_models_without_spiece(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_comfyui_models(tmp_path_factory.mktemp("comfyui-nospiece") / "models", spiece=False)


def generate(backend: WanBackend, **overrides: Any) -> np.ndarray:
    pixels = np.random.default_rng(0).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    kwargs: dict[str, Any] = {
        "image": Image.fromarray(pixels), "prompt": "a cat walks on the street", "negative_prompt": "",
        "width": 32, "height": 32, "frames": 5, "steps": 2, "guidance": 3.5, "guidance_2": 3.5, "seed": 3,
    }  # fmt: skip
    kwargs.update(overrides)
    frames: np.ndarray = backend.generate(**kwargs).frames
    return frames


def test_a_segment_generates_from_the_four_files_alone(comfy_models: Path, tmp_path: Path) -> None:
    assert os.environ["HF_HUB_OFFLINE"] == "1"  # any download attempt would fail
    config_file = tmp_path / "config.toml"
    config_file.write_text(f'[generation]\ncomfyui_models = "{comfy_models}"\n')
    generation = load_config(config_file).generation
    assert generation.model == params.DEFAULT_MODEL  # never set, never used
    backend = WanBackend(wan_options_from_config(generation, device="cpu"))
    pipe = backend.pipe
    assert isinstance(pipe.vae, AutoencoderKLWan) and isinstance(pipe.text_encoder, UMT5EncoderModel)
    assert pipe.transformer.config.num_attention_heads == 1 and pipe.transformer.config.num_layers == 2
    assert pipe.config.boundary_ratio == 0.9
    frames = generate(backend)
    assert frames.shape == (5, 32, 32, 3) and frames.dtype == np.uint8
    assert frames.std() > 0


def test_the_four_paths_one_by_one_are_the_same_source(comfy_models: Path) -> None:
    folder = WanBackend(WanOptions(comfyui_models=str(comfy_models)))
    one_by_one = WanBackend(
        WanOptions(
            model="/nowhere/at/all",  # not needed with all four files
            transformer=str(comfy_models / HIGH),
            transformer_2=str(comfy_models / LOW),
            vae=str(comfy_models / VAE),
            text_encoder=str(comfy_models / TEXT),
        )
    )
    assert np.array_equal(generate(one_by_one), generate(folder))


def test_a_single_file_may_replace_one_component_of_a_diffusers_folder(tiny_wan_dir: Path, comfy_models: Path) -> None:
    backend = WanBackend(WanOptions(model=str(tiny_wan_dir), vae=str(comfy_models / VAE)))
    assert backend.pipe.vae.config.num_res_blocks == 2  # the file's, not the folder's (0)
    assert generate(backend).shape == (5, 32, 32, 3)


def test_tokenizer_from_generation_tokenizer_when_the_file_lacks_spiece_model(
    comfy_models_without_spiece: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    folder = tmp_path / "tokenizer"
    tokenizer_from_spiece(train_spiece()).save_pretrained(folder)
    caplog.set_level(logging.INFO, logger="framechain.worker")
    options = WanOptions(comfyui_models=str(comfy_models_without_spiece), tokenizer=str(folder))
    backend = WanBackend(options)
    said = [r.getMessage() for r in caplog.records if r.getMessage().startswith("tokenizer:")]
    assert said == [
        f"tokenizer: generation.tokenizer {folder} (umt5_xxl_fp8_e4m3fn_scaled.safetensors has no spiece_model)"
    ]
    assert generate(backend).shape == (5, 32, 32, 3)


def test_tokenizer_from_the_model_folder_when_the_file_lacks_spiece_model(
    comfy_models_without_spiece: Path, tiny_wan_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="framechain.worker")
    pipe = load_pipeline(WanOptions(comfyui_models=str(comfy_models_without_spiece), model=str(tiny_wan_dir)))
    said = [r.getMessage() for r in caplog.records if r.getMessage().startswith("tokenizer:")]
    assert said == [
        f"tokenizer: the tokenizer folder of generation.model {tiny_wan_dir} "
        "(umt5_xxl_fp8_e4m3fn_scaled.safetensors has no spiece_model)"
    ]
    assert pipe.tokenizer("a cat").input_ids[-1] == 1


def test_no_tokenizer_anywhere_is_one_sentence(comfy_models_without_spiece: Path) -> None:
    with pytest.raises(BadInput, match=r"has no spiece_model.*set generation\.tokenizer"):
        load_pipeline(WanOptions(comfyui_models=str(comfy_models_without_spiece)))  # hub id, offline
