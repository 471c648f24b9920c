"""What the user sees per take, and deliveries cut short by a crash: the real service, store,
dispatcher and preview workers, a fake chat platform, and restarts on the same data."""

from __future__ import annotations

import asyncio
from collections import Counter
from pathlib import Path

import pytest

from bot.ports import Action, ChatRef
from bot.store import SegmentStatus, SessionState
from tests.bot.fake_chat import Crash, FakeChat, Sent
from tests.bot.service_harness import Bot, picture_bytes, running_bot, write_config

CHAT = ChatRef("telegram", "100", "")
OWNER = "7"


async def until(check: object, what: str, timeout: float = 60) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        value = check() if callable(check) else check
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)


async def the_session(bot: Bot) -> str:
    rows = await bot.store.list_sessions(tuple(SessionState))
    assert len(rows) == 1
    return rows[0].id


def progress_messages(chat: FakeChat) -> list[Sent]:
    return [s for s in chat.of("text") if s.text.startswith("⏳ Segment")]


def deleted(chat: FakeChat) -> list[str]:
    return [s.message_id for s in chat.of("delete")]


async def test_one_message_per_take_plus_its_frame_and_a_finish_on_the_approved_take(tmp_path: Path) -> None:
    async with running_bot(write_config(tmp_path)) as bot:
        svc, chat = bot.service, bot.chat
        await svc.start(CHAT, OWNER, picture_bytes(), "the sun rises over the hills")
        [take1] = await chat.wait_for("segment")
        await chat.wait_for("delete")
        [progress1] = progress_messages(chat)
        assert progress1.text == "⏳ Segment 1 · take 1 — queued."
        assert take1.roles == ["video", "frame"]
        assert deleted(chat) == [progress1.message_id]
        # The progress edits name the take, not the prompt (the caption has it, once).
        edits = [e.text for e in chat.of("edit") if e.message_id == progress1.message_id]
        assert any(t.startswith("⏳ Segment 1 · take 1 — step ") for t in edits), edits
        assert not any("sun rises" in t for t in edits) and "sun rises" in take1.text

        # Regenerate: the second take is one more message (and its frame); the first keeps only
        # its Approve.
        await svc.control(CHAT, OWNER, take1.post.segment_id, Action.REGENERATE)
        take2 = (await chat.wait_for("segment", 2))[1]
        await chat.wait_for("delete", 2)
        progress2 = progress_messages(chat)[1]
        assert progress2.text.startswith("⏳ Segment 1 · take 2")
        assert deleted(chat) == [progress1.message_id, progress2.message_id]
        first = take1.post.segment_id
        assert chat.controls_of(take1.message_id) == (("✅ Approve", f"seg:{first}:approve"),)

        # Approve: only a Finish stays on the approved take; the kept one closes.
        second = take2.post.segment_id
        await svc.control(CHAT, OWNER, second, Action.APPROVE)
        assert chat.controls_of(take1.message_id) == ()
        assert chat.controls_of(take2.message_id) == (("🏁 Finish", f"seg:{second}:finish"),)
        await svc.text(CHAT, OWNER, "a bird flies past")
        seg2 = (await chat.wait_for("segment", 3))[2]
        await chat.wait_for("delete", 3)
        await svc.control(CHAT, OWNER, seg2.post.segment_id, Action.APPROVE)
        # The Finish moves on to the newest approved take.
        assert chat.controls_of(take2.message_id) == ()
        assert chat.controls_of(seg2.message_id) == (("🏁 Finish", f"seg:{seg2.post.segment_id}:finish"),)
        # Undo takes it back.
        await svc.command(CHAT, OWNER, "undo")
        assert chat.controls_of(seg2.message_id) == ()
        assert chat.controls_of(take2.message_id) == (("🏁 Finish", f"seg:{second}:finish"),)
        # Finishing closes it.
        await svc.control(CHAT, OWNER, second, Action.FINISH)
        await chat.wait_for("final")
        assert chat.controls_of(take2.message_id) == ()

        # Three takes: three progress messages, each deleted once its take was up.
        assert len(progress_messages(chat)) == 3 == len(chat.of("segment"))
        assert Counter(deleted(chat)) == Counter(s.message_id for s in progress_messages(chat))


async def test_cancelling_closes_the_finish_of_the_approved_take(tmp_path: Path) -> None:
    async with running_bot(write_config(tmp_path)) as bot:
        await bot.service.start(CHAT, OWNER, picture_bytes(), "one")
        [take] = await bot.chat.wait_for("segment")
        await bot.service.control(CHAT, OWNER, take.post.segment_id, Action.APPROVE)
        assert bot.chat.controls_of(take.message_id) == (("🏁 Finish", f"seg:{take.post.segment_id}:finish"),)
        await bot.service.command(CHAT, OWNER, "cancel")
        assert bot.chat.controls_of(take.message_id) == ()


async def test_a_job_interrupted_by_a_restart_says_so(tmp_path: Path) -> None:
    config = write_config(tmp_path, step_delay=0.3)
    chat = FakeChat()
    async with running_bot(config, chat=chat) as bot:
        await bot.service.start(CHAT, OWNER, picture_bytes(), "slow")
        await until(lambda: bot.dispatcher.running, "the job to run")
    [shown] = progress_messages(chat)
    async with running_bot(config, chat=chat) as bot:
        await until(lambda: any("restarted, queued again" in e.text for e in chat.of("edit")), "the restart note")
        await chat.wait_for("segment")
        await until(lambda: deleted(chat), "the progress message to go")
    edits = [e.text for e in chat.of("edit") if e.message_id == shown.message_id]
    restarted = next(i for i, t in enumerate(edits) if "restarted" in t)
    assert edits[restarted].startswith("⏳ Segment 1 · take 1 — restarted, queued again")
    assert any("step" in t for t in edits[restarted:])  # and then it runs again
    assert deleted(chat) == [shown.message_id] and len(progress_messages(chat)) == 1


@pytest.mark.parametrize("crash", [Crash, asyncio.CancelledError])
async def test_a_crash_between_video_and_frame_sends_only_the_frame_after_the_restart(
    tmp_path: Path, crash: type[BaseException]
) -> None:
    config = write_config(tmp_path)
    chat = FakeChat(crash_after="video", crash_with=crash)
    async with running_bot(config, chat=chat) as bot:
        await bot.service.start(CHAT, OWNER, picture_bytes(), "the sun rises")
        [first] = await chat.wait_for("segment")
        segment = first.post.segment_id

        async def video_recorded() -> bool:
            return "video" in (await bot.store.get_segment(segment)).posted

        await until(video_recorded, "the video's record")
        await until(lambda: chat.crash_after is None, "the crash")
        assert "frame" not in (await bot.store.get_segment(segment)).posted
        assert deleted(chat) == []  # the post is not whole: the progress message stays
    async with running_bot(config, chat=chat) as bot:
        again = (await chat.wait_for("segment", 2))[1]
        await until(lambda: deleted(chat), "the progress message to go")
        row = await bot.store.get_segment(segment)
    assert [role for s in chat.of("segment") for role in s.roles] == ["video", "frame"]
    assert again.post.already == {"video"} and again.post.caption == first.post.caption
    assert set(row.posted) >= {"video", "frame"} and row.posted["progress"] is None
    assert deleted(chat) == [progress_messages(chat)[0].message_id]
    assert row.status is SegmentStatus.DONE


async def test_a_crash_between_final_parts_sends_only_the_missing_parts(tmp_path: Path) -> None:
    # 64x64, two 81-frame segments: a final of about 12 kB, with a keyframe every 4 s. Under a
    # 9.8 kB limit it cannot be re-encoded to fit and goes in parts.
    config = write_config(tmp_path, frames=81)
    chat = FakeChat(limit=9_800)
    async with running_bot(config, chat=chat) as bot:
        svc = bot.service
        await svc.start(CHAT, OWNER, picture_bytes(), "one")
        [seg1] = await chat.wait_for("segment")
        await svc.control(CHAT, OWNER, seg1.post.segment_id, Action.APPROVE)
        await svc.text(CHAT, OWNER, "two")
        seg2 = (await chat.wait_for("segment", 2))[1]
        await svc.control(CHAT, OWNER, seg2.post.segment_id, Action.APPROVE)
        chat.crash_after = "final.1"
        await svc.command(CHAT, OWNER, "finish")
        [first] = await chat.wait_for("final")
        session = await the_session(bot)

        async def part_recorded() -> bool:
            return "final.1" in (await bot.store.get_session(session)).posted

        await until(part_recorded, "the first part's record")
        await until(lambda: chat.crash_after is None, "the crash")
    count = len(first.post.parts)
    assert count >= 2 and first.roles == [1]
    async with running_bot(config, chat=chat) as bot:
        again = (await chat.wait_for("final", 2))[1]
        row = await bot.store.get_session(session)
    assert again.post.parts == first.post.parts and again.post.already == {1}
    assert [n for f in chat.of("final") for n in f.roles] == list(range(1, count + 1))
    assert again.text == first.text
    assert first.text.startswith("Here's your video: 2 segments") and f"in {count} parts" in first.text
    assert row.posted["final"] == [row.posted[f"final.{n}"] for n in range(1, count + 1)]


async def test_a_final_whose_post_failed_is_posted_after_a_restart_with_its_caption(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    chat = FakeChat()
    async with running_bot(config, chat=chat) as bot:
        await bot.service.start(CHAT, OWNER, picture_bytes(), "one")
        [seg] = await chat.wait_for("segment")
        await bot.service.control(CHAT, OWNER, seg.post.segment_id, Action.APPROVE)
        chat.fail_posts = True
        await bot.service.command(CHAT, OWNER, "finish")
        await until(lambda: any("sending it failed" in t for t in chat.texts()), "the failed post")
        caption = (await bot.store.get_session(await the_session(bot))).final_caption
    assert caption is not None and caption.startswith("Here's your video: 1 segment")
    chat.fail_posts = False
    async with running_bot(config, chat=chat) as bot:
        [final] = await chat.wait_for("final")
    assert final.text == caption


async def test_a_segment_reposted_after_a_restart_keeps_its_caption(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    chat = FakeChat(fail_posts=True)
    async with running_bot(config, chat=chat) as bot:
        await bot.service.start(CHAT, OWNER, picture_bytes(), "the sun rises")

        async def reviewing() -> bool:
            return (await bot.store.get_session(await the_session(bot))).state is SessionState.REVIEWING

        await until(reviewing, "the take")
        [seg] = await bot.store.list_segments(await the_session(bot))
        assert seg.caption is not None and "the sun rises" in seg.caption
        # The caption is the one decided when the take was done, whatever the core would say now.
        await bot.store.update_segment(seg.id, caption="Segment 1, take 1 · as first decided")
    chat.fail_posts = False
    async with running_bot(config, chat=chat) as bot:
        [post] = await chat.wait_for("segment")
    assert post.text.startswith("Segment 1, take 1 · as first decided")


async def test_a_post_that_keeps_failing_is_shown_to_its_owner_once_the_platform_is_back(tmp_path: Path) -> None:
    from bot.conversation.recovery import FAILING_AFTER

    chat = FakeChat(fail_posts=True, fail_texts=True)  # the platform is down
    async with running_bot(write_config(tmp_path), chat=chat) as bot:
        await bot.service.start(CHAT, OWNER, picture_bytes(), "the sun rises")

        async def reviewing() -> bool:
            return (await bot.store.get_session(await the_session(bot))).state is SessionState.REVIEWING

        await until(reviewing, "the take")
        for _ in range(FAILING_AFTER + 1):
            await bot.service.post_unposted()
        assert chat.texts() == []  # nothing reaches anyone while it is down
        chat.fail_texts = False  # back, but the video still does not go through
        for _ in range(3):
            await bot.service.post_unposted()
        notes = [t for t in chat.texts(CHAT) if "keep trying" in t]
        assert len(notes) == 1 and notes[0].startswith("Segment 1 is ready, but sending it here has failed")
        chat.fail_posts = False
        await bot.service.post_unposted()
        await chat.wait_for("segment")
        assert len([t for t in chat.texts(CHAT) if "keep trying" in t]) == 1
