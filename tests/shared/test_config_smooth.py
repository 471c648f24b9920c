"""generation.final_fps and generation.rife_weights: smooth playback is on only with a weights file."""

from __future__ import annotations

from pathlib import Path

import pytest

from shared.config import ConfigError, load_config


def config(tmp_path: Path, lines: str) -> Path:
    path = tmp_path / "framechain.toml"
    path.write_text(f"[generation]\n{lines}\n", encoding="utf-8")
    return path


def test_final_fps_is_off_by_default_and_on_at_twice_fps_with_weights(tmp_path: Path) -> None:
    assert not load_config(config(tmp_path, "")).generation.smooth_playback
    weights = tmp_path / "rife.pkl"
    weights.write_bytes(b"weights")
    g = load_config(config(tmp_path, f'final_fps = 32\nrife_weights = "{weights}"')).generation
    assert g.smooth_playback and g.final_fps == 32


@pytest.mark.parametrize(
    ("lines", "message"),
    [
        ("final_fps = 24", r"generation.final_fps: must be 16 \(fps: off\) or 32"),
        ("final_fps = 32", "generation.final_fps: is 32 but generation.rife_weights names no RIFE 4.26 weights file"),
        (
            'final_fps = 32\nrife_weights = "/nowhere/rife.pkl"',
            "generation.rife_weights: /nowhere/rife.pkl is not a file",
        ),
    ],
)
def test_smooth_playback_without_usable_weights_is_a_config_error(tmp_path: Path, lines: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_config(config(tmp_path, lines))
