"""Smooth playback through the whole bot: preview-backend workers write each take's 2x copy with
RIFE (random weights from a file, the real loader), the final is joined from them at 32 fps
with exactly 2J-1 frames, and a session with a take lacking its copy gets a 16 fps final that
says so."""

from __future__ import annotations

from pathlib import Path

from bot.ports import Action
from shared.smooth_playback import x2_path
from tests.bot.service_harness import Bot, picture_bytes, running_bot, write_config
from tests.bot.test_service import CHAT, OWNER, segment_posts
from tests.worker.rife_weights import write_rife_weights
from worker.video import probe

FRAMES = 33


def smooth_config(tmp_path: Path) -> Path:
    weights = write_rife_weights(tmp_path / "rife-v4.26.pkl")
    return write_config(tmp_path, size=64, frames=FRAMES, extra=f'final_fps = 32\nrife_weights = "{weights}"\n')


async def two_approved_takes(bot: Bot) -> list[int]:
    svc = bot.service
    await svc.start(CHAT, OWNER, picture_bytes(), "the sun rises")
    [first] = await segment_posts(bot, 1)
    await svc.control(CHAT, OWNER, first, Action.APPROVE)
    await svc.text(CHAT, OWNER, "a bird flies past")
    [_, second] = await segment_posts(bot, 2)
    await svc.control(CHAT, OWNER, second, Action.APPROVE)
    return [first, second]


async def test_the_final_is_joined_from_the_2x_copies_at_32_fps(tmp_path: Path) -> None:
    async with running_bot(smooth_config(tmp_path)) as bot:
        takes = await two_approved_takes(bot)
        for segment_id in takes:
            master = (await bot.store.get_segment(segment_id)).video
            assert master is not None
            copy = probe(x2_path(master))
            assert (copy.frames, copy.fps) == (2 * FRAMES - 1, 32.0)
            assert probe(master).fps == 16.0  # the master stays 16 fps, and so does its review clip
        await bot.service.command(CHAT, OWNER, "finish")
        [final] = await bot.chat.wait_for("final", timeout=120)
        joined = FRAMES + (FRAMES - 1)  # at 16 fps
        video = probe(final.post.parts[0])
        assert (video.frames, video.fps) == (2 * joined - 1, 32.0)
        assert video.duration == (2 * joined - 1) / 32
        assert "smooth playback: 32 fps" in final.text


async def test_a_take_without_its_2x_copy_gives_a_16_fps_final_that_says_so(tmp_path: Path) -> None:
    async with running_bot(smooth_config(tmp_path)) as bot:
        first, _ = await two_approved_takes(bot)
        master = (await bot.store.get_segment(first)).video
        assert master is not None
        x2_path(master).unlink()  # as a take made before final_fps = 32 was set
        await bot.service.command(CHAT, OWNER, "finish")
        [final] = await bot.chat.wait_for("final", timeout=120)
        video = probe(final.post.parts[0])
        assert (video.frames, video.fps) == (FRAMES + FRAMES - 1, 16.0)
        assert "at 16 fps, not 32: 1 of the segments have no smooth-playback copy" in final.text
