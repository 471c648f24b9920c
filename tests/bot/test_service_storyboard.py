"""The storyboard sheet through the service (real store, dispatcher, preview workers; a fake chat):
sent under /status once something is approved, and once after the final video."""

from __future__ import annotations

import asyncio
from pathlib import Path

from PIL import Image

from bot.conversation import delivery
from bot.conversation.storyboard import MAX_HEIGHT, MAX_WIDTH
from bot.ports import Action, ChatRef
from tests.bot.service_harness import picture_bytes, running_bot, write_config

CHAT = ChatRef("telegram", "100", "")
OWNER = "7"


def photos_of(sent: list[str], kinds: list[str]) -> list[str]:
    return [text for text, kind in zip(sent, kinds, strict=True) if kind == "photo"]


async def test_status_sends_the_storyboard_once_a_segment_is_approved_and_the_final_sends_it_once(
    tmp_path: Path,
) -> None:
    async with running_bot(write_config(tmp_path)) as bot:
        svc, chat = bot.service, bot.chat
        await svc.start(CHAT, OWNER, picture_bytes(), "the sun rises")
        [first] = await chat.wait_for("segment", 1)
        await svc.command(CHAT, OWNER, "status")
        assert chat.of("photo") == []  # nothing approved yet: no sheet

        await svc.control(CHAT, OWNER, first.post.segment_id, Action.APPROVE)
        await svc.command(CHAT, "someone else", "status")  # anyone may look
        [status_sheet] = chat.of("photo")
        assert chat.sent[-1] is status_sheet and chat.sent[-2].kind == "text"  # under the status answer
        assert status_sheet.text == "Storyboard so far: the start picture and 1 approved segment."
        path = status_sheet.post
        assert isinstance(path, Path) and path.is_file()
        with Image.open(path) as sheet:
            assert sheet.format == "JPEG" and sheet.width <= MAX_WIDTH and sheet.height <= MAX_HEIGHT

        await svc.command(CHAT, OWNER, "status")  # nothing changed: the same file again
        assert [p.post for p in chat.of("photo")] == [path, path]

        await svc.text(CHAT, OWNER, "a bird flies past")
        [_, second] = await chat.wait_for("segment", 2)
        await svc.control(CHAT, OWNER, second.post.segment_id, Action.APPROVE_FINISH)
        await chat.wait_for("photo", 3)
        final_sheet = chat.of("photo")[-1]
        assert final_sheet.text == "The storyboard of your video: the start picture and 2 approved segments."
        assert chat.sent.index(chat.of("final")[0]) < chat.sent.index(final_sheet)
        assert final_sheet.post != path and not path.exists()  # a new sheet; the stale one went
        row = await bot.store.get_session((await bot.store.get_segment(first.post.segment_id)).session_id)
        assert row.posted[delivery.FINAL_STORYBOARD] == final_sheet.message_id

        await svc.post_unposted()  # what a restart does: nothing is sent again
        assert len(chat.of("photo")) == 3 and len(chat.of("final")) == 1


async def test_a_storyboard_that_cannot_be_sent_never_holds_up_the_video(tmp_path: Path) -> None:
    async with running_bot(write_config(tmp_path)) as bot:
        svc, chat = bot.service, bot.chat
        await svc.start(CHAT, OWNER, picture_bytes(), "the sun rises")
        [take] = await chat.wait_for("segment", 1)
        session_id = (await bot.store.get_segment(take.post.segment_id)).session_id
        row = await bot.store.get_session(session_id)
        assert row.first_image is not None
        row.first_image.write_bytes(b"not a picture any more")  # composing the sheet fails
        await svc.control(CHAT, OWNER, take.post.segment_id, Action.APPROVE)
        await svc.command(CHAT, OWNER, "status")
        assert chat.of("photo") == [] and "1 segment approved" in chat.texts()[-1]
        await svc.command(CHAT, OWNER, "finish")
        await chat.wait_for("final")
        row = await bot.store.get_session(session_id)
        for _ in range(100):
            row = await bot.store.get_session(session_id)
            if delivery.FINAL in row.posted:
                break
            await asyncio.sleep(0.05)
        assert row.posted[delivery.FINAL_STORYBOARD] == "" and chat.of("photo") == []
