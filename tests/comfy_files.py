"""Tiny models written in the four layouts of the files a ComfyUI user has for Wan2.2 I2V A14B:

- ``diffusion_models/wan2.2_i2v_{high,low}_noise_14B_fp8_scaled.safetensors``: original Wan keys
  (no ``model.diffusion_model.`` prefix), an empty ``scaled_fp8`` marker, every linear weight
  float8_e4m3fn with a 0-d float32 ``.scale_weight`` and ``.scale_input`` beside it, the rest fp16;
- ``vae/wan_2.1_vae.safetensors``: the original Wan 2.1 VAE keys, fp16;
- ``text_encoders/umt5_xxl_fp8_e4m3fn_scaled.safetensors``: ComfyUI's T5 names, fp8-scaled like
  the experts, plus ``spiece_model``: a sentencepiece model trained here, as a uint8 tensor.

The VAE and UMT5 key lists are written from the original architectures (Wan's ``vae.py``,
ComfyUI's ``t5.py``), not from diffusers or transformers, so the tests that load them check the
loader's conversion against an independent description; the same functions give the real-size
lists for the meta-device checks.
"""

from __future__ import annotations

import io
import itertools
import json
import math
import struct
from pathlib import Path

import torch
from diffusers import WanTransformer3DModel
from safetensors.torch import save_file

from tests.tiny_wan import to_original_layout

FP8_MAX = 448.0  # largest float8_e4m3fn value
Z_DIM = 4
TEXT_DIM = 32
SENTENCES = (
    "a cat walks on the street at night",
    "the dog runs in the park slowly",
    "a woman smiles and waves at the camera",
    "the camera pans left over the city in the rain",
    "a man turns and looks back at the sea",
    "golden light over the mountain and the river",
)

Shapes = dict[str, tuple[int, ...]]
#: Matrices that are embeddings, not linear layers: ComfyUI's scaled-fp8 files leave them alone.
_NOT_LINEAR = ("shared.weight", "relative_attention_bias.weight")


# --- the Wan 2.1 VAE, from the original architecture ------------------------------------------


def _conv3d(out: Shapes, name: str, cin: int, cout: int, kernel: tuple[int, int, int]) -> None:
    out[f"{name}.weight"] = (cout, cin, *kernel)
    out[f"{name}.bias"] = (cout,)


def _conv2d(out: Shapes, name: str, cin: int, cout: int, k: int) -> None:
    out[f"{name}.weight"] = (cout, cin, k, k)
    out[f"{name}.bias"] = (cout,)


def _residual(out: Shapes, name: str, cin: int, cout: int) -> None:
    out[f"{name}.residual.0.gamma"] = (cin, 1, 1, 1)
    _conv3d(out, f"{name}.residual.2", cin, cout, (3, 3, 3))
    out[f"{name}.residual.3.gamma"] = (cout, 1, 1, 1)
    _conv3d(out, f"{name}.residual.6", cout, cout, (3, 3, 3))
    if cin != cout:
        _conv3d(out, f"{name}.shortcut", cin, cout, (1, 1, 1))


def _attention(out: Shapes, name: str, dim: int) -> None:
    out[f"{name}.norm.gamma"] = (dim, 1, 1)
    _conv2d(out, f"{name}.to_qkv", dim, 3 * dim, 1)
    _conv2d(out, f"{name}.proj", dim, dim, 1)


def wan_vae_original_shapes(
    base_dim: int = 96,
    z_dim: int = 16,
    dim_mult: tuple[int, ...] = (1, 2, 4, 4),
    num_res_blocks: int = 2,
    temperal_downsample: tuple[bool, ...] = (False, True, True),
) -> Shapes:
    """Key -> shape of ``WanVAE_`` (Wan's ``wan/modules/vae.py``), attention only in the middle."""
    out: Shapes = {}
    dims = [base_dim * m for m in (1, *dim_mult)]
    _conv3d(out, "encoder.conv1", 3, dims[0], (3, 3, 3))
    index = 0
    for i, (cin, cout) in enumerate(itertools.pairwise(dims)):
        for _ in range(num_res_blocks):
            _residual(out, f"encoder.downsamples.{index}", cin, cout)
            cin, index = cout, index + 1
        if i != len(dim_mult) - 1:
            _conv2d(out, f"encoder.downsamples.{index}.resample.1", cout, cout, 3)
            if temperal_downsample[i]:
                _conv3d(out, f"encoder.downsamples.{index}.time_conv", cout, cout, (3, 1, 1))
            index += 1
    top = dims[-1]
    _residual(out, "encoder.middle.0", top, top)
    _attention(out, "encoder.middle.1", top)
    _residual(out, "encoder.middle.2", top, top)
    out["encoder.head.0.gamma"] = (top, 1, 1, 1)
    _conv3d(out, "encoder.head.2", top, 2 * z_dim, (3, 3, 3))
    _conv3d(out, "conv1", 2 * z_dim, 2 * z_dim, (1, 1, 1))
    _conv3d(out, "conv2", z_dim, z_dim, (1, 1, 1))

    up = [base_dim * m for m in (dim_mult[-1], *dim_mult[::-1])]
    temperal_upsample = temperal_downsample[::-1]
    _conv3d(out, "decoder.conv1", z_dim, up[0], (3, 3, 3))
    _residual(out, "decoder.middle.0", up[0], up[0])
    _attention(out, "decoder.middle.1", up[0])
    _residual(out, "decoder.middle.2", up[0], up[0])
    index = 0
    for i, (cin, cout) in enumerate(itertools.pairwise(up)):
        if i > 0:
            cin //= 2  # the previous level's upsampler halves the channels
        for _ in range(num_res_blocks + 1):
            _residual(out, f"decoder.upsamples.{index}", cin, cout)
            cin, index = cout, index + 1
        if i != len(dim_mult) - 1:
            _conv2d(out, f"decoder.upsamples.{index}.resample.1", cout, cout // 2, 3)
            if temperal_upsample[i]:
                _conv3d(out, f"decoder.upsamples.{index}.time_conv", cout, cout * 2, (3, 1, 1))
            index += 1
    out["decoder.head.0.gamma"] = (up[-1], 1, 1, 1)
    _conv3d(out, "decoder.head.2", up[-1], 3, (3, 3, 3))
    return out


# --- UMT5, from ComfyUI's T5 ------------------------------------------------------------------


def umt5_comfy_shapes(
    vocab: int = 256384,
    d_model: int = 4096,
    d_kv: int = 64,
    heads: int = 64,
    d_ff: int = 10240,
    layers: int = 24,
    buckets: int = 32,
) -> Shapes:
    """Key -> shape of ComfyUI's UMT5 encoder (``comfy/text_encoders/t5.py``): a relative-attention
    table in every block, gated-GELU feed-forward, the embedding as ``shared``."""
    inner = heads * d_kv
    out: Shapes = {"shared.weight": (vocab, d_model)}
    for i in range(layers):
        attention = f"encoder.block.{i}.layer.0.SelfAttention"
        for name in "qkv":
            out[f"{attention}.{name}.weight"] = (inner, d_model)
        out[f"{attention}.o.weight"] = (d_model, inner)
        out[f"{attention}.relative_attention_bias.weight"] = (buckets, heads)
        out[f"encoder.block.{i}.layer.0.layer_norm.weight"] = (d_model,)
        ff = f"encoder.block.{i}.layer.1.DenseReluDense"
        out[f"{ff}.wi_0.weight"] = (d_ff, d_model)
        out[f"{ff}.wi_1.weight"] = (d_ff, d_model)
        out[f"{ff}.wo.weight"] = (d_model, d_ff)
        out[f"encoder.block.{i}.layer.1.layer_norm.weight"] = (d_model,)
    out["encoder.final_layer_norm.weight"] = (d_model,)
    return out


# --- filling, scaling, writing ----------------------------------------------------------------


def random_state(shapes: Shapes, seed: int) -> dict[str, torch.Tensor]:
    """Weights a model runs with: norms at 1, biases at 0, the rest ~ N(0, 1/fan_in)."""
    generator = torch.Generator().manual_seed(seed)
    out: dict[str, torch.Tensor] = {}
    for key, shape in shapes.items():
        if key.endswith(("gamma", "layer_norm.weight")):
            out[key] = torch.ones(shape)
        elif key.endswith(".bias"):
            out[key] = torch.zeros(shape)
        else:
            fan_in = math.prod(shape[1:]) if len(shape) > 1 else 1
            out[key] = torch.randn(shape, generator=generator) / math.sqrt(fan_in)
    return out


def to_comfy_scaled_fp8(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A state dict as Comfy-Org's ``*_fp8_scaled`` files store it: each linear weight as
    fp8(w / scale) with a 0-d float32 ``scale_weight`` and ``scale_input``, the rest fp16, and the
    empty ``scaled_fp8`` marker."""
    out: dict[str, torch.Tensor] = {"scaled_fp8": torch.empty(0, dtype=torch.float8_e4m3fn)}
    for key, tensor in state.items():
        if key.endswith(".weight") and tensor.dim() == 2 and not key.endswith(_NOT_LINEAR):
            scale = tensor.abs().max().to(torch.float32) / FP8_MAX
            base = key.removesuffix(".weight")
            out[key] = (tensor / scale).to(torch.float8_e4m3fn)
            out[base + ".scale_weight"] = scale.reshape(())
            out[base + ".scale_input"] = torch.tensor(1.0, dtype=torch.float32)
        else:
            out[key] = tensor.to(torch.float16).contiguous()
    return out


def train_spiece(sentences: tuple[str, ...] = SENTENCES) -> bytes:
    """A tiny Unigram sentencepiece model with T5's special ids (<pad> 0, </s> 1, <unk> 2), in memory."""
    import sentencepiece

    model = io.BytesIO()
    sentencepiece.SentencePieceTrainer.train(  # type: ignore[attr-defined]
        sentence_iterator=iter(sentences * 4),
        model_writer=model,
        vocab_size=80,
        model_type="unigram",
        pad_id=0,
        eos_id=1,
        unk_id=2,
        bos_id=-1,
        hard_vocab_limit=False,
        minloglevel=2,
    )
    return model.getvalue()


def tiny_expert(seed: int, **overrides: object) -> WanTransformer3DModel:
    """A tiny Wan2.2 I2V expert: one 128-wide head (heads = dim / 128, as detection reads them)."""
    config: dict[str, object] = {
        "patch_size": (1, 2, 2),
        "num_attention_heads": 1,
        "attention_head_dim": 128,
        "in_channels": 2 * Z_DIM + 4,
        "out_channels": Z_DIM,
        "text_dim": TEXT_DIM,
        "freq_dim": 32,
        "ffn_dim": 64,
        "num_layers": 2,
        "cross_attn_norm": True,
        "qk_norm": "rms_norm_across_heads",
        "eps": 1e-6,
        "image_dim": None,
        "added_kv_proj_dim": None,
    }
    config.update(overrides)
    torch.manual_seed(seed)
    return WanTransformer3DModel(**config)  # type: ignore[no-untyped-call,arg-type]


def expert_state(seed: int, **overrides: object) -> dict[str, torch.Tensor]:
    """A tiny expert's weights in the original Wan key layout."""
    return to_original_layout(tiny_expert(seed, **overrides).state_dict())


def tiny_vae_shapes() -> Shapes:
    return wan_vae_original_shapes(base_dim=4, z_dim=Z_DIM)


def tiny_umt5_shapes(vocab: int) -> Shapes:
    return umt5_comfy_shapes(vocab=vocab, d_model=TEXT_DIM, d_kv=8, heads=4, d_ff=64, layers=2)


def text_encoder_file_state(seed: int, *, spiece: bool = True) -> dict[str, torch.Tensor]:
    proto = train_spiece()
    import sentencepiece

    pieces = sentencepiece.SentencePieceProcessor(model_proto=proto).get_piece_size()
    state = to_comfy_scaled_fp8(random_state(tiny_umt5_shapes(vocab=pieces + 4), seed))
    if spiece:
        state["spiece_model"] = torch.frombuffer(bytearray(proto), dtype=torch.uint8)
    return state


def write_comfyui_models(root: Path, seed: int = 0, *, spiece: bool = True) -> Path:
    """A ComfyUI ``models`` folder at ``root`` holding the four tiny files; returns ``root``."""
    files = {
        "diffusion_models/wan2.2_i2v_high_noise_14B_fp8_scaled.safetensors": to_comfy_scaled_fp8(
            expert_state(seed + 1)
        ),
        "diffusion_models/wan2.2_i2v_low_noise_14B_fp8_scaled.safetensors": to_comfy_scaled_fp8(expert_state(seed + 2)),
        "vae/wan_2.1_vae.safetensors": {
            k: v.to(torch.float16) for k, v in random_state(tiny_vae_shapes(), seed + 3).items()
        },
        "text_encoders/umt5_xxl_fp8_e4m3fn_scaled.safetensors": text_encoder_file_state(seed + 4, spiece=spiece),
    }
    for name, state in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        save_file(state, path)
    return root


# --- real-size files with no data: headers for the memory plan --------------------------------

_ST_BYTES = {"F8_E4M3": 1, "F16": 2, "BF16": 2, "F32": 4, "U8": 1}


def write_sparse_safetensors(path: Path, entries: dict[str, tuple[str, tuple[int, ...]]]) -> Path:
    """A .safetensors file whose header lists ``entries`` (key -> dtype, shape) at real size and
    whose data is a hole (a sparse file): what the header-only planning and checks read, for
    almost no disk."""
    header: dict[str, object] = {}
    offset = 0
    for key, (dtype, shape) in entries.items():
        n = _ST_BYTES[dtype] * math.prod(shape)
        header[key] = {"dtype": dtype, "shape": list(shape), "data_offsets": [offset, offset + n]}
        offset += n
    raw = json.dumps(header).encode()
    raw += b" " * (-len(raw) % 8)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as fh:
        fh.write(struct.pack("<Q", len(raw)) + raw)
        fh.truncate(8 + len(raw) + offset)
    return path


def _scaled_entries(shapes: Shapes) -> dict[str, tuple[str, tuple[int, ...]]]:
    """Comfy's fp8_scaled layout of ``shapes``: linear weights fp8 with 0-d scales, the rest fp16."""
    out: dict[str, tuple[str, tuple[int, ...]]] = {"scaled_fp8": ("F8_E4M3", (0,))}
    for key, shape in shapes.items():
        if key.endswith(".weight") and len(shape) == 2 and not key.endswith(_NOT_LINEAR):
            base = key.removesuffix(".weight")
            out |= {key: ("F8_E4M3", shape), base + ".scale_weight": ("F32", ()), base + ".scale_input": ("F32", ())}
        else:
            out[key] = ("F16", shape)
    return out


def real_expert_shapes() -> Shapes:
    """The Wan2.2 I2V A14B expert's tensors in the original layout, from the shipped config."""
    from worker.wan.detect import SHIPPED_TRANSFORMER_CONFIG

    with torch.device("meta"):
        model = WanTransformer3DModel.from_config(WanTransformer3DModel.load_config(SHIPPED_TRANSFORMER_CONFIG))
    return {k: tuple(v.shape) for k, v in to_original_layout(model.state_dict()).items()}


def write_real_size_comfyui_models(root: Path) -> Path:
    """The four reference files at their real sizes (13.3 + 13.3 GB, 242 MB, 6.3 GB) as sparse
    files: headers as the Comfy-Org files have them, no data."""
    expert = _scaled_entries(real_expert_shapes())
    text = _scaled_entries(umt5_comfy_shapes()) | {"spiece_model": ("U8", (4_548_313,))}
    vae = {k: ("F16", s) for k, s in wan_vae_original_shapes().items()}
    write_sparse_safetensors(root / "diffusion_models/wan2.2_i2v_high_noise_14B_fp8_scaled.safetensors", expert)
    write_sparse_safetensors(root / "diffusion_models/wan2.2_i2v_low_noise_14B_fp8_scaled.safetensors", expert)
    write_sparse_safetensors(root / "vae/wan_2.1_vae.safetensors", vae)
    write_sparse_safetensors(root / "text_encoders/umt5_xxl_fp8_e4m3fn_scaled.safetensors", text)
    return root
