"""Latent files on their own: the round trip, refusals, and the weight fingerprints."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from worker.wan.latents import LatentInfo, LatentMismatch, fingerprint, load_latents, save_latents

INFO = LatentInfo(
    seed=2**53 - 1, prompt="a cat walks — slowly", steps=20, width=640, height=640, frames=81,
    vae_hash="a" * 16, model_hash="b" * 16, continued_from="seg001-take1.latent.safetensors",
)  # fmt: skip


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_round_trip_is_bit_for_bit(tmp_path: Path, dtype: torch.dtype) -> None:
    latents = torch.randn(1, 16, 21, 80, 80, generator=torch.Generator().manual_seed(0)).to(dtype)
    path = save_latents(tmp_path / "seg002-take1.latent.safetensors", latents, INFO)
    loaded, info = load_latents(path)
    assert loaded.dtype == dtype and torch.equal(loaded, latents)
    assert info == INFO
    assert [p.name for p in tmp_path.iterdir()] == [path.name]  # written atomically, no temporary left


def test_unreadable_incomplete_and_missing_files_are_refused(tmp_path: Path) -> None:
    bad = tmp_path / "bad.latent.safetensors"
    bad.write_bytes(b"not a safetensors file")
    with pytest.raises(LatentMismatch, match="cannot be read"):
        load_latents(bad)
    bare = tmp_path / "bare.latent.safetensors"
    save_file({"latents": torch.zeros(1)}, str(bare), metadata={"seed": "1"})
    with pytest.raises(LatentMismatch, match="metadata is incomplete"):
        load_latents(bare)
    with pytest.raises(LatentMismatch, match="are gone"):
        load_latents(tmp_path / "gone.latent.safetensors")


def test_fingerprints_name_the_files_not_where_they_lie(tmp_path: Path) -> None:
    data = bytes(range(256)) * 8192  # 2 MiB: more than the head that is read
    for folder in ("a", "b"):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "vae.safetensors").write_bytes(data)
    same = fingerprint([tmp_path / "a" / "vae.safetensors"])
    assert same == fingerprint([tmp_path / "b" / "vae.safetensors"]) == fingerprint([tmp_path / "a"])
    (tmp_path / "b" / "vae.safetensors").write_bytes(b"\x01" + data[1:])
    assert fingerprint([tmp_path / "b" / "vae.safetensors"]) != same
    assert fingerprint([tmp_path / "a"], extra="high:1.0") != same
