"""Takes on Telegram: the review message pages through a segment's takes (◀ take k of n ▶ edits it
with editMessageMedia), and ``/settings takes=N`` brings N takes back as one review. The real
Application against the Bot API stand-in, the real service, store and preview workers."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path

from bot.ports import Action, control_id, parse_control
from bot.store import SegmentStatus
from tests.bot.service_harness import picture_bytes
from tests.bot.telegram_standin import BotApiStandIn
from tests.bot.test_telegram_flow import (
    ALICE,
    GROUP,
    bot_process,
    controls,
    keyboard_data,
    keyboard_labels,
    telegram_config,
    until,
)
from tests.bot.test_telegram_flow_review import mid, next_take, press, seen, text_count, toast


async def until_async(condition: Callable[[], Awaitable[bool]], what: str, timeout: float = 60) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not await condition():
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


def shown(api: BotApiStandIn, message_id: int) -> tuple[str, list[str], list[tuple[int, Action]]]:
    """A message as members see it now: its caption, its buttons' labels, its controls."""
    m = api.message(GROUP, message_id)
    return m.get("caption", ""), keyboard_labels(m.get("reply_markup")), controls(m.get("reply_markup"))


async def test_paging_through_three_takes_and_approving_the_one_shown(tmp_path: Path) -> None:
    async with BotApiStandIn() as api:
        config, config_path = telegram_config(tmp_path, api)
        async with bot_process(config, config_path) as bot:
            await api.user_message(GROUP, ALICE, photo=picture_bytes(), caption="/start the sun rises")
            take1 = await next_take(api, 1)
            await press(api, ALICE, take1, Action.REGENERATE)
            take2 = await next_take(api, 2)
            await press(api, ALICE, take2, Action.REGENERATE)
            take3 = await next_take(api, 3)
            ids = [controls(t.params["reply_markup"])[0][0] for t in (take1, take2, take3)]
            # The newest review message pages through all three; the earlier ones keep an Approve.
            caption, labels, live = shown(api, mid(take3))
            assert labels[-3:] == ["◀", "take 3 of 3", "▶"] and "take 3" in caption
            assert (ids[1], Action.SHOW) in live and (ids[0], Action.SHOW) in live
            assert shown(api, mid(take1))[2] == [(ids[0], Action.APPROVE)]

            # ◀ shows take 2 in that message: its video, caption and controls that name it.
            before = api.message(GROUP, mid(take3))["video"]["file_id"]
            page = await api.press(GROUP, ALICE, mid(take3), control_id(ids[1], Action.SHOW))
            await until(lambda: "take 2 ·" in shown(api, mid(take3))[0], "take 2 shown")
            assert await toast(api, page) == ""
            [edit] = [c for c in api.sent("editMessageMedia") if c.params["message_id"] == mid(take3)]
            assert edit.params["media"]["type"] == "video"
            caption, labels, live = shown(api, mid(take3))
            assert labels[-3:] == ["◀", "take 2 of 3", "▶"] and live[0] == (ids[1], Action.APPROVE)
            assert api.message(GROUP, mid(take3))["video"]["file_id"] != before
            assert seen(api) == ["video", "photo"] * 3  # nothing new was posted

            # An old press stays valid: take 1's own Approve, after take 3 exists, approves take 1.
            approve = await press(api, ALICE, take1, Action.APPROVE)
            assert await toast(api, approve) == "✅ Approved segment 1, take 1."
            await text_count(api, "Segment 1 approved")
            statuses = [
                s.status for s in await bot.store.list_segments((await bot.store.get_segment(ids[0])).session_id)
            ]
            assert statuses == [SegmentStatus.APPROVED, SegmentStatus.REJECTED, SegmentStatus.REJECTED]
            await until(lambda: shown(api, mid(take3))[1] == ["🗑 Discarded"], "the paged message closed")
            assert shown(api, mid(take1))[1] == ["✅ Approved", "🏁 Finish"]
            # Its page buttons are stale now.
            late = await api.press(GROUP, ALICE, mid(take3), control_id(ids[2], Action.SHOW))
            assert await toast(api, late) == "That take is no longer up for review."


async def test_settings_takes_brings_n_takes_back_as_one_review(tmp_path: Path) -> None:
    async with BotApiStandIn() as api:
        config, config_path = telegram_config(tmp_path, api)
        async with bot_process(config, config_path) as bot:
            await api.user_message(GROUP, ALICE, photo=picture_bytes(), caption="/start")
            await text_count(api, "Got the picture")
            await api.user_message(GROUP, ALICE, text="/settings takes=2")
            await text_count(api, "Settings updated")
            await api.user_message(GROUP, ALICE, text="the sun rises")
            await until(lambda: len(api.sent("sendVideo")) >= 1, "the first take")
            review = api.sent("sendVideo")[0]
            first = controls(review.params["reply_markup"])[0][0]
            session_id = (await bot.store.get_segment(first)).session_id

            async def both_up() -> bool:
                rows = await bot.store.list_segments(session_id)
                return len(rows) == 2 and all("video" in r.posted for r in rows)

            await until_async(both_up, "both takes recorded")
            # The second take joined the same message: the pager counts it, nothing new is posted.
            await until(lambda: any("of 2" in label for label in shown(api, mid(review))[1]), "the pager")
            assert len(api.sent("sendVideo")) == 1
            live = shown(api, mid(review))[2]
            other = next(seg for seg, action in live if action is Action.SHOW)
            assert other != first
            # Seeds differ and each page reports its own.
            await api.press(GROUP, ALICE, mid(review), control_id(other, Action.SHOW))
            await until(lambda: shown(api, mid(review))[2][0][0] == other, "the other take shown")
            seeds = {(await bot.store.get_segment(seg)).seed for seg in (first, other)}
            assert len(seeds) == 2
            for seg in (first, other):
                row = await bot.store.get_segment(seg)
                assert row.caption is not None and f"seed {row.seed}" in row.caption
            assert f"seed {(await bot.store.get_segment(other)).seed}" in shown(api, mid(review))[0]
            # Approve the one shown: the message says so and shows it.
            await api.press(GROUP, ALICE, mid(review), control_id(other, Action.APPROVE))
            await text_count(api, "Segment 1 approved")
            await until(lambda: shown(api, mid(review))[1] == ["✅ Approved", "🏁 Finish"], "approved")
            assert (await bot.store.get_segment(first)).status is SegmentStatus.REJECTED
            assert parse_control(
                api.message(GROUP, mid(review))["reply_markup"]["inline_keyboard"][1][0]["callback_data"]
            ) == (other, Action.FINISH)


async def test_the_settings_keyboard_sets_the_takes(tmp_path: Path) -> None:
    async with BotApiStandIn() as api:
        config, config_path = telegram_config(tmp_path, api)
        async with bot_process(config, config_path) as bot:
            await api.user_message(GROUP, ALICE, photo=picture_bytes(), caption="/start")
            await text_count(api, "Got the picture")
            await api.user_message(GROUP, ALICE, text="/settings")
            (keyboard,) = await api.wait_for("sendMessage", where=lambda c: "reply_markup" in c.params)
            assert "• 1 take" in keyboard_labels(keyboard.params["reply_markup"])
            keyboard_id = keyboard.result["message_id"]
            await api.press(GROUP, ALICE, keyboard_id, keyboard_data(keyboard.params["reply_markup"], ":takes=2"))
            await until(lambda: "• 2 takes" in keyboard_labels(api.message(GROUP, keyboard_id)["reply_markup"]), "2")
            row = await bot.store.find_active_session("telegram", str(GROUP), "", str(ALICE))
            assert row is not None and row.settings["takes"] == 2
