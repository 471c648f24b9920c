"""A tiny, randomly initialised Wan2.2 I2V pipeline built in code, for tests and CPU benchmarks.

Same component classes and folder layout as ``Wan-AI/Wan2.2-I2V-A14B-Diffusers`` (two expert
transformers, ``boundary_ratio``, no image encoder), so it goes through the same loader as a real
model folder, but every width is a handful of channels: a 640x640x81 segment runs on a CPU.
Nothing is downloaded: the tokenizer's vocabulary and every config are written here.
"""

from __future__ import annotations

from pathlib import Path

import torch
from diffusers import AutoencoderKLWan, FlowMatchEulerDiscreteScheduler, WanImageToVideoPipeline
from diffusers import WanTransformer3DModel
from transformers import T5Tokenizer, UMT5Config, UMT5EncoderModel

#: Latent channels of the tiny VAE; the I2V transformer sees latents + 4 mask channels + condition.
Z_DIM = 4
TEXT_DIM = 16

_WORDS = (
    "a the of and in on with to is are at from by for cat dog person woman man girl boy walks runs "
    "jumps turns looks smiles waves camera slowly quickly moves forward back left right zoom pan "
    "sky sea city street forest mountain river light night day rain snow wind fire water red blue "
    "green white black golden bright dark soft static blurry low quality worst"
).split()


def tiny_tokenizer() -> T5Tokenizer:
    """A Unigram T5 tokenizer over a few English words and single letters; anything else is <unk>."""
    pieces = [f"▁{w}" for w in _WORDS] + ["▁", *"abcdefghijklmnopqrstuvwxyz"]
    vocab = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0)] + [(p, -float(len(p))) for p in pieces]
    return T5Tokenizer(vocab=vocab, extra_ids=0)


def tiny_transformer_config() -> dict[str, object]:
    """The tiny expert's architecture (both experts share it). ``rope_max_seq_len`` stays at its
    default: lower values break sides above 512 pixels."""
    return {
        "patch_size": (1, 2, 2),
        "num_attention_heads": 1,
        "attention_head_dim": 12,
        "in_channels": 2 * Z_DIM + 4,
        "out_channels": Z_DIM,
        "text_dim": TEXT_DIM,
        "freq_dim": 16,
        "ffn_dim": 16,
        "num_layers": 1,
        "cross_attn_norm": True,
        "qk_norm": "rms_norm_across_heads",
        "eps": 1e-6,
        "image_dim": None,
        "added_kv_proj_dim": None,
    }


def tiny_transformer(seed: int) -> WanTransformer3DModel:
    torch.manual_seed(seed)
    return WanTransformer3DModel(**tiny_transformer_config())  # type: ignore[arg-type]


def build_tiny_pipeline(seed: int = 0) -> WanImageToVideoPipeline:
    torch.manual_seed(seed)
    vae = AutoencoderKLWan(
        base_dim=4,
        z_dim=Z_DIM,
        dim_mult=[1, 1, 1, 1],
        num_res_blocks=1,
        temperal_downsample=[False, True, True],
        latents_mean=[0.0] * Z_DIM,
        latents_std=[1.0] * Z_DIM,
    )
    tokenizer = tiny_tokenizer()
    torch.manual_seed(seed)
    text_encoder = UMT5EncoderModel(
        UMT5Config(
            vocab_size=len(tokenizer),
            d_model=TEXT_DIM,
            d_kv=4,
            d_ff=16,
            num_layers=1,
            num_heads=2,
            relative_attention_num_buckets=8,
            relative_attention_max_distance=16,
            feed_forward_proj="gated-gelu",
            dropout_rate=0.0,
        )
    )
    return WanImageToVideoPipeline(
        tokenizer=tokenizer,
        text_encoder=text_encoder,
        vae=vae,
        scheduler=FlowMatchEulerDiscreteScheduler(shift=8.0),
        transformer=tiny_transformer(seed + 1),
        transformer_2=tiny_transformer(seed + 2),
        boundary_ratio=0.9,
    )


def build_tiny_wan(path: str | Path, seed: int = 0) -> Path:
    """Write a tiny Wan2.2 I2V diffusers folder at ``path`` and return it."""
    path = Path(path)
    build_tiny_pipeline(seed).save_pretrained(path)
    return path
