"""Authorization on Discord: simcord (real discord.py, offline Discord) in front of the real
conversation service and store. Only the allowed cases change a row or a file; a refused user is
answered privately (the command's ephemeral answer, else one DM), and nothing of theirs is read."""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import simcord

from bot.discord_adapter import DiscordFrontEnd, build_discord
from bot.dispatcher import Dispatcher
from bot.service import ConversationService
from bot.store import Store
from bot.worker_client import WorkerProcess
from shared.config import Config, DiscordConfig, GenerationConfig
from tests.bot import access_tables as t
from tests.bot.discord_harness import open_session, running, segment_post
from tests.bot.service_harness import picture_bytes

GUILD = 880_000_000_000_000_001


def no_worker(device: str) -> WorkerProcess:
    raise AssertionError("the dispatcher is never started here: takes stay queued")


def make_config(tmp_path: Path, **discord: Any) -> Config:
    return Config(
        data_dir=tmp_path / "data",
        generation=GenerationConfig(backend="preview"),
        discord=DiscordConfig(private_threads=False, **discord),  # public: everyone sees the thread
    )


@dataclass
class Studio:
    env: simcord.Env
    config: Config
    front: DiscordFrontEnd
    channel: simcord.ChannelHandle
    thread: simcord.ChannelHandle
    actors: dict[str, simcord.MemberActor]

    def snapshot(self) -> dict[str, Any]:
        return t.snapshot(self.config.data_dir, self.config.database_path)


@contextlib.asynccontextmanager
async def studio(tmp_path: Path, config_name: str, *, take: bool) -> AsyncIterator[Studio]:
    """The owner's session in a thread (opened while the bot was open to all), its first take
    queued (``take``) or waiting for its first prompt; then the bot restarted under the case's
    configuration, on the same data."""
    config = make_config(tmp_path, open=True)
    config.data_dir.mkdir(parents=True)
    async with Store.open(config.database_path) as store:
        service = ConversationService(store, config, progress_interval=0.0)
        service.attach(Dispatcher(config.worker_slots, no_worker, service))
        front = build_discord(config, service)
        service.add_port(front.port)
        try:
            async with simcord.run(front.client) as env:
                guild = env.create_guild("Studio", id=GUILD)
                animators = guild.create_role("Animators")
                channel = guild.create_text_channel("animations")
                actors = {
                    name: guild.add_member(env.create_user(name), roles=[animators] if name != t.STRANGER else [])
                    for name in t.ACTORS
                }
                options: dict[str, Any] = {"prompt": "a fox trots"} if take else {}
                await actors[t.OWNER].slash(channel, "start", image=("fox.png", picture_bytes(512, 512)), **options)
                (thread,) = channel.threads
                ids = {name: actor.id for name, actor in actors.items()}
                access: dict[str, Any] = {
                    t.CLOSED: {},
                    t.USERS: {"allowed_user_ids": (ids[t.OWNER], ids[t.OTHER])},
                    t.PLACE: {"allowed_guild_ids": (GUILD,)},
                    t.OPEN: {"open": True},
                }[config_name]
                config = dataclasses.replace(
                    config,
                    discord=dataclasses.replace(
                        config.discord, **({"open": False} | access), admin_ids=(ids[t.ADMIN],)
                    ),
                )
                front = build_discord(config, service)
                service.add_port(front.port)
                await env.restart_bot(front.client)
                yield Studio(env, config, front, channel, thread, actors)
        finally:
            await service.close()


async def act(s: Studio, actor: str, action: str) -> None:
    who = s.actors[actor]
    if action == "start":
        await who.slash(s.channel, "start", image=("cat.png", picture_bytes(512, 512)), prompt="a cat sleeps")
    elif action == "cancel":
        await who.slash(s.thread, "cancel")
    elif action == "undo":
        await who.slash(s.thread, "undo")
    elif action == "settings":
        await who.slash(s.thread, "settings", steps=3)
    elif action == "prompt":
        await who.send(s.thread, "the fox jumps")
    await s.env.settle()


@pytest.mark.parametrize(("config_name", "actor", "action"), t.cases())
async def test_only_allowed_actions_change_state_or_touch_disk(
    tmp_path: Path, config_name: str, actor: str, action: str
) -> None:
    async with studio(tmp_path, config_name, take=action in t.WITH_A_TAKE) as s:
        before = s.snapshot()
        await act(s, actor, action)
        changed = s.snapshot() != before
        assert changed is t.expected_change(config_name, actor, action, private_start=False), s.snapshot()


async def test_a_refused_user_is_answered_privately_and_nothing_of_theirs_is_read(tmp_path: Path) -> None:
    async with studio(tmp_path, t.CLOSED, take=True) as s:
        stranger = s.actors[t.STRANGER]
        reads: list[str] = []
        http = s.front.client.http
        original = http.get_from_cdn

        async def counted(url: str) -> bytes:
            reads.append(url)
            return await original(url)

        http.get_from_cdn = counted  # type: ignore[method-assign]
        refusal = (
            f"You're not allowed to use this bot. Ask its owner to add your user id {stranger.id} "
            "to discord.allowed_user_ids."
        )
        started = await stranger.slash(s.channel, "start", image=("cat.png", picture_bytes(512, 512)))
        assert started.ephemeral and started.response is not None and started.response.content == refusal
        status = await stranger.slash(s.thread, "status")
        assert status.ephemeral and status.response is not None and status.response.content == refusal
        before = len(s.thread.history())
        await stranger.send(s.thread, "look", attachments=[("dog.png", picture_bytes())])
        await stranger.send(s.thread, "again", attachments=[("dog.png", picture_bytes())])
        take = s.thread.history()[-1]
        await stranger.react(take, "✅")
        await s.env.settle()
        assert reads == []  # no attachment of theirs was downloaded
        assert len(s.thread.history()) == before + 2  # their messages; nothing from the bot
        dms = [m.content for m in stranger.user.dm_channel.history()]
        assert dms == [f"{s.thread.mention}: {refusal}"]  # told once, not per message


async def test_a_refused_press_is_answered_privately_and_not_forwarded(tmp_path: Path) -> None:
    async with running(tmp_path, private_threads=False) as w:
        chat, thread = await open_session(w)
        await w.front.port.post_segment(chat, segment_post(tmp_path / "media", 5))
        message = thread.last_message
        assert message is not None
        await w.restart(private_threads=False, allowed_user_ids=(w.alice.id,))  # bob is not let in

        result = await w.bob.click(message, label="Approve")

        assert result.ephemeral and result.response is not None
        assert f"your user id {w.bob.id} to discord.allowed_user_ids" in result.response.content
        assert w.conversation.calls == []
