"""The UMT5-XXL encoder and its tokenizer from ComfyUI's single file
(``text_encoders/umt5_xxl_fp8_e4m3fn_scaled.safetensors``), with no config and no download.

ComfyUI's T5 uses the Hugging Face names, so the weights go into ``UMT5EncoderModel`` as they
are. Scaled-fp8 weights stay fp8 with their scales, as the experts' do (worker.wan.fp8: each
Linear dequantised per call): 6.3 GiB resident instead of 11 GB in bf16, and memory-mapped under
the low-RAM option, so their pages are handed back once the prompt is encoded. The file also carries the
tokenizer: ``spiece_model``, a serialized sentencepiece model stored as a uint8 tensor, which
ComfyUI hands to sentencepiece as it is. Here it becomes a ``T5Tokenizer`` with the same pieces,
scores and normalization (and, like ComfyUI's, no ``<extra_id_N>`` sentinels added).
Where the file lacks it, the tokenizer comes from ``generation.tokenizer`` or the tokenizer/
folder of ``generation.model``, and the log says which.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn
from transformers import AutoTokenizer, T5Tokenizer, UMT5Config, UMT5EncoderModel

from worker.errors import BadInput
from worker.model_check import read_safetensors_header
from worker.wan.comfy_state import is_weight, load_into, mismatches, read_state_dict
from worker.wan.detect import TextEncoderArchitecture
from worker.wan.expert_file import fill_scaled_fp8
from worker.wan.fp8 import ScaledFP8Linear, scaled_linears
from worker.wan.safetensors_header import SCALE_SUFFIXES, read_bytes, read_header

log = logging.getLogger("framechain.worker")

#: T5's sentencepiece convention, which T5Tokenizer assumes: <pad> 0, </s> 1, <unk> 2.
_T5_SPECIALS = ("<pad>", "</s>", "<unk>")


def build_text_encoder(architecture: TextEncoderArchitecture) -> UMT5EncoderModel:
    """The encoder of ``architecture`` on the meta device."""
    with torch.device("meta"):
        return UMT5EncoderModel(UMT5Config(**architecture.config))


def text_encoder_state_keys(key: str) -> str:
    """ComfyUI's T5 names are the Hugging Face ones."""
    return key


class FeedForward(nn.Module):
    """UMT5's feed-forward (gated or not) over fp8 weights. transformers casts the hidden states to
    ``wo.weight.dtype`` before ``wo`` (to run an fp32 ``wo`` in fp32); with an fp8 ``wo`` that would
    round the activations to fp8. Here they stay in the compute dtype, or go to float32 before
    ``wo`` for float16 compute, where transformers keeps ``wo`` in float32 (it overflows)."""

    def __init__(self, original: nn.Module, *, float32_output: bool) -> None:
        super().__init__()
        for name, child in original.named_children():
            self.add_module(name, child)
        self.gated = hasattr(original, "wi_0")
        self.float32_output = float32_output

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        part = self.get_submodule
        if self.gated:
            hidden_states = part("act")(part("wi_0")(hidden_states)) * part("wi_1")(hidden_states)
        else:
            hidden_states = part("act")(part("wi")(hidden_states))
        hidden_states = part("dropout")(hidden_states)
        if self.float32_output:
            hidden_states = hidden_states.to(torch.float32)
        out: torch.Tensor = part("wo")(hidden_states)
        return out


def load_text_encoder_file(
    path: Path, architecture: TextEncoderArchitecture, *, dtype: torch.dtype, mapped: bool = False
) -> UMT5EncoderModel:
    """The UMT5 encoder in ``path``. A scaled-fp8 file's Linear weights stay fp8 with their scales
    (``mapped``: as views of a memory map of the file, the low-RAM option); everything else is in
    ``dtype``. As transformers does for float16, the feed-forward output stays in float32 there."""
    fp16 = dtype == torch.float16

    def keep_float32(key: str) -> bool:
        return fp16 and ".DenseReluDense.wo." in key

    header = read_safetensors_header(path, "text encoder file")
    if not header.is_scaled_fp8:
        model = build_text_encoder(architecture)
        state = read_state_dict(path, rename=text_encoder_state_keys, dtype=dtype, keep_float32=keep_float32)
        if "shared.weight" in state:
            state.setdefault("encoder.embed_tokens.weight", state["shared.weight"])  # tied in the model
        load_into(model, state, path, "a UMT5 encoder")
        model.tie_weights()
        return model

    model = build_text_encoder(architecture)
    weights = {k: text_encoder_state_keys(k) for k in header.tensors if is_weight(k)}
    got = {new: header.tensors[k].shape for k, new in weights.items()}
    if "shared.weight" in got:
        got.setdefault("encoder.embed_tokens.weight", got["shared.weight"])  # tied in the model
    problems = mismatches(got, {k: tuple(v.shape) for k, v in model.state_dict().items()})
    if problems:
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        raise BadInput(f"{path} does not load as a UMT5 encoder: {problems[0]}{more}.")
    names = weights | {k: k for k in header.tensors if k.endswith(SCALE_SUFFIXES)}
    fill_scaled_fp8(model, header, names, dtype=dtype, mapped=mapped, keeps_fp32=keep_float32)
    if model.encoder.embed_tokens.weight.is_meta:
        model.encoder.embed_tokens.weight = model.shared.weight
    model.tie_weights()
    for name, module in list(model.named_modules()):
        if name.endswith(".DenseReluDense") and isinstance(getattr(module, "wo", None), ScaledFP8Linear):
            parent, _, child = name.rpartition(".")
            model.get_submodule(parent).add_module(child, FeedForward(module, float32_output=fp16))
    left = [n for n, t in [*model.named_parameters(), *model.named_buffers()] if t is not None and t.is_meta]
    if left:
        raise BadInput(f"{path} does not load as a UMT5 encoder: it lacks {left[0]}.")
    model.requires_grad_(False)
    log.info("%s: %d linear layers kept in fp8 with their scales", path.name, len(scaled_linears(model)))
    model.train(False)
    return model


def tokenizer_from_spiece(model_proto: bytes) -> T5Tokenizer:
    """A T5 tokenizer from a serialized sentencepiece model: the same pieces, scores and
    normalizer, ``</s>`` appended as ComfyUI's UMT5 tokenizer does."""
    from sentencepiece import sentencepiece_model_pb2

    proto = sentencepiece_model_pb2.ModelProto()  # type: ignore[attr-defined]
    proto.ParseFromString(model_proto)
    pieces = [(p.piece, p.score) for p in proto.pieces]
    if tuple(p for p, _ in pieces[:3]) != _T5_SPECIALS:
        raise BadInput("the text encoder's spiece_model is not a T5 sentencepiece model (<pad>, </s>, <unk> first).")
    charsmap = proto.normalizer_spec.precompiled_charsmap or None
    return T5Tokenizer(vocab=pieces, _spm_precompiled_charsmap=charsmap, extra_ids=0)


@dataclass(frozen=True)
class TokenizerSource:
    #: What the log says: where the tokenizer came from.
    description: str
    tokenizer: Any


def load_tokenizer(
    text_encoder: Path | None, *, tokenizer: str, model: str, local_model: Path | None
) -> TokenizerSource:
    """The tokenizer: the text-encoder file's own ``spiece_model`` where it has one, else
    ``tokenizer`` (a folder or hub id), else the tokenizer/ folder of ``model``."""
    if text_encoder is not None:
        header = read_header(text_encoder)
        if "spiece_model" in header:
            return TokenizerSource(
                f"the spiece_model in {text_encoder}", tokenizer_from_spiece(read_bytes(header, "spiece_model"))
            )
    lacking = f" ({text_encoder.name} has no spiece_model)" if text_encoder is not None else ""
    try:
        if tokenizer:
            given = Path(tokenizer).expanduser()
            source = str(given) if given.is_dir() else tokenizer
            loaded = AutoTokenizer.from_pretrained(source, local_files_only=given.is_dir())
            return TokenizerSource(f"generation.tokenizer {tokenizer}{lacking}", loaded)
        where = f"the tokenizer folder of generation.model {model}{lacking}"
        if local_model is not None:
            return TokenizerSource(
                where, AutoTokenizer.from_pretrained(str(local_model / "tokenizer"), local_files_only=True)
            )
        return TokenizerSource(where, AutoTokenizer.from_pretrained(model, subfolder="tokenizer"))
    except (OSError, ValueError) as exc:
        why = str(exc).strip().splitlines()[0].rstrip(".") if str(exc).strip() else type(exc).__name__
        raise BadInput(
            f"the tokenizer could not be loaded{lacking}: {why}; set generation.tokenizer to a tokenizer folder, "
            "e.g. the tokenizer/ of a Wan2.2 diffusers model."
        ) from exc
