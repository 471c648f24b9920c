"""`framechain render` on the preview backend: the happy paths and every bad-input path."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from worker.video import probe, read_frames

ROOT = Path(__file__).resolve().parents[2]


def render(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FRAMECHAIN_")}
    env["PYTHONPATH"] = str(ROOT)
    return subprocess.run(
        [sys.executable, "-m", "bot.cli", "render", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )


@pytest.fixture
def image(tmp_path: Path) -> Path:
    # Smooth content: noise would not survive yuv420p encoding well enough to compare frames.
    y, x = np.mgrid[0:96, 0:128]
    rgb = np.stack([x * 2, y * 2, 255 - x - y], axis=-1).clip(0, 255).astype(np.uint8)
    path = tmp_path / "start.jpg"
    Image.fromarray(rgb).save(path, quality=95)
    return path


def test_chained_render_with_prompts(tmp_path: Path, image: Path) -> None:
    out = tmp_path / "film.mp4"
    result = render(
        "--image",
        str(image),
        "--prompt",
        "the camera drifts left",
        "--prompt",
        "a bird lands",
        "--prompt",
        "sunset",
        "--out",
        str(out),
        "--backend",
        "preview",
        "--frames",
        "9",
        "--size",
        "64x48",
        "--steps",
        "3",
        "--seed",
        "11",
    )
    assert result.returncode == 0, result.stderr
    lines = [line for line in result.stdout.splitlines() if line.startswith("segment ")]
    assert len(lines) == 3 and lines[0].startswith("segment 1/3: 9 frames, seed 11,")
    assert "seed 12" in lines[1] and "seed 13" in lines[2]
    drift = [line.strip() for line in result.stdout.splitlines() if "Drift at segment" in line]
    assert len(drift) == 3 and "against the first picture" in drift[0] and "seam 2→3: motion" in drift[2]
    assert "preview" in result.stdout
    folder = tmp_path / "film"
    for i in (1, 2, 3):
        assert (folder / f"segment_{i:02d}.mp4").exists() and (folder / f"segment_{i:02d}.png").exists()
    info = probe(out)
    assert info.frames == 9 + 8 + 8 and (info.width, info.height) == (64, 48) and info.fps == 16
    # Chaining: segment 2 starts from segment 1's hand-off frame (the preview re-renders frame 0
    # exactly, as Wan does), so the joined video's frame 8 is segment 1's last frame.
    hand_off = np.asarray(Image.open(folder / "segment_01.png")).astype(int)
    joined = read_frames(out).astype(int)
    assert np.abs(joined[8] - hand_off).mean() < 6


def test_aspect_ratio_is_kept_by_default(tmp_path: Path, image: Path) -> None:
    out = tmp_path / "wide.mp4"
    result = render(
        "--image",
        str(image),
        "--prompt",
        "p",
        "--out",
        str(out),
        "--backend",
        "preview",
        "--frames",
        "5",
        "--steps",
        "1",
    )
    assert result.returncode == 0, result.stderr
    info = probe(out)
    # 128x96 (4:3) within the 640*640 budget, sides multiples of 16.
    assert (info.width, info.height) == (736, 544)
    assert "736x544" in result.stdout


def test_storyboard(tmp_path: Path, image: Path) -> None:
    board = tmp_path / "story.toml"
    board.write_text(
        f'image = "{image.name}"\n[settings]\nbackend = "preview"\nframes = 5\nsize = "32x32"\nsteps = 2\n'
        '[[segment]]\nprompt = "one"\n[[segment]]\nprompt = "two"\nframes = 9\nseed = 3\n'
    )
    result = render(str(board), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert probe(tmp_path / "story.mp4").frames == 5 + 8
    assert "seed 3" in result.stdout


def test_the_shipped_example_storyboard_is_valid(tmp_path: Path) -> None:
    out = tmp_path / "demo.mp4"
    result = render(str(ROOT / "examples" / "storyboard.toml"), "--out", str(out), "--size", "64x48", "--frames", "5")
    assert result.returncode == 0, result.stderr
    assert probe(out).frames > 5


@pytest.mark.parametrize(
    ("case", "expected"),
    [
        ("missing", "image not found"),
        ("not-an-image", "I couldn't read that as a picture"),
        ("directory", "image is a directory"),
        ("empty-prompt", "segment 1: prompt is empty"),
        ("long-prompt", "over the limit of 2000"),
        ("bad-size", "size: width must be a positive multiple of 16"),
        ("size-text", "size must look like 640x640"),
        ("bad-frames", "frames must be 4k+1"),
        ("no-prompt", "no prompts"),
        ("no-image", "no start image"),
        ("bad-out", "must be an .mp4 file"),
        ("bad-storyboard", "not valid TOML"),
        ("storyboard-key", "unknown key colour"),
    ],
)
def test_bad_input_exits_2_with_one_line(tmp_path: Path, image: Path, case: str, expected: str) -> None:
    out = str(tmp_path / "x.mp4")
    base = ["--out", out, "--backend", "preview"]
    text = tmp_path / "notes.png"
    text.write_text("not an image")
    board = tmp_path / "b.toml"
    args = {
        "missing": ["--image", str(tmp_path / "nope.png"), "--prompt", "p"],
        "not-an-image": ["--image", str(text), "--prompt", "p"],
        "directory": ["--image", str(tmp_path), "--prompt", "p"],
        "empty-prompt": ["--image", str(image), "--prompt", "   "],
        "long-prompt": ["--image", str(image), "--prompt", "x" * 10_000],
        "bad-size": ["--image", str(image), "--prompt", "p", "--size", "650x640"],
        "size-text": ["--image", str(image), "--prompt", "p", "--size", "big"],
        "bad-frames": ["--image", str(image), "--prompt", "p", "--frames", "80"],
        "no-prompt": ["--image", str(image)],
        "no-image": ["--prompt", "p"],
        "bad-out": ["--image", str(image), "--prompt", "p", "--out", str(tmp_path / "x.gif")],
        "bad-storyboard": [str(board)],
        "storyboard-key": [str(board)],
    }[case]
    board.write_text("image = [" if case == "bad-storyboard" else 'colour = "red"\n')
    result = render(*args, *base) if case != "bad-out" else render(*args, "--backend", "preview")
    assert result.returncode == 2, result.stderr
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
    assert expected in result.stderr
    assert not Path(out).exists()


def test_worker_that_cannot_load_is_an_internal_failure(tmp_path: Path, image: Path) -> None:
    result = render(
        "--image",
        str(image),
        "--prompt",
        "p",
        "--out",
        str(tmp_path / "x.mp4"),
        "--backend",
        "wan",
        "--model",
        str(tmp_path / "no-such-model"),
        "--size",
        "32x32",
        "--frames",
        "5",
    )
    assert result.returncode == 1
    assert "could not load backend" in result.stderr.splitlines()[-1]


def test_svi_render_on_the_tiny_wan_continues_from_latents(tmp_path: Path, image: Path, tiny_wan_dir: Path) -> None:
    from tests.worker.test_wan_lora import write_lora

    lora = write_lora(tmp_path / "svi.safetensors", seed=3, strength=0.3)
    config = tmp_path / "framechain.toml"
    config.write_text(f'[generation]\ncontinuity = "svi"\n[[generation.loras]]\npath = "{lora}"\nrole = "svi"\n')
    out = tmp_path / "film.mp4"
    args = ["--image", str(image), "--prompt", "a cat walks", "--prompt", "the sun rises", "--prompt", "rain"]
    result = render(
        *args, "--out", str(out), "--backend", "wan", "--model", str(tiny_wan_dir), "--config", str(config),
        "--frames", "9", "--size", "32x32", "--steps", "2",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "note:" not in result.stdout
    folder = tmp_path / "film"
    assert all((folder / f"segment_{i:02d}.latent.safetensors").exists() for i in (1, 2, 3))
    # Segments 2 and 3 continued from latents: each drops the 4 frames it shares with the one before.
    assert probe(out).frames == 9 + 5 + 5
