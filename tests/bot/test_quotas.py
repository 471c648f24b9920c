"""Quotas through the real service, store and dispatcher with preview workers, and a fake chat:
each limit refuses with its limit named and when it frees up, nothing is queued beyond it, admins
are exempt, GPU time is charged from the worker's timing and resets with the (injected) clock."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from bot.core import duration_text
from bot.ports import Action, ChatRef
from bot.store import SessionState, Store
from tests.bot.service_harness import Bot, picture_bytes, running_bot, write_config

CHAT = ChatRef("telegram", "100", "")
ELSEWHERE = ChatRef("telegram", "101", "")
OWNER = "7"
ADMIN = "9"
#: 2025-01-01 20:48 UTC: the quota day resets in 3 h 12 min.
EVENING = 1_735_689_600.0 + 20 * 3600 + 48 * 60


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def config(tmp_path: Path, limits: str, *, step_delay: float = 0.0) -> Path:
    # Users are named explicitly: the admin, and (once access is closed by default) who may use the bot.
    extra = f"[limits]\n{limits}\n[telegram]\nadmin_ids = [{ADMIN}]\n"
    return write_config(tmp_path, step_delay=step_delay, extra=extra)


async def state(bot: Bot, chat: ChatRef, owner: str = OWNER) -> SessionState | None:
    row = await bot.store.find_active_session(chat.platform, chat.chat_id, chat.thread_id, owner)
    return None if row is None else row.state


async def pending(store: Store) -> int:
    return await store.count_all_pending_jobs()


async def test_active_sessions_per_user(tmp_path: Path) -> None:
    async with running_bot(config(tmp_path, "active_sessions_per_user = 1")) as bot:
        svc, chat = bot.service, bot.chat
        await svc.start(CHAT, OWNER, picture_bytes(), None)
        await svc.start(ELSEWHERE, OWNER, picture_bytes(), "a second session")
        assert chat.texts(ELSEWHERE) == [
            "You already have 1 active session — the limit is 1 per person. "
            "/finish or /cancel one of them (in its chat) to start another."
        ]
        assert await state(bot, ELSEWHERE) is None and await pending(bot.store) == 0
        assert len(list((bot.config.data_dir / "sessions").iterdir())) == 1  # nothing written for the refused one
        # /start again where the session is: the core's answer, not the quota's.
        await svc.start(CHAT, OWNER, None, None)
        assert "already running here" in chat.texts(CHAT)[-1]
        # Ending one frees a place.
        await svc.command(CHAT, OWNER, "cancel")
        await svc.start(ELSEWHERE, OWNER, picture_bytes(), None)
        assert await state(bot, ELSEWHERE) is SessionState.AWAITING_PROMPT
        # Admins are exempt, configured or flagged by the adapter.
        for place in ("200", "201"):
            await svc.start(ChatRef("telegram", place, ""), ADMIN, picture_bytes(), None)
            await svc.start(ChatRef("telegram", place, ""), "8", picture_bytes(), None, is_admin=True)
        assert await bot.store.count_active_sessions("telegram", ADMIN) == 2
        assert await bot.store.count_active_sessions("telegram", "8") == 2


async def test_the_global_queue_cap_holds_under_a_rush(tmp_path: Path) -> None:
    async with running_bot(config(tmp_path, "queued_jobs_total = 2", step_delay=2.0)) as bot:
        svc, chat = bot.service, bot.chat
        users = [str(100 + i) for i in range(10)]
        chats = [ChatRef("telegram", str(500 + i), "") for i in range(10)]
        await asyncio.gather(*(svc.start(c, u, picture_bytes(), "a rush") for c, u in zip(chats, users, strict=True)))
        assert await pending(bot.store) == 2
        refused = [c for c in chats if any(t.startswith("The queue is full") for t in chat.texts(c))]
        assert len(refused) == 8
        text = next(t for t in chat.texts(refused[0]) if t.startswith("The queue is full"))
        assert text == (
            "The queue is full: 2 segments queued or being made, and the limit is 2 for everyone. "
            "Send this again in a few minutes, once some are done."
        )
        for c, u in zip(chats, users, strict=True):
            # Every user is answered; a refused one keeps the picture and is asked for the prompt.
            expected = SessionState.AWAITING_PROMPT if c in refused else SessionState.GENERATING
            assert await state(bot, c, u) is expected
            assert chat.texts(c)
        # Admins are exempt from the cap too.
        await svc.start(CHAT, ADMIN, picture_bytes(), "the owner's own GPU")
        assert await state(bot, CHAT, ADMIN) is SessionState.GENERATING and await pending(bot.store) == 3


async def test_the_per_user_queue_limit_refuses_a_regenerate_privately(tmp_path: Path) -> None:
    async with running_bot(config(tmp_path, "queued_jobs_per_user = 1")) as bot:
        svc, chat = bot.service, bot.chat
        await svc.start(CHAT, OWNER, picture_bytes(), "first")
        [take] = await chat.wait_for("segment", 1, CHAT)
        seg = take.post.segment_id
        await svc.start(ELSEWHERE, OWNER, picture_bytes(), None)
        # Something else of the owner's keeps the queue busy while they press Regenerate here.
        await bot.store.add_segment(
            (await bot.store.find_active_session("telegram", "101", "", OWNER)).id,  # type: ignore[union-attr]
            idx=0,
            prompt="held",
            params={"width": 64, "height": 64, "frames": 33, "steps": 4},
        )
        private: list[str] = []

        async def reply(text: str) -> None:
            private.append(text)

        await svc.control(CHAT, OWNER, seg, Action.REGENERATE, reply=reply)
        assert private == [
            "You already have 1 segment waiting — the limit is 1 per person; send this again once one is done."
        ]
        assert await state(bot, CHAT) is SessionState.REVIEWING  # the take is still under review
        assert len(await bot.store.list_segments((await bot.store.get_segment(seg)).session_id)) == 1


async def test_gpu_time_is_charged_from_the_workers_timing_and_resets_daily(tmp_path: Path) -> None:
    clock = Clock(EVENING)
    path = config(tmp_path, "gpu_seconds_per_user_per_day = 60")
    async with running_bot(path, wall_clock=clock) as bot:
        svc, chat = bot.service, bot.chat
        await svc.start(CHAT, OWNER, picture_bytes(), "first")
        [take] = await chat.wait_for("segment", 1, CHAT)
        seg = await bot.store.get_segment(take.post.segment_id)
        charged = await bot.store.gpu_seconds_since("telegram", OWNER, 0)
        assert charged == pytest.approx(seg.params["seconds_taken"]) and charged > 0
        # The rest of today's minute goes on something else (a day of long jobs).
        await bot.store.record_gpu_seconds(10_000, "telegram", OWNER, 60, at=clock.now)
        await svc.control(CHAT, OWNER, seg.id, Action.APPROVE)
        await svc.text(CHAT, OWNER, "second")
        assert chat.texts(CHAT)[-1] == (
            f"You've used your GPU time for today ({duration_text(60 + charged)} of 1 min). "
            "It resets at 00:00 UTC, in 3 h 12 min; send this again then."
        )
        assert await state(bot, CHAT) is SessionState.AWAITING_PROMPT and await pending(bot.store) == 0
        await svc.command(CHAT, OWNER, "status")
        status = chat.texts(CHAT)[-1]
        assert status.startswith("1 segment approved")
        assert "of 1 min used, 0 s left (resets at 00:00 UTC, in 3 h 12 min); 0 of 4 segments waiting" in status
        # A new day: the prompt is taken.
        clock.now += 3 * 3600 + 12 * 60
        await svc.text(CHAT, OWNER, "second")
        assert await state(bot, CHAT) is SessionState.GENERATING
        await chat.wait_for("segment", 2, CHAT)
        # The day's usage survives a restart: it is in the database.
    async with running_bot(path, wall_clock=clock) as bot:
        assert await bot.store.gpu_seconds_since("telegram", OWNER, clock.now - 60) > 0


async def test_admins_are_exempt_from_gpu_time_and_status_says_so(tmp_path: Path) -> None:
    clock = Clock(EVENING)
    async with running_bot(config(tmp_path, "gpu_seconds_per_user_per_day = 60"), wall_clock=clock) as bot:
        svc, chat = bot.service, bot.chat
        await bot.store.record_gpu_seconds(10_000, "telegram", ADMIN, 10**6, at=clock.now)
        await svc.start(CHAT, ADMIN, picture_bytes(), "as much as I like")
        assert await state(bot, CHAT, ADMIN) is SessionState.GENERATING
        await svc.command(CHAT, ADMIN, "status")
        assert chat.texts(CHAT)[-1].endswith("\nQuotas: none apply to you (admin).")
        # /status where there is no session still shows the asking user's quota.
        await svc.command(ELSEWHERE, OWNER, "status")
        assert chat.texts(ELSEWHERE) == [
            "There's no session here. Send /start with a picture to begin.\n"
            "Your quota: GPU time today 0 s of 1 min used, 1 min left (resets at 00:00 UTC, in 3 h 12 min); "
            "0 of 4 segments waiting; 0 of 3 active sessions."
        ]


async def test_gpu_time_is_recorded_once_per_job(tmp_path: Path) -> None:
    async with Store.open(tmp_path / "fc.db") as store:
        await store.record_gpu_seconds(1, "telegram", OWNER, 12.5, at=100.0)
        await store.record_gpu_seconds(1, "telegram", OWNER, 12.5, at=100.0)  # the same result again
        await store.record_gpu_seconds(2, "telegram", OWNER, 7.5, at=200.0)
        await store.record_gpu_seconds(3, "discord", OWNER, 99.0, at=200.0)
        assert await store.gpu_seconds_since("telegram", OWNER, 0) == 20.0
        assert await store.gpu_seconds_since("telegram", OWNER, 150.0) == 7.5
        assert await store.gpu_seconds_since("telegram", "someone else", 0) == 0.0
