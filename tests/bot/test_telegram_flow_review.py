"""Issue 10 on Telegram as a user meets it: the real Application against the Bot API stand-in, in
front of the real service, store and dispatcher with preview workers. What every member sees of
the bot (its messages as they stand, their keyboards) and what a presser alone is told (the
callback toast), press by press."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from bot.ports import Action, control_id, parse_control
from bot.store import SegmentStatus, SessionState
from tests.bot.service_harness import picture_bytes
from tests.bot.telegram_standin import BotApiStandIn, Call
from tests.bot.test_telegram_flow import (
    ALICE,
    BOB,
    GROUP,
    bot_process,
    keyboard_data,
    keyboard_labels,
    segment_of,
    takes,
    telegram_config,
    until,
)
from worker.video import probe

ONLY_OWNER = "Only the person who started this session can do that."
STALE = "That take is no longer up for review."
FRAME = "Last frame of segment"


def kind(message: dict[str, Any]) -> str:
    return next(k for k in ("video", "photo", "text") if k in message)


def seen(api: BotApiStandIn) -> list[str]:
    """The bot's messages a member of the chat sees now, by kind (video, photo, text)."""
    return [kind(m) for m in api.bot_messages(GROUP)]


def seen_texts(api: BotApiStandIn) -> list[str]:
    return [m["text"] for m in api.bot_messages(GROUP) if "text" in m]


def mid(take: Call) -> int:
    return int(take.result["message_id"])


def labels(api: BotApiStandIn, take: Call) -> list[str]:
    """The buttons under a take now."""
    return keyboard_labels(api.message(GROUP, mid(take)).get("reply_markup"))


def live_controls(api: BotApiStandIn, take: Call) -> list[tuple[int, Action]]:
    markup = api.message(GROUP, mid(take)).get("reply_markup") or {}
    found = [parse_control(b.get("callback_data", "")) for row in markup.get("inline_keyboard", []) for b in row]
    return [c for c in found if c is not None]


async def next_take(api: BotApiStandIn, n: int) -> Call:
    """The n-th take once it is whole: its video, its hand-off frame, its progress message gone."""
    await until(lambda: len(takes(api)) >= n, f"take {n}")
    await until(lambda: sum(p.params["caption"].startswith(FRAME) for p in api.sent("sendPhoto")) >= n, f"frame {n}")
    gone = f"take {n}'s progress message to go"
    await until(lambda: not any(progress_shown(m) for m in api.bot_messages(GROUP)), gone)
    return takes(api)[n - 1]


def progress_shown(message: dict[str, Any]) -> bool:
    """A progress message: text, or the caption of the live preview that took its place."""
    return str(message.get("text", message.get("caption", ""))).startswith(("⏳", "✅ Segment"))


async def press(api: BotApiStandIn, user: int, take: Call, action: Action) -> str:
    return await api.press(GROUP, user, mid(take), control_id(segment_of(take), action))


async def toast(api: BotApiStandIn, query: str) -> str:
    """What the presser was shown, once the press is answered."""
    await until(lambda: api.toast(query) is not None, f"the answer to press {query}")
    text = api.toast(query)
    assert text is not None
    return text


async def text_count(api: BotApiStandIn, start: str, n: int = 1) -> None:
    await until(lambda: sum(t.startswith(start) for t in seen_texts(api)) >= n, repr(start))


async def test_a_session_shows_one_message_per_take_plus_its_frame_and_nothing_else(tmp_path: Path) -> None:
    async with BotApiStandIn() as api:
        config, config_path = telegram_config(tmp_path, api)
        async with bot_process(config, config_path) as bot:
            await api.user_message(GROUP, ALICE, photo=picture_bytes(), caption="/start the sun rises")
            take1 = await next_take(api, 1)
            assert seen(api) == ["video", "photo"]

            # Regenerate: the first take stays, kept with its Approve, and the second comes with its frame.
            regenerate = await press(api, ALICE, take1, Action.REGENERATE)
            take2 = await next_take(api, 2)
            assert await toast(api, regenerate) == "🔁 Regenerating segment 1…"
            assert seen(api) == ["video", "photo"] * 2
            assert labels(api, take1) == ["🎞 Earlier take — still yours to approve", "✅ Approve"]
            assert live_controls(api, take1) == [(segment_of(take1), Action.APPROVE)]

            # Approve: one public line, the approved take keeps a 🏁 Finish, the kept one goes.
            approve = await press(api, ALICE, take2, Action.APPROVE)
            assert await toast(api, approve) == "✅ Approved segment 1, take 2."
            await text_count(api, "Segment 1 approved")
            assert labels(api, take1) == ["🗑 Discarded"] and live_controls(api, take1) == []
            assert labels(api, take2) == ["✅ Approved", "🏁 Finish"]
            assert live_controls(api, take2) == [(segment_of(take2), Action.FINISH)]

            # The second prompt: segment 2, while segment 1's Finish stays the one to press.
            await api.user_message(GROUP, ALICE, text="a bird flies past")
            take3 = await next_take(api, 3)
            assert live_controls(api, take2) == [(segment_of(take2), Action.FINISH)]

            # Approving segment 2 moves the Finish onto it.
            approve2 = await press(api, ALICE, take3, Action.APPROVE)
            assert await toast(api, approve2) == "✅ Approved segment 2."
            await text_count(api, "Segment 2 approved")
            assert labels(api, take2) == ["✅ Approved"] and live_controls(api, take2) == []
            assert live_controls(api, take3) == [(segment_of(take3), Action.FINISH)]

            # 🏁 Finish joins; the Finish goes once the join has started.
            finish = await press(api, ALICE, take3, Action.FINISH)
            assert await toast(api, finish) == "🏁 Joining the video…"
            await until(lambda: len(api.sent("sendVideo")) == 4, "the final video")
            await until(
                lambda: any(p.params["caption"].startswith("The storyboard") for p in api.sent("sendPhoto")),
                "the storyboard after it",
            )
            await asyncio.sleep(0.5)  # anything late would show now
            assert labels(api, take3) == ["✅ Approved"] and live_controls(api, take3) == []
            row = await bot.store.find_active_session("telegram", str(GROUP), "", str(ALICE))
            assert row is None  # finished

            # The whole session, as the chat shows it: two messages per take, three short lines, the
            # video and its storyboard.
            assert seen(api) == [
                *("video", "photo", "video", "photo", "text", "video", "photo", "text", "text", "video", "photo")
            ]
            lines = seen_texts(api)
            assert [line.split(" — ")[0].split(" (")[0] for line in lines] == [
                "Segment 1 approved",
                "Segment 2 approved",
                "Joining 2 segments",
            ]
            assert api.bot_messages(GROUP)[-2]["caption"].startswith("Here's your video: 2 segments")
            assert api.bot_messages(GROUP)[-1]["caption"].startswith("The storyboard of your video")

            # Each take had one progress message: text, until its first live preview came as a
            # photo in its place (a text message cannot take a picture), deleted once its video
            # and frame were up.
            progress = [c for c in api.sent("sendMessage") if c.params["text"].startswith("⏳")]
            previews = [c for c in api.sent("sendPhoto") if c.params["caption"].startswith("⏳")]
            deletes = api.sent("deleteMessage")
            assert len(progress) == len(previews) == 3 and len(api.sent("sendMessage")) == 3 + 3
            shown = sorted([*progress, *previews], key=lambda c: c.at)
            assert [d.params["message_id"] for d in deletes] == [p.result["message_id"] for p in shown]
            frames = [p for p in api.sent("sendPhoto") if p.params["caption"].startswith(FRAME)]
            retired = [d for d in deletes if d.params["message_id"] in {p.result["message_id"] for p in previews}]
            assert all(d.at >= f.at for d, f in zip(retired, frames, strict=True))

            # Every press was answered once, with its note as the toast.
            for query in (regenerate, approve, approve2, finish):
                assert len(api.answers(query)) == 1


async def double_press(api: BotApiStandIn, take: Call, action: Action) -> tuple[str, str]:
    """Two quick taps on one button: both presses arrive before the bot answers the first."""
    first = await press(api, ALICE, take, action)
    second = await press(api, ALICE, take, action)
    return await toast(api, first), await toast(api, second)


async def test_each_review_button_tapped_twice_acts_once(tmp_path: Path) -> None:
    async with BotApiStandIn() as api:
        config, config_path = telegram_config(tmp_path, api)
        async with bot_process(config, config_path) as bot:
            await api.user_message(GROUP, ALICE, photo=picture_bytes(), caption="/start the sun rises")
            take1 = await next_take(api, 1)
            row = await bot.store.find_active_session("telegram", str(GROUP), "", str(ALICE))
            assert row is not None

            # Regenerate twice: one new take.
            assert await double_press(api, take1, Action.REGENERATE) == ("🔁 Regenerating segment 1…", STALE)
            take2 = await next_take(api, 2)

            # Approve twice: approved once, one public line.
            toasts = await double_press(api, take2, Action.APPROVE)
            assert toasts == ("✅ Approved segment 1, take 2.", "Segment 1 is already approved.")
            await text_count(api, "Segment 1 approved")

            # Undo twice on segment 2's take: the take goes, approved segment 1 stays.
            await api.user_message(GROUP, ALICE, text="a bird flies past")
            take3 = await next_take(api, 3)
            assert await double_press(api, take3, Action.UNDO) == ("↩ Take discarded.", STALE)
            await text_count(api, "Discarded this take of segment 2")
            assert (await bot.store.get_segment(segment_of(take2))).status is SegmentStatus.APPROVED

            # Approve & finish twice on a new take: one join, one final video.
            await api.user_message(GROUP, ALICE, text="a bird lands")
            take4 = await next_take(api, 4)
            first, second = await double_press(api, take4, Action.APPROVE_FINISH)
            assert first == "✅ Approved segment 2 — joining the video…"
            assert second in ("Segment 2 is already approved.", "This session is already finished.")
            await until(lambda: len(api.sent("sendVideo")) == 5, "the final video")
            await asyncio.sleep(0.5)
            assert len(api.sent("sendVideo")) == 5

            statuses = [s.status for s in await bot.store.list_segments(row.id)]
            assert statuses == [SegmentStatus.REJECTED, SegmentStatus.APPROVED] * 2
            assert (await bot.store.get_session(row.id)).state is SessionState.FINISHED
            lines = seen_texts(api)
            for start in ("Segment 1 approved", "Discarded this take", "Segment 2 approved. Joining 2 segments"):
                assert sum(line.startswith(start) for line in lines) == 1, (start, lines)
            assert len(lines) == 3 and seen(api).count("video") == 5


async def test_finish_tapped_twice_joins_once_and_the_second_tap_is_answered_privately(tmp_path: Path) -> None:
    async with BotApiStandIn() as api:
        config, config_path = telegram_config(tmp_path, api)
        async with bot_process(config, config_path):
            await api.user_message(GROUP, ALICE, photo=picture_bytes(), caption="/start the sun rises")
            take = await next_take(api, 1)
            assert await toast(api, await press(api, ALICE, take, Action.APPROVE)) == "✅ Approved segment 1."
            await text_count(api, "Segment 1 approved")

            first, second = await double_press(api, take, Action.FINISH)
            await until(lambda: len(api.sent("sendVideo")) == 2, "the final video")
            await asyncio.sleep(0.5)
            assert first == "🏁 Joining the video…"
            assert len(api.sent("sendVideo")) == 2
            assert [line for line in seen_texts(api) if not line.startswith("Segment 1 approved")] == [
                "Joining 1 segment (2.1 s)…"
            ]
            assert second  # a private note, not an empty answer and a chat message


async def test_a_strangers_presses_are_refused_privately_and_change_nothing(tmp_path: Path) -> None:
    async with BotApiStandIn() as api:
        config, config_path = telegram_config(tmp_path, api)
        async with bot_process(config, config_path) as bot:
            await api.user_message(GROUP, ALICE, photo=picture_bytes(), caption="/start the sun rises")
            take = await next_take(api, 1)
            before = [dict(m) for m in api.bot_messages(GROUP)]

            for action in (Action.APPROVE, Action.REGENERATE, Action.UNDO, Action.APPROVE_FINISH, Action.FINISH):
                query = await press(api, BOB, take, action)
                assert await toast(api, query) == ONLY_OWNER, action
                assert len(api.answers(query)) == 1
            assert api.bot_messages(GROUP) == before
            assert (await bot.store.get_segment(segment_of(take))).status is SegmentStatus.DONE
            assert len(takes(api)) == 1

            # Once approved, Bob's press on the Finish kept there is refused the same way.
            await toast(api, await press(api, ALICE, take, Action.APPROVE))
            await text_count(api, "Segment 1 approved")
            before = [dict(m) for m in api.bot_messages(GROUP)]
            assert await toast(api, await press(api, BOB, take, Action.FINISH)) == ONLY_OWNER
            await asyncio.sleep(0.3)
            assert api.bot_messages(GROUP) == before
            row = await bot.store.find_active_session("telegram", str(GROUP), "", str(ALICE))
            assert row is not None and row.state is SessionState.AWAITING_PROMPT


async def test_old_undo_and_finish_buttons_left_by_a_failed_edit_change_nothing(tmp_path: Path) -> None:
    async with BotApiStandIn() as api:
        config, config_path = telegram_config(tmp_path, api)
        async with bot_process(config, config_path) as bot:
            await api.user_message(GROUP, ALICE, photo=picture_bytes(), caption="/start the sun rises")
            take1 = await next_take(api, 1)
            row = await bot.store.find_active_session("telegram", str(GROUP), "", str(ALICE))
            assert row is not None

            # The approval's keyboard edit fails: take 1 keeps all its review buttons.
            api.fail("editMessageReplyMarkup", status=400, description="Bad Request: message can't be edited")
            await toast(api, await press(api, ALICE, take1, Action.APPROVE))
            await text_count(api, "Segment 1 approved")
            assert len(live_controls(api, take1)) == 4
            await api.user_message(GROUP, ALICE, text="a bird flies past")
            take2 = await next_take(api, 2)

            # Segment 2 is up for review: take 1's Undo and Approve & finish act on nothing now,
            # and its Finish asks about the take under review.
            for action in (Action.UNDO, Action.APPROVE_FINISH, Action.APPROVE, Action.REGENERATE):
                assert await toast(api, await press(api, ALICE, take1, action)) == "Segment 1 is already approved."
            assert await toast(api, await press(api, ALICE, take1, Action.FINISH)) == (
                "Segment 2 take 1 is still under review: 🏁 Approve & finish includes it, ↩ Undo drops it."
            )
            statuses = [s.status for s in await bot.store.list_segments(row.id)]
            assert statuses == [SegmentStatus.APPROVED, SegmentStatus.DONE]

            # Segment 2 approved: the Finish is on it; segment 1's old one joins nothing.
            await toast(api, await press(api, ALICE, take2, Action.APPROVE))
            await text_count(api, "Segment 2 approved")
            assert live_controls(api, take1) == []  # the later edit cleared the old buttons
            assert await toast(api, await press(api, ALICE, take1, Action.FINISH)) == (
                "That button is out of date — use 🏁 Finish on segment 2, or /finish."
            )
            assert await toast(api, await press(api, ALICE, take1, Action.UNDO)) == "Segment 1 is already approved."
            await asyncio.sleep(0.3)
            assert (await bot.store.get_session(row.id)).state is SessionState.AWAITING_PROMPT
            assert len(api.sent("sendVideo")) == 2
            assert [s.status for s in await bot.store.list_segments(row.id)] == [SegmentStatus.APPROVED] * 2


async def test_cancel_takes_the_finish_off_the_approved_take(tmp_path: Path) -> None:
    async with BotApiStandIn() as api:
        config, config_path = telegram_config(tmp_path, api)
        async with bot_process(config, config_path) as bot:
            await api.user_message(GROUP, ALICE, photo=picture_bytes(), caption="/start the sun rises")
            take = await next_take(api, 1)
            await toast(api, await press(api, ALICE, take, Action.APPROVE))
            await text_count(api, "Segment 1 approved")
            assert live_controls(api, take) == [(segment_of(take), Action.FINISH)]

            await api.user_message(GROUP, ALICE, text="/cancel")
            await text_count(api, "Cancelled")
            await until(lambda: live_controls(api, take) == [], "the Finish to go")
            assert labels(api, take) == ["✅ Approved"]
            # A Finish from before (a client slow to redraw) joins nothing.
            late = await press(api, ALICE, take, Action.FINISH)
            assert "ended" in await toast(api, late)
            await asyncio.sleep(0.3)
            assert len(api.sent("sendVideo")) == 1
            assert await bot.store.list_active_sessions() == []


async def test_the_trophy_and_flag_reactions_finish(tmp_path: Path) -> None:
    async with BotApiStandIn() as api:
        config, config_path = telegram_config(tmp_path, api)
        async with bot_process(config, config_path) as bot:
            for number, (where, emoji) in enumerate((("video", "🏆"), ("frame", "🏁"))):
                await api.user_message(GROUP, ALICE, photo=picture_bytes(), caption=f"/start take {number}")
                take = await next_take(api, number + 1)
                await api.react(GROUP, ALICE, mid(take), ["👍"])
                await text_count(api, "Segment 1 approved", number + 1)
                frame = [p for p in api.sent("sendPhoto") if p.params["caption"].startswith(FRAME)][number]
                target = mid(take) if where == "video" else int(frame.result["message_id"])
                await api.react(GROUP, ALICE, target, [emoji])
                finals = 2 * (number + 1)
                await until(lambda: len(api.sent("sendVideo")) == finals, f"the final after {emoji}")  # noqa: B023
            assert await bot.store.list_active_sessions() == []
            assert not [t for t in seen_texts(api) if "only the person" in t.lower() or "no longer" in t]


async def test_invisible_prompts_are_no_prompts(tmp_path: Path) -> None:
    async with BotApiStandIn() as api:
        config, config_path = telegram_config(tmp_path, api)
        async with bot_process(config, config_path) as bot:
            # A /start whose prompt draws nothing asks for a prompt.
            await api.user_message(GROUP, ALICE, photo=picture_bytes(), caption="/start \u200b\u2060\ufeff")
            await text_count(api, "Got the picture")
            row = await bot.store.find_active_session("telegram", str(GROUP), "", str(ALICE))
            assert row is not None and row.state is SessionState.AWAITING_PROMPT

            # Zero-width spaces, word joiners, a BOM, a soft hyphen: refused, nothing is made.
            await api.user_message(GROUP, ALICE, text="\u200b\u2060\ufeff\u00ad\u200b")
            await text_count(api, "Send the prompt as text")
            await asyncio.sleep(0.3)
            assert await bot.store.list_segments(row.id) == []

            # Invisible characters around a prompt are trimmed.
            await api.user_message(GROUP, ALICE, text="\u200bwaves roll in\u2060")
            await next_take(api, 1)
            (segment,) = await bot.store.list_segments(row.id)
            assert segment.prompt == "waves roll in"


async def test_configured_frames_and_a_fixed_size_reach_the_chat(tmp_path: Path) -> None:
    async with BotApiStandIn() as api:
        config, config_path = telegram_config(tmp_path, api, frames=49, extra='size_mode = "fixed"')
        async with bot_process(config, config_path):
            # A wide picture: "fixed" keeps the configured 64×64 (fit would make it wide).
            await api.user_message(GROUP, ALICE, photo=picture_bytes(192, 96), caption="/start")
            await text_count(api, "Got the picture — segments will be 64×64")
            assert "next 3 seconds" in seen_texts(api)[-1]
            await api.user_message(GROUP, ALICE, text="/settings")
            (keyboard,) = await api.wait_for("sendMessage", where=lambda c: "reply_markup" in c.params)
            assert "• 3 s" in keyboard_labels(keyboard.params["reply_markup"])

            await api.user_message(GROUP, ALICE, text="the sun rises")
            take = await next_take(api, 1)
            assert (take.params["width"], take.params["height"]) == (64, 64)
            video = take.file("video")
            assert video is not None
            path = tmp_path / "take.mp4"
            path.write_bytes(video.data)
            info = probe(path)
            assert (info.frames, info.width, info.height) == (49, 64, 64)


async def open_settings(api: BotApiStandIn) -> int:
    """A session waiting for its first prompt, and its /settings keyboard; returns the keyboard's id."""
    await api.user_message(GROUP, ALICE, photo=picture_bytes(), caption="/start")
    await text_count(api, "Got the picture")
    await api.user_message(GROUP, ALICE, text="/settings")
    (keyboard,) = await api.wait_for("sendMessage", where=lambda c: "reply_markup" in c.params)
    return int(keyboard.result["message_id"])


def marked(api: BotApiStandIn, message_id: int) -> list[str]:
    return [label for label in keyboard_labels(api.message(GROUP, message_id).get("reply_markup")) if label[:2] == "• "]


async def test_the_settings_keyboard_marks_the_values_in_use_after_taps_and_typed_changes(tmp_path: Path) -> None:
    async with BotApiStandIn() as api:
        config, config_path = telegram_config(tmp_path, api)
        async with bot_process(config, config_path):
            keyboard = await open_settings(api)
            assert marked(api, keyboard) == ["• 2 s", "• 4 steps", "• 🎲 Random seed", "• 1 take"]

            # A typed change: a new keyboard shows it.
            await api.user_message(GROUP, ALICE, text="/settings seconds=5 seed=7")
            await text_count(api, "Settings updated")
            await api.user_message(GROUP, ALICE, text="/settings")
            second = (await api.wait_for("sendMessage", 2, where=lambda c: "reply_markup" in c.params))[1]
            typed = int(second.result["message_id"])
            assert marked(api, typed) == ["• 5 s", "• 4 steps", "• Seed 7", "• 1 take"]

            # A tap on it changes one value and marks what is in use now.
            query = await api.press(GROUP, ALICE, typed, keyboard_data(second.params["reply_markup"], ":steps=8"))
            await toast(api, query)
            await until(lambda: "• 8 steps" in marked(api, typed), "the keyboard to update")
            assert marked(api, typed) == ["• 5 s", "• 8 steps", "• Seed 7", "• 1 take"]

            # After the session, a tap closes the keyboard with a note and changes nothing.
            await api.user_message(GROUP, ALICE, text="the sun rises")
            take = await next_take(api, 1)
            await toast(api, await press(api, ALICE, take, Action.APPROVE_FINISH))
            await until(lambda: len(api.sent("sendVideo")) == 2, "the final video")
            late = await api.press(GROUP, ALICE, typed, keyboard_data(second.params["reply_markup"], ":seconds=2"))
            assert "ended" in await toast(api, late)
            closed = api.message(GROUP, typed)
            assert "reply_markup" not in closed and "ended" in closed["text"]


async def test_the_settings_keyboard_is_closed_when_the_session_ends(tmp_path: Path) -> None:
    async with BotApiStandIn() as api:
        config, config_path = telegram_config(tmp_path, api)
        async with bot_process(config, config_path):
            keyboard = await open_settings(api)
            await api.user_message(GROUP, ALICE, text="/cancel")
            await text_count(api, "Cancelled")
            await until(lambda: "reply_markup" not in api.message(GROUP, keyboard), "the keyboard to close", 3)


async def test_a_shown_settings_keyboard_follows_a_typed_change(tmp_path: Path) -> None:
    async with BotApiStandIn() as api:
        config, config_path = telegram_config(tmp_path, api)
        async with bot_process(config, config_path):
            keyboard = await open_settings(api)
            await api.user_message(GROUP, ALICE, text="/settings seconds=5")
            await text_count(api, "Settings updated")
            await until(lambda: "• 5 s" in marked(api, keyboard), "the keyboard to follow", 3)
