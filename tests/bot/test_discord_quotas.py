"""Quotas on Discord: simcord (real discord.py, offline Discord) in front of the real service,
store and dispatcher with a preview worker. A user over a quota is answered with the limit and
when it frees up, and nothing is queued; /status shows what is left."""

from __future__ import annotations

import time
from pathlib import Path

import simcord

from shared.config import load_config
from tests.bot.service_harness import picture_bytes, write_config
from tests.bot.test_discord_flow import bot_process, review_messages, until


async def test_quotas_are_answered_on_discord(tmp_path: Path) -> None:
    config_path = write_config(tmp_path, step_delay=0.0)
    with config_path.open("a") as fh:
        fh.write(
            "[discord]\nopen = true\n"
            "[limits]\nactive_sessions_per_user = 1\ngpu_seconds_per_user_per_day = 60\nqueued_jobs_per_user = 1\n"
        )
    config = load_config(config_path, env={})
    config.data_dir.mkdir(parents=True)
    async with bot_process(config, config_path) as bot, simcord.run(bot.front.client) as env:
        guild = env.create_guild("Studio")
        channel = guild.create_text_channel("animations")
        other = guild.create_text_channel("more-animations")
        alice = guild.add_member(env.create_user("alice"))
        await alice.slash(channel, "start", image=("sun.png", picture_bytes()))
        (thread,) = channel.threads
        await until(env, lambda: any("picture" in m.content.lower() for m in thread.history()), "the picture's answer")

        # GPU time used up for today: the prompt is answered with the limit and the reset.
        await bot.store.record_gpu_seconds(10_000, "discord", alice.id, 60, at=time.time())
        await alice.send(thread, "the sun rises")
        await until(env, lambda: any("GPU time" in m.content for m in thread.history()), "the GPU time answer")
        used_up = next(m.content for m in thread.history() if "GPU time" in m.content)
        assert used_up.startswith("You've used your GPU time for today (1 min of 1 min). It resets at 00:00 UTC")
        assert await bot.store.count_all_pending_jobs() == 0

        # A second session elsewhere, over active_sessions_per_user: refused privately, before
        # a thread is opened for it; nothing started.
        second = await alice.slash(other, "start", image=("moon.png", picture_bytes()))
        await env.settle()
        assert second.ephemeral and second.response is not None
        assert second.response.content.startswith("You already have 1 active session — the limit is 1 per person.")
        assert not other.threads
        assert await bot.store.count_active_sessions("discord", alice.id) == 1
        assert await bot.store.count_all_pending_jobs() == 0

        # /status names what is left and when it resets.
        await alice.slash(thread, "status")
        await env.settle()
        status = thread.history()[-1].content
        assert "Your quota: GPU time today 1 min of 1 min used, 0 s left (resets at 00:00 UTC" in status
        assert status.endswith("0 of 1 segments waiting; 1 of 1 active session.")
        assert not review_messages(thread)


async def test_the_queued_jobs_quota_refuses_a_regenerate_privately_on_discord(tmp_path: Path) -> None:
    config_path = write_config(tmp_path, step_delay=0.0)
    with config_path.open("a") as fh:
        fh.write("[discord]\nopen = true\n[limits]\nqueued_jobs_per_user = 1\n")
    config = load_config(config_path, env={})
    config.data_dir.mkdir(parents=True)
    async with bot_process(config, config_path) as bot, simcord.run(bot.front.client) as env:
        guild = env.create_guild("Studio")
        channel = guild.create_text_channel("animations")
        other = guild.create_text_channel("more-animations")
        alice = guild.add_member(env.create_user("alice"))
        await alice.slash(channel, "start", image=("sun.png", picture_bytes()), prompt="the sun rises")
        (thread,) = channel.threads
        await until(env, lambda: len(review_messages(thread)) == 1, "the take")
        take = review_messages(thread)[0]
        # Something else of hers keeps the queue busy: a segment waiting in her second session.
        await alice.slash(other, "start", image=("moon.png", picture_bytes()))
        await env.settle()
        (second,) = other.threads
        row = await bot.store.find_active_session("discord", str(other.id), str(second.id), str(alice.id))
        assert row is not None
        await bot.store.add_segment(row.id, idx=0, prompt="held", params={"width": 64, "height": 64, "frames": 33})
        pending = await bot.store.count_all_pending_jobs()

        result = await alice.click(take, label="🔁 Regenerate")
        await env.settle()
        answers = [m.content for m in (result.response, *result.followups) if m is not None]
        assert answers == [
            "You already have 1 segment waiting — the limit is 1 per person; send this again once one is done."
        ]
        assert result.ephemeral
        assert await bot.store.count_all_pending_jobs() == pending  # nothing queued for the press
        assert len(review_messages(thread)) == 1
