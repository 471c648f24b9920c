"""bot.app.serve, the whole bootstrap with preview workers and a fake platform: what a SIGTERM
(``stop`` set) in the middle of the work leaves behind."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

from bot.app import serve
from bot.ports import Action, ChatPort, ChatRef, Conversation
from bot.store import SessionState, Store
from shared.config import Config, load_config
from tests.bot.fake_chat import FakeChat, Sent
from tests.bot.service_harness import picture_bytes, write_config

CHAT = ChatRef("telegram", "100", "")
OWNER = "7"


class ClosedChat(FakeChat):
    """A platform whose connection has been closed by its front end: nothing goes out."""

    closed: bool = False

    async def _record(self, item: Sent) -> None:
        if self.closed:
            raise ConnectionError("the front end is stopped")
        await super()._record(item)


@dataclass
class FakeFrontEnd:
    chat: ClosedChat
    conversation: Conversation
    events: list[str] = field(default_factory=list)
    started: asyncio.Event = field(default_factory=asyncio.Event)
    #: What users do while the bot shuts down, before this front end stops taking updates.
    last_updates: Callable[[], Awaitable[None]] | None = None

    @property
    def port(self) -> ChatPort:
        return self.chat

    async def start(self) -> None:
        self.started.set()

    async def stop(self) -> None:
        if self.last_updates is not None:
            await self.last_updates()
        self.events.append("front end stopped")
        self.chat.closed = True


@dataclass
class Deployment:
    config_path: Path
    chat: ClosedChat = field(default_factory=ClosedChat)
    fronts: list[FakeFrontEnd] = field(default_factory=list)

    @property
    def config(self) -> Config:
        return load_config(self.config_path, env={})

    def front_ends(self, config: Config, conversation: Conversation) -> list[FakeFrontEnd]:
        self.chat.closed = False
        self.fronts.append(FakeFrontEnd(self.chat, conversation))
        return [self.fronts[-1]]

    async def run(self, stop: asyncio.Event, **kwargs: float) -> asyncio.Task[None]:
        config = self.config
        config.data_dir.mkdir(parents=True, exist_ok=True)
        front_ends = self.front_ends
        task = asyncio.create_task(
            serve(config, stop, config_path=self.config_path, front_ends_for=front_ends, **kwargs)  # type: ignore[arg-type]
        )
        while not self.fronts or not self.fronts[-1].started.is_set():
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.2)  # resume() and the dispatcher start after the front ends
        return task


async def session_row(config: Config) -> tuple[SessionState, dict[str, object], str | None]:
    async with Store.open(config.database_path) as store:
        [row] = await store.list_sessions(tuple(SessionState))
        return row.state, dict(row.posted), row.final_caption


async def test_a_sigterm_during_the_final_join_lets_it_finish_and_post_before_the_platforms_close(
    tmp_path: Path,
) -> None:
    deployment = Deployment(write_config(tmp_path, frames=81))
    stop = asyncio.Event()
    serving = await deployment.run(stop)
    bot, chat = deployment.fronts[-1].conversation, deployment.chat
    await bot.start(CHAT, OWNER, picture_bytes(), "the sun rises")
    [take] = await chat.wait_for("segment")
    await bot.control(CHAT, OWNER, take.post.segment_id, Action.APPROVE)
    await bot.command(CHAT, OWNER, "finish")
    stop.set()  # SIGTERM while the join runs
    await asyncio.wait_for(serving, 60)

    [final] = chat.of("final")
    assert final.text.startswith("Here's your video: 1 segment")
    assert deployment.fronts[-1].events == ["front end stopped"]  # after the post, not before
    state, posted, caption = await session_row(deployment.config)
    assert state is SessionState.FINISHED and "final" in posted and caption == final.text

    # A restart posts nothing again.
    stop = asyncio.Event()
    serving = await deployment.run(stop)
    stop.set()
    await asyncio.wait_for(serving, 60)
    assert len(chat.of("final")) == 1


async def test_input_during_shutdown_is_refused_and_changes_nothing(tmp_path: Path) -> None:
    deployment = Deployment(write_config(tmp_path))
    stop = asyncio.Event()
    serving = await deployment.run(stop)
    bot, chat = deployment.fronts[-1].conversation, deployment.chat
    await bot.start(CHAT, OWNER, picture_bytes(), None)
    private: list[str] = []

    async def reply(text: str) -> None:
        private.append(text)

    async def while_stopping() -> None:
        await bot.text(CHAT, OWNER, "a prompt sent while stopping")
        await bot.command(CHAT, OWNER, "cancel", reply=reply)

    deployment.fronts[-1].last_updates = while_stopping
    stop.set()
    await asyncio.wait_for(serving, 60)
    assert "restarting" in chat.texts()[-1] and private and "restarting" in private[-1]
    state, _, _ = await session_row(deployment.config)
    assert state is SessionState.AWAITING_PROMPT
