"""Live previews through the real service, dispatcher and preview worker: edited into the job's
progress message, no more often than the progress throttle, never at the cost of the job."""

from __future__ import annotations

import asyncio
from pathlib import Path

from PIL import Image

from bot.conversation.service import STOP_TOO_LATE
from bot.ports import Action, ChatRef, parse_control
from bot.store import SegmentStatus, SessionState
from tests.bot.fake_chat import FakeChat
from tests.bot.service_harness import picture_bytes, running_bot, write_config

CHAT = ChatRef("telegram", "100", "")
OWNER = "7"


async def test_previews_are_edited_into_the_progress_message(tmp_path: Path) -> None:
    config = write_config(tmp_path, steps=8, step_delay=0.05, extra="live_preview_every = 0.25")
    async with running_bot(config) as bot:
        await bot.service.start(CHAT, OWNER, picture_bytes(), "the sun rises")
        await bot.chat.wait_for("segment")
        [progress] = [s for s in bot.chat.of("text") if s.text.startswith("⏳ Segment 1")]
        media = [s for s in bot.chat.of("media") if s.message_id == progress.message_id]
        assert media, "no preview reached the progress message"
        for edit in media:
            assert "step" in edit.text
            path = Path(edit.post)
            assert path.parent == bot.config.data_dir / "sessions" / path.parent.name
            assert path.name == "preview-seg001-take1.png"
            with Image.open(path) as image:
                assert image.width > 3 * image.height  # a strip of four frames
        # Steps 2, 4 and 6 of 8 (the last is the result itself).
        assert {int(e.text.split("step ")[1].split("/")[0]) for e in media} <= {2, 4, 6}


async def test_no_previews_when_turned_off(tmp_path: Path) -> None:
    config = write_config(tmp_path, steps=8, extra="live_preview_every = 0")
    async with running_bot(config) as bot:
        await bot.service.start(CHAT, OWNER, picture_bytes(), "the sun rises")
        await bot.chat.wait_for("segment")
        assert bot.chat.of("media") == []


async def test_failing_preview_edits_never_fail_the_job(tmp_path: Path) -> None:
    config = write_config(tmp_path, steps=8, step_delay=0.02)
    async with running_bot(config, chat=FakeChat(fail_edits=True)) as bot:
        await bot.service.start(CHAT, OWNER, picture_bytes(), "the sun rises")
        [posted] = await asyncio.wait_for(bot.chat.wait_for("segment"), 60)
        assert posted.post.frames == 33


async def test_a_progress_message_replaced_by_a_late_preview_is_still_deleted(tmp_path: Path) -> None:
    """Where a picture needs a new message (Telegram), the preview's upload may still be under
    way when the take is up: the message it creates is the one deleted, none is left behind."""
    chat = FakeChat(media_replaces=True, media_delay=0.3)
    async with running_bot(write_config(tmp_path, steps=4), chat=chat) as bot:
        await bot.service.start(CHAT, OWNER, picture_bytes(), "the sun rises")
        await chat.wait_for("segment")
        await asyncio.sleep(1.0)  # the late preview and the retiring are done by now
        created = {s.message_id for s in chat.of("text") if s.text.startswith("⏳")}
        created |= {s.message_id for s in chat.of("media")}
        deleted = {s.message_id for s in chat.of("delete")}
        assert chat.of("media") and created <= deleted


async def test_stop_on_the_progress_message_stops_the_take_and_only_while_it_is_made(tmp_path: Path) -> None:
    async with running_bot(write_config(tmp_path, steps=40, step_delay=0.05)) as bot:
        chat = bot.chat
        await bot.service.start(CHAT, OWNER, picture_bytes(), "the sun rises")
        [progress] = await chat.wait_for("text")
        [(label, stop)] = progress.keep
        parsed = parse_control(stop)
        assert label == "✖ Stop" and parsed is not None and parsed[1] is Action.STOP
        segment_id = parsed[0]
        await chat.wait_for("edit", 3)  # it runs
        notes: list[str] = []

        async def note(text: str) -> None:
            notes.append(text)

        await bot.service.control(CHAT, "someone else", segment_id, Action.STOP, reply=note)
        assert (await bot.store.get_segment(segment_id)).status is not SegmentStatus.CANCELLED
        await bot.service.control(CHAT, OWNER, segment_id, Action.STOP, reply=note)
        for _ in range(200):
            if (await bot.store.get_segment(segment_id)).status is SegmentStatus.CANCELLED:
                break
            await asyncio.sleep(0.02)
        assert (await bot.store.get_segment(segment_id)).status is SegmentStatus.CANCELLED
        assert chat.of("segment") == []
        row = await bot.store.find_active_session("telegram", "100", "", OWNER)
        assert row is not None and row.state is SessionState.AWAITING_PROMPT
        await bot.service.control(CHAT, OWNER, segment_id, Action.STOP, reply=note)  # a second tap
        assert notes[-1] == STOP_TOO_LATE


async def test_a_late_stop_never_discards_the_take_under_review(tmp_path: Path) -> None:
    async with running_bot(write_config(tmp_path)) as bot:
        await bot.service.start(CHAT, OWNER, picture_bytes(), "the sun rises")
        [posted] = await bot.chat.wait_for("segment")
        notes: list[str] = []

        async def note(text: str) -> None:
            notes.append(text)

        segment_id = posted.post.segment_id
        await bot.service.control(CHAT, OWNER, segment_id, Action.STOP, reply=note)
        assert notes == [STOP_TOO_LATE]
        assert (await bot.store.get_segment(segment_id)).status is SegmentStatus.DONE
