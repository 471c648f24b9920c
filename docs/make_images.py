"""The pictures of the docs, made with framechain's own code, never drawn by hand.

    PYTHONPATH=. .venv/bin/python docs/make_images.py

docs/images/storyboard.png: examples/storyboard.toml rendered by ``framechain render`` on the
preview backend (no GPU, no model: a slow zoom and pan of the start picture stands in for Wan),
then the storyboard sheet the bot sends (bot.conversation.storyboard.compose) from the start
picture and each segment's hand-off frame, with the storyboard's prompts. The fonts are those of
the machine that runs it (fonts-noto-cjk for prompts in Chinese, Japanese or Korean).

docs/images/segment-message.png: a segment as the bot posts it on Telegram. The real bot (the
python-telegram-bot Application, the service, the store, a preview worker) runs against the Bot
API stand-in of the tests; the picture is drawn, in a plain chat style and by headless chromium,
from what the bot really sent: the video's thumbnail, its caption and its buttons, then the
hand-off frame with its caption. Telegram's own apps draw the same message in their style.
"""

from __future__ import annotations

import asyncio
import base64
import html
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path
from typing import Any

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


async def _capture(tmp: Path) -> tuple[Any, Any]:
    """Run the bot to its first segment on Telegram; the sendVideo and sendPhoto calls it made."""
    from shared.config import load_config
    from tests.bot.telegram_standin import BotApiStandIn
    from tests.bot.test_telegram_flow import ALICE, GROUP, bot_process, takes, until

    prompt = tomllib.loads(STORYBOARD.read_text(encoding="utf-8"))["segment"][0]["prompt"]
    async with BotApiStandIn() as api:
        path = tmp / "framechain.toml"
        path.write_text(
            f'data_dir = "{tmp / "data"}"\n[generation]\nbackend = "preview"\nframes = 33\nsteps = 4\n'
            f'[workers]\ndevices = ["cpu"]\n[telegram]\ntoken = "{api.token}"\napi_base_url = "{api.base_url}"\n'
            f'api_file_url = "{api.file_url}"\nadmin_ids = [{ALICE}]\n'
        )
        config = load_config(path, env={})
        async with bot_process(config, path):
            start = (ROOT / "examples" / "start.png").read_bytes()
            await api.user_message(GROUP, ALICE, photo=start, caption=f"/start {prompt}")
            await until(lambda: len(takes(api)) == 1, "the first take")

            def frame_posts() -> list[Any]:
                return [p for p in api.sent("sendPhoto") if p.params["caption"].startswith("Last frame")]

            await until(lambda: bool(frame_posts()), "the hand-off frame")
            return takes(api)[0], frame_posts()[0]


def _data_url(data: bytes, kind: str) -> str:
    return f"data:{kind};base64,{base64.b64encode(data).decode()}"


def _bubble(picture: bytes, caption: str, *, badge: str = "", rows: list[list[str]] | None = None) -> str:
    text = html.escape(caption).replace("\n", "<br>")
    keyboard = "".join(
        '<div class="row">' + "".join(f'<span class="button">{html.escape(b)}</span>' for b in row) + "</div>"
        for row in rows or []
    )
    badge_html = f'<span class="badge">{html.escape(badge)}</span>' if badge else ""
    return (
        f'<div class="message"><div class="bubble"><div class="media"><img src="{_data_url(picture, "image/png")}">'
        f'{badge_html}</div><div class="caption">{text}</div></div><div class="keyboard">{keyboard}</div></div>'
    )


PAGE = """<!doctype html><meta charset="utf-8"><style>
body {{ margin: 0; background: #0e1621; font: 15px/1.35 "DejaVu Sans", sans-serif; color: #f5f5f5; }}
#chat {{ display: inline-block; padding: 16px; }}
.message {{ width: 420px; margin-bottom: 12px; }}
.bubble {{ background: #182533; border-radius: 12px; overflow: hidden; }}
.media {{ position: relative; }} .media img {{ display: block; width: 100%; }}
.badge {{ position: absolute; left: 8px; top: 8px; background: #000a; border-radius: 8px; padding: 2px 8px; }}
.caption {{ padding: 8px 10px 10px; }}
.row {{ display: flex; gap: 4px; margin-top: 4px; }}
.button {{ flex: 1; text-align: center; background: #2b5278aa; border-radius: 8px; padding: 8px 4px; }}
</style><div id="chat">{bubbles}</div>"""


async def segment_message(out: Path) -> Path:
    from tests.browser import chromium

    with tempfile.TemporaryDirectory(prefix="framechain-docs-") as tmp:
        video, frame = await _capture(Path(tmp))
    rows = [[b["text"] for b in row] for row in video.params["reply_markup"]["inline_keyboard"]]
    thumbnail = video.file("thumbnail")
    photo = frame.file("photo")
    assert thumbnail is not None and photo is not None
    seconds = int(video.params.get("duration", 0))
    bubbles = _bubble(thumbnail.data, video.params["caption"], badge=f"▶ 0:{seconds:02d}", rows=rows)
    bubbles += _bubble(photo.data, frame.params["caption"])
    async with chromium() as browser:
        page = await browser.new_page(device_scale_factor=1)
        await page.set_content(PAGE.format(bubbles=bubbles))
        await page.locator("#chat").screenshot(path=str(out))
    return out


if __name__ == "__main__":
    print(storyboard_sheet(OUT / "storyboard.png"))
    print(asyncio.run(segment_message(OUT / "segment-message.png")))
