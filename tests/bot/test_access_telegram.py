"""Authorization on Telegram: the real python-telegram-bot Application against the local Bot API
stand-in, in front of the real conversation service and store. Only the allowed cases change a
row or a file; refused users are told once, privately, with their id, and nothing of theirs is
downloaded."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from bot.dispatcher import Dispatcher
from bot.ports import Action, ChatRef, control_id
from bot.service import ConversationService
from bot.store import Store
from bot.telegram_adapter import RetryPolicy, TelegramFrontEnd, build_telegram
from bot.telegram_adapter.front import NOT_ALLOWED_HERE
from bot.worker_client import WorkerProcess
from shared.config import Config, GenerationConfig, Secret, TelegramConfig
from tests.bot import access_tables as t
from tests.bot.recording_conversation import RecordingConversation
from tests.bot.service_harness import picture_bytes
from tests.bot.telegram_standin import BotApiStandIn

FAST = RetryPolicy(attempts=3, base_delay=0.01, max_delay=0.05)
GROUP = -100555
IDS = {t.OWNER: 11, t.OTHER: 12, t.ADMIN: 13, t.STRANGER: 14}
CONFIGS: dict[str, dict[str, Any]] = {
    t.CLOSED: {},
    t.USERS: {"allowed_user_ids": (IDS[t.OWNER], IDS[t.OTHER])},
    t.PLACE: {"allowed_chat_ids": (GROUP,)},
    t.OPEN: {"open": True},
}


def make_config(tmp_path: Path, api: BotApiStandIn, **access: Any) -> Config:
    telegram = TelegramConfig(
        token=Secret(api.token), api_base_url=api.base_url, api_file_url=api.file_url, admin_ids=(IDS[t.ADMIN],)
    )
    return Config(
        data_dir=tmp_path / "data",
        generation=GenerationConfig(backend="preview"),
        telegram=dataclasses.replace(telegram, **access),
    )


def no_worker(device: str) -> WorkerProcess:
    raise AssertionError("the dispatcher is never started here: takes stay queued")


@dataclass
class Bot:
    config: Config
    service: ConversationService
    front: TelegramFrontEnd
    segment_id: int
    progress_message: int

    def snapshot(self) -> dict[str, Any]:
        return t.snapshot(self.config.data_dir, self.config.database_path)


@contextlib.asynccontextmanager
async def bot(tmp_path: Path, api: BotApiStandIn, config_name: str, *, take: bool) -> AsyncIterator[Bot]:
    """The front end under the case's configuration, and the owner's session in the group (the
    owner may have been let in by an older configuration), with its first take queued (``take``)
    or waiting for its first prompt."""
    config = make_config(tmp_path, api, **CONFIGS[config_name])
    config.data_dir.mkdir(parents=True)
    async with Store.open(config.database_path) as store:
        service = ConversationService(store, config, progress_interval=0.0)
        service.attach(Dispatcher(config.worker_slots, no_worker, service))
        front = build_telegram(config, service, retry=FAST, poll_timeout=2)
        service.add_port(front.port)
        await front.start()
        try:
            group = ChatRef("telegram", str(GROUP))
            await service.start(group, str(IDS[t.OWNER]), picture_bytes(512, 512), "a fox trots" if take else None)
            (shown,) = await api.wait_for("sendMessage")  # the take's progress, or a prompt asked for
            row = await store.find_active_session("telegram", str(GROUP), "", str(IDS[t.OWNER]))
            assert row is not None
            segments = await store.list_segments(row.id)
            assert len(segments) == int(take)
            yield Bot(config, service, front, segments[0].id if take else 0, shown.result["message_id"])
        finally:
            await front.stop()
            await service.close()


async def act(api: BotApiStandIn, b: Bot, actor: str, action: str) -> None:
    user = IDS[actor]
    if action == "start":
        await api.user_message(user, user, photo=picture_bytes(512, 512), caption="/start a cat sleeps")
    elif action == "cancel":
        await api.user_message(GROUP, user, text="/cancel")
    elif action == "undo":
        await api.press(GROUP, user, b.progress_message, control_id(b.segment_id, Action.UNDO))
    elif action == "settings":
        await api.user_message(GROUP, user, text="/settings steps=3")
    elif action == "prompt":
        await api.user_message(GROUP, user, text="the fox jumps", reply_to=b.progress_message)
    # Updates are handled in order per chat: a /help from the admin after it, answered, means done.
    before = len(api.sent("sendMessage"))
    chat = user if action == "start" else GROUP
    await api.user_message(chat, IDS[t.ADMIN], text="/help")
    await api.wait_for("sendMessage", before + 1)
    await asyncio.sleep(0.05)


@pytest.mark.parametrize(("config_name", "actor", "action"), t.cases())
async def test_only_allowed_actions_change_state_or_touch_disk(
    tmp_path: Path, config_name: str, actor: str, action: str
) -> None:
    async with BotApiStandIn() as api, bot(tmp_path, api, config_name, take=action in t.WITH_A_TAKE) as b:
        before = b.snapshot()
        downloads = len(api.sent("getFile"))
        await act(api, b, actor, action)
        changed = b.snapshot() != before
        assert changed is t.expected_change(config_name, actor, action, private_start=True), b.snapshot()
        let_in = t.LET_IN_PRIVATELY if action == "start" else t.LET_IN_THERE
        if actor not in let_in[config_name]:
            assert len(api.sent("getFile")) == downloads  # nothing of a refused user's is downloaded


async def test_a_refused_user_is_told_once_privately_with_their_id(tmp_path: Path) -> None:
    async with BotApiStandIn() as api:
        config = make_config(tmp_path, api)  # nothing configured: closed
        recording = RecordingConversation()
        front = build_telegram(config, recording, retry=FAST, poll_timeout=2)
        await front.start()
        try:
            stranger = IDS[t.STRANGER]
            await api.user_message(stranger, stranger, photo=picture_bytes(), caption="/start a cat")
            await api.user_message(stranger, stranger, text="hello?")
            await api.user_message(stranger, stranger, text="/status")
            await api.user_message(IDS[t.ADMIN], IDS[t.ADMIN], text="/help")  # let in
            (call,) = await recording.wait(1)
            assert call.user_id == str(IDS[t.ADMIN])
            await api.wait_for("sendMessage")
            await asyncio.sleep(0.3)  # the stranger's later messages have been handled too
            (refusal,) = api.sent("sendMessage")
            assert refusal.params["chat_id"] == stranger
            assert refusal.params["text"] == (
                f"You're not allowed to use this bot. Ask its owner to add your user id {stranger} "
                "to telegram.allowed_user_ids."
            )
            assert api.sent("getFile") == []
        finally:
            await front.stop()


async def test_a_refused_user_in_a_group_is_told_in_their_own_chat(tmp_path: Path) -> None:
    async with BotApiStandIn() as api:
        recording = RecordingConversation()
        front = build_telegram(make_config(tmp_path, api), recording, retry=FAST, poll_timeout=2)
        await front.start()
        try:
            stranger = IDS[t.STRANGER]
            await api.user_message(GROUP, stranger, text="just chatting")  # not for the bot: silence
            await api.user_message(GROUP, stranger, text="/start")
            (refusal,) = await api.wait_for("sendMessage")
            assert refusal.params["chat_id"] == stranger and "user id 14" in refusal.params["text"]
            # One who never opened a chat with the bot cannot be written to: a short answer in
            # the group, without the id.
            other = IDS[t.OTHER]
            api.fail("sendMessage", status=403, description="Forbidden: bot can't initiate conversation with a user")
            await api.user_message(GROUP, other, text="/start")
            answers = await api.wait_for("sendMessage", 2)
            assert (answers[1].params["chat_id"], answers[1].params["text"]) == (GROUP, NOT_ALLOWED_HERE)
            assert recording.calls == []
        finally:
            await front.stop()


async def test_a_refused_press_gets_the_refusal_as_its_toast_and_a_reaction_a_message(tmp_path: Path) -> None:
    async with BotApiStandIn() as api:
        recording = RecordingConversation()
        front = build_telegram(make_config(tmp_path, api), recording, retry=FAST, poll_timeout=2)
        await front.start()
        try:
            sent = await front.port.send_text(ChatRef("telegram", str(GROUP)), "a take")
            stranger = IDS[t.STRANGER]
            await api.press(GROUP, stranger, int(sent), control_id(5, Action.APPROVE))
            (answer,) = await api.wait_for("answerCallbackQuery")
            assert "user id 14" in answer.params["text"]
            await api.react(GROUP, stranger, int(sent), ["👍"])
            await api.react(GROUP, stranger, int(sent), ["👎"], old=["👍"])  # told once only
            await api.user_message(GROUP, IDS[t.ADMIN], text="/help")
            await recording.wait(1)
            await asyncio.sleep(0.1)
            texts = [(c.params["chat_id"], c.params["text"]) for c in api.sent("sendMessage")[1:]]
            assert texts == [(stranger, front.access.refusal(stranger))]
            assert [c.method for c in recording.calls] == ["command"]
        finally:
            await front.stop()


async def test_admins_see_the_whole_queue_with_status(tmp_path: Path) -> None:
    async with BotApiStandIn() as api, bot(tmp_path, api, t.USERS, take=True) as b:
        await api.user_message(GROUP, IDS[t.OTHER], text="/status")
        await api.user_message(GROUP, IDS[t.ADMIN], text="/status")
        answers = await api.wait_for("sendMessage", 4)
        texts = [c.params["text"] for c in answers[1:]]
        assert not any("admin view" in text for text in texts[:-2])  # a user sees their place only
        assert (
            texts[-2] == f"Queue (admin view): 0 running, 1 waiting.\n1. job {b.segment_id} of telegram:{IDS[t.OWNER]}"
        )
