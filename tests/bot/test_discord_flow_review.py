"""Issue 10 on Discord as a user meets it: simcord (real discord.py, offline Discord) in front of
the real service, store and dispatcher with preview workers. What everyone sees in a session's
thread (the bot's messages as they stand, their buttons) and what a presser alone is told (the
ephemeral answer), press by press."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import discord
import simcord

from bot.ports import Action, parse_control
from bot.store import SegmentStatus, SessionState
from tests.bot.service_harness import picture_bytes
from tests.bot.test_discord_flow import Studio, review_messages, segment_id_of, studio, until
from worker.video import probe

ONLY_OWNER = "Only the person who started this session can do that."
STALE = "That take is no longer up for review."
#: A progress message: "⏳ Segment 1 · take 2 — queued." and its later texts.
PROGRESS = re.compile(r"^\S+ Segment \d+ · take \d+ — ")


def posts(s: Studio, thread: simcord.ChannelHandle) -> list[discord.Message]:
    """The bot's messages in the thread as everyone sees them now (ephemeral answers aside)."""
    bot_id = s.env.bot.user.id  # type: ignore[union-attr]
    return [m for m in thread.history() if m.author.id == bot_id and m.type is discord.MessageType.default]


def kind(message: discord.Message) -> str:
    names = [a.filename for a in message.attachments]
    if names and names[0].startswith("framechain"):
        return "final"
    if names and names[0].startswith("storyboard"):
        return "storyboard"
    if names:
        assert len(names) == 2 and names[0].endswith(".mp4") and names[1].endswith(".png"), names
        return "take"  # the video and its hand-off frame, in one message
    return "text"


def kinds(s: Studio, thread: simcord.ChannelHandle) -> list[str]:
    return [kind(m) for m in posts(s, thread)]


def texts(s: Studio, thread: simcord.ChannelHandle) -> list[str]:
    return [m.content for m in posts(s, thread) if not m.attachments]


def now(thread: simcord.ChannelHandle, message: discord.Message) -> discord.Message:
    """A message as it stands now (after edits)."""
    return next(m for m in thread.history() if m.id == message.id)


def labels(thread: simcord.ChannelHandle, message: discord.Message) -> list[str]:
    rows = now(thread, message).components
    return [getattr(b, "label", "") for row in rows for b in getattr(row, "children", [])]


def live_controls(thread: simcord.ChannelHandle, message: discord.Message) -> list[tuple[int, Action]]:
    rows = now(thread, message).components
    found = [parse_control(getattr(b, "custom_id", None) or "") for row in rows for b in getattr(row, "children", [])]
    return [c for c in found if c is not None]


def note(result: simcord.InteractionResult) -> str | None:
    """What the presser alone was told: the ephemeral answer, or its follow-up."""
    shown = [m for m in ([result.response] if result.response else []) + result.followups if m.content]
    assert all(m.ephemeral for m in shown), shown
    return shown[0].content if shown else None


async def whole_take(s: Studio, thread: simcord.ChannelHandle, n: int) -> discord.Message:
    """The n-th take once it is up and its progress message gone."""
    await until(s.env, lambda: len(review_messages(thread)) >= n, f"take {n}")
    await until(
        s.env, lambda: not any(PROGRESS.match(m.content) for m in posts(s, thread)), f"take {n}'s progress to go"
    )
    return review_messages(thread)[n - 1]


async def said(s: Studio, thread: simcord.ChannelHandle, start: str, n: int = 1) -> None:
    await until(s.env, lambda: sum(t.startswith(start) for t in texts(s, thread)) >= n, repr(start))


def finals(thread: simcord.ChannelHandle) -> list[discord.Message]:
    return [m for m in review_messages(thread) if m.attachments[0].filename.startswith("framechain")]


async def test_a_session_shows_one_message_per_take_and_nothing_else(tmp_path: Path) -> None:
    async with studio(tmp_path) as s:
        thread, row = await s.session("the sun rises")
        take1 = await whole_take(s, thread, 1)
        assert kinds(s, thread) == ["take"]

        # Regenerate: the first take stays with only its Approve; the second comes.
        assert note(await s.alice.click(take1, label="🔁 Regenerate")) == "🔁 Regenerating segment 1…"
        take2 = await whole_take(s, thread, 2)
        assert kinds(s, thread) == ["take", "take"]
        assert labels(thread, take1) == ["✅ Approve"]
        assert now(thread, take1).content.endswith("🎞 Earlier take — still yours to approve")

        # Approve: one public line; the approved take keeps only a 🏁 Finish (and no bot
        # reactions); the kept take is discarded.
        assert note(await s.alice.click(take2, label="✅ Approve")) == "✅ Approved segment 1, take 2."
        await said(s, thread, "Segment 1 approved")
        assert labels(thread, take1) == [] and now(thread, take1).content.endswith("🗑 Discarded")
        assert labels(thread, take2) == ["🏁 Finish"]
        assert live_controls(thread, take2) == [(segment_id_of(take2), Action.FINISH)]
        assert not [r for r in now(thread, take2).reactions if r.me]

        # The second prompt; approving segment 2 moves the Finish onto it.
        await s.alice.send(thread, "a bird flies past")
        take3 = await whole_take(s, thread, 3)
        assert labels(thread, take2) == ["🏁 Finish"]
        assert note(await s.alice.click(take3, label="✅ Approve")) == "✅ Approved segment 2."
        await said(s, thread, "Segment 2 approved")
        assert labels(thread, take2) == [] and labels(thread, take3) == ["🏁 Finish"]

        # 🏁 Finish joins, and goes.
        assert note(await s.alice.click(take3, label="🏁 Finish")) == "🏁 Joining the video…"
        await until(s.env, lambda: bool(finals(thread)), "the final video")
        await until(s.env, lambda: "storyboard" in kinds(s, thread), "the storyboard after it")
        await asyncio.sleep(0.5)
        await s.env.settle()
        assert labels(thread, take3) == []
        assert (await s.bot.store.get_session(row.id)).state is SessionState.FINISHED

        # The whole session as the thread shows it: one message per take, three short lines, the video
        # and its storyboard.
        assert kinds(s, thread) == ["take", "take", "text", "take", "text", "text", "final", "storyboard"]
        assert [t.split(" — ")[0].split(" (")[0] for t in texts(s, thread)] == [
            "Segment 1 approved",
            "Segment 2 approved",
            "Joining 2 segments",
        ]
        # Every message the bot made in the thread: those, and one progress message per take, deleted.
        made = [e for e in s.env.http_requests if e.method == "POST" and e.path == f"/channels/{thread.id}/messages"]
        message = re.compile(rf"/channels/{thread.id}/messages/[0-9]+")
        deleted = [e for e in s.env.http_requests if e.method == "DELETE" and message.fullmatch(e.path)]
        assert len(made) == 8 + 3 and len(deleted) == 3


def edits_fail(s: Studio, times: int = 1) -> None:
    """The next message edits fail (a button left up that a new client would not show)."""
    s.env.inject_error("PATCH", "/channels/*/messages/*", status=403, code=50001, message="Missing Access", times=times)


async def double_click(s: Studio, message: discord.Message, label: str, *, edits: int = 1) -> set[str | None]:
    """A quick second click on one button. simcord runs one click at a time, so the button is kept
    up the way a click faster than the bot's edit finds it: the edits taking it away fail."""
    edits_fail(s, edits)
    first = await s.alice.click(message, label=label)
    second = await s.alice.click(message, label=label)
    return {note(first), note(second)}


async def test_each_review_button_clicked_twice_acts_once(tmp_path: Path) -> None:
    async with studio(tmp_path) as s:
        thread, row = await s.session("the sun rises")
        take1 = await whole_take(s, thread, 1)

        assert await double_click(s, take1, "🔁 Regenerate") == {"🔁 Regenerating segment 1…", STALE}
        take2 = await whole_take(s, thread, 2)

        # The kept take 1 is discarded and take 2's controls close, each tried again once
        # (after the discard, and after the approval): four edits fail.
        assert await double_click(s, take2, "✅ Approve", edits=4) == {
            "✅ Approved segment 1, take 2.",
            "Segment 1 is already approved.",
        }
        await said(s, thread, "Segment 1 approved")

        # Undo twice on segment 2's take: the take goes, approved segment 1 stays.
        await s.alice.send(thread, "a bird flies past")
        take3 = await whole_take(s, thread, 3)
        assert await double_click(s, take3, "↩ Undo") == {"↩ Take discarded.", STALE}
        await said(s, thread, "Discarded this take of segment 2")
        assert (await s.bot.store.get_segment(segment_id_of(take2))).status is SegmentStatus.APPROVED

        await s.alice.send(thread, "a bird lands")
        take4 = await whole_take(s, thread, 4)
        # The Finish moving off segment 1, take 4 approved, and once more when the join starts.
        answers = await double_click(s, take4, "🏁 Approve & finish", edits=4)
        assert "✅ Approved segment 2 — joining the video…" in answers and len(answers) == 2
        assert answers & {"Segment 2 is already approved.", "This session is already finished."}
        await until(s.env, lambda: bool(finals(thread)), "the final video")
        await asyncio.sleep(0.5)
        await s.env.settle()
        assert len(finals(thread)) == 1

        statuses = [seg.status for seg in await s.bot.store.list_segments(row.id)]
        assert statuses == [SegmentStatus.REJECTED, SegmentStatus.APPROVED] * 2
        lines = texts(s, thread)
        for start in ("Segment 1 approved", "Discarded this take", "Segment 2 approved. Joining 2 segments"):
            assert sum(line.startswith(start) for line in lines) == 1, (start, lines)
        assert len(lines) == 3


async def test_finish_clicked_twice_joins_once_and_the_second_click_is_answered_privately(tmp_path: Path) -> None:
    # simcord settles a click, the join it starts included, before the next: the second click
    # finds the session finished. (A second press during the join: see the Telegram flow test.)
    async with studio(tmp_path) as s:
        thread, _ = await s.session("the sun rises")
        take = await whole_take(s, thread, 1)
        await s.alice.click(take, label="✅ Approve")
        await said(s, thread, "Segment 1 approved")

        answers = await double_click(s, take, "🏁 Finish")
        await until(s.env, lambda: bool(finals(thread)), "the final video")
        await asyncio.sleep(0.5)
        await s.env.settle()
        assert len(finals(thread)) == 1
        assert [t for t in texts(s, thread) if not t.startswith("Segment 1 approved")] == ["Joining 1 segment (2.1 s)…"]
        assert answers == {"🏁 Joining the video…", "This session is already finished."}


async def test_a_strangers_clicks_are_refused_privately_and_change_nothing(tmp_path: Path) -> None:
    async with studio(tmp_path) as s:
        thread, row = await s.session("the sun rises")
        take = await whole_take(s, thread, 1)
        before = [(m.id, m.content, labels(thread, m)) for m in posts(s, thread)]

        for label in ("✅ Approve", "🔁 Regenerate", "↩ Undo", "🏁 Approve & finish"):
            result = await s.bob.click(take, label=label)
            assert result.ephemeral and note(result) == ONLY_OWNER, label
        await s.env.settle()
        assert [(m.id, m.content, labels(thread, m)) for m in posts(s, thread)] == before
        assert (await s.bot.store.get_segment(segment_id_of(take))).status is SegmentStatus.DONE

        # Approved: Bob's click on the Finish kept there is refused the same way.
        await s.alice.click(take, label="✅ Approve")
        await said(s, thread, "Segment 1 approved")
        before = [(m.id, m.content, labels(thread, m)) for m in posts(s, thread)]
        result = await s.bob.click(take, label="🏁 Finish")
        assert result.ephemeral and note(result) == ONLY_OWNER
        await asyncio.sleep(0.3)
        await s.env.settle()
        assert [(m.id, m.content, labels(thread, m)) for m in posts(s, thread)] == before
        assert (await s.bot.store.get_session(row.id)).state is SessionState.AWAITING_PROMPT


async def test_old_buttons_left_by_failed_edits_change_nothing(tmp_path: Path) -> None:
    async with studio(tmp_path) as s:
        thread, row = await s.session("the sun rises")
        take1 = await whole_take(s, thread, 1)

        # The edit closing take 1 fails: it keeps its buttons while take 2 is made, and is tried
        # again when take 2 is posted, leaving take 1 its Approve.
        edits_fail(s)
        await s.alice.click(take1, label="🔁 Regenerate")
        assert len(live_controls(thread, take1)) == 4
        take2 = await whole_take(s, thread, 2)
        await until(s.env, lambda: labels(thread, take1) == ["✅ Approve"], "take 1 kept with its Approve")
        assert (await s.bot.store.get_segment(segment_id_of(take2))).status is SegmentStatus.DONE
        assert len(review_messages(thread)) == 2

        # Segment 1 approved, segment 2 up: the Finish on segment 1 asks about the take under review.
        await s.alice.click(take2, label="✅ Approve")
        await said(s, thread, "Segment 1 approved")
        await s.alice.send(thread, "a bird flies past")
        take3 = await whole_take(s, thread, 3)
        assert note(await s.alice.click(take2, label="🏁 Finish")) == (
            "Segment 2 take 1 is still under review: 🏁 Approve & finish includes it, ↩ Undo drops it."
        )

        # Segment 2 approved while the edit taking segment 1's Finish away fails: that old Finish
        # joins nothing.
        edits_fail(s)
        await s.alice.click(take3, label="✅ Approve")
        await said(s, thread, "Segment 2 approved")
        assert labels(thread, take2) == ["🏁 Finish"] and labels(thread, take3) == ["🏁 Finish"]
        assert note(await s.alice.click(take2, label="🏁 Finish")) == (
            "That button is out of date — use 🏁 Finish on segment 2, or /finish."
        )
        await asyncio.sleep(0.3)
        await s.env.settle()
        assert (await s.bot.store.get_session(row.id)).state is SessionState.AWAITING_PROMPT
        assert finals(thread) == []


async def test_cancel_takes_the_finish_off_the_approved_take(tmp_path: Path) -> None:
    async with studio(tmp_path) as s:
        thread, row = await s.session("the sun rises")
        take = await whole_take(s, thread, 1)
        await s.alice.click(take, label="✅ Approve")
        await said(s, thread, "Segment 1 approved")
        assert labels(thread, take) == ["🏁 Finish"]

        await s.alice.slash(thread, "cancel")
        await said(s, thread, "Cancelled")
        await until(s.env, lambda: labels(thread, take) == [], "the Finish to go")
        assert (await s.bot.store.get_session(row.id)).state is SessionState.CANCELLED


async def test_invisible_prompts_are_no_prompts(tmp_path: Path) -> None:
    async with studio(tmp_path) as s:
        thread, row = await s.session()
        await said(s, thread, "Got the picture")

        await s.alice.send(thread, "\u200b\u2060\ufeff\u00ad\u200b")
        await said(s, thread, "Send the prompt as text")
        await asyncio.sleep(0.3)
        await s.env.settle()
        assert await s.bot.store.list_segments(row.id) == []

        await s.alice.send(thread, "\u200bwaves roll in\u2060")
        await whole_take(s, thread, 1)
        (segment,) = await s.bot.store.list_segments(row.id)
        assert segment.prompt == "waves roll in"


async def test_a_start_prompt_of_invisible_characters_asks_for_a_prompt(tmp_path: Path) -> None:
    async with studio(tmp_path) as s:
        thread, row = await s.session("\u200b\u2060")
        await said(s, thread, "Got the picture")
        assert row.state is SessionState.AWAITING_PROMPT
        assert await s.bot.store.list_segments(row.id) == []


async def test_a_start_prompt_of_invisible_characters_does_not_name_the_thread(tmp_path: Path) -> None:
    async with studio(tmp_path) as s:
        thread, _ = await s.session("\u200b\u2060")
        assert thread.name == "alice's animation"


async def test_configured_frames_and_a_fixed_size_reach_the_thread(tmp_path: Path) -> None:
    async with studio(tmp_path, frames=49, extra='size_mode = "fixed"') as s:
        # A wide picture: "fixed" keeps the configured 64×64 (fit would make it wide).
        await s.alice.slash(s.channel, "start", image=("wide.png", picture_bytes(192, 96)), prompt="the sun rises")
        (thread,) = s.channel.threads
        take = await whole_take(s, thread, 1)
        path = tmp_path / "take.mp4"
        path.write_bytes(await take.attachments[0].read())
        info = probe(path)
        assert (info.frames, info.width, info.height) == (49, 64, 64)
        assert "· 3.1 s ·" in take.content or "· 3.0 s ·" in take.content


async def test_status_tells_a_job_next_in_line_from_one_running(tmp_path: Path) -> None:
    async with studio(tmp_path, step_delay=1.0) as s:
        await s.alice.slash(s.channel, "start", image=("a.png", picture_bytes()), prompt="runs first")
        await until(
            s.env, lambda: bool(s.bot.service.jobs.dispatcher and s.bot.service.jobs.dispatcher.running), "the job"
        )
        await s.bob.slash(s.channel, "start", image=("b.png", picture_bytes()), prompt="waits behind it")
        alices, bobs = s.channel.threads

        await s.bob.slash(bobs, "status")
        await s.alice.slash(alices, "status")
        await s.env.settle()
        assert texts(s, bobs)[-1].splitlines()[0].endswith("Segment 1 (take 1) is queued, next in line.")
        assert texts(s, alices)[-1].splitlines()[0].endswith("Segment 1 (take 1) is running now.")


async def test_status_with_a_worker_that_cannot_start_says_queued_next_in_line(tmp_path: Path) -> None:
    async with studio(tmp_path, backend="wan", model=tmp_path / "no-such-model") as s:
        thread, _ = await s.session("waits for the GPU")
        await s.alice.slash(thread, "status")
        await s.env.settle()
        assert texts(s, thread)[-1].splitlines()[0].endswith("Segment 1 (take 1) is queued, next in line.")
