"""The pictures of the docs, made with framechain's own code, never drawn by hand.

    PYTHONPATH=. .venv/bin/python docs/make_images.py

docs/images/storyboard.png: examples/storyboard.toml rendered by ``framechain render`` on the
preview backend (no GPU, no model: a slow zoom and pan of the start picture stands in for Wan),
then the storyboard sheet the bot sends (bot.conversation.storyboard.compose) from the start
picture and each segment's hand-off frame, with the storyboard's prompts. The fonts are those of
the machine that runs it (fonts-noto-cjk for prompts in Chinese, Japanese or Korean).
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path

from bot.conversation.storyboard import Panel, compose

ROOT = Path(__file__).resolve().parents[1]
STORYBOARD = ROOT / "examples" / "storyboard.toml"
OUT = ROOT / "docs" / "images"


def storyboard_sheet(out: Path) -> Path:
    prompts = [seg["prompt"] for seg in tomllib.loads(STORYBOARD.read_text(encoding="utf-8"))["segment"]]
    with tempfile.TemporaryDirectory(prefix="framechain-docs-") as tmp:
        video = Path(tmp) / "demo.mp4"
        subprocess.run(
            [sys.executable, "-m", "bot.cli", "render", str(STORYBOARD), "--out", str(video)], check=True, cwd=ROOT
        )
        frames = video.with_suffix("")  # render keeps each segment's files beside the video
        panels = [Panel(frames / "start.png")]
        panels += [Panel(frames / f"segment_{i:02d}.png", prompt) for i, prompt in enumerate(prompts, start=1)]
        sheet = compose(panels)
        out.parent.mkdir(parents=True, exist_ok=True)
        sheet.image.save(out, format="PNG", optimize=True)
    return out


if __name__ == "__main__":
    print(storyboard_sheet(OUT / "storyboard.png"))
