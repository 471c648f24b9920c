"""/end through the real service, store and preview workers: the keyframe is checked like a start
picture, stored with the session, sent with the next take's job, used up by its approval, and
survives a restart."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image

from bot.ports import Action, ChatRef
from bot.store import SegmentStatus
from tests.bot.service_harness import Bot, picture_bytes, running_bot, write_config
from tests.hostile_images import png_header_only

CHAT = ChatRef("telegram", "100", "")
OWNER = "7"
RED = (230, 30, 40)


def keyframe_bytes(width: int = 96, height: int = 96) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), RED).save(buffer, format="PNG")
    return buffer.getvalue()


async def session_settings(bot: Bot) -> dict[str, object]:
    row = await bot.store.find_active_session(CHAT.platform, CHAT.chat_id, CHAT.thread_id, OWNER)
    assert row is not None
    return dict(row.settings)


async def test_the_next_take_ends_on_the_keyframe_and_approval_uses_it_up(tmp_path: Path) -> None:
    async with running_bot(write_config(tmp_path)) as bot:
        svc, chat = bot.service, bot.chat
        await svc.start(CHAT, OWNER, picture_bytes(), None)
        await svc.end_frame(CHAT, OWNER, keyframe_bytes())
        assert chat.texts()[-1].startswith("🎯 Got the end keyframe. Segment 1 will end on this picture")
        stored = await session_settings(bot)
        keyframe = Path(str(stored["end_image"]))
        assert keyframe.name == "keyframe-1.png" and keyframe.exists()
        await svc.text(CHAT, OWNER, "the sky turns red")
        [sent] = await chat.wait_for("segment", 1)
        post = sent.post
        assert "🎯 aimed at your end keyframe" in post.caption
        segment = await bot.store.get_segment(post.segment_id)
        assert segment.params["end_image"] == str(keyframe)
        # The preview backend fades into the keyframe: the hand-off frame is the keyframe.
        last = np.asarray(Image.open(post.last_frame)).astype(int)
        assert np.abs(last - RED).max() <= 2
        # A regenerate keeps aiming at it.
        await svc.control(CHAT, OWNER, post.segment_id, Action.REGENERATE)
        [_, again] = await chat.wait_for("segment", 2)
        assert (await bot.store.get_segment(again.post.segment_id)).params["end_image"] == str(keyframe)
        await svc.control(CHAT, OWNER, again.post.segment_id, Action.APPROVE)
        assert (await session_settings(bot))["end_image"] is None
        await svc.text(CHAT, OWNER, "night falls")
        [*_, third] = await chat.wait_for("segment", 3)
        assert (await bot.store.get_segment(third.post.segment_id)).params["end_image"] is None
        assert "🎯" not in third.post.caption


async def test_bad_keyframes_get_the_start_pictures_checks(tmp_path: Path) -> None:
    async with running_bot(write_config(tmp_path)) as bot:
        svc = bot.service
        await svc.start(CHAT, OWNER, picture_bytes(), None)
        notes: list[str] = []

        async def note(text: str) -> None:
            notes.append(text)

        await svc.end_frame(CHAT, OWNER, b"not a picture at all", reply=note)
        await svc.end_frame(CHAT, OWNER, picture_bytes(32, 32), reply=note)
        await svc.end_frame(CHAT, OWNER, png_header_only(30000, 30000), reply=note)
        assert "couldn't read that as a picture" in notes[0]
        assert "at least 64 pixels" in notes[1]
        assert len(notes) == 3 and notes[2]
        assert (await session_settings(bot))["end_image"] is None
        assert not list((bot.config.data_dir / "sessions").rglob("keyframe-*"))


async def test_clear_strangers_and_a_restart(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    async with running_bot(config) as bot:
        svc, chat = bot.service, bot.chat
        await svc.end_frame(CHAT, OWNER, keyframe_bytes())
        assert "no session here" in chat.texts()[-1]
        await svc.start(CHAT, OWNER, picture_bytes(), None)
        await svc.end_frame(CHAT, "intruder", keyframe_bytes())  # refused; nothing is saved
        assert not list((bot.config.data_dir / "sessions").rglob("keyframe-*"))
        await svc.end_frame(CHAT, OWNER, keyframe_bytes())
        await svc.command(CHAT, OWNER, "end")
        assert "aimed at the end keyframe" in chat.texts()[-1]
    async with running_bot(config) as bot:  # the keyframe is stored with the session
        svc, chat = bot.service, bot.chat
        await svc.text(CHAT, OWNER, "a storm")
        [sent] = await chat.wait_for("segment", 1)
        assert "🎯" in sent.post.caption
        await svc.command(CHAT, OWNER, "end", "clear")
        assert chat.texts()[-1].startswith("End keyframe removed")
        await svc.control(CHAT, OWNER, sent.post.segment_id, Action.REGENERATE)
        [_, again] = await chat.wait_for("segment", 2)
        assert "🎯" not in again.post.caption
        # The earlier take is kept (approvable) beside the new one.
        assert (await bot.store.get_segment(sent.post.segment_id)).status is SegmentStatus.DONE


async def test_refused_where_a_comfyui_server_serves(tmp_path: Path) -> None:
    extra = '[comfyui]\nurls = ["http://127.0.0.1:9"]\n'
    config = write_config(tmp_path, extra="")
    config.write_text(config.read_text() + extra)
    async with running_bot(config) as bot:
        await bot.service.start(CHAT, OWNER, picture_bytes(), None)
        await bot.service.end_frame(CHAT, OWNER, keyframe_bytes())
        assert "ComfyUI" in bot.chat.texts()[-1]
        assert not list((bot.config.data_dir / "sessions").rglob("keyframe-*"))
