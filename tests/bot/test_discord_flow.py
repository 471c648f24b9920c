"""A whole Discord session: simcord (real discord.py, offline Discord) in front of the real
service, store and dispatcher with preview worker processes."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import discord
import simcord

from bot.discord_adapter import DiscordFrontEnd, build_discord
from bot.dispatcher import Dispatcher
from bot.ports import Action, ChatRef, parse_control
from bot.service import ConversationService
from bot.store import SegmentStatus, SessionRow, SessionState, Store
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
        fh.write("[discord]\nopen = true\nprivate_threads = false\n")
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
    # The bot's reactions follow the post (best effort, once the take is recorded).
    await until(env, lambda: len(review_messages(thread)[0].reactions) == 3, "the review reactions")
    take1 = review_messages(thread)[0]
    assert [a.filename for a in take1.attachments] == ["segment01_take1.mp4", "segment01_take1_last_frame.png"]
    assert {str(r.emoji) for r in take1.reactions} == {"✅", "🔁", "🏁"}
    assert [b.label for row in take1.components for b in getattr(row, "children", [])] == [
        "✅ Approve",
        "🔁 Regenerate",
        "↩ Undo",
        "🏁 Approve & finish",
    ]
    first = segment_id_of(take1)

    # Someone else's reaction and click change nothing.
    await bob.react(take1, "✅")
    await bob.click(take1, label="✅ Approve")
    await env.settle()
    assert (await bot.store.get_segment(first)).status is SegmentStatus.DONE
    assert len(review_messages(thread)) == 1

    # 🔁 makes a second take; the first take's buttons but its Approve go (it is kept).
    await alice.react(take1, "🔁")
    await until(env, lambda: len(review_messages(thread)) == 2, "the second take")
    kept = review_messages(thread)[0]
    assert [b.label for row in kept.components for b in getattr(row, "children", [])] == ["✅ Approve"]
    take2 = review_messages(thread)[1]
    assert take2.attachments[0].filename == "segment01_take2.mp4"

    # ✅ approves it; then a prompt in the thread makes segment 2.
    await alice.react(take2, "✅")
    await until(env, lambda: not has_buttons(review_messages(thread)[1]), "the approval")
    await until(env, lambda: not has_buttons(review_messages(thread)[0]), "the kept take's Approve to go")
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
        fh.write("[discord]\nopen = true\nupload_limit_mb = 0.12\n")
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


# -- issue 10: every control exact, nothing said to the wrong people ------------------------------


@dataclass
class Studio:
    """A running bot and a server with a channel, its owner-to-be alice and onlooker bob."""

    env: simcord.Env
    bot: Bot
    channel: simcord.ChannelHandle
    alice: simcord.MemberActor
    bob: simcord.MemberActor

    async def session(self, prompt: str | None = None) -> tuple[simcord.ChannelHandle, SessionRow]:
        options = {} if prompt is None else {"prompt": prompt}
        await self.alice.slash(self.channel, "start", image=("sun.png", picture_bytes()), **options)
        (thread,) = self.channel.threads
        row = await self.bot.store.find_active_session("discord", self.channel.id, thread.id)
        assert row is not None
        return thread, row

    async def first_take(self, thread: simcord.ChannelHandle) -> discord.Message:
        await until(self.env, lambda: len(review_messages(thread)) == 1, "the first take")
        return review_messages(thread)[0]

    def seen(self, thread: simcord.ChannelHandle) -> list[int]:
        """The thread's messages (edits aside: a note would be a new message)."""
        return [m.id for m in thread.history()]


@contextlib.asynccontextmanager
async def studio(tmp_path: Path, **config: Any) -> AsyncIterator[Studio]:
    """``config``: ``write_config`` options (frames, step_delay, extra generation keys...)."""
    config_path = write_config(tmp_path, **config)
    with config_path.open("a") as fh:  # public threads: bob sees the session
        fh.write("[discord]\nopen = true\nprivate_threads = false\n")
    loaded = load_config(config_path, env={})
    loaded.data_dir.mkdir(parents=True)
    async with bot_process(loaded, config_path) as bot, simcord.run(bot.front.client) as env:
        guild = env.create_guild("Studio")
        channel = guild.create_text_channel("animations")
        alice = guild.add_member(env.create_user("alice"))
        bob = guild.add_member(env.create_user("bob"))
        yield Studio(env, bot, channel, alice, bob)


async def test_a_bad_start_file_opens_no_session(tmp_path: Path) -> None:
    async with studio(tmp_path) as s:
        result = await s.alice.slash(s.channel, "start", image=("tiny.png", picture_bytes(40, 40)), prompt="x")

        assert result.ephemeral and result.response is not None
        assert "at least 64 pixels" in result.response.content
        assert s.channel.threads == [] and s.channel.history() == []
        assert await s.bot.store.list_active_sessions() == []


async def test_mentions_in_a_prompt_ping_nobody(tmp_path: Path) -> None:
    async with studio(tmp_path) as s:
        prompt = f"@everyone watch {s.bob.mention} dance"
        thread, _ = await s.session(prompt)
        take = await s.first_take(thread)
        await s.alice.react(take, "✅")
        await until(s.env, lambda: not has_buttons(review_messages(thread)[0]), "the approval")

        bot_id = s.env.bot.user.id  # type: ignore[union-attr]
        posted = [
            m
            for m in [*s.channel.history(), *thread.history()]
            if m.author.id == bot_id and m.type is not discord.MessageType.thread_created  # a system notice
        ]
        assert any(prompt in m.content for m in posted)  # the caption repeats it
        for message in posted:
            stored = s.env.backend.get_message(message.channel.id, message.id)
            assert (stored.ping_user_ids, stored.ping_role_ids, stored.mention_everyone) == ([], [], False)


async def test_a_negative_prompt_with_equals_signs_is_only_a_negative_prompt(tmp_path: Path) -> None:
    async with studio(tmp_path) as s:
        thread, row = await s.session()
        steps = int(row.settings["steps"])

        result = await s.alice.slash(thread, "settings", negative="blurry, style=anime")
        assert not any("unknown setting" in m.content for m in thread.history())
        assert result.response is None or "unknown setting" not in result.response.content
        assert (await s.bot.store.get_session(row.id)).settings["negative_prompt"] == "blurry, style=anime"

        await s.alice.slash(thread, "settings", negative="text steps=1")
        settings = (await s.bot.store.get_session(row.id)).settings
        assert (settings["negative_prompt"], settings["steps"]) == ("text steps=1", steps)


async def test_a_failed_bot_reaction_posts_the_take_once_and_a_users_reaction_approves_it(tmp_path: Path) -> None:
    async with studio(tmp_path) as s:
        s.env.inject_error("PUT", "/channels/*/messages/*/reactions/*", status=403, code=50013, times=None)
        thread, _ = await s.session("the sun rises")
        take = await s.first_take(thread)
        assert take.reactions == []
        await s.bot.service.post_unposted()  # what a retry after a failed post would do
        await s.env.settle()
        assert [m.id for m in review_messages(thread)] == [take.id]

        await s.alice.react(take, "✅")
        await until(s.env, lambda: not has_buttons(review_messages(thread)[0]), "the approval")
        assert (await s.bot.store.get_segment(segment_id_of(take))).status is SegmentStatus.APPROVED


async def test_notes_after_approval_and_after_cancel_go_to_the_reacting_user_alone(tmp_path: Path) -> None:
    async with studio(tmp_path) as s:
        thread, _ = await s.session("the sun rises")
        take = await s.first_take(thread)
        await s.alice.react(take, "✅")
        await until(s.env, lambda: not has_buttons(review_messages(thread)[0]), "the approval")
        await s.env.settle()
        before = s.seen(thread)

        await s.alice.react(take, "🔁")  # the take is approved already
        await s.env.settle()
        assert s.seen(thread) == before
        dms = s.alice.user.dm_channel
        (note,) = dms.history()
        assert note.content.startswith(f"<#{thread.id}>: ") and "already approved" in note.content

        await s.alice.slash(thread, "cancel")
        await s.env.settle()
        before = s.seen(thread)
        await s.alice.react(take, "🏁")  # the session is over
        await s.env.settle()
        assert s.seen(thread) == before
        assert len(dms.history()) == 2 and dms.history()[-1].content.startswith(f"<#{thread.id}>: ")


async def test_a_strangers_picture_in_the_thread_writes_nothing(tmp_path: Path) -> None:
    async with studio(tmp_path) as s:
        thread, row = await s.session()
        folder = s.bot.service.config.data_dir / "sessions" / row.id
        files = sorted(folder.iterdir())
        assert [f.name for f in files] == ["picture-1.png"]

        await s.bob.send(thread, "mine is nicer", attachments=[("bob.png", picture_bytes(80, 80))])
        await s.env.settle()

        assert sorted(folder.iterdir()) == files
        assert sorted(p for p in s.bot.service.config.data_dir.rglob("*.png")) == files


async def test_the_finish_reaction_joins_the_approved_segments(tmp_path: Path) -> None:
    async with studio(tmp_path) as s:
        thread, row = await s.session("the sun rises")
        take = await s.first_take(thread)
        await s.alice.react(take, "✅")
        await until(s.env, lambda: not has_buttons(review_messages(thread)[0]), "the approval")

        await s.alice.react(take, "🏁")

        await until(
            s.env,
            lambda: any(m.attachments[0].filename == "framechain.mp4" for m in review_messages(thread)),
            "the final video",
        )
        assert (await s.bot.store.get_session(row.id)).state is SessionState.FINISHED


async def test_the_finish_reaction_on_a_take_under_review_approves_and_joins_it(tmp_path: Path) -> None:
    # 🏁 sits next to ✅ 🔁 on the take under review, where the 🏁 Approve & finish button is.
    async with studio(tmp_path) as s:
        thread, row = await s.session("the sun rises")
        take = await s.first_take(thread)

        await s.alice.react(take, "🏁")

        await until(
            s.env,
            lambda: any(m.attachments[0].filename == "framechain.mp4" for m in review_messages(thread)),
            "the final video",
        )
        assert (await s.bot.store.get_session(row.id)).state is SessionState.FINISHED
        assert (await s.bot.store.get_segment(segment_id_of(take))).status is SegmentStatus.APPROVED
