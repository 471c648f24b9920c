"""The admin commands on the real service, store and dispatcher with preview worker processes
(a fake chat platform): pause and resume with waiting jobs, stopping another user's job, bans and
the pause kept across a restart, and every command refused for a non-admin."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

from bot.conversation.service import HELP
from bot.core_admin import ADMIN_COMMANDS, ADMIN_HELP, NOT_ADMIN
from bot.ports import ChatRef
from bot.store import SegmentStatus, SessionState
from tests.bot.fake_chat import FakeChat
from tests.bot.service_harness import Bot, picture_bytes, running_bot, write_config

ADMIN = "99"
#: The admin's private chat with the bot: where answers to commands typed elsewhere go.
ADMIN_CHAT = ChatRef("telegram", ADMIN)
A, B, C = ChatRef("telegram", "-100"), ChatRef("telegram", "-200"), ChatRef("telegram", "-300")
OWNERS = {A: "7", B: "8", C: "9"}
PAUSED = "⏸ The bot's admins paused the queue: Segment 1 · take 1 waits, and starts once the queue runs again."


def config(tmp_path: Path, step_delay: float) -> Path:
    return write_config(tmp_path, step_delay=step_delay, extra=f"[telegram]\nadmin_ids = [{ADMIN}]\n")


async def until(condition: Callable[[], object], timeout: float = 60.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not condition():
        assert loop.time() < deadline, "timed out"
        await asyncio.sleep(0.02)


async def admin(bot: Bot, name: str, argument: str = "") -> str:
    before = len(bot.chat.texts(ADMIN_CHAT))
    await bot.service.command(A, ADMIN, name, argument, is_admin=True)  # typed in a group
    texts = bot.chat.texts(ADMIN_CHAT)
    assert len(texts) == before + 1, texts
    return texts[-1]


async def start(bot: Bot, chat: ChatRef, prompt: str) -> None:
    await bot.service.start(chat, OWNERS[chat], picture_bytes(), prompt)


async def segment_of(bot: Bot, chat: ChatRef) -> int:
    row = await bot.store.find_active_session(chat.platform, chat.chat_id, chat.thread_id, OWNERS[chat])
    assert row is not None
    (segment,) = await bot.store.list_segments(row.id)
    return segment.id


async def test_pause_lets_running_jobs_finish_and_starts_nothing_until_resumed(tmp_path: Path) -> None:
    async with running_bot(config(tmp_path, step_delay=0.3)) as bot:
        chat, dispatcher = bot.chat, bot.dispatcher
        await start(bot, A, "a runs")
        await until(lambda: dispatcher.running)
        await start(bot, B, "b waits")

        answer = await admin(bot, "pause")
        assert answer.startswith("⏸ Queue paused: 1 job running will finish, nothing new starts. 1 job waiting")
        assert chat.texts(B)[-1] == PAUSED  # waiting when the pause began
        held = "⏸ Segment 1 · take 1 — queued, next in line; the queue is paused by the bot's admins."
        await until(lambda: any(e.text == held for e in chat.of("edit", B)))  # its progress message too
        await start(bot, C, "c arrives while paused")
        assert chat.texts(C)[-1] == PAUSED  # arrived during it
        assert PAUSED not in chat.texts(A)  # running: it finishes

        await chat.wait_for("segment", 1, A)
        await asyncio.sleep(1.5)  # a free worker, two waiting jobs: nothing starts
        assert not dispatcher.running and len(dispatcher.queue) == 2
        for ref in (B, C):
            assert (await bot.store.get_segment(await segment_of(bot, ref))).status is SegmentStatus.QUEUED
        queue = await admin(bot, "queue")
        assert queue.splitlines()[0] == "Queue (⏸ paused): 0 running, 2 waiting."
        assert f"1. job {await segment_of(bot, B)} · telegram:8 · session " in queue
        gpu = await admin(bot, "gpu")
        assert gpu.startswith("Workers (queue ⏸ paused):\n• device cpu: idle, preview\n  memory: ")
        assert await admin(bot, "pause") == "The queue is already paused. /resume lets it go."
        assert [chat.texts(ref).count(PAUSED) for ref in (B, C)] == [1, 1]  # told once

        answer = await admin(bot, "resume")
        assert answer == "▶ Queue running again. 2 jobs waiting; their owners are told."
        assert chat.texts(B)[-1] == "▶ The queue runs again: Segment 1 · take 1 starts now."
        assert chat.texts(C)[-1] == "▶ The queue runs again: Segment 1 · take 1 is next in line."
        await chat.wait_for("segment", 1, B)
        await chat.wait_for("segment", 1, C)
        assert not any("paused" in e.text for e in chat.of("edit", C)[-3:])
        assert await admin(bot, "resume") == "The queue isn't paused."


async def test_stop_cancels_another_users_job_and_tells_its_owner(tmp_path: Path) -> None:
    async with running_bot(config(tmp_path, step_delay=0.5)) as bot:
        chat, dispatcher = bot.chat, bot.dispatcher
        await start(bot, A, "a runs")
        await until(lambda: dispatcher.running)
        await start(bot, B, "b waits")
        running, waiting = await segment_of(bot, A), await segment_of(bot, B)

        # The owner may not stop it this way, nor see the queue: told so privately.
        await bot.service.command(B, OWNERS[B], "stop", str(running))
        assert chat.texts(ChatRef("telegram", OWNERS[B])) == [NOT_ADMIN]
        assert str(running) in dispatcher.running

        for job, ref, owner in ((waiting, B, "8"), (running, A, "7")):
            answer = await admin(bot, "stop", f"#{job}")
            assert answer == f"⏹ Stopping job {job} (segment 1 · take 1 of telegram:{owner}); its owner is told."
            assert chat.texts(ref)[-2:] == [
                f"⏹ The bot's admins stopped Segment 1 · take 1 (job {job}).",
                "Stopped segment 1. Send a new prompt for it.",
            ]
            row = await bot.store.find_active_session(ref.platform, ref.chat_id, ref.thread_id, owner)
            assert row is not None and row.state is SessionState.AWAITING_PROMPT
        await until(lambda: not dispatcher.running and not len(dispatcher.queue))
        for job in (running, waiting):
            assert (await bot.store.get_segment(job)).status is SegmentStatus.CANCELLED
        assert chat.of("segment") == []
        assert await admin(bot, "stop", str(running)) == (
            f"Job {running} is not running or waiting; /queue lists those that are."
        )
        assert (await admin(bot, "stop", "everything")).startswith("Which job? Send /stop <job>")
        # The owner goes on as after their own stop.
        await bot.service.text(A, "7", "again")
        await chat.wait_for("segment", 1, A)


async def test_every_admin_command_is_refused_privately_for_a_non_admin(tmp_path: Path) -> None:
    async with running_bot(config(tmp_path, step_delay=0.2)) as bot:
        await start(bot, A, "a runs")
        await until(lambda: bot.dispatcher.running)
        in_the_group = len(bot.chat.texts(A))
        for name in ADMIN_COMMANDS:
            await bot.service.command(A, "7", name, "8")
        assert bot.chat.texts(ChatRef("telegram", "7")) == [NOT_ADMIN] * len(ADMIN_COMMANDS)
        assert len(bot.chat.texts(A)) == in_the_group  # nothing in the group, nothing revealed
        assert not bot.dispatcher.paused and not await bot.service.banned("telegram", "8")
        # /help lists the admin commands to admins only.
        await bot.service.command(A, "7", "help")
        assert bot.chat.texts(A)[-1] == HELP
        await bot.service.command(ADMIN_CHAT, ADMIN, "help", is_admin=True)
        assert bot.chat.texts(ADMIN_CHAT)[-1] == HELP + "\n\n" + ADMIN_HELP


async def test_a_ban_and_the_pause_outlast_a_restart(tmp_path: Path) -> None:
    path = config(tmp_path, step_delay=0.2)
    async with running_bot(path) as bot:
        assert (await admin(bot, "ban", "8")).startswith("🚫 Banned telegram:8: everything they send is refused")
        assert await admin(bot, "ban", "8") == "telegram:8 was already banned."
        assert await admin(bot, "ban", "discord:5") != ""
        assert (await admin(bot, "ban", ADMIN)).endswith("admins cannot be banned.")
        assert await bot.service.banned("telegram", "8") and await bot.service.banned("discord", "5")
        assert not await bot.service.banned("telegram", ADMIN) and not await bot.service.banned("discord", "8")
        await admin(bot, "pause")
        await start(bot, A, "queued while paused")
        assert bot.chat.texts(A)[-1] == PAUSED
        job = await segment_of(bot, A)

    chat = FakeChat()
    async with running_bot(path, chat=chat) as bot:
        assert bot.dispatcher.paused
        assert await bot.service.banned("telegram", "8")
        await asyncio.sleep(1.0)
        assert str(job) in bot.dispatcher.queue and not bot.dispatcher.running
        assert PAUSED not in chat.texts(A)  # told before the restart
        assert await admin(bot, "unban", "8") == "✅ telegram:8 is no longer banned."
        assert await admin(bot, "unban", "8") == "telegram:8 was not banned."
        assert not await bot.service.banned("telegram", "8")
        await admin(bot, "resume")
        await chat.wait_for("segment", 1, A)

    async with running_bot(path) as bot:
        assert not bot.dispatcher.paused and not await bot.service.banned("telegram", "8")
        assert await bot.service.banned("discord", "5")
