"""The UMT5-XXL encoder and its tokenizer from ComfyUI's single file
(``text_encoders/umt5_xxl_fp8_e4m3fn_scaled.safetensors``), with no config and no download.

ComfyUI's T5 uses the Hugging Face names, so the weights go into ``UMT5EncoderModel`` as they
are, once each scaled-fp8 weight is multiplied by its ``scale_weight``. The file also carries the
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
from transformers import AutoTokenizer, T5Tokenizer, UMT5Config, UMT5EncoderModel

from worker.errors import BadInput
from worker.wan.comfy_state import load_into, read_state_dict
from worker.wan.detect import TextEncoderArchitecture
from worker.wan.safetensors_header import read_bytes, read_header

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


def load_text_encoder_file(
    path: Path, architecture: TextEncoderArchitecture, *, dtype: torch.dtype
) -> UMT5EncoderModel:
    """The UMT5 encoder in ``path``, scaled-fp8 weights dequantized into ``dtype``. As transformers
    does for float16, the feed-forward output projections stay in float32 there (they overflow)."""
    model = build_text_encoder(architecture)
    state = read_state_dict(
        path,
        rename=text_encoder_state_keys,
        dtype=dtype,
        keep_float32=lambda key: dtype == torch.float16 and ".DenseReluDense.wo." in key,
    )
    if "shared.weight" in state:
        state.setdefault("encoder.embed_tokens.weight", state["shared.weight"])  # tied in the model
    load_into(model, state, path, "a UMT5 encoder")
    model.tie_weights()
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
