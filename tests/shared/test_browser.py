"""The browser plumbing itself: chromium starts headless and renders a page (no network)."""

from __future__ import annotations

from tests.browser import chromium


async def test_chromium_renders_a_page_and_clicks() -> None:
    async with chromium() as browser:
        page = await browser.new_page()
        await page.set_content("<button onclick=\"this.textContent='pressed'\">press</button>")
        await page.click("button")
        assert await page.inner_text("button") == "pressed"
