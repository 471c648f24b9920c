"""A stranger is told that they are not allowed at most once per ``limits.refusal_notice_hours``,
across restarts: the notices are kept in the store (``refusal_notices``), not only in memory."""

from __future__ import annotations

from pathlib import Path

from bot.access import RefusalNotices
from bot.store import Store
from tests.bot.telegram_standin import BotApiStandIn
from tests.bot.test_telegram_flow import ALICE, bot_process, telegram_config

STRANGER = 4242
HOUR = 3600.0


async def test_a_stranger_told_before_a_restart_is_not_told_again_after_it(tmp_path: Path) -> None:
    async with BotApiStandIn() as api:
        config, path = telegram_config(tmp_path, api, telegram=f"allowed_user_ids = [{ALICE}]")

        told_in: list[int] = []

        async def refusals_after(text: str) -> int:
            await api.user_message(STRANGER, STRANGER, text=text)
            # A button press in the same chat is handled after the message, and always answered.
            query = await api.press(STRANGER, STRANGER, told_in[0], "noop")
            await api.wait_for("answerCallbackQuery", len(api.sent("answerCallbackQuery")) + 1)
            assert api.query_answered(query)
            return len([c for c in api.sent("sendMessage") if c.params["chat_id"] == STRANGER])

        async with bot_process(config, path) as bot:
            await api.user_message(STRANGER, STRANGER, text="/start")
            (told,) = await api.wait_for("sendMessage", 1)
            assert f"your user id {STRANGER}" in told.params["text"]
            told_in.append(told.result["message_id"])
            assert await refusals_after("hello?") == 1
            assert await bot.store.count_active_sessions("telegram", STRANGER) == 0
        async with bot_process(config, path):  # a new process on the same data
            assert await refusals_after("/start") == 1
            assert await refusals_after("hello again?") == 1


async def test_the_store_keeps_each_notice_for_one_interval(tmp_path: Path) -> None:
    now = [1_700_000_000.0]
    async with Store.open(tmp_path / "db.sqlite") as store:
        notices = RefusalNotices(6 * HOUR, ledger=store, clock=lambda: now[0])
        assert await notices.due("telegram", "7")
        assert not await notices.due("telegram", "7")
        assert await notices.due("discord", "7")  # each platform's users are their own
    now[0] += 5 * HOUR
    async with Store.open(tmp_path / "db.sqlite") as store:
        notices = RefusalNotices(6 * HOUR, ledger=store, clock=lambda: now[0])  # a restart
        assert not await notices.due("telegram", "7")
        now[0] += 1.5 * HOUR
        assert await notices.due("telegram", "7")  # the interval is over: told again
        assert not await notices.due("telegram", "7")
        # Notices past their interval are forgotten: a flood of strangers does not pile up.
        now[0] += 7 * HOUR
        assert await notices.due("telegram", "8")
        rows = await store._sql.all("SELECT platform, user_id FROM refusal_notices")
        assert [tuple(r) for r in rows] == [("telegram", "8")]
