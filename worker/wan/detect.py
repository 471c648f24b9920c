"""What a model file is, and the architecture of what it holds, read from its tensor names and
shapes alone, the way ComfyUI's model detection does. No torch here: every file is checked before
any weight is read (and before the heavy imports), and a wrong one is refused with one sentence.

- Wan expert (original / ComfyUI layout): dim from ``head.modulation``, heads = dim / 128 (as in
  ComfyUI: every Wan size uses 128-wide heads), layers counted, ffn and text dim from their
  weights, in/out channels from the patch embedding and the head. I2V takes 2 x latent + 4 mask
  channels (36); a T2V expert takes the latent alone (16); a Wan2.1 I2V expert has a CLIP image
  input (``img_emb``, ``k_img``), which Wan2.2 dropped.
- Wan 2.1 VAE (original layout): base dim from ``encoder.conv1``, z dim from ``conv2``, the
  channel multipliers, residual blocks per level and temporal downsampling from the encoder.
- UMT5 encoder (ComfyUI / Hugging Face T5 names): d_model and vocabulary from ``shared``, heads
  from the relative-attention table (buckets x heads), d_ff, layers; UMT5 has that table in every
  block, T5 only in the first.
A file at the real A14B width is also checked against the published values.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from worker.errors import BadInput
from worker.wan.safetensors_header import read_header

Role = Literal["transformer", "transformer_2", "vae", "text_encoder"]
Shapes = Mapping[str, tuple[int, ...]]

#: What each role needs, in the words of a refusal.
WANTED: dict[Role, str] = {
    "transformer": "the Wan2.2 I2V A14B high-noise expert (e.g. wan2.2_i2v_high_noise_14B_fp8_scaled.safetensors)",
    "transformer_2": "the Wan2.2 I2V A14B low-noise expert (e.g. wan2.2_i2v_low_noise_14B_fp8_scaled.safetensors)",
    "vae": "the Wan 2.1 VAE (wan_2.1_vae.safetensors)",
    "text_encoder": "the UMT5-XXL text encoder (e.g. umt5_xxl_fp8_e4m3fn_scaled.safetensors)",
}

#: The published Wan2.2 I2V A14B expert (both experts), in diffusers' names: the config shipped
#: in configs/, which a real-sized file must match.
SHIPPED_TRANSFORMER_CONFIG = Path(__file__).parent / "configs" / "wan2.2_i2v_a14b_transformer.json"
_A14B_FIELDS = (
    "num_attention_heads", "attention_head_dim", "in_channels", "out_channels", "text_dim", "freq_dim",
    "ffn_dim", "num_layers", "patch_size",
)  # fmt: skip
A14B_EXPERT: dict[str, Any] = {
    k: v for k, v in json.loads(SHIPPED_TRANSFORMER_CONFIG.read_text()).items() if k in _A14B_FIELDS
}
#: The published Wan 2.1 VAE.
WAN21_VAE: dict[str, Any] = {
    "base_dim": 96,
    "z_dim": 16,
    "dim_mult": [1, 2, 4, 4],
    "num_res_blocks": 2,
    "temperal_downsample": [False, True, True],
}
#: The published UMT5-XXL encoder.
UMT5_XXL: dict[str, Any] = {
    "d_model": 4096,
    "num_layers": 24,
    "num_heads": 64,
    "d_kv": 64,
    "d_ff": 10240,
    "vocab_size": 256384,
    "relative_attention_num_buckets": 32,
}

HEAD_DIM = 128
_COMFY_PREFIX = "model.diffusion_model."
_BLOCK = re.compile(r"^blocks\.(\d+)\.")
_TEXT_BLOCK = re.compile(r"^encoder\.block\.(\d+)\.")
_REL_BIAS = "encoder.block.{}.layer.0.SelfAttention.relative_attention_bias.weight"


def read_shapes(path: Path) -> Shapes:
    """Tensor name -> shape of a .safetensors or .gguf file, from its header only."""
    if path.suffix.lower() == ".gguf":
        return _gguf_shapes(path)
    return {key: info.shape for key, info in read_header(path).tensors.items()}


def _gguf_shapes(path: Path) -> Shapes:
    import gguf

    try:
        reader = gguf.GGUFReader(str(path))
    except (ValueError, OSError, IndexError) as exc:
        raise BadInput(f"{path} is not a readable GGUF file: {exc}.") from exc
    # GGUF lists dimensions innermost first
    return {t.name: tuple(int(d) for d in reversed(t.shape.tolist())) for t in reader.tensors}


def _strip(shapes: Shapes, prefix: str) -> Shapes:
    if not any(k.startswith(prefix) for k in shapes):
        return shapes
    return {k.removeprefix(prefix): v for k, v in shapes.items()}


def describe(shapes: Shapes) -> str:
    """What a file holds, in words, for the sentence that refuses it."""
    s = _strip(shapes, _COMFY_PREFIX)
    keys = s.keys()
    if any("lora" in k for k in keys):
        return "a LoRA"
    if "head.modulation" in s and "patch_embedding.weight" in s:
        return "a Wan diffusion model"
    if "encoder.conv1.weight" in s and "decoder.conv1.weight" in s:
        return "a VAE"
    if "decoder.up_blocks.0.resnets.0.conv1.weight" in s or "encoder.conv_in.weight" in s:
        return "a VAE in diffusers layout"
    if "shared.weight" in s and "encoder.block.0.layer.0.SelfAttention.q.weight" in s:
        if _REL_BIAS.format(1) in s:
            return "a UMT5 text encoder"
        return "a T5 text encoder (not UMT5: the one Flux and SD3 use)"
    if any(k.startswith(("visual.", "vision_model.", "log_scale")) for k in keys):
        return "a CLIP vision model"
    if any(k.startswith("condition_embedder.") for k in keys):
        return "a Wan diffusion model in diffusers layout (use a diffusers folder as generation.model)"
    if any(".weight" in k for k in keys) and len(s) > 0:
        return "not a model framechain knows"
    return "empty of weights"


def _refuse(path: Path, role: Role, what: str) -> BadInput:
    return BadInput(f"{path} is {what}; generation.{role} needs {WANTED[role]}.")


def _count(shapes: Shapes, pattern: re.Pattern[str]) -> int:
    found = {int(m.group(1)) for k in shapes if (m := pattern.match(k))}
    return max(found) + 1 if found else 0


def _published_mismatch(derived: Mapping[str, Any], published: Mapping[str, Any]) -> str | None:
    for key, value in published.items():
        got = derived[key]
        if (list(got) if isinstance(got, tuple) else got) != (list(value) if isinstance(value, tuple) else value):
            return f"{key} {got} where the published model has {value}"
    return None


@dataclass(frozen=True)
class ExpertArchitecture:
    #: A diffusers ``WanTransformer3DModel`` config. Complete where the width is a multiple of
    #: 128 (every released Wan); else the heads are unknown (None) and a config file must say.
    config: dict[str, Any]
    #: ComfyUI scaled-fp8 file (``scaled_fp8`` marker / ``scale_weight`` tensors).
    scaled_fp8: bool

    @property
    def complete(self) -> bool:
        return self.config["num_attention_heads"] is not None


def wan_expert(path: Path, role: Role, shapes: Shapes | None = None) -> ExpertArchitecture:
    """The architecture of the Wan2.2 I2V expert in ``path``, or a refusal saying what it is."""
    s = _strip(read_shapes(path) if shapes is None else shapes, _COMFY_PREFIX)
    what = describe(s)
    if what != "a Wan diffusion model":
        raise _refuse(path, role, what)
    try:
        dim = s["head.modulation"][-1]
        patch = s["patch_embedding.weight"]
        in_dim, patch_size = patch[1], tuple(patch[2:])
        out_dim = s["head.head.weight"][0] // (patch_size[0] * patch_size[1] * patch_size[2])
        config: dict[str, Any] = {
            "_class_name": "WanTransformer3DModel",
            "patch_size": patch_size,
            "num_attention_heads": dim // HEAD_DIM if dim % HEAD_DIM == 0 else None,
            "attention_head_dim": HEAD_DIM if dim % HEAD_DIM == 0 else None,
            "in_channels": in_dim,
            "out_channels": out_dim,
            "text_dim": s["text_embedding.0.weight"][1],
            "freq_dim": s["time_embedding.0.weight"][1],
            "ffn_dim": s["blocks.0.ffn.0.weight"][0],
            "num_layers": _count(s, _BLOCK),
            "cross_attn_norm": "blocks.0.norm3.weight" in s,
            "qk_norm": "rms_norm_across_heads" if "blocks.0.self_attn.norm_q.weight" in s else None,
            "eps": 1e-6,
            "image_dim": None,
            "added_kv_proj_dim": None,
            "rope_max_seq_len": 1024,
            "pos_embed_seq_len": None,
        }
    except (KeyError, IndexError):
        raise _refuse(path, role, "a Wan diffusion model with tensors missing (a damaged file?)") from None
    if "img_emb.proj.0.weight" in s or "blocks.0.cross_attn.k_img.weight" in s:
        raise _refuse(path, role, "a Wan2.1 image-to-video expert (it has a CLIP image input, which Wan2.2 dropped)")
    if "vace_patch_embedding.weight" in s:
        raise _refuse(path, role, "a Wan VACE model")
    if in_dim == out_dim:
        kind = "the Wan2.2 TI2V 5B model" if dim == 3072 else "a Wan text-to-video (T2V) expert"
        raise _refuse(path, role, f"{kind} ({in_dim} input channels, where I2V takes {2 * out_dim + 4})")
    if in_dim != 2 * out_dim + 4:
        raise _refuse(path, role, f"a Wan model with {in_dim} input channels (I2V takes {2 * out_dim + 4})")
    if dim == A14B_EXPERT["num_attention_heads"] * HEAD_DIM:
        mismatch = _published_mismatch(config, A14B_EXPERT)
        if mismatch:
            raise _refuse(path, role, f"a Wan model of the A14B width with {mismatch}")
    scaled = "scaled_fp8" in s or any(k.endswith((".scale_weight", ".weight_scale")) for k in s)
    return ExpertArchitecture(config=config, scaled_fp8=scaled)


@dataclass(frozen=True)
class VaeArchitecture:
    #: A diffusers ``AutoencoderKLWan`` config.
    config: dict[str, Any]


def _vae_entries(s: Shapes, side: str) -> dict[int, str]:
    """Index -> "residual" | "resample" | "attention" for encoder.downsamples / decoder.upsamples."""
    pattern = re.compile(rf"^{side}\.(\d+)\.(residual|resample|to_qkv|norm|proj|shortcut|time_conv)")
    kinds: dict[int, str] = {}
    for key in s:
        if m := pattern.match(key):
            part = m.group(2)
            kind = {"residual": "residual", "resample": "resample", "shortcut": "residual", "time_conv": "resample"}
            kinds.setdefault(int(m.group(1)), kind.get(part, "attention"))
    return kinds


def wan_vae(path: Path, shapes: Shapes | None = None) -> VaeArchitecture:
    """The architecture of the Wan 2.1 VAE in ``path`` (original / ComfyUI layout)."""
    s = read_shapes(path) if shapes is None else shapes
    what = describe(s)
    if what != "a VAE":
        raise _refuse(path, "vae", what)
    if any(".downsamples.0.downsamples." in k for k in s) or s.get("conv2.weight", (0,))[0] == 48:
        raise _refuse(path, "vae", "the Wan2.2 VAE of the TI2V 5B model (48 latent channels)")
    try:
        base = s["encoder.conv1.weight"][0]
        z_dim = s["conv2.weight"][0]
        entries = _vae_entries(s, "encoder.downsamples")
        if "attention" in entries.values():
            raise KeyError("attention")
        levels: list[list[int]] = [[]]
        temporal: list[bool] = []
        mult: list[int] = []
        for index in sorted(entries):
            if entries[index] == "residual":
                levels[-1].append(index)
                continue
            # a resample closes its level, at the channel width it downsamples
            mult.append(s[f"encoder.downsamples.{index}.resample.1.weight"][0] // base)
            temporal.append(f"encoder.downsamples.{index}.time_conv.weight" in s)
            levels.append([])
        last = levels[-1]
        width = (
            s[f"encoder.downsamples.{last[-1]}.residual.2.weight"][0]
            if last
            else s["encoder.middle.0.residual.0.gamma"][0]
        )
        mult.append(width // base)
        res_blocks = {len(level) for level in levels}
        if len(res_blocks) != 1 or s["encoder.head.2.weight"][0] != 2 * z_dim or s["decoder.conv1.weight"][1] != z_dim:
            raise KeyError("structure")
    except (KeyError, IndexError):
        raise _refuse(path, "vae", "a VAE of a layout other than Wan 2.1's") from None
    config: dict[str, Any] = {
        "base_dim": base,
        "z_dim": z_dim,
        "dim_mult": mult,
        "num_res_blocks": res_blocks.pop(),
        "attn_scales": [],
        "temperal_downsample": temporal,
        "scale_factor_spatial": 2 ** len(temporal),
        "scale_factor_temporal": 2 ** sum(temporal),
    }
    if base == WAN21_VAE["base_dim"]:
        mismatch = _published_mismatch(config, WAN21_VAE)
        if mismatch:
            raise _refuse(path, "vae", f"a VAE of the Wan 2.1 width with {mismatch}")
    return VaeArchitecture(config=config)


@dataclass(frozen=True)
class TextEncoderArchitecture:
    #: Keyword arguments of a transformers ``UMT5Config``.
    config: dict[str, Any]
    #: The file carries its tokenizer's sentencepiece model (``spiece_model``), as Comfy's do.
    has_spiece_model: bool


def umt5_encoder(path: Path, shapes: Shapes | None = None) -> TextEncoderArchitecture:
    """The architecture of the UMT5 encoder in ``path`` (ComfyUI / Hugging Face T5 names)."""
    s = read_shapes(path) if shapes is None else shapes
    what = describe(s)
    if what != "a UMT5 text encoder":
        raise _refuse(path, "text_encoder", what)
    try:
        vocab, d_model = s["shared.weight"]
        buckets, heads = s[_REL_BIAS.format(0)]
        inner = s["encoder.block.0.layer.0.SelfAttention.q.weight"][0]
        gated = "encoder.block.0.layer.1.DenseReluDense.wi_0.weight" in s
        d_ff = s["encoder.block.0.layer.1.DenseReluDense." + ("wi_0" if gated else "wi") + ".weight"][0]
    except (KeyError, ValueError):
        raise _refuse(path, "text_encoder", "a UMT5 text encoder with tensors missing (a damaged file?)") from None
    config: dict[str, Any] = {
        "vocab_size": vocab,
        "d_model": d_model,
        "d_kv": inner // heads,
        "d_ff": d_ff,
        "num_layers": _count(s, _TEXT_BLOCK),
        "num_heads": heads,
        "relative_attention_num_buckets": buckets,
        "relative_attention_max_distance": 128,
        "feed_forward_proj": "gated-gelu" if gated else "relu",
        "dropout_rate": 0.0,
    }
    if d_model == UMT5_XXL["d_model"]:
        mismatch = _published_mismatch(config, UMT5_XXL)
        if mismatch:
            raise _refuse(path, "text_encoder", f"a UMT5 encoder of the XXL width with {mismatch}")
    return TextEncoderArchitecture(config=config, has_spiece_model="spiece_model" in s)


def check_together(
    experts: Mapping[str, ExpertArchitecture],
    vae: VaeArchitecture | None,
    text_encoder: TextEncoderArchitecture | None,
) -> None:
    """The files given fit each other: latent channels of the experts and the VAE, the text width
    the experts take and the encoder gives, and the two experts alike."""
    for name, expert in experts.items():
        c = expert.config
        if vae is not None and c["out_channels"] != vae.config["z_dim"]:
            raise BadInput(
                f"generation.{name} works on {c['out_channels']} latent channels but the VAE gives "
                f"{vae.config['z_dim']}; the A14B experts need {WANTED['vae']}."
            )
        if text_encoder is not None and c["text_dim"] != text_encoder.config["d_model"]:
            raise BadInput(
                f"generation.{name} takes text features of width {c['text_dim']} but the text encoder gives "
                f"{text_encoder.config['d_model']}; the A14B experts need {WANTED['text_encoder']}."
            )
    configs = list(experts.values())
    if len(configs) == 2 and configs[0].config != configs[1].config:
        raise BadInput("generation.transformer and generation.transformer_2 are experts of different architectures.")
