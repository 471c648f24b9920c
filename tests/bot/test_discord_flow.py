"""A whole Discord session: simcord (real discord.py, offline Discord) in front of the real
service, store and dispatcher with preview worker processes."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path

import discord
import simcord

from bot.discord_adapter import DiscordFrontEnd, build_discord
from bot.dispatcher import Dispatcher
from bot.ports import Action, ChatRef, parse_control
from bot.service import ConversationService
from bot.store import SegmentStatus, Store
from bot.worker_client import WorkerProcess, worker_command
from shared.config import Config, load_config
from tests.bot.service_harness import picture_bytes, write_config
from worker.video import probe


@dataclass
class Bot:
    """One bot process: store, service, dispatcher and the Discord front end."""

    store: Store
    service: ConversationService
    front: DiscordFrontEnd


@contextlib.asynccontextmanager
async def bot_process(config: Config, config_path: Path) -> AsyncIterator[Bot]:
    async with Store.open(config.database_path) as store:
        service = ConversationService(store, config, progress_interval=0.0)
        front = build_discord(config, service)
        service.add_port(front.port)

        def make_worker(device: str) -> WorkerProcess:
            return WorkerProcess(worker_command(device=device, config_path=config_path), name=f"worker-{device}")

        dispatcher = Dispatcher(config.workers.devices, make_worker, service, restart_backoff=0.05)
        service.attach(dispatcher)
        await service.resume()
        await dispatcher.start()
        try:
            yield Bot(store, service, front)
        finally:
            await dispatcher.stop()
            await service.close()


async def until(env: simcord.Env, condition: Callable[[], bool], what: str, timeout: float = 60) -> None:
    """Wait for work done outside the bot's event handlers (worker processes, joins)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not condition():
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting for {what}\n{env.transcript()[-3000:]}")
        await asyncio.sleep(0.05)
        await env.settle()


def review_messages(thread: simcord.ChannelHandle) -> list[discord.Message]:
    return [m for m in thread.history() if any(a.filename.endswith(".mp4") for a in m.attachments)]


def segment_id_of(message: discord.Message) -> int:
    for row in message.components:
        for child in getattr(row, "children", []):
            parsed = parse_control(getattr(child, "custom_id", None) or "")
            if parsed is not None:
                return parsed[0]
    raise AssertionError(f"no review buttons on {message.content!r}")


def has_buttons(message: discord.Message) -> bool:
    """Review buttons are up (an approved take keeps only a 🏁 Finish)."""
    for row in message.components:
        for child in getattr(row, "children", []):
            parsed = parse_control(getattr(child, "custom_id", None) or "")
            if parsed is not None and parsed[1] is not Action.FINISH:
                return True
    return False


async def test_a_whole_session_on_discord(tmp_path: Path) -> None:
    config_path = write_config(tmp_path)
    with config_path.open("a") as fh:  # public threads: bob must see the thread to try to meddle
        fh.write("[discord]\nprivate_threads = false\n")
    config = load_config(config_path, env={})
    config.data_dir.mkdir(parents=True)

    process = contextlib.AsyncExitStack()  # one bot process; the simulated Discord outlives it
    try:
        bot = await process.enter_async_context(bot_process(config, config_path))
        async with simcord.run(bot.front.client) as env:
            await session_on_discord(env, process, config, config_path, bot, tmp_path)
    finally:
        await process.aclose()


async def session_on_discord(
    env: simcord.Env, process: contextlib.AsyncExitStack, config: Config, config_path: Path, bot: Bot, tmp_path: Path
) -> None:
    guild = env.create_guild("Studio")
    channel = guild.create_text_channel("animations")
    alice = guild.add_member(env.create_user("alice"))
    bob = guild.add_member(env.create_user("bob"))

    # /start with a picture and the first prompt: a thread, then the first take in it.
    await alice.slash(channel, "start", image=("sun.png", picture_bytes()), prompt="the sun rises")
    (thread,) = channel.threads
    assert thread.name == "the sun rises"
    await until(env, lambda: len(review_messages(thread)) == 1, "the first take")
    take1 = review_messages(thread)[0]
    assert [a.filename for a in take1.attachments] == ["segment01_take1.mp4", "segment01_take1_last_frame.png"]
    assert {str(r.emoji) for r in take1.reactions} == {"✅", "🔁"}
    assert [b.label for row in take1.components for b in getattr(row, "children", [])] == [
        "✅ Approve",
        "🔁 Regenerate",
        "↩ Undo",
        "🏁 Finish",
    ]
    first = segment_id_of(take1)

    # Someone else's reaction and click change nothing.
    await bob.react(take1, "✅")
    await bob.click(take1, label="✅ Approve")
    await env.settle()
    assert (await bot.store.get_segment(first)).status is SegmentStatus.DONE
    assert len(review_messages(thread)) == 1

    # 🔁 makes a second take; the first take's buttons go.
    await alice.react(take1, "🔁")
    await until(env, lambda: len(review_messages(thread)) == 2, "the second take")
    assert not has_buttons(review_messages(thread)[0])
    take2 = review_messages(thread)[1]
    assert take2.attachments[0].filename == "segment01_take2.mp4"

    # ✅ approves it; then a prompt in the thread makes segment 2.
    await alice.react(take2, "✅")
    await until(env, lambda: not has_buttons(review_messages(thread)[1]), "the approval")
    assert (await bot.store.get_segment(segment_id_of(take2))).status is SegmentStatus.APPROVED
    await alice.send(thread, "a bird flies past")
    await until(env, lambda: len(review_messages(thread)) == 3, "segment 2")
    segment2 = review_messages(thread)[2]

    # A restart: a new process on the same database; segment 2's old Approve button works.
    await process.aclose()
    bot = await process.enter_async_context(bot_process(config, config_path))
    await env.restart_bot(bot.front.client)
    await alice.click(segment2, label="✅ Approve")
    await until(env, lambda: not has_buttons(review_messages(thread)[2]), "the approval after the restart")
    assert (await bot.store.get_segment(segment_id_of(segment2))).status is SegmentStatus.APPROVED

    # /finish joins the two approved segments (33 frames, then 32 more after the shared frame).
    await alice.slash(thread, "finish")
    await until(
        env,
        lambda: any(m.attachments[0].filename == "framechain.mp4" for m in review_messages(thread)),
        "the final video",
    )
    final = next(m for m in review_messages(thread) if m.attachments[0].filename == "framechain.mp4")
    path = tmp_path / "final.mp4"
    path.write_bytes(await final.attachments[0].read())
    assert probe(path).frames == 33 + 32
    chat = ChatRef("discord", str(channel.id), str(thread.id))
    assert final.attachments[0].size <= bot.front.port.upload_limit(chat)


async def test_a_final_video_over_the_upload_limit_is_made_to_fit(tmp_path: Path) -> None:
    # simcord does not enforce Discord's limit, and every server allows 10 MiB: an operator's
    # lower cap (discord.upload_limit_mb) puts this small final over it; the size is asserted here.
    config_path = write_config(tmp_path, size=320)
    with config_path.open("a") as fh:
        fh.write("[discord]\nupload_limit_mb = 0.12\n")
    config = load_config(config_path, env={})
    config.data_dir.mkdir(parents=True)
    async with bot_process(config, config_path) as bot, simcord.run(bot.front.client) as env:
        guild = env.create_guild("Studio")
        channel = guild.create_text_channel("animations")
        alice = guild.add_member(env.create_user("alice"))
        picture = picture_bytes(320, 320, grain=60)
        await alice.slash(channel, "start", image=("grain.png", picture), prompt="film grain")
        (thread,) = channel.threads
        await until(env, lambda: len(review_messages(thread)) == 1, "the take")
        take = review_messages(thread)[0]
        await alice.react(take, "✅")
        await until(env, lambda: not has_buttons(review_messages(thread)[0]), "the approval")
        master = (await bot.store.get_segment(segment_id_of(take))).video
        assert master is not None and master.stat().st_size > 120_000  # over the cap as made
        await alice.slash(thread, "finish")

        def finals() -> list[discord.Message]:
            return [m for m in review_messages(thread) if "framechain" in m.attachments[0].filename]

        await until(env, lambda: bool(finals()), "the final video")
        chat = ChatRef("discord", str(channel.id), str(thread.id))
        limit = bot.front.port.upload_limit(chat)
        assert limit == 120_000
        sizes = [a.size for m in finals() for a in m.attachments]
        assert sizes and all(size <= limit for size in sizes)
        text = " ".join(m.content for m in finals())
        assert "re-encoded" in text or "parts" in text
