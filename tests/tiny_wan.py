"""A tiny, randomly initialised Wan2.2 I2V pipeline built in code, for tests and CPU benchmarks.

Same component classes and folder layout as ``Wan-AI/Wan2.2-I2V-A14B-Diffusers`` (two expert
transformers, ``boundary_ratio``, no image encoder), so it goes through the same loader as a real
model folder, but every width is a handful of channels. Nothing is downloaded: the tokenizer's
vocabulary and every config are written here.

Small test clips (32x32, 5 frames) take a fraction of a second. A full 640x640x81 segment on a
2-core CPU takes about 40 s at 4 steps without CFG and about 70 s at the reference 20 steps with
CFG: the real VAE's full-resolution convolutions over 81 frames, and self-attention over 33,600
tokens per transformer pass, set that floor whatever the widths.
"""

from __future__ import annotations

from pathlib import Path

import torch
from diffusers import AutoencoderKLWan, FlowMatchEulerDiscreteScheduler, WanImageToVideoPipeline, WanTransformer3DModel
from transformers import T5Tokenizer, UMT5Config, UMT5EncoderModel

#: Latent channels of the tiny VAE; the I2V transformer sees latents + 4 mask channels + condition.
Z_DIM = 4
TEXT_DIM = 16

_TEXT = (
    "a the of and in on with to is are at from by for cat dog person woman man girl boy walks runs "
    "jumps turns looks smiles waves camera slowly quickly moves forward back left right zoom pan "
    "sky sea city street forest mountain river light night day rain snow wind fire water red blue "
    "green white black golden bright dark soft static blurry low quality worst"
)
_WORDS = _TEXT.split()


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
        "ffn_dim": 32,  # a multiple of 32, so ffn.2 takes Q8_0 blocks in the GGUF tests
        "num_layers": 1,
        "cross_attn_norm": True,
        "qk_norm": "rms_norm_across_heads",
        "eps": 1e-6,
        "image_dim": None,
        "added_kv_proj_dim": None,
    }


def tiny_transformer(seed: int) -> WanTransformer3DModel:
    torch.manual_seed(seed)
    return WanTransformer3DModel(**tiny_transformer_config())  # type: ignore[no-untyped-call,arg-type]


def build_tiny_pipeline(seed: int = 0) -> WanImageToVideoPipeline:
    torch.manual_seed(seed)
    vae = AutoencoderKLWan(
        base_dim=4,
        z_dim=Z_DIM,
        dim_mult=[1, 1, 1, 1],
        num_res_blocks=0,
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


# The original Wan key names of each diffusers name part, in the order they must be undone.
_TO_ORIGINAL = (
    ("condition_embedder.time_embedder.linear_1", "time_embedding.0"),
    ("condition_embedder.time_embedder.linear_2", "time_embedding.2"),
    ("condition_embedder.text_embedder.linear_1", "text_embedding.0"),
    ("condition_embedder.text_embedder.linear_2", "text_embedding.2"),
    ("condition_embedder.time_proj", "time_projection.1"),
    ("attn1", "self_attn"),
    ("attn2", "cross_attn"),
    (".to_out.0.", ".o."),
    (".to_q.", ".q."),
    (".to_k.", ".k."),
    (".to_v.", ".v."),
    ("ffn.net.0.proj", "ffn.0"),
    ("ffn.net.2", "ffn.2"),
    ("proj_out", "head.head"),
    # diffusers' norm2 is the original norm3 (cross-attention) and the other way round
    ("norm2", "norm__swap"),
    ("norm3", "norm2"),
    ("norm__swap", "norm3"),
)


def to_original_layout(state_dict: dict[str, torch.Tensor], prefix: str = "") -> dict[str, torch.Tensor]:
    """A diffusers WanTransformer3DModel state dict in the original Wan key layout, as in the
    Wan-AI and Comfy-Org single files (ComfyUI's carry ``prefix="model.diffusion_model."``)."""
    out: dict[str, torch.Tensor] = {}
    for key, tensor in state_dict.items():
        new = key
        for a, b in _TO_ORIGINAL:
            new = new.replace(a, b)
        if new == "scale_shift_table":
            new = "head.modulation"
        elif new.endswith(".scale_shift_table"):
            new = new.replace(".scale_shift_table", ".modulation")
        out[prefix + new] = tensor.detach().clone().contiguous()
    return out


def write_gguf(state_dict: dict[str, torch.Tensor], path: str | Path) -> Path:
    """Write a state dict as a GGUF file the way Wan GGUF releases are laid out: Q8_0 for weights
    whose rows split into 32-value blocks, F32 for the rest."""
    import gguf
    import numpy as np

    path = Path(path)
    writer = gguf.GGUFWriter(str(path), arch="wan")
    for name, tensor in state_dict.items():
        array = tensor.detach().to(torch.float32).numpy()
        if array.ndim == 2 and array.shape[-1] % 32 == 0:
            qtype = gguf.GGMLQuantizationType.Q8_0
            writer.add_tensor(name, gguf.quants.quantize(array, qtype), raw_dtype=qtype)
        else:
            writer.add_tensor(name, np.ascontiguousarray(array))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path
