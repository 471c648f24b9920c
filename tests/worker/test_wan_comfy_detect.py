"""Architectures read from the files, and wrong files refused with one sentence before any
weights load: a T2V expert, a Wan2.1 I2V expert, a truncated file, a VAE where an expert is
expected, and files that do not fit each other."""

from __future__ import annotations

import logging
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from diffusers import WanTransformer3DModel
from safetensors.torch import save_file

from tests.comfy_files import (
    expert_state,
    random_state,
    to_comfy_scaled_fp8,
    umt5_comfy_shapes,
    wan_vae_original_shapes,
    write_comfyui_models,
)
from tests.tiny_wan import to_original_layout, write_gguf
from worker.errors import BadInput
from worker.wan.components import inspect_model_files
from worker.wan.detect import SHIPPED_TRANSFORMER_CONFIG, read_shapes, umt5_encoder, wan_expert, wan_vae
from worker.wan.loader import load_pipeline
from worker.wan.options import WanOptions
from worker.wan.safetensors_header import read_header
from worker.wan.sources import find_in_comfyui_models, resolve_files

HIGH = "diffusion_models/wan2.2_i2v_high_noise_14B_fp8_scaled.safetensors"
VAE = "vae/wan_2.1_vae.safetensors"
TEXT = "text_encoders/umt5_xxl_fp8_e4m3fn_scaled.safetensors"


@pytest.fixture(scope="module")
def comfy_models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_comfyui_models(tmp_path_factory.mktemp("comfyui") / "models")


def a14b_shapes(**overrides: object) -> dict[str, tuple[int, ...]]:
    """The original-layout tensor shapes of a real-size A14B expert (meta device: no memory)."""
    config = {**WanTransformer3DModel.load_config(SHIPPED_TRANSFORMER_CONFIG), **overrides}
    with torch.device("meta"):
        model = WanTransformer3DModel.from_config(config)
    return {k: tuple(v.shape) for k, v in to_original_layout(model.state_dict()).items()}


def save(tmp_path: Path, name: str, state: dict[str, torch.Tensor]) -> Path:
    path = tmp_path / name
    save_file(state, path)
    return path


def test_tiny_expert_architecture_is_read_from_the_file(comfy_models: Path) -> None:
    architecture = wan_expert(comfy_models / HIGH, "transformer")
    c = architecture.config
    assert architecture.scaled_fp8 and architecture.complete
    assert (c["num_attention_heads"], c["attention_head_dim"], c["num_layers"]) == (1, 128, 2)
    assert (c["in_channels"], c["out_channels"], c["text_dim"], c["ffn_dim"], c["freq_dim"]) == (12, 4, 32, 64, 32)
    header = read_header(comfy_models / HIGH)
    assert "blocks.0.self_attn.q.scale_weight" in header and header.tensors["scaled_fp8"].shape == (0,)
    assert not any(k.startswith("model.diffusion_model.") for k in header.tensors)


def test_comfyui_prefixed_keys_read_the_same() -> None:
    shapes = a14b_shapes()
    prefixed = {"model.diffusion_model." + k: v for k, v in shapes.items()}
    assert wan_expert(Path("x"), "transformer", shapes=prefixed) == wan_expert(Path("x"), "transformer", shapes=shapes)


def test_a_t2v_expert_is_refused() -> None:
    with pytest.raises(BadInput) as refused:
        wan_expert(
            Path("wan2.2_t2v_high_noise_14B_fp8_scaled.safetensors"), "transformer", shapes=a14b_shapes(in_channels=16)
        )
    assert str(refused.value) == (
        "wan2.2_t2v_high_noise_14B_fp8_scaled.safetensors is a Wan text-to-video (T2V) expert (16 input channels, "
        "where I2V takes 36); generation.transformer needs the Wan2.2 I2V A14B high-noise expert "
        "(e.g. wan2.2_i2v_high_noise_14B_fp8_scaled.safetensors)."
    )


def test_a_wan21_i2v_expert_is_refused(tmp_path: Path) -> None:
    state = expert_state(1)
    state["img_emb.proj.0.weight"] = torch.zeros(4, 4)
    state["blocks.0.cross_attn.k_img.weight"] = torch.zeros(128, 32)
    file = save(tmp_path, "wan2.1_i2v_480p_14B_fp8_scaled.safetensors", to_comfy_scaled_fp8(state))
    with pytest.raises(BadInput, match=r"is a Wan2\.1 image-to-video expert .*generation\.transformer_2 needs"):
        wan_expert(file, "transformer_2")


def test_a_truncated_file_is_refused(comfy_models: Path, tmp_path: Path) -> None:
    whole = (comfy_models / HIGH).read_bytes()
    cut = tmp_path / "wan2.2_i2v_high_noise_14B_fp8_scaled.safetensors"
    cut.write_bytes(whole[: len(whole) - 1000])
    with pytest.raises(
        BadInput, match=rf"is truncated \(a download cut short\?\): its header describes {len(whole)} bytes"
    ):
        wan_expert(cut, "transformer")
    cut.write_bytes(whole[:4])
    with pytest.raises(BadInput, match="is not a safetensors file"):
        read_header(cut)


def test_a_vae_where_an_expert_is_expected_is_refused(comfy_models: Path) -> None:
    with pytest.raises(BadInput) as refused:
        wan_expert(comfy_models / VAE, "transformer")
    assert str(refused.value) == (
        f"{comfy_models / VAE} is a VAE; generation.transformer needs the Wan2.2 I2V A14B high-noise expert "
        "(e.g. wan2.2_i2v_high_noise_14B_fp8_scaled.safetensors)."
    )
    with pytest.raises(BadInput, match=r"is a Wan diffusion model; generation\.vae needs the Wan 2\.1 VAE"):
        wan_vae(comfy_models / HIGH)
    with pytest.raises(BadInput, match=r"is a UMT5 text encoder; generation\.transformer needs"):
        wan_expert(comfy_models / TEXT, "transformer")


def test_a_t5_encoder_is_not_umt5() -> None:
    shapes = umt5_comfy_shapes(vocab=32128)
    t5 = {k: v for k, v in shapes.items() if "relative_attention_bias" not in k or ".block.0." in k}
    with pytest.raises(BadInput, match=r"is a T5 text encoder .*generation\.text_encoder needs the UMT5-XXL"):
        umt5_encoder(Path("t5xxl_fp8_e4m3fn_scaled.safetensors"), shapes=t5)


def test_real_size_files_must_match_the_published_models() -> None:
    with pytest.raises(BadInput, match="of the A14B width with num_layers 30 where the published model has 40"):
        wan_expert(Path("odd.safetensors"), "transformer", shapes=a14b_shapes(num_layers=30))
    with pytest.raises(BadInput, match="num_res_blocks 1 where the published model has 2"):
        wan_vae(Path("odd_vae.safetensors"), shapes=wan_vae_original_shapes(num_res_blocks=1))
    with pytest.raises(BadInput, match="num_layers 12 where the published model has 24"):
        umt5_encoder(Path("umt5.safetensors"), shapes=umt5_comfy_shapes(layers=12))
    # a smaller model of the same layout is not held to the A14B values
    small = wan_expert(
        Path("small.safetensors"), "transformer", shapes=a14b_shapes(num_attention_heads=12, num_layers=30)
    )
    assert small.config["num_attention_heads"] == 12


def test_files_that_do_not_fit_each_other_are_refused(comfy_models: Path, tmp_path: Path) -> None:
    narrow = save(tmp_path, "high.safetensors", to_comfy_scaled_fp8(expert_state(1, text_dim=16)))
    with pytest.raises(BadInput, match="takes text features of width 16 but the text encoder gives 32"):
        inspect_model_files(WanOptions(comfyui_models=str(comfy_models), transformer=str(narrow)))
    vae8 = save(tmp_path, "vae8.safetensors", random_state(wan_vae_original_shapes(base_dim=4, z_dim=8), 0))
    with pytest.raises(BadInput, match="works on 4 latent channels but the VAE gives 8"):
        inspect_model_files(WanOptions(comfyui_models=str(comfy_models), vae=str(vae8)))


def test_the_refusal_comes_before_any_weights_load(comfy_models: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="framechain.worker")
    options = WanOptions(comfyui_models=str(comfy_models), text_encoder=str(comfy_models / VAE))
    with pytest.raises(BadInput, match=r"is a VAE; generation\.text_encoder needs the UMT5-XXL text encoder"):
        load_pipeline(options)
    assert not [r for r in caplog.records if r.name == "framechain.worker"]  # nothing was loaded


def test_the_four_files_are_found_in_a_comfyui_models_folder(comfy_models: Path, tmp_path: Path) -> None:
    files = resolve_files(WanOptions(comfyui_models=str(comfy_models)))
    assert files.complete
    assert (files.transformer, files.vae, files.text_encoder) == (
        comfy_models / HIGH, comfy_models / VAE, comfy_models / TEXT,
    )  # fmt: skip
    # a path given one by one wins over the folder's
    other = tmp_path / "my_vae.safetensors"
    other.write_bytes((comfy_models / VAE).read_bytes())
    assert resolve_files(WanOptions(comfyui_models=str(comfy_models), vae=str(other))).vae == other
    with pytest.raises(FileNotFoundError, match=r"generation\.vae file .* does not exist"):
        resolve_files(WanOptions(vae=str(tmp_path / "none.safetensors")))
    with pytest.raises(FileNotFoundError) as lacking:
        resolve_files(WanOptions(comfyui_models=str(tmp_path), transformer=str(comfy_models / HIGH)))
    assert str(lacking.value) == (
        f"generation.comfyui_models {str(tmp_path)!r} lacks "
        "diffusion_models/wan2.2_i2v_low_noise_14B_fp8_scaled.safetensors, vae/wan_2.1_vae.safetensors, "
        "text_encoders/umt5_xxl_fp8_e4m3fn_scaled.safetensors; put them there or set generation.transformer_2, "
        "generation.vae, generation.text_encoder"
    )


def test_other_file_names_of_the_same_model_are_found_unless_ambiguous(comfy_models: Path, tmp_path: Path) -> None:
    models = tmp_path / "models"
    high = models / "diffusion_models" / "wan22" / "wan2.2_i2v_high_noise_14B_fp16.safetensors"
    high.parent.mkdir(parents=True)
    high.write_bytes((comfy_models / HIGH).read_bytes())
    assert find_in_comfyui_models(models, "transformer") == high
    (models / "unet" / "Wan2.2-I2V-A14B-HighNoise-Q8_0.gguf").parent.mkdir()
    (models / "unet" / "Wan2.2-I2V-A14B-HighNoise-Q8_0.gguf").write_bytes(b"")
    with pytest.raises(FileNotFoundError, match="several files that could be transformer"):
        find_in_comfyui_models(models, "transformer")


def test_gguf_shapes_are_read_in_torch_order(tmp_path: Path) -> None:
    file = write_gguf(expert_state(1), tmp_path / "high-Q8_0.gguf")
    shapes = read_shapes(file)
    assert shapes["patch_embedding.weight"] == (128, 12, 1, 2, 2)
    assert wan_expert(file, "transformer").config["num_layers"] == 2


def test_files_are_checked_without_the_heavy_imports(comfy_models: Path) -> None:
    # what the worker may run before importing torch: resolve, read headers, refuse
    code = (
        "import sys; from worker.wan.options import WanOptions; from worker.wan.sources import resolve_files; "
        "from worker.wan.detect import wan_expert, wan_vae, umt5_encoder; "
        f"f = resolve_files(WanOptions(comfyui_models={str(comfy_models)!r})); "
        "wan_expert(f.transformer, 'transformer'); wan_vae(f.vae); umt5_encoder(f.text_encoder); "
        "print(sorted(m for m in ('torch', 'diffusers', 'transformers', 'safetensors') if m in sys.modules))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert done.stdout.strip() == "[]"
