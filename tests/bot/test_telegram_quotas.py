"""Quotas on Telegram: the real python-telegram-bot Application against the Bot API stand-in, in
front of the real service: a user over their quotas is answered in the chat, and /status shows
what is left."""

from __future__ import annotations

import time
from pathlib import Path

from tests.bot.service_harness import picture_bytes
from tests.bot.telegram_standin import BotApiStandIn
from tests.bot.test_telegram_flow import ALICE, GROUP, bot_process, telegram_config


async def test_quotas_are_answered_on_telegram(tmp_path: Path) -> None:
    async with BotApiStandIn() as api:
        config, config_path = telegram_config(
            tmp_path,
            api,
            telegram=f"allowed_user_ids = [{ALICE}]",
            extra="[limits]\nactive_sessions_per_user = 1\ngpu_seconds_per_user_per_day = 60\n",
        )
        async with bot_process(config, config_path) as bot:

            async def answer(chat_id: int, text: str | None = None, **message: object) -> str:
                before = len(api.sent("sendMessage"))
                await api.user_message(chat_id, ALICE, text=text, **message)  # type: ignore[arg-type]
                (*_, reply) = await api.wait_for("sendMessage", before + 1)
                return str(reply.params["text"])

            assert (await answer(GROUP, photo=picture_bytes(), caption="/start")).startswith("Got the picture")
            await bot.store.record_gpu_seconds(10_000, "telegram", ALICE, 60, at=time.time())

            used_up = await answer(GROUP, "the sun rises")
            assert used_up.startswith("You've used your GPU time for today (1 min of 1 min). It resets at 00:00 UTC")
            assert await bot.store.count_all_pending_jobs() == 0

            second = await answer(ALICE, photo=picture_bytes(), caption="/start")  # her private chat
            assert second.startswith("You already have 1 active session — the limit is 1 per person.")
            assert await bot.store.count_active_sessions("telegram", ALICE) == 1

            status = await answer(GROUP, "/status")
            assert "\nYour quota: GPU time today 1 min of 1 min used, 0 s left (resets at 00:00 UTC" in status
            assert status.endswith("0 of 4 segments waiting; 1 of 1 active session.")
