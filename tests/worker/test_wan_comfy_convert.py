"""Key conversion of the Comfy-layout VAE and UMT5 encoder: at the real size on the meta device
(no memory), against the diffusers / transformers models they load into, and at tiny size with
real weights, value for value."""

from __future__ import annotations

from pathlib import Path

import pytest
import sentencepiece
import torch
from diffusers import AutoencoderKLWan, WanTransformer3DModel
from diffusers.loaders.single_file_utils import convert_wan_vae_to_diffusers
from safetensors.torch import save_file
from transformers import UMT5Config, UMT5EncoderModel

from shared.memory_plan import COMFY_FP8
from tests.comfy_files import (
    FP8_MAX,
    random_state,
    text_encoder_file_state,
    tiny_vae_shapes,
    to_comfy_scaled_fp8,
    train_spiece,
    umt5_comfy_shapes,
    wan_vae_original_shapes,
)
from tests.tiny_wan import to_original_layout
from worker.wan.comfy_state import mismatches
from worker.wan.comfy_text import (
    FeedForward,
    build_text_encoder,
    load_text_encoder_file,
    text_encoder_state_keys,
    tokenizer_from_spiece,
)
from worker.wan.comfy_vae import build_vae, load_vae_file, vae_key_to_diffusers
from worker.wan.detect import SHIPPED_TRANSFORMER_CONFIG, umt5_encoder, wan_expert, wan_vae
from worker.wan.fp8 import ScaledFP8Linear, scaled_linears


def shapes_of(model: torch.nn.Module) -> dict[str, tuple[int, ...]]:
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}


def test_real_wan21_vae_converts_to_every_diffusers_key() -> None:
    original = wan_vae_original_shapes()  # the released VAE: base 96, z 16
    architecture = wan_vae(Path("wan_2.1_vae.safetensors"), shapes=original)
    assert architecture.config["base_dim"] == 96 and architecture.config["z_dim"] == 16
    model = build_vae(architecture)
    assert next(model.parameters()).device.type == "meta"
    assert model.config["latents_mean"] == AutoencoderKLWan().config["latents_mean"]  # published statistics kept
    converted = {vae_key_to_diffusers(k, 2): v for k, v in original.items()}
    assert mismatches(converted, shapes_of(model)) == []
    # and it is diffusers' own mapping for the released layout
    tagged = {k: torch.empty(0, dtype=torch.float32) for k in original}
    theirs = {id(v): k for k, v in convert_wan_vae_to_diffusers(tagged).items()}
    assert {k: theirs[id(v)] for k, v in tagged.items()} == {k: vae_key_to_diffusers(k, 2) for k in tagged}


def test_real_umt5_xxl_converts_to_every_transformers_key() -> None:
    comfy = umt5_comfy_shapes()  # UMT5-XXL: d_model 4096, 24 layers, 64 heads, d_ff 10240
    architecture = umt5_encoder(Path("umt5_xxl.safetensors"), shapes={**comfy, "spiece_model": (4_548_313,)})
    assert architecture.has_spiece_model
    c = architecture.config
    assert (c["d_model"], c["num_layers"], c["num_heads"], c["d_kv"], c["d_ff"], c["vocab_size"]) == (
        4096, 24, 64, 64, 10240, 256384,
    )  # fmt: skip
    model = build_text_encoder(architecture)
    converted = {text_encoder_state_keys(k): v for k, v in comfy.items()}
    converted["encoder.embed_tokens.weight"] = converted["shared.weight"]  # tied, as the loader does
    assert mismatches(converted, shapes_of(model)) == []
    assert sum(p.numel() for p in model.parameters()) == pytest.approx(5.68e9, rel=0.01)


def test_real_a14b_expert_architecture_is_the_published_one() -> None:
    with torch.device("meta"):
        reference = WanTransformer3DModel.from_config(WanTransformer3DModel.load_config(SHIPPED_TRANSFORMER_CONFIG))
    shapes = {k: tuple(v.shape) for k, v in to_original_layout(reference.state_dict()).items()}
    config = wan_expert(Path("high.safetensors"), "transformer", shapes=shapes).config
    with torch.device("meta"):
        derived = WanTransformer3DModel.from_config(config)
    assert shapes_of(derived) == shapes_of(reference)
    assert (config["num_attention_heads"], config["num_layers"], config["ffn_dim"], config["in_channels"]) == (
        40, 40, 13824, 36,
    )  # fmt: skip


def test_tiny_vae_file_loads_each_tensor_where_it_belongs(tmp_path: Path) -> None:
    original = random_state(tiny_vae_shapes(), seed=0)
    file = tmp_path / "wan_2.1_vae.safetensors"
    save_file(original, file)
    architecture = wan_vae(file)
    vae = load_vae_file(file, architecture, dtype=torch.float32)
    loaded = vae.state_dict()
    # released-structure tiny VAE: diffusers' own conversion says where each tensor goes
    for key, value in convert_wan_vae_to_diffusers(original).items():
        assert torch.equal(loaded[key], value), key
    with torch.no_grad():
        video = torch.rand(1, 3, 5, 16, 16) * 2 - 1
        assert vae.decode(vae.encode(video).latent_dist.mode()).sample.shape == video.shape


def test_vae_of_other_sizes_loads_with_no_config(tmp_path: Path) -> None:
    shapes = wan_vae_original_shapes(
        base_dim=8, z_dim=4, dim_mult=(1, 1, 2), num_res_blocks=1, temperal_downsample=(True, False)
    )
    file = tmp_path / "vae.safetensors"
    save_file(random_state(shapes, seed=1), file)
    architecture = wan_vae(file)
    assert architecture.config["dim_mult"] == [1, 1, 2] and architecture.config["temperal_downsample"] == [True, False]
    vae = load_vae_file(file, architecture, dtype=torch.float32)
    assert vae.config["scale_factor_spatial"] == 4 and vae.config["scale_factor_temporal"] == 2


def reference_text_encoder(file: Path, stored: dict[str, torch.Tensor]) -> UMT5EncoderModel:
    """The same encoder with plain Linears holding ``w_fp8 * scale`` in float32."""
    reference = UMT5EncoderModel(UMT5Config(**umt5_encoder(file).config)).eval()
    state = {
        key: value.to(torch.float32) * stored[key.removesuffix(".weight") + ".scale_weight"]
        if value.dtype == torch.float8_e4m3fn and key.endswith(".weight")
        else value.to(torch.float32)
        for key, value in stored.items()
        if key in reference.state_dict()
    }
    state["encoder.embed_tokens.weight"] = state["shared.weight"]
    reference.load_state_dict(state)
    return reference


def test_fp8_scaled_text_encoder_stays_fp8_and_computes_with_the_reference_dequantisation(tmp_path: Path) -> None:
    file = tmp_path / "umt5_xxl_fp8_e4m3fn_scaled.safetensors"
    stored = text_encoder_file_state(seed=0)
    save_file(stored, file)
    model = load_text_encoder_file(file, umt5_encoder(file), dtype=torch.bfloat16)
    layers = dict(model.named_modules())
    q = "encoder.block.0.layer.0.SelfAttention.q.weight"
    assert stored[q].dtype == torch.float8_e4m3fn and stored[q.replace(".weight", ".scale_weight")].dim() == 0
    fp8 = [k for k, v in stored.items() if k.endswith(".weight") and v.dtype == torch.float8_e4m3fn]
    assert len(fp8) == len(scaled_linears(model)) == 2 * 7  # q k v o wi_0 wi_1 wo, two blocks
    assert not any(type(m) is torch.nn.Linear for m in model.modules())
    for key in fp8:
        layer = layers[key.removesuffix(".weight")]
        assert isinstance(layer, ScaledFP8Linear) and layer.weight.dtype == torch.float8_e4m3fn  # stored as in the file
        assert torch.equal(layer.weight.view(torch.uint8), stored[key].view(torch.uint8))
        want = stored[key].to(torch.float32) * stored[key.removesuffix(".weight") + ".scale_weight"]
        torch.testing.assert_close(layer.dequantized_weight(torch.bfloat16).float(), want, rtol=2**-8, atol=0)
    assert model.dtype == torch.bfloat16 and model.shared.weight.dtype == torch.bfloat16
    assert model.encoder.embed_tokens.weight.data_ptr() == model.shared.weight.data_ptr()
    assert not any(t.device.type == "meta" for t in [*model.parameters(), *model.buffers()])
    # Outputs: the reference dequantised model run in bf16 too, within bf16 rounding.
    ids = torch.tensor([[5, 6, 7, 9, 1]])
    reference = reference_text_encoder(file, stored)
    with torch.no_grad():
        got = model(input_ids=ids).last_hidden_state
        exact = load_text_encoder_file(file, umt5_encoder(file), dtype=torch.float32)(input_ids=ids).last_hidden_state
        want_exact = reference(input_ids=ids).last_hidden_state
        want = reference.to(torch.bfloat16)(input_ids=ids).last_hidden_state  # (in place: last)
    assert got.dtype == torch.bfloat16 and got.shape == (1, 5, 32)
    torch.testing.assert_close(got, want)  # bf16 tolerances
    torch.testing.assert_close(exact, want_exact, rtol=1e-5, atol=1e-5)  # float32: the same weights exactly


def test_text_encoder_ram_is_the_fp8_files_at_real_size() -> None:
    """At UMT5-XXL size on the meta device: the Linears stay one byte a weight, the embedding
    two: 6.73 GB, the Comfy file's size (6.27 GiB), where the bf16 encoder would be 11.4 GB."""
    from worker.wan.fp8 import swap_in_scaled_linears

    comfy = umt5_comfy_shapes()
    model = build_text_encoder(umt5_encoder(Path("umt5_xxl.safetensors"), shapes=comfy))
    linears = {n for n, m in model.named_modules() if isinstance(m, torch.nn.Linear)}
    bf16 = sum(p.numel() for p in model.parameters()) * 2
    swap_in_scaled_linears(model, linears)
    kept = {id(t): t for t in [*model.parameters(), *model.buffers()]}.values()
    resident = sum(t.numel() * t.element_size() for t in kept if t.dtype == torch.float8_e4m3fn)
    resident += sum(t.numel() * 2 for t in kept if t.dtype != torch.float8_e4m3fn and t.dim() > 0)
    assert resident == pytest.approx(COMFY_FP8.text_encoder, rel=0.01) and bf16 == pytest.approx(11.4e9, rel=0.01)


def test_float16_keeps_the_feed_forward_output_in_float32(tmp_path: Path) -> None:
    file = tmp_path / "umt5.safetensors"
    stored = text_encoder_file_state(seed=0)
    save_file(stored, file)
    model = load_text_encoder_file(file, umt5_encoder(file), dtype=torch.float16)
    ff = model.encoder.block[0].layer[1].DenseReluDense
    assert isinstance(ff, FeedForward) and ff.float32_output
    assert model.encoder.block[0].layer[0].SelfAttention.q.weight.dtype == torch.float8_e4m3fn
    seen: list[torch.dtype] = []
    ff.wo.register_forward_hook(lambda module, args, out: seen.append(args[0].dtype))
    with torch.no_grad():
        model(input_ids=torch.tensor([[5, 6, 1]]))
    assert seen == [torch.float32]  # never rounded to fp8 on the way into wo
    # a bf16 text encoder file (no scales) keeps transformers' own float32 wo
    plain = tmp_path / "umt5_bf16.safetensors"
    dense_state = reference_text_encoder(file, stored).state_dict()
    save_file({k: v for k, v in dense_state.items() if k != "encoder.embed_tokens.weight"}, plain)
    dense = load_text_encoder_file(plain, umt5_encoder(plain), dtype=torch.float16)
    assert dense.encoder.block[0].layer[1].DenseReluDense.wo.weight.dtype == torch.float32


def test_tokenizer_from_spiece_model_matches_sentencepiece() -> None:
    proto = train_spiece()
    processor = sentencepiece.SentencePieceProcessor(model_proto=proto)
    tokenizer = tokenizer_from_spiece(proto)
    for text in ("a cat walks on the street", "The dog  runs, slowly!", "zebra ünïcode ｆｕｌｌｗｉｄｔｈ"):
        assert tokenizer(text).input_ids == [*processor.encode(text), 1], text  # </s> appended
    batch = tokenizer(["a cat"], padding="max_length", max_length=8, truncation=True, return_tensors="pt")
    assert batch.input_ids.shape == (1, 8)
    assert batch.attention_mask.sum() == len(processor.encode("a cat")) + 1


def test_fp8_scaling_in_the_writer_is_the_comfy_format() -> None:
    state = to_comfy_scaled_fp8({"a.weight": torch.tensor([[896.0, -448.0]]), "a.bias": torch.ones(2)})
    assert state["scaled_fp8"].numel() == 0 and state["scaled_fp8"].dtype == torch.float8_e4m3fn
    assert state["a.weight"].dtype == torch.float8_e4m3fn and float(state["a.scale_weight"]) == 896.0 / FP8_MAX
    assert state["a.scale_input"].dim() == 0 and state["a.bias"].dtype == torch.float16
