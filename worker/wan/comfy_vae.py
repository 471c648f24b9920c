"""The Wan 2.1 VAE from its original / ComfyUI single file (``vae/wan_2.1_vae.safetensors``),
with no config file and no download: the architecture is read from the file (worker.wan.detect),
the keys converted here.

diffusers' own ``convert_wan_vae_to_diffusers`` hard-codes the block positions of the 96-wide
release (three residual blocks and an upsampler per decoder level), so the conversion is
written from the structure instead: the encoder's ``downsamples`` list is diffusers'
``down_blocks`` one for one; each decoder level is ``num_res_blocks + 1`` residual blocks then an
upsampler (none on the last), in diffusers ``up_blocks.<level>.resnets.<i>`` / ``upsamplers.0``.
At the released size it gives exactly diffusers' mapping (tests check both).
"""

from __future__ import annotations

from pathlib import Path
from typing import cast

import torch
from diffusers import AutoencoderKLWan

from worker.wan.comfy_state import load_into, read_state_dict
from worker.wan.detect import VaeArchitecture

#: Residual block parts: original ``residual`` Sequential index -> diffusers name.
_RESIDUAL = {
    "residual.0.gamma": "norm1.gamma",
    "residual.2.weight": "conv1.weight",
    "residual.2.bias": "conv1.bias",
    "residual.3.gamma": "norm2.gamma",
    "residual.6.weight": "conv2.weight",
    "residual.6.bias": "conv2.bias",
    "shortcut.weight": "conv_shortcut.weight",
    "shortcut.bias": "conv_shortcut.bias",
}
_MIDDLE = {"0": "resnets.0", "1": "attentions.0", "2": "resnets.1"}
_OUTER = {
    "conv1": "quant_conv",
    "conv2": "post_quant_conv",
    "encoder.conv1": "encoder.conv_in",
    "decoder.conv1": "decoder.conv_in",
    "encoder.head.0": "encoder.norm_out",
    "encoder.head.2": "encoder.conv_out",
    "decoder.head.0": "decoder.norm_out",
    "decoder.head.2": "decoder.conv_out",
}


def vae_key_to_diffusers(key: str, num_res_blocks: int) -> str:
    """The ``AutoencoderKLWan`` name of an original-layout Wan 2.1 VAE key."""
    module, _, leaf = key.rpartition(".")
    if module in _OUTER:
        return f"{_OUTER[module]}.{leaf}"
    parts = key.split(".")
    if len(parts) < 4:
        return key
    side, part, index = parts[:3]
    inner = ".".join(parts[3:])
    if part == "middle":
        return f"{side}.mid_block.{_MIDDLE[index]}.{_RESIDUAL.get(inner, inner)}"
    if part in ("downsamples", "upsamples"):
        if part == "downsamples":
            return f"encoder.down_blocks.{index}.{_RESIDUAL.get(inner, inner)}"
        level, position = divmod(int(index), num_res_blocks + 2)
        if position <= num_res_blocks:
            return f"decoder.up_blocks.{level}.resnets.{position}.{_RESIDUAL.get(inner, inner)}"
        return f"decoder.up_blocks.{level}.upsamplers.0.{inner}"
    return key


def vae_config(architecture: VaeArchitecture) -> dict[str, object]:
    """The ``AutoencoderKLWan`` config: the derived architecture, with the published latent
    statistics for the 16-channel release (the file does not carry them) and neutral ones for any
    other width."""
    config: dict[str, object] = dict(architecture.config)
    z_dim = architecture.config["z_dim"]
    if z_dim != 16:
        config["latents_mean"] = [0.0] * z_dim
        config["latents_std"] = [1.0] * z_dim
    return config


def build_vae(architecture: VaeArchitecture) -> AutoencoderKLWan:
    """The VAE of ``architecture`` on the meta device: no memory until weights are assigned."""
    with torch.device("meta"):
        return AutoencoderKLWan(**vae_config(architecture))  # type: ignore[no-untyped-call]


def load_vae_file(path: Path, architecture: VaeArchitecture, *, dtype: torch.dtype) -> AutoencoderKLWan:
    """The Wan 2.1 VAE in ``path``, its weights in ``dtype``."""
    res_blocks = int(architecture.config["num_res_blocks"])
    model = build_vae(architecture)
    state = read_state_dict(path, rename=lambda key: vae_key_to_diffusers(key, res_blocks), dtype=dtype)
    load_into(cast(torch.nn.Module, model), state, path, "the Wan 2.1 VAE")
    return model
