"""Takes in the web chat, in a real headless chromium: ``/settings takes=2``, a prompt sent again
while the takes are made, ◀ ▶ paging, approving the second take, and an old take's button pressed
after the approval."""

from __future__ import annotations

from pathlib import Path

from playwright.async_api import expect

from tests.bot.service_harness import picture_bytes
from tests.browser import chromium
from tests.web.harness import web_bot, web_config
from tests.web.test_web_chat import WAIT, Shots, bot_messages, send


async def test_two_takes_paged_and_the_second_approved(tmp_path: Path) -> None:
    shots = Shots(tmp_path / "screens")
    start = tmp_path / "start.png"
    start.write_bytes(picture_bytes(96, 96))
    async with web_bot(web_config(tmp_path, step_delay=0.3)) as bot, chromium() as browser:
        page = await browser.new_page(viewport={"width": 390, "height": 844})
        await page.goto(bot.url)
        await expect(page.locator("body[data-connected=yes]")).to_have_count(1, timeout=WAIT)
        await send(page, "", start)  # a picture alone: the session waits for its first prompt
        await expect(bot_messages(page, "first prompt")).to_have_count(1, timeout=WAIT)
        await send(page, "/settings takes=2")
        await expect(bot_messages(page, "2 takes per prompt")).to_have_count(1, timeout=WAIT)

        await send(page, "a lighthouse on a cliff at dusk")
        # Sent again at once, while the takes are made: answered in the chat, not a server error.
        await send(page, "a lighthouse on a cliff at dusk")
        await page.wait_for_timeout(500)
        assert "500" not in await page.locator("#notice").inner_text()
        await expect(bot_messages(page, "Still working on segment 1")).to_have_count(1, timeout=WAIT)

        review = bot_messages(page, "Segment 1 · take").filter(has=page.locator("video"))
        await expect(review.locator(".control-label", has_text="take 1 of 2")).to_have_count(1, timeout=WAIT)
        # The "take 1 of 2" between the arrows is a label, not a button that answers with an error.
        await expect(review.locator("button", has_text="take 1 of")).to_have_count(0)
        first_approve = await review.locator("button", has_text="Approve").first.get_attribute("data-control")
        await shots.take(page, "take-1-of-2")

        await review.locator("button", has_text="▶").click()
        await expect(review.locator(".control-label", has_text="take 2 of 2")).to_have_count(1, timeout=WAIT)
        await expect(review).to_contain_text("take 2")
        await review.locator("button", has_text="◀").click()
        await expect(review.locator(".control-label", has_text="take 1 of 2")).to_have_count(1, timeout=WAIT)
        await review.locator("button", has_text="▶").click()
        await expect(review.locator(".control-label", has_text="take 2 of 2")).to_have_count(1, timeout=WAIT)
        await review.locator("button", has_text="✅ Approve").click()
        await expect(page.locator("#notice")).to_have_text("✅ Approved segment 1, take 2.", timeout=WAIT)
        await expect(bot_messages(page, "Segment 1 approved")).to_have_count(1, timeout=WAIT)
        await shots.take(page, "take-2-approved")

        # Take 1's Approve, pressed after take 2 was approved (a page not yet updated): told so.
        notes = await page.evaluate(
            """async ([thread, data]) => {
                 const r = await fetch("/api/press", {method: "POST",
                   headers: {"X-Framechain": "1", "Content-Type": "application/json"},
                   body: JSON.stringify({thread, data})});
                 return (await r.json()).notes;
               }""",
            [await page.evaluate("thread"), first_approve],
        )
        assert notes == ["That take is no longer up for review."]
        await expect(bot_messages(page, "Segment 1 approved")).to_have_count(1)
