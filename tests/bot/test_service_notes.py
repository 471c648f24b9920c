"""Notes for the acting user alone never go into the chat: a press without a private channel (a
reaction) gets nothing, a typed command is answered where it was typed."""

from __future__ import annotations

from pathlib import Path

from bot.ports import Action
from tests.bot.service_harness import picture_bytes, running_bot, write_config
from tests.bot.test_service import CHAT, OWNER, segment_posts


async def test_a_reactions_private_note_is_not_posted_in_the_chat(tmp_path: Path) -> None:
    async with running_bot(write_config(tmp_path)) as bot:
        svc, chat = bot.service, bot.chat
        await svc.start(CHAT, OWNER, picture_bytes(), "first")
        await segment_posts(bot, 1)
        video = chat.of("segment")[0].message_id
        await svc.reaction(CHAT, OWNER, video, Action.APPROVE)  # approves: the public note only
        assert any(t.startswith("Segment 1 approved") for t in chat.texts())
        public = len(chat.texts())
        await svc.reaction(CHAT, OWNER, video, Action.APPROVE)  # again: "already approved", privately
        await svc.reaction(CHAT, "stranger", video, Action.REGENERATE)  # not theirs
        await svc.command(CHAT, OWNER, "cancel")
        await svc.reaction(CHAT, OWNER, video, Action.FINISH)  # after /cancel
        assert chat.texts()[public:] == ["Cancelled. Send /start with a picture to begin a new session."]


async def test_a_typed_commands_note_is_answered_in_the_chat_without_a_private_channel(tmp_path: Path) -> None:
    async with running_bot(write_config(tmp_path)) as bot:
        await bot.service.start(CHAT, OWNER, picture_bytes(), None)
        await bot.service.command(CHAT, OWNER, "undo")
        assert bot.chat.texts()[-1] == "Nothing to undo yet."
