"""The web chat in a real headless chromium (tests/browser.py), against ``framechain run``'s
bootstrap on the preview backend: the whole conversation as a user clicks through it.

Screenshots of every step go to the test's tmp folder (``screens/``)."""

from __future__ import annotations

import re
from pathlib import Path

from playwright.async_api import Locator, Page, expect

from shared.pictures import Refused, check_picture
from tests.bot.service_harness import picture_bytes
from tests.browser import chromium
from tests.web.harness import web_bot, web_config

WAIT = 30_000  # ms: a segment on the preview backend takes a few seconds


class Shots:
    def __init__(self, folder: Path) -> None:
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)
        self.n = 0

    async def take(self, page: Page, name: str) -> None:
        self.n += 1
        await page.screenshot(path=str(self.folder / f"{self.n:02d}-{name}.png"), full_page=True)


def bot_messages(page: Page, text: str | re.Pattern[str]):  # type: ignore[no-untyped-def]
    return page.locator("li.msg.bot", has_text=text)


async def send(page: Page, text: str, picture: Path | None = None) -> None:
    if picture is not None:
        await page.set_input_files("#picture", str(picture))
    await page.fill("#text", text)
    await page.click("#send")
    await expect(page.locator("#text")).to_have_value("", timeout=WAIT)


async def duration_of(video: Locator) -> float:
    """The video element's own duration, once its metadata has loaded."""
    return float(
        await video.evaluate(
            "v => new Promise(ok => v.readyState >= 1 ? ok(v.duration)"
            " : v.addEventListener('loadedmetadata', () => ok(v.duration)))"
        )
    )


async def progress_texts(page: Page, label: str) -> set[str]:
    """The texts the progress message of the take ``label`` showed (it is edited in place), from
    when it appears until the take's video replaces it."""
    seen: set[str] = set()
    progress = page.locator("li.msg.bot", has_text=label).filter(has_not=page.locator("video"))
    for _ in range(150):
        seen.update(await progress.all_inner_texts())
        if await page.locator("li.msg.bot video").count():
            break
        await page.wait_for_timeout(100)
    return seen


async def test_a_whole_video_in_the_browser(tmp_path: Path) -> None:
    shots = Shots(tmp_path / "screens")
    start = tmp_path / "start.png"
    start.write_bytes(picture_bytes(96, 96))
    async with web_bot(web_config(tmp_path)) as bot, chromium() as browser:
        page = await browser.new_page(viewport={"width": 420, "height": 860})  # a phone's screen
        await page.goto(bot.url)
        await expect(page.locator("body[data-connected=yes]")).to_have_count(1, timeout=WAIT)
        await shots.take(page, "empty")

        # A picture and a first prompt start the session; the progress message changes as it runs.
        await send(page, "a lighthouse on a cliff at dusk", start)
        assert len(await progress_texts(page, "Segment 1 · take 1")) >= 2
        await shots.take(page, "progress")

        # The segment: its video, its last frame, and the review buttons.
        await expect(page.locator("li.msg.bot video")).to_have_count(1, timeout=WAIT)
        await expect(bot_messages(page, "Last frame of segment 1")).to_have_count(1, timeout=WAIT)
        frame = bot_messages(page, "Last frame of segment 1").locator("img")
        assert await frame.evaluate("img => img.complete && img.naturalWidth") == 64
        await shots.take(page, "segment-1")

        # A double click on Approve approves once.
        await page.locator("button", has_text="Approve").first.dblclick()
        await expect(bot_messages(page, "Segment 1 approved")).to_have_count(1, timeout=WAIT)
        await page.wait_for_timeout(1000)
        await expect(bot_messages(page, "Segment 1 approved")).to_have_count(1)
        await shots.take(page, "approved")

        # A typed /command, answered in the chat.
        await send(page, "/status")
        await expect(bot_messages(page, "1 segment approved")).to_have_count(1, timeout=WAIT)
        # (the storyboard sheet follows a /status once a segment is approved)

        # A second prompt, then another take of it.
        await send(page, "the camera flies towards the lighthouse")
        await expect(bot_messages(page, "Last frame of segment 2")).to_have_count(1, timeout=WAIT)
        regenerate = page.locator("li.msg.bot", has_text="take 1").locator("button", has_text="Regenerate")
        await regenerate.last.click()
        await expect(bot_messages(page, "Last frame of segment 2")).to_have_count(2, timeout=WAIT)
        await shots.take(page, "regenerated")

        # Approve & finish on the newest take: the final video, playable in the page.
        await page.locator("button", has_text="Approve & finish").last.click()
        # The final is the one video that is not a take.
        final = page.locator("li.msg.bot").filter(has_not_text="take").locator("video")
        await expect(final).to_have_count(1, timeout=WAIT)
        frames, fps = bot.config.generation.frames, bot.config.generation.fps
        assert abs(await duration_of(final) - (frames + frames - 1) / fps) < 0.2  # the join drops one frame
        await final.evaluate("v => { v.muted = true; return v.play(); }")
        await page.wait_for_timeout(400)
        assert await final.evaluate("v => v.currentTime") > 0
        await final.scroll_into_view_if_needed()
        await shots.take(page, "final")


async def test_a_file_that_is_not_a_picture_gets_the_image_checks_sentence(tmp_path: Path) -> None:
    notes = tmp_path / "notes.txt"
    notes.write_text("this is not a picture\n")
    refusal = check_picture(notes.read_bytes())
    assert isinstance(refusal, Refused)
    async with web_bot(web_config(tmp_path)) as bot, chromium() as browser:
        page = await browser.new_page()
        await page.goto(bot.url)
        await expect(page.locator("body[data-connected=yes]")).to_have_count(1, timeout=WAIT)
        await send(page, "", notes)
        await expect(bot_messages(page, refusal.reason)).to_have_count(1, timeout=WAIT)
        await Shots(tmp_path / "screens").take(page, "not-a-picture")


async def test_a_restart_mid_generation_and_the_page_recovers(tmp_path: Path) -> None:
    start = tmp_path / "start.png"
    start.write_bytes(picture_bytes(96, 96))
    shots = Shots(tmp_path / "screens")
    async with web_bot(web_config(tmp_path, step_delay=1.0)) as bot, chromium() as browser:
        page = await browser.new_page()
        await page.goto(bot.url)
        await expect(page.locator("body[data-connected=yes]")).to_have_count(1, timeout=WAIT)
        await send(page, "waves on the rocks", start)
        await expect(bot_messages(page, "step")).to_have_count(1, timeout=WAIT)
        await bot.shutdown()
        await expect(page.locator("#connection")).to_be_visible(timeout=WAIT)
        await shots.take(page, "server-down")
        await bot.start()
        # The same page, not reloaded: it reconnects, and the job re-queued at start finishes.
        await expect(page.locator("#connection")).to_be_hidden(timeout=WAIT)
        await expect(bot_messages(page, "Last frame of segment 1")).to_have_count(1, timeout=WAIT)
        await shots.take(page, "recovered")
        # Buttons posted before a restart keep working after it.
        await bot.shutdown()
        await bot.start()
        await expect(page.locator("#connection")).to_be_hidden(timeout=WAIT)
        await page.locator("button", has_text="Approve").first.click()
        await expect(bot_messages(page, "Segment 1 approved")).to_have_count(1, timeout=WAIT)
