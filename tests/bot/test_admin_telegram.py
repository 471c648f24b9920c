"""The admin commands on Telegram: the real python-telegram-bot Application against the local Bot
API stand-in, in front of the real conversation service, store and dispatcher (never started here,
so takes stay queued). Admins' answers go to their private chat; anyone else is refused there;
a banned user is refused everything, like a stranger, also after a restart."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path

from bot.core_admin import ADMIN_COMMANDS, NOT_ADMIN
from bot.dispatcher import Dispatcher
from bot.ports import Action, ChatRef, control_id
from bot.service import ConversationService
from bot.store import SegmentStatus, SessionState, Store
from bot.telegram_adapter import TelegramFrontEnd, build_telegram
from bot.worker_client import WorkerProcess
from shared.config import Config, GenerationConfig, Secret, TelegramConfig
from tests.bot import access_tables as t
from tests.bot.service_harness import picture_bytes
from tests.bot.telegram_standin import BotApiStandIn, Call
from tests.bot.test_access_telegram import FAST

OWNER, OTHER, ADMIN = 11, 12, 13
GROUP = -100777


def no_worker(device: str) -> WorkerProcess:
    raise AssertionError("the dispatcher is never started here: takes stay queued")


@dataclass
class Bot:
    config: Config
    store: Store
    service: ConversationService
    front: TelegramFrontEnd


@contextlib.asynccontextmanager
async def bot(tmp_path: Path, api: BotApiStandIn) -> AsyncIterator[Bot]:
    config = Config(
        data_dir=tmp_path / "data",
        generation=GenerationConfig(backend="preview"),
        telegram=TelegramConfig(
            token=Secret(api.token),
            api_base_url=api.base_url,
            api_file_url=api.file_url,
            admin_ids=(ADMIN,),
            allowed_user_ids=(OWNER, OTHER),
        ),
    )
    config.data_dir.mkdir(parents=True, exist_ok=True)
    async with Store.open(config.database_path) as store:
        service = ConversationService(store, config, progress_interval=0.0)
        service.attach(Dispatcher(config.worker_slots, no_worker, service))
        front = build_telegram(config, service, retry=FAST, poll_timeout=2)
        service.add_port(front.port)
        await front.start()
        await service.resume()
        try:
            yield Bot(config, store, service, front)
        finally:
            await front.stop()
            await service.close()


def to(chat_id: int) -> Callable[[Call], bool]:
    return lambda call: call.params.get("chat_id") == chat_id


async def answer(api: BotApiStandIn, user: int, text: str, *, chat: int = GROUP, where: int | None = None) -> str:
    """Send ``text`` as ``user`` in ``chat``; the next message the bot sends to ``where`` (the
    user's private chat unless said otherwise)."""
    where = user if where is None else where
    before = len([c for c in api.sent("sendMessage") if c.params.get("chat_id") == where])
    await api.user_message(chat, user, text=text)
    calls = await api.wait_for("sendMessage", before + 1, where=to(where))
    return str(calls[before].params["text"])


def texts(api: BotApiStandIn, chat_id: int) -> list[str]:
    return [str(c.params["text"]) for c in api.sent("sendMessage") if c.params.get("chat_id") == chat_id]


async def queued_take(b: Bot, api: BotApiStandIn, owner: int = OWNER) -> int:
    await b.service.start(ChatRef("telegram", str(GROUP)), str(owner), picture_bytes(512, 512), "a fox trots")
    row = await b.store.find_active_session("telegram", str(GROUP), "", str(owner))
    assert row is not None
    (segment,) = await b.store.list_segments(row.id)
    return segment.id


async def test_every_admin_command_answers_an_admin_privately_and_refuses_everyone_else(tmp_path: Path) -> None:
    async with BotApiStandIn() as api, bot(tmp_path, api) as b:
        # The admin commands are listed in the admin's own chat only.
        assert not {c["command"] for c in api.commands} & set(ADMIN_COMMANDS)
        (admin_list,) = api.scoped_commands.values()
        assert set(ADMIN_COMMANDS) <= {c["command"] for c in admin_list}
        job = await queued_take(b, api)
        await api.wait_for("sendMessage", where=to(GROUP))  # its progress message
        in_the_group = len(texts(api, GROUP))

        for name in ADMIN_COMMANDS:  # a user of the bot, not an admin: refused, privately
            assert await answer(api, OTHER, f"/{name} {job}") == NOT_ADMIN
        assert len(texts(api, GROUP)) == in_the_group

        queue = await answer(api, ADMIN, "/queue")
        head, line, note = queue.splitlines()
        assert (head, note) == ("Queue: 0 running, 1 waiting.", "(estimates once a job has been timed)")
        assert line.startswith(f"1. job {job} · telegram:{OWNER} · session ") and line.endswith("segment 1 · take 1")
        assert (await answer(api, ADMIN, "/gpu", chat=ADMIN)).startswith("Workers:\n• device auto: starting")
        assert (await answer(api, ADMIN, "/pause")).startswith(
            "⏸ Queue paused: nothing new starts. 1 job waiting; its owner is told."
        )
        assert texts(api, GROUP)[-1].startswith("⏸ The bot's admins paused the queue: Segment 1 · take 1 waits")
        assert (await answer(api, ADMIN, "/queue")).startswith("Queue (⏸ paused): 0 running, 1 waiting.")
        assert (await answer(api, ADMIN, "/resume")).startswith(
            "▶ Queue running again. 1 job waiting; its owner is told."
        )
        assert texts(api, GROUP)[-1] == "▶ The queue runs again: Segment 1 · take 1 is next in line."
        assert (await answer(api, ADMIN, f"/ban {OTHER}")).startswith(f"🚫 Banned telegram:{OTHER}")
        assert await answer(api, ADMIN, f"/unban {OTHER}") == f"✅ telegram:{OTHER} is no longer banned."

        stopped = await answer(api, ADMIN, f"/stop {job}")
        assert stopped == f"⏹ Stopping job {job} (segment 1 · take 1 of telegram:{OWNER}); its owner is told."
        await api.wait_for("sendMessage", in_the_group + 4, where=to(GROUP))
        assert texts(api, GROUP)[-2:] == [
            f"⏹ The bot's admins stopped Segment 1 · take 1 (job {job}).",
            "Stopped segment 1. Send a new prompt for it.",
        ]
        assert (await b.store.get_segment(job)).status is SegmentStatus.CANCELLED
        # /help shows the admin commands to the admin, not to others.
        assert "/pause, /resume" in await answer(api, ADMIN, "/help", chat=ADMIN)
        assert "/pause" not in await answer(api, OTHER, "/help", chat=OTHER)


async def test_a_banned_user_is_refused_everything_also_after_a_restart(tmp_path: Path) -> None:
    async with BotApiStandIn() as api:
        async with bot(tmp_path, api) as b:
            job = await queued_take(b, api)
            (progress,) = await api.wait_for("sendMessage", where=to(GROUP))
            progress_id = int(progress.result["message_id"])
            await answer(api, ADMIN, f"/ban {OWNER}", chat=ADMIN)
            # Admins cannot be banned.
            assert (await answer(api, ADMIN, f"/ban {ADMIN}", chat=ADMIN)).endswith("admins cannot be banned.")

        async with bot(tmp_path, api) as b:
            before = t.snapshot(b.config.data_dir, b.config.database_path)
            downloads = len(api.sent("getFile"))
            refusal = f"You're not allowed to use this bot: its admins have blocked your user id {OWNER}."
            assert await answer(api, OWNER, "/start", chat=OWNER) == refusal
            await api.user_message(OWNER, OWNER, photo=picture_bytes(512, 512), caption="/start a cat")
            await api.user_message(GROUP, OWNER, text="/cancel")
            await api.user_message(GROUP, OWNER, text="/status")
            await api.user_message(GROUP, OWNER, text="the fox jumps", reply_to=progress_id)
            query = await api.press(GROUP, OWNER, progress_id, control_id(job, Action.STOP))
            await api.react(GROUP, OWNER, progress_id, ["👍"])
            await answer(api, ADMIN, "/help", chat=ADMIN)  # handled after everything above
            await asyncio.sleep(0.2)
            assert api.toast(query) == refusal
            assert texts(api, OWNER) == [refusal]  # told once in a while, not per message
            assert len(api.sent("getFile")) == downloads  # nothing of theirs downloaded
            assert t.snapshot(b.config.data_dir, b.config.database_path) == before
            row = await b.store.find_active_session("telegram", str(GROUP), "", str(OWNER))
            assert row is not None and row.state is SessionState.GENERATING
            assert (await b.store.get_segment(job)).status is SegmentStatus.QUEUED

            await answer(api, ADMIN, f"/unban {OWNER}", chat=ADMIN)
            status = await answer(api, OWNER, "/status", where=GROUP)
            assert status.startswith("No segment approved yet. Segment 1 (take 1) is queued")
