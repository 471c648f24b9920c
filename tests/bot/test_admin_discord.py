"""The admin commands on Discord: simcord (real discord.py, offline Discord) in front of the real
conversation service, store and dispatcher (never started here: takes stay queued). Admins get
their answers as ephemeral replies; anyone else is refused the same way; a banned user is refused
everything, like a stranger, also after a restart."""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import simcord

from bot.core_admin import ADMIN_COMMANDS, NOT_ADMIN
from bot.discord_adapter import DiscordFrontEnd, build_discord
from bot.dispatcher import Dispatcher
from bot.service import ConversationService
from bot.store import SegmentStatus, Store
from bot.worker_client import WorkerProcess
from shared.config import Config, DiscordConfig, GenerationConfig
from tests.bot import access_tables as t
from tests.bot.service_harness import picture_bytes

#: Each admin command with the options it needs.
OPTIONS: dict[str, dict[str, str]] = {"stop": {"job": "1"}, "ban": {"user": "1"}, "unban": {"user": "1"}}


def no_worker(device: str) -> WorkerProcess:
    raise AssertionError("the dispatcher is never started here: takes stay queued")


@dataclass
class Studio:
    env: simcord.Env
    config: Config
    store: Store
    channel: simcord.ChannelHandle
    owner: simcord.MemberActor
    other: simcord.MemberActor
    admin: simcord.MemberActor
    service: ConversationService | None = None
    front: DiscordFrontEnd | None = None

    async def restart(self) -> None:
        """A new bot process on the same data: service, front end, and the bans it reads back."""
        if self.service is not None:
            await self.service.close()
        self.service = ConversationService(self.store, self.config, progress_interval=0.0)
        self.service.attach(Dispatcher(self.config.worker_slots, no_worker, self.service))
        self.front = build_discord(self.config, self.service)
        self.service.add_port(self.front.port)
        await self.service.resume()
        await self.env.restart_bot(self.front.client)

    async def slash(self, who: simcord.MemberActor, where: simcord.ChannelHandle, name: str, **options: str) -> str:
        result = await who.slash(where, name, **options)
        assert result.ephemeral and result.response is not None, (name, result)
        return str(result.response.content)


@contextlib.asynccontextmanager
async def studio(tmp_path: Path) -> AsyncIterator[Studio]:
    """Members first (simcord assigns their ids), then the bot configured with them."""
    config = Config(
        data_dir=tmp_path / "data",
        generation=GenerationConfig(backend="preview"),
        discord=DiscordConfig(private_threads=False, open=True),
    )
    config.data_dir.mkdir(parents=True)
    async with Store.open(config.database_path) as store:
        first = build_discord(config, ConversationService(store, config))
        async with simcord.run(first.client) as env:
            guild = env.create_guild("Studio")
            channel = guild.create_text_channel("animations")
            owner, other, admin = (guild.add_member(env.create_user(n)) for n in ("owner", "other", "admin"))
            discord = dataclasses.replace(
                config.discord, open=False, allowed_user_ids=(owner.id, other.id), admin_ids=(admin.id,)
            )
            s = Studio(env, dataclasses.replace(config, discord=discord), store, channel, owner, other, admin)
            await s.restart()
            try:
                yield s
            finally:
                if s.service is not None:
                    await s.service.close()


async def session(s: Studio) -> tuple[simcord.ChannelHandle, int]:
    """The owner's session in its thread, with its first take queued."""
    await s.owner.slash(s.channel, "start", image=("fox.png", picture_bytes(512, 512)), prompt="a fox trots")
    (thread,) = s.channel.threads
    rows = await s.store.list_active_sessions("discord")
    (segment,) = await s.store.list_segments(rows[0].id)
    return thread, segment.id


def last_texts(thread: simcord.ChannelHandle, n: int) -> list[str]:
    return [m.content for m in thread.history()[-n:]]


async def test_every_admin_command_answers_an_admin_privately_and_refuses_everyone_else(tmp_path: Path) -> None:
    async with studio(tmp_path) as s:
        assert set(ADMIN_COMMANDS) <= set(s.admin.available_commands(s.channel))
        thread, job = await session(s)
        seen = len(thread.history())
        for name in ADMIN_COMMANDS:
            assert await s.slash(s.other, thread, name, **OPTIONS.get(name, {})) == NOT_ADMIN
        assert len(thread.history()) == seen  # nothing in the thread, nothing revealed

        queue = await s.slash(s.admin, s.channel, "queue")
        assert f"1. job {job} · discord:{s.owner.id} · session " in queue
        assert (await s.slash(s.admin, s.channel, "gpu")).startswith("Workers:\n• device auto: starting")
        assert (await s.slash(s.admin, s.channel, "pause")).startswith(
            "⏸ Queue paused: nothing new starts. 1 job waiting; its owner is told."
        )
        assert last_texts(thread, 1)[0].startswith("⏸ The bot's admins paused the queue: Segment 1 · take 1")
        assert (await s.slash(s.admin, thread, "resume")).startswith("▶ Queue running again")
        assert last_texts(thread, 1) == ["▶ The queue runs again: Segment 1 · take 1 is next in line."]
        banned = await s.slash(s.admin, s.channel, "ban", user=f"<@{s.other.id}>")
        assert banned.startswith(f"🚫 Banned discord:{s.other.id}")
        assert await s.slash(s.admin, s.channel, "unban", user=str(s.other.id)) == (
            f"✅ discord:{s.other.id} is no longer banned."
        )
        assert (await s.slash(s.admin, s.channel, "ban", user=str(s.admin.id))).endswith("admins cannot be banned.")

        stopped = await s.slash(s.admin, s.channel, "stop", job=str(job))
        assert stopped == f"⏹ Stopping job {job} (segment 1 · take 1 of discord:{s.owner.id}); its owner is told."
        assert last_texts(thread, 2) == [
            f"⏹ The bot's admins stopped Segment 1 · take 1 (job {job}).",
            "Stopped segment 1. Send a new prompt for it.",
        ]
        assert (await s.store.get_segment(job)).status is SegmentStatus.CANCELLED
        assert "/pause, /resume" in await s.slash(s.admin, thread, "help")


async def test_a_banned_user_is_refused_everything_also_after_a_restart(tmp_path: Path) -> None:
    async with studio(tmp_path) as s:
        thread, job = await session(s)
        await s.slash(s.admin, s.channel, "ban", user=str(s.owner.id))
        await s.restart()
        take = thread.history()[-1]  # the take's progress message, with its ✖ Stop
        before = t.snapshot(s.config.data_dir, s.config.database_path)
        reads: list[str] = []
        assert s.front is not None
        http = s.front.client.http
        original = http.get_from_cdn

        async def counted(url: str) -> bytes:
            reads.append(url)
            return await original(url)

        http.get_from_cdn = counted  # type: ignore[method-assign]
        refusal = f"You're not allowed to use this bot: its admins have blocked your user id {s.owner.id}."
        started = await s.owner.slash(s.channel, "start", image=("cat.png", picture_bytes(512, 512)))
        assert started.response is not None and started.response.content == refusal
        assert await s.slash(s.owner, thread, "cancel") == refusal
        assert await s.slash(s.owner, thread, "status") == refusal
        click = await s.owner.click(take, label="✖ Stop")
        assert click.response is not None and click.response.content == refusal
        await s.owner.send(thread, "the fox jumps", attachments=[("dog.png", picture_bytes())])
        await s.owner.react(take, "✅")
        await s.env.settle()
        assert reads == []  # nothing of theirs was downloaded
        assert [m.content for m in s.owner.user.dm_channel.history()] == [f"{thread.mention}: {refusal}"]
        assert t.snapshot(s.config.data_dir, s.config.database_path) == before
        assert (await s.store.get_segment(job)).status is SegmentStatus.QUEUED
