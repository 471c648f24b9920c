"""The operator page in chromium: a queued job, the storyboard frames, a final video that plays."""

from __future__ import annotations

import asyncio
from pathlib import Path

import aiohttp
from playwright.async_api import expect

from tests.bot.service_harness import picture_bytes
from tests.browser import chromium
from tests.web.harness import Client, web_bot, web_config
from tests.web.test_web_chat import WAIT, Shots, duration_of


async def test_the_operator_page_shows_a_queued_job_and_plays_a_final_video(tmp_path: Path) -> None:
    shots = Shots(tmp_path / "screens")
    async with web_bot(web_config(tmp_path, step_delay=0.6)) as bot, aiohttp.ClientSession() as http:
        client = Client(bot, http)
        first, second = await client.new_thread(), await client.new_thread()
        await client.send(first, "a lighthouse at dusk", picture_bytes(96, 96))
        await client.send(second, "a forest in the rain", picture_bytes(80, 96))
        async with chromium() as browser:
            page = await browser.new_page()
            await page.goto(bot.url + "ops")
            queue = page.locator("section", has=page.locator("h2", has_text="Queue"))
            # One worker: the first job runs, the second waits first in line.
            await expect(queue.locator("tr", has_text="running")).to_have_count(1)
            await expect(queue.locator("tbody tr").filter(has_text="web:").last).to_contain_text("1")
            # What /queue and /gpu say: the take, the worker running it, the worker busy with it.
            await expect(queue.locator("tr", has_text="running")).to_contain_text("segment 1 · take 1")
            await expect(queue.locator("tr", has_text="running")).to_contain_text("running on cpu")
            workers = page.locator("section", has=page.locator("h2", has_text="Workers"))
            await expect(workers).to_contain_text("busy")
            await expect(workers).to_contain_text("job ")
            await shots.take(page, "ops-queue")

            # The first session's take approved and joined: its video plays on the page.
            await client.press(first, await client.control(first, "apfin"))
            for _ in range(150):
                await page.goto(bot.url + "ops")
                if await page.locator("article.final video").count():
                    break
                await asyncio.sleep(0.2)
            video = page.locator("article.final video")
            await expect(video).to_have_count(1)
            frames, fps = bot.config.generation.frames, bot.config.generation.fps
            assert abs(await duration_of(video) - frames / fps) < 0.2
            await video.evaluate("v => { v.muted = true; return v.play(); }")
            await page.wait_for_timeout(400)
            assert await video.evaluate("v => v.currentTime") > 0
            # The second session, still going: its start picture on its storyboard.
            frame = page.locator("article.session img").first
            await expect(frame).to_have_count(1, timeout=WAIT)
            assert await frame.evaluate("img => img.complete && img.naturalWidth > 0")
            await shots.take(page, "ops-final")

            # /pause typed in the chat: the page shows the queue held, as /queue does.
            await client.send(first, "/pause")
            await page.goto(bot.url + "ops")
            await expect(page.locator("h2", has_text="Queue")).to_have_text("Queue (⏸ paused)")


async def test_the_operator_page_fits_a_phone(tmp_path: Path) -> None:
    """Wide tables scroll on their own; the page itself never scrolls sideways."""
    async with web_bot(web_config(tmp_path)) as bot, chromium() as browser:
        page = await browser.new_page(viewport={"width": 390, "height": 844})
        await page.goto(bot.url + "ops")
        await expect(page.locator("h2", has_text="Workers")).to_have_count(1)
        assert await page.evaluate("document.documentElement.scrollWidth") <= 390
        await Shots(tmp_path / "screens").take(page, "ops-phone")
