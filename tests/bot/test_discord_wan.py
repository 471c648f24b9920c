"""A Discord session on the tiny Wan2.2 model: simcord (real discord.py, offline Discord) in front
of the real service, store and dispatcher with a real worker process running the model."""

from __future__ import annotations

import contextlib
from pathlib import Path

import simcord

from bot.store import SegmentStatus
from shared.config import load_config
from tests.bot.service_harness import picture_bytes, write_config
from tests.bot.test_discord_flow import bot_process, has_buttons, review_messages, segment_id_of, until
from worker.video import probe


async def test_a_session_on_the_tiny_wan_model(tmp_path: Path, tiny_wan_dir: Path) -> None:
    config_path = write_config(tmp_path, backend="wan", model=tiny_wan_dir, size=32, steps=2)
    with config_path.open("a") as fh:
        fh.write("[discord]\nopen = true\n")  # about the model, not access: serve everyone
    config = load_config(config_path, env={})
    config.data_dir.mkdir(parents=True)
    async with contextlib.AsyncExitStack() as stack:
        bot = await stack.enter_async_context(bot_process(config, config_path))
        env = await stack.enter_async_context(simcord.run(bot.front.client))
        guild = env.create_guild("Studio")
        channel = guild.create_text_channel("animations")
        alice = guild.add_member(env.create_user("alice"))

        await alice.slash(channel, "start", image=("sun.png", picture_bytes()), prompt="the sun rises")
        (thread,) = channel.threads
        # The first job waits for the worker to load the model: allow for a busy machine.
        await until(env, lambda: len(review_messages(thread)) == 1, "the take", timeout=120)
        take = review_messages(thread)[0]
        first = segment_id_of(take)
        assert [a.filename for a in take.attachments] == ["segment01_take1.mp4", "segment01_take1_last_frame.png"]
        segment = take.attachments[0]
        path = tmp_path / segment.filename
        path.write_bytes(await segment.read())
        info = probe(path)
        assert (info.frames, info.width, info.height) == (33, 32, 32)
        assert "preview" not in (take.content or "").lower()

        await alice.react(take, "✅")
        await until(env, lambda: not has_buttons(review_messages(thread)[0]), "the approval")
        assert (await bot.store.get_segment(first)).status is SegmentStatus.APPROVED

        await alice.slash(thread, "finish")
        await until(
            env,
            lambda: any(m.attachments[0].filename == "framechain.mp4" for m in review_messages(thread)),
            "the final video",
        )
        final = next(m for m in review_messages(thread) if m.attachments[0].filename == "framechain.mp4")
        path = tmp_path / "final.mp4"
        path.write_bytes(await final.attachments[0].read())
        assert probe(path).frames == 33
