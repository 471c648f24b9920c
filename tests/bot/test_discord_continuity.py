"""Discord's /settings offers continuity; a server without the SVI LoRAs says why it cannot."""

from __future__ import annotations

from pathlib import Path

from tests.bot.test_discord_flow import studio


async def test_settings_continuity_on_discord(tmp_path: Path) -> None:
    async with studio(tmp_path) as s:
        thread, row = await s.session()
        result = await s.alice.slash(thread, "settings", continuity="svi")
        said = [m.content for m in thread.history()] + ([result.response.content] if result.response else [])
        assert any("needs the SVI 2.0 Pro LoRAs" in text for text in said)
        assert (await s.bot.store.get_session(row.id)).settings["continuity"] == "frame"
        await s.alice.slash(thread, "settings", continuity="frame")
        assert (await s.bot.store.get_session(row.id)).settings["continuity"] == "frame"
