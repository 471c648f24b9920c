"""What a newcomer sees on opening the web chat, in a real headless chromium: a hint for the first
step (gone once the conversation has a message), an untitled conversation that does not read like
the New video button beside it, and no request that fails."""

from __future__ import annotations

from pathlib import Path

from playwright.async_api import Response, expect

from tests.bot.service_harness import picture_bytes
from tests.browser import chromium
from tests.web.harness import web_bot, web_config
from tests.web.test_web_chat import WAIT, Shots, bot_messages, send


async def test_the_first_look(tmp_path: Path) -> None:
    start = tmp_path / "start.png"
    start.write_bytes(picture_bytes(96, 96))
    async with web_bot(web_config(tmp_path)) as bot, chromium() as browser:
        page = await browser.new_page(viewport={"width": 390, "height": 844})
        failed: list[str] = []

        def check(response: Response) -> None:
            if response.status >= 400:
                failed.append(f"{response.status} {response.url}")

        page.on("response", check)
        await page.goto(bot.url)
        await expect(page.locator("body[data-connected=yes]")).to_have_count(1, timeout=WAIT)
        await expect(page.locator(".hint")).to_be_visible()
        await expect(page.locator(".hint")).to_contain_text("Attach a picture with 🖼")
        await expect(page.locator("#threads option")).to_have_text(["Untitled video"])
        await expect(page.locator("#new-thread")).to_have_text("New video")
        await Shots(tmp_path / "screens").take(page, "first-look")

        await send(page, "a lighthouse", start)
        await expect(bot_messages(page, "Segment 1 · take 1")).to_have_count(1, timeout=WAIT)
        await expect(page.locator(".hint")).to_be_hidden()
        await expect(page.locator("#threads option")).to_have_text(["a lighthouse"], timeout=WAIT)
        await page.wait_for_timeout(300)
        assert failed == []
