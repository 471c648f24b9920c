"""``Conversation.current_settings`` in every state a session is in while it runs: the web chat
asks it for every message (is a session live here?), Telegram's settings keyboard for /settings."""

from __future__ import annotations

from pathlib import Path

from bot.ports import ChatRef
from bot.store import SessionState
from tests.bot.service_harness import picture_bytes, running_bot, write_config

CHAT = ChatRef("telegram", "100", "")
OWNER = "7"


async def test_current_settings_while_generating_and_reviewing(tmp_path: Path) -> None:
    async with running_bot(write_config(tmp_path, step_delay=0.2)) as bot:
        await bot.service.start(CHAT, OWNER, picture_bytes(), "the sun rises")
        row = await bot.store.find_active_session(CHAT.platform, CHAT.chat_id, CHAT.thread_id, OWNER)
        assert row is not None and row.state is SessionState.GENERATING
        generating = await bot.service.current_settings(CHAT, OWNER)
        assert generating is not None and generating["session"] == row.id
        await bot.chat.wait_for("segment", 1, CHAT)
        row = await bot.store.get_session(row.id)
        assert row.state is SessionState.REVIEWING
        reviewing = await bot.service.current_settings(CHAT, OWNER)
        assert reviewing == generating
