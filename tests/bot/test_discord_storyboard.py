"""The storyboard sheet on Discord: simcord (real discord.py, offline Discord) in front of the real
service with preview workers. It comes as an attachment under /status once a segment is approved,
and once after the final video."""

from __future__ import annotations

import io
from pathlib import Path

import discord
import simcord
from PIL import Image

from bot.conversation.storyboard import MAX_HEIGHT, MAX_WIDTH
from tests.bot.test_discord_flow import review_messages, studio, until

SO_FAR = "Storyboard so far: the start picture and "
FINAL = "The storyboard of your video: the start picture and "


def sheets(thread: simcord.ChannelHandle, caption: str) -> list[discord.Message]:
    return [
        m
        for m in thread.history()
        if m.content.startswith(caption) and [a.filename[:11] for a in m.attachments] == ["storyboard-"]
    ]


async def test_status_and_the_final_bring_the_storyboard(tmp_path: Path) -> None:
    async with studio(tmp_path) as s:
        thread, _ = await s.session(f"the sun rises over {s.bob.mention} 日の出 🌅")
        take = await s.first_take(thread)
        await s.alice.slash(thread, "status")
        await s.env.settle()
        assert sheets(thread, SO_FAR) == []  # nothing approved yet

        await s.alice.click(take, label="✅ Approve")
        await s.bob.slash(thread, "status")  # anyone may look
        await until(s.env, lambda: bool(sheets(thread, SO_FAR)), "the storyboard under the status")
        [sheet] = sheets(thread, SO_FAR)
        assert sheet.content == SO_FAR + "1 approved segment."
        assert thread.history().index(sheet) == len(thread.history()) - 1  # under the status answer
        assert thread.history()[-2].content.startswith("1 segment approved")
        with Image.open(io.BytesIO(await sheet.attachments[0].read())) as picture:
            assert picture.format == "JPEG" and picture.width <= MAX_WIDTH and picture.height <= MAX_HEIGHT
        stored = s.env.backend.get_message(thread.id, sheet.id)
        assert (stored.ping_user_ids, stored.ping_role_ids, stored.mention_everyone) == ([], [], False)

        await s.alice.slash(thread, "finish")
        await until(s.env, lambda: bool(sheets(thread, FINAL)), "the storyboard after the final")
        [final_sheet] = sheets(thread, FINAL)
        final = next(m for m in review_messages(thread) if m.attachments[0].filename == "framechain.mp4")
        assert thread.history().index(final) < thread.history().index(final_sheet)
        assert final_sheet.content == FINAL + "1 approved segment."
        await s.bot.service.post_unposted()  # what a restart does: nothing again
        await s.env.settle()
        assert len(sheets(thread, FINAL)) == 1
