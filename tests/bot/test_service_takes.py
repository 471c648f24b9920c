"""Takes through the service: regenerate keeps earlier takes approvable, approving one discards
the others and closes their controls, and a restart rebuilds the kept takes from the store."""

from __future__ import annotations

import asyncio
from pathlib import Path

from bot.conversation.posting import KEPT
from bot.ports import Action, control_id
from bot.store import SegmentStatus, SessionState
from tests.bot.service_harness import Bot, picture_bytes, running_bot, write_config
from tests.bot.test_service import CHAT, OWNER, segment_posts, session_state


async def message_of(bot: Bot, segment_id: int) -> str:
    """The id of the message that carries a take's video and controls."""
    return str((await bot.store.get_segment(segment_id)).posted["video"])


async def test_approve_take_1_after_take_3_exists(tmp_path: Path) -> None:
    async with running_bot(write_config(tmp_path)) as bot:
        chat, svc = bot.chat, bot.service
        await svc.start(CHAT, OWNER, picture_bytes(), "the sun rises")
        [t1] = await segment_posts(bot, 1)
        await svc.control(CHAT, OWNER, t1, Action.REGENERATE)
        [_, t2] = await segment_posts(bot, 2)
        await svc.control(CHAT, OWNER, t2, Action.REGENERATE)
        [_, _, t3] = await segment_posts(bot, 3)
        posts = [s.post for s in chat.of("segment")]
        assert [p.attempt for p in posts] == [1, 2, 3]
        # Every take's caption reports its own seed, and the seeds differ.
        seeds = [(await bot.store.get_segment(t)).seed for t in (t1, t2, t3)]
        assert len(set(seeds)) == 3 and all(f"seed {seed}" in p.caption for seed, p in zip(seeds, posts, strict=True))
        for t in (t1, t2):
            assert (await bot.store.get_segment(t)).status is SegmentStatus.DONE
            [closed] = [c for c in chat.of("close") if c.message_id == await message_of(bot, t)]
            assert closed.text == KEPT and [cid for _, cid in closed.keep] == [control_id(t, Action.APPROVE)]
        # The take under review has every control; Approve comes first.
        newest = chat.controls_of(await message_of(bot, t3)) or ()
        assert newest[0][1] == control_id(t3, Action.APPROVE) and len(newest) == 4

        notes: list[str] = []

        async def note(text: str) -> None:
            notes.append(text)

        await svc.control(CHAT, OWNER, t1, Action.APPROVE, reply=note)
        assert notes == ["✅ Approved segment 1, take 1."]
        statuses = [(await bot.store.get_segment(t)).status for t in (t1, t2, t3)]
        assert statuses == [SegmentStatus.APPROVED, SegmentStatus.REJECTED, SegmentStatus.REJECTED]
        for t in (t2, t3):
            message = await message_of(bot, t)
            assert any(c.message_id == message and c.text == "🗑 Discarded" for c in chat.of("close"))
            assert chat.controls_of(message) == ()
        row = await bot.store.find_active_session(CHAT.platform, CHAT.chat_id, CHAT.thread_id, OWNER)
        assert row is not None and row.start_image == (await bot.store.get_segment(t1)).last_frame
        assert await session_state(bot) is SessionState.AWAITING_PROMPT
        # A press on a discarded take changes nothing.
        await svc.control(CHAT, OWNER, t3, Action.APPROVE, reply=note)
        assert (await bot.store.get_segment(t3)).status is SegmentStatus.REJECTED


async def test_kept_takes_survive_a_restart(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    async with running_bot(config) as bot:
        await bot.service.start(CHAT, OWNER, picture_bytes(), "the sun rises")
        [t1] = await segment_posts(bot, 1)
        await bot.service.control(CHAT, OWNER, t1, Action.REGENERATE)
        [_, t2] = await segment_posts(bot, 2)
        while "frame" not in (await bot.store.get_segment(t2)).posted:  # the post whole before the stop
            await asyncio.sleep(0.02)
    async with running_bot(config) as bot:
        # Nothing is posted again, and the earlier take is still approvable.
        assert bot.chat.of("segment") == []
        await bot.service.control(CHAT, OWNER, t1, Action.APPROVE)
        assert (await bot.store.get_segment(t1)).status is SegmentStatus.APPROVED
        assert (await bot.store.get_segment(t2)).status is SegmentStatus.REJECTED
