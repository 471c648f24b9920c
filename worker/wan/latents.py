"""A take's final latents kept beside its files (``seg001-take1.latent.safetensors``), so a later
segment can continue from them exactly (SVI latent hand-off, worker.wan.svi).

The latents are the denoised ones, before the VAE decode, in the pipeline's normalised space
(``(z - latents_mean) / latents_std``: what the transformer sees), float32 on the CPU. The file's
metadata records what made them: seed, prompt, steps, size, frames, and fingerprints of the VAE
and of the model (experts and LoRAs), so latents from other weights or another size are refused
instead of silently conditioning a clip on a picture it cannot read.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from worker.files import atomic_path

#: The tensor's name in the file.
TENSOR = "latents"
#: Bytes read from the head of each weight file for its fingerprint: a safetensors header (tensor
#: names, shapes, offsets) plus the first weights, cheap next to hashing 14 GB.
_HEAD_BYTES = 1 << 20


class LatentMismatch(ValueError):
    """Latents that cannot condition this clip; the message says why, in the user's words."""


def _file_fingerprint(path: Path, digest: Any) -> None:
    digest.update(f"{path.name}:{path.stat().st_size}:".encode())
    with path.open("rb") as f:
        digest.update(f.read(_HEAD_BYTES))


def fingerprint(paths: Iterable[str | os.PathLike[str]], extra: str = "") -> str:
    """A short hash naming these weight files (or folders, their weight files): names, sizes
    and heads, and ``extra`` (LoRA scales). Equal for the same files wherever they lie;
    different for other weights."""
    digest = hashlib.sha256(extra.encode())
    for entry in paths:
        path = Path(entry)
        if path.is_dir():
            for file in sorted(p for p in path.rglob("*") if p.is_file() and p.suffix in (".safetensors", ".gguf")):
                _file_fingerprint(file, digest)
        elif path.is_file():
            _file_fingerprint(path, digest)
        else:
            digest.update(f"missing:{path}".encode())
    return digest.hexdigest()[:16]


@dataclass(frozen=True)
class LatentInfo:
    """The metadata of a latent file."""

    seed: int
    prompt: str
    steps: int
    width: int
    height: int
    frames: int
    vae_hash: str
    model_hash: str
    #: The latent file this take continued from (svi), by name; "" for a take made from a picture.
    continued_from: str = ""

    def as_metadata(self) -> dict[str, str]:
        return {k: str(v) for k, v in self.__dict__.items()}

    @classmethod
    def from_metadata(cls, meta: Mapping[str, str]) -> LatentInfo:
        try:
            return cls(
                seed=int(meta["seed"]),
                prompt=meta["prompt"],
                steps=int(meta["steps"]),
                width=int(meta["width"]),
                height=int(meta["height"]),
                frames=int(meta["frames"]),
                vae_hash=meta["vae_hash"],
                model_hash=meta["model_hash"],
                continued_from=meta.get("continued_from", ""),
            )
        except (KeyError, ValueError) as exc:
            raise LatentMismatch(f"the latent file's metadata is incomplete ({exc})") from None


@dataclass(frozen=True)
class TakeLatents:
    """A take's final latents, ready to be written beside its other files (worker.process calls
    ``save`` without importing torch itself)."""

    latents: torch.Tensor
    info: LatentInfo

    def save(self, path: str | os.PathLike[str]) -> Path:
        return save_latents(path, self.latents, self.info)


def save_latents(path: str | os.PathLike[str], latents: torch.Tensor, info: LatentInfo) -> Path:
    """Write ``latents`` (any device and dtype; stored as they are, contiguous on the CPU) atomically."""
    tensor = latents.detach().to("cpu").contiguous()
    with atomic_path(path) as tmp:
        save_file({TENSOR: tensor}, str(tmp), metadata=info.as_metadata())
    return Path(path)


def load_latents(path: str | os.PathLike[str]) -> tuple[torch.Tensor, LatentInfo]:
    """The latents and metadata of a latent file; LatentMismatch when it is missing or unreadable."""
    path = Path(path)
    if not path.is_file():
        raise LatentMismatch(f"the previous take's latents ({path.name}) are gone")
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
            tensor = f.get_tensor(TENSOR)
    except Exception as exc:  # safetensors raises its own SafetensorError and OSError alike
        raise LatentMismatch(f"the previous take's latents ({path.name}) cannot be read: {exc}") from None
    return tensor, LatentInfo.from_metadata(meta)
