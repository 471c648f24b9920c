"""/end on Discord (simcord: real discord.py, offline Discord): the slash command with an image
attachment and a ``clear`` option, first against a recording conversation, then a whole flow
with the real service and preview workers."""

from __future__ import annotations

from pathlib import Path

from tests.bot.discord_harness import open_session, picture, running
from tests.bot.service_harness import picture_bytes
from tests.bot.test_discord_flow import review_messages, studio, until


async def test_end_hands_over_the_attachment_or_clear(tmp_path: Path) -> None:
    async with running(tmp_path) as w:
        chat, thread = await open_session(w)
        image = picture(96, 64)
        result = await w.alice.slash(thread, "end", image=("door.png", image))
        assert result.deferred and result.response is None  # the service answers in the thread
        await w.alice.slash(thread, "end", clear=True)
        await w.alice.slash(thread, "end")
        calls = [(c.chat, c.user_id, c.args["image"], c.args["clear"]) for c in w.conversation.of("end_frame")]
        alice = str(w.alice.id)
        assert calls == [(chat, alice, image, False), (chat, alice, None, True), (chat, alice, None, False)]


async def test_a_file_that_is_no_picture_is_refused_privately(tmp_path: Path) -> None:
    async with running(tmp_path) as w:
        _, thread = await open_session(w)
        result = await w.alice.slash(thread, "end", image=("notes.txt", b"hello"))
        assert result.ephemeral and result.response is not None
        assert result.response.content == "notes.txt is not a picture; attach a PNG, JPEG or WebP image."
        assert w.conversation.of("end_frame") == []


async def test_a_session_aimed_at_a_keyframe_on_discord(tmp_path: Path) -> None:
    async with studio(tmp_path) as s:
        thread, row = await s.session()
        result = await s.alice.slash(thread, "end", image=("tiny.png", picture_bytes(40, 40)))
        # The start picture's checks, answered to the caller alone.
        assert result.ephemeral and result.response is not None
        assert "at least 64 pixels" in result.response.content
        await s.alice.slash(thread, "end", image=("door.png", picture_bytes(96, 96)))
        assert any(m.content.startswith("🎯 Got the end keyframe.") for m in thread.history())
        await s.alice.send(thread, "the door opens")
        await until(s.env, lambda: len(review_messages(thread)) == 1, "the take")
        assert "🎯 aimed at your end keyframe" in review_messages(thread)[0].content
        # Someone else's /end changes nothing.
        await s.bob.slash(thread, "end", clear=True)
        stored = await s.bot.store.get_session(row.id)
        assert str(stored.settings["end_image"]).endswith("keyframe-1.png")
