"""A crash between storing a take's result and moving its session on: after the restart the
session is brought to the state its takes imply (core.reconcile, called from resume())."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from bot.ports import Action
from bot.store import SegmentStatus, SessionState
from shared.config import load_config
from tests.bot.fake_chat import FakeChat
from tests.bot.service_harness import picture_bytes, running_bot, write_config
from tests.bot.test_service import CHAT, OWNER, segment_posts, session_state


def crash_leftover(config_path: Path, *sql: str) -> None:
    """Write the store as a crash at the wrong moment would have left it."""
    database = load_config(config_path, env={}).database_path
    with sqlite3.connect(database) as conn:
        for statement in sql:
            conn.execute(statement)


async def test_a_done_take_left_generating_is_posted_for_review_after_a_restart(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    async with running_bot(config) as bot:
        await bot.service.start(CHAT, OWNER, picture_bytes(), "the sun rises")
        [take] = await segment_posts(bot, 1)
    # The take is stored done, but the session never heard: still generating, nothing posted.
    crash_leftover(config, "UPDATE sessions SET state = 'generating'", "UPDATE segments SET posted = '{}'")

    async with running_bot(config, chat=FakeChat()) as bot:
        assert [s.post.segment_id for s in bot.chat.of("segment")] == [take]  # posted once, at start-up
        assert await session_state(bot) is SessionState.REVIEWING
        await bot.service.text(CHAT, OWNER, "next")  # not "Still working on segment 1"
        assert "waiting for review" in bot.chat.texts()[-1]
        await bot.service.control(CHAT, OWNER, take, Action.APPROVE)
        assert (await bot.store.get_segment(take)).status is SegmentStatus.APPROVED
        await bot.service.text(CHAT, OWNER, "the sun sets")
        await segment_posts(bot, 2)


async def test_a_session_generating_with_no_take_asks_for_the_prompt_again(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    async with running_bot(config) as bot:
        await bot.service.start(CHAT, OWNER, picture_bytes(), "the sun rises")
        await segment_posts(bot, 1)
    crash_leftover(config, "UPDATE sessions SET state = 'generating'", "UPDATE segments SET status = 'cancelled'")

    async with running_bot(config, chat=FakeChat()) as bot:
        assert await session_state(bot) is SessionState.AWAITING_PROMPT
        assert bot.chat.texts() == ["Segment 1 was stopped by a restart. Send a prompt for it."]
        await bot.service.text(CHAT, OWNER, "the sun rises again")
        [again] = await segment_posts(bot, 1)
        assert (await bot.store.get_segment(again)).attempt == 2
