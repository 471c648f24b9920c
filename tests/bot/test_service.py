"""The service with the real store, dispatcher and preview worker processes, and a fake chat."""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path

from bot.ports import Action, ChatRef
from bot.store import SegmentStatus, SessionState
from tests.bot.service_harness import Bot, picture_bytes, running_bot, write_config
from worker.video import probe

CHAT = ChatRef("telegram", "100", "")
OWNER = "7"


async def segment_posts(bot: Bot, count: int, chat: ChatRef = CHAT) -> list[int]:
    sent = await bot.chat.wait_for("segment", count, chat)
    return [s.post.segment_id for s in sent]


async def session_state(bot: Bot, chat: ChatRef = CHAT, owner: str = OWNER) -> SessionState:
    row = await bot.store.find_active_session(chat.platform, chat.chat_id, chat.thread_id, owner)
    assert row is not None
    return row.state


async def test_full_session(tmp_path: Path) -> None:
    async with running_bot(write_config(tmp_path)) as bot:
        chat, svc = bot.chat, bot.service
        await svc.start(CHAT, OWNER, picture_bytes(), "the sun rises")
        [first] = await segment_posts(bot, 1)
        post = chat.of("segment")[0].post
        assert (post.width, post.height, post.frames) == (64, 64, 33)
        assert "preview" in post.caption and post.index == 1 and post.attempt == 1
        assert [c for _, c in post.controls] == [f"seg:{first}:{a}" for a in ("approve", "regen", "undo", "apfin")]
        # Progress: one message per job, created when queued, edited, ending "ready".
        progress = [s for s in chat.of("text") if s.text.startswith("⏳ Segment 1")]
        assert len(progress) == 1

        def edits() -> list[str]:
            return [e.text for e in chat.of("edit") if e.message_id == progress[0].message_id]

        for _ in range(100):  # edits go out from a background task
            if edits() and "ready" in edits()[-1]:
                break
            await asyncio.sleep(0.02)
        assert any("step" in t for t in edits()) and "ready" in edits()[-1]

        await svc.control(CHAT, OWNER, first, Action.REGENERATE)
        [_, second_take] = await segment_posts(bot, 2)
        assert chat.of("segment")[1].post.attempt == 2
        # The first take is kept, approvable, until the second is approved.
        assert (await bot.store.get_segment(first)).status is SegmentStatus.DONE

        notes: list[str] = []

        async def note(text: str) -> None:
            notes.append(text)

        await svc.control(CHAT, OWNER, second_take, Action.APPROVE, reply=note)
        await svc.control(CHAT, OWNER, second_take, Action.APPROVE, reply=note)  # pressed twice: no harm
        assert (await bot.store.get_segment(second_take)).status is SegmentStatus.APPROVED
        assert notes == ["✅ Approved segment 1, take 2.", "Segment 1 is already approved."]
        assert (await bot.store.get_segment(first)).status is SegmentStatus.REJECTED
        await svc.text(CHAT, OWNER, "a bird flies past")
        [*_, seg2] = await segment_posts(bot, 3)
        # Segment 2 starts from segment 1's hand-off frame.
        approved_1 = await bot.store.get_segment(second_take)
        assert (await bot.store.get_segment(seg2)).start_image == approved_1.last_frame
        await svc.control(CHAT, OWNER, seg2, Action.APPROVE)
        await svc.text(CHAT, OWNER, "clouds gather")
        [*_, seg3] = await segment_posts(bot, 4)
        await svc.control(CHAT, OWNER, seg3, Action.APPROVE)
        await svc.command(CHAT, OWNER, "undo")
        assert (await bot.store.get_segment(seg3)).status is SegmentStatus.REJECTED
        row = await bot.store.find_active_session("telegram", "100", "", OWNER)
        assert row is not None and row.start_image == (await bot.store.get_segment(seg2)).last_frame
        await svc.command(CHAT, OWNER, "status")
        assert any("2 segments" in t or "segments: 2" in t.lower() for t in chat.texts()), chat.texts()[-1]
        await svc.command(CHAT, OWNER, "finish")
        [final] = await chat.wait_for("final")
        info = probe(final.post.parts[0])
        assert info.frames == 33 + 32
        row = await bot.store.get_session(row.id)
        assert row.state is SessionState.FINISHED and row.final_video is not None and row.final_video.exists()


async def test_strangers_are_ignored_and_bad_input_is_answered(tmp_path: Path) -> None:
    async with running_bot(write_config(tmp_path)) as bot:
        svc, chat = bot.service, bot.chat
        await svc.start(CHAT, OWNER, b"not a picture at all", None)
        assert "couldn't read that as a picture" in chat.texts()[-1]
        await svc.start(CHAT, OWNER, picture_bytes(32, 32), None)
        assert "at least 64 pixels" in chat.texts()[-1]
        await svc.start(CHAT, OWNER, picture_bytes(), None)
        await svc.text(CHAT, OWNER, "x" * 10_000)
        assert "10000 characters" in chat.texts()[-1]
        await svc.text(CHAT, OWNER, "waves roll in")
        [seg] = await segment_posts(bot, 1)
        await chat.wait_for("delete")  # the progress message goes once the take is up
        before = len(chat.sent)
        await svc.control(CHAT, "intruder", seg, Action.APPROVE)
        await svc.reaction(CHAT, "intruder", chat.of("segment")[0].message_id, Action.APPROVE)
        assert len(chat.sent) == before  # ignored silently
        assert (await bot.store.get_segment(seg)).status is SegmentStatus.DONE
        # An admin may act on the owner's session.
        await svc.control(CHAT, "admin", seg, Action.APPROVE, is_admin=True)
        assert (await bot.store.get_segment(seg)).status is SegmentStatus.APPROVED
        # A reaction on the frame message finds its segment.
        await svc.text(CHAT, OWNER, "night falls")
        [_, seg2] = await segment_posts(bot, 2)
        for _ in range(100):  # the ids are recorded just after the post returns
            if "frame" in (await bot.store.get_segment(seg2)).posted:
                break
            await asyncio.sleep(0.02)
        frame_message = (await bot.store.get_segment(seg2)).posted["frame"]
        await svc.reaction(CHAT, OWNER, str(frame_message), Action.APPROVE)
        assert (await bot.store.get_segment(seg2)).status is SegmentStatus.APPROVED


async def test_cancel_while_queued_and_while_running(tmp_path: Path) -> None:
    async with running_bot(write_config(tmp_path, step_delay=0.5)) as bot:
        svc, chat = bot.service, bot.chat
        other = ChatRef("telegram", "200", "")
        await svc.start(CHAT, OWNER, picture_bytes(), "slow one")
        await svc.start(other, "8", picture_bytes(), "queued one")
        # Wait until the first job runs, then cancel both sessions.
        for _ in range(200):
            if bot.dispatcher.running:
                break
            await asyncio.sleep(0.05)
        running = next(iter(bot.dispatcher.running))
        await svc.command(other, "8", "cancel")
        await svc.command(CHAT, OWNER, "cancel")
        for _ in range(200):
            if not bot.dispatcher.running and not len(bot.dispatcher.queue):
                break
            await asyncio.sleep(0.05)
        assert (await bot.store.get_segment(int(running))).status is SegmentStatus.CANCELLED
        assert chat.of("segment") == []
        for ref, owner in ((CHAT, OWNER), (other, "8")):
            assert await bot.store.find_active_session(ref.platform, ref.chat_id, ref.thread_id, owner) is None
            assert "Cancelled" in chat.texts(ref)[-1] or any("Cancelled" in t for t in chat.texts(ref))


async def test_fair_queue_across_users(tmp_path: Path) -> None:
    async with running_bot(write_config(tmp_path, step_delay=0.05, extra="")) as bot:
        svc, chat = bot.service, bot.chat
        # User A has three sessions in three chats, user B one; B starts last.
        a_chats = [ChatRef("telegram", str(300 + i), "") for i in range(3)]
        for ref in a_chats:
            await svc.start(ref, "A", picture_bytes(), "a's segment")
        for _ in range(400):  # A's first job is running before B arrives
            if bot.dispatcher.running:
                break
            await asyncio.sleep(0.02)
        b_chat = ChatRef("telegram", "400", "")
        await svc.start(b_chat, "B", picture_bytes(), "b's segment")
        await chat.wait_for("segment", 4)
        order = [s.chat for s in chat.of("segment")]
        # B is served second, not fourth: after A's running job, B goes before A's others.
        assert order.index(b_chat) == 1, order


async def test_worker_killed_mid_job_is_retried_then_reported(tmp_path: Path) -> None:
    async with running_bot(write_config(tmp_path, step_delay=0.3)) as bot:
        svc, chat, dispatcher = bot.service, bot.chat, bot.dispatcher

        async def kill_running_worker() -> None:
            for _ in range(400):
                if dispatcher.running:
                    break
                await asyncio.sleep(0.02)
            worker = dispatcher.workers["cpu"]
            assert worker is not None and worker.pid is not None
            os.kill(worker.pid, signal.SIGKILL)

        await svc.start(CHAT, OWNER, picture_bytes(), "survives one crash")
        await kill_running_worker()
        [seg] = await segment_posts(bot, 1)
        assert (await bot.store.get_segment(seg)).tries == 2

        await svc.control(CHAT, OWNER, seg, Action.APPROVE)
        await svc.text(CHAT, OWNER, "crashes twice")
        await kill_running_worker()
        await asyncio.sleep(0.5)
        await kill_running_worker()
        for _ in range(400):
            if any("went wrong" in t for t in chat.texts()):
                break
            await asyncio.sleep(0.05)
        assert any("went wrong" in t for t in chat.texts())
        # The queue moves on: the next prompt is generated by a fresh worker.
        await svc.command(CHAT, OWNER, "regenerate")
        await segment_posts(bot, 2)


async def test_two_devices_in_parallel(tmp_path: Path) -> None:
    async with running_bot(write_config(tmp_path, devices=("cpu:0", "cpu:1"), step_delay=0.4)) as bot:
        svc = bot.service
        started: list[str] = []
        original = svc.job_started

        async def record(job_id: str, device: str) -> None:
            started.append(device)
            await original(job_id, device)

        svc.job_started = record  # type: ignore[method-assign]
        for i in range(2):
            await svc.start(ChatRef("telegram", str(500 + i), ""), str(i), picture_bytes(), "in parallel")
        loop = asyncio.get_running_loop()
        begin = loop.time()
        await bot.chat.wait_for("segment", 2)
        assert sorted(started) == ["cpu:0", "cpu:1"]
        # Each job takes >= 4 steps x 0.4 s; in parallel both finish well before 2 x 1.6 s.
        assert loop.time() - begin < 3.0


async def test_final_video_over_the_upload_limit_is_made_to_fit(tmp_path: Path) -> None:
    async with running_bot(write_config(tmp_path, size=320)) as bot:
        svc, chat = bot.service, bot.chat
        await svc.start(CHAT, OWNER, picture_bytes(320, 320, grain=60), "first")
        [seg] = await segment_posts(bot, 1)
        await svc.control(CHAT, OWNER, seg, Action.APPROVE)
        master = (await bot.store.get_segment(seg)).video
        assert master is not None
        limit = master.stat().st_size // 3
        chat.limit = limit
        await svc.command(CHAT, OWNER, "finish")
        [final] = await chat.wait_for("final")
        assert all(p.stat().st_size <= limit for p in final.post.parts)
        assert "re-encoded" in final.text or "parts" in final.text


async def test_segment_over_the_upload_limit_is_re_encoded_and_the_user_told(tmp_path: Path) -> None:
    async with running_bot(write_config(tmp_path, size=320)) as bot:
        bot.chat.limit = 60_000
        await bot.service.start(CHAT, OWNER, picture_bytes(320, 320, grain=60), "grainy")
        [seg] = await segment_posts(bot, 1)
        post = bot.chat.of("segment")[0].post
        master = (await bot.store.get_segment(seg)).video
        assert master is not None and master.stat().st_size > 60_000  # the master itself is kept
        assert post.video != master and post.video.stat().st_size <= 60_000
        assert probe(post.video).frames == 33
        assert "re-encoded to fit" in post.caption


async def test_per_user_queue_limit(tmp_path: Path) -> None:
    config = write_config(tmp_path, step_delay=0.5, extra="[limits]\nqueued_jobs_per_user = 1\n")
    async with running_bot(config) as bot:
        svc, chat = bot.service, bot.chat
        await svc.start(CHAT, OWNER, picture_bytes(), "first")
        other = ChatRef("telegram", "101", "")
        await svc.start(other, OWNER, picture_bytes(), "second")
        assert any("already have 1 segment waiting" in t for t in chat.texts(other))
        # The picture was kept: the session waits for a prompt.
        assert await session_state(bot, other) is SessionState.AWAITING_PROMPT


async def test_notes_for_the_acting_user_go_to_the_private_reply(tmp_path: Path) -> None:
    async with running_bot(write_config(tmp_path)) as bot:
        svc, chat = bot.service, bot.chat
        private: list[str] = []

        async def reply(text: str) -> None:
            private.append(text)

        await svc.start(CHAT, OWNER, picture_bytes(), "first")
        [seg] = await segment_posts(bot, 1)
        await svc.control(CHAT, OWNER, seg, Action.APPROVE, reply=reply)
        public_before = len(chat.texts())
        await svc.control(CHAT, OWNER, seg, Action.APPROVE, reply=reply)  # pressed twice
        await svc.command(CHAT, "stranger", "finish", reply=reply)
        await svc.command(CHAT, OWNER, "frobnicate", reply=reply)
        assert private == [
            "✅ Approved segment 1.",
            "Segment 1 is already approved.",
            "Only the person who started this session can do that.",
            "I don't know /frobnicate. Send /help for the commands.",
        ]
        assert len(chat.texts()) == public_before  # nothing of that went into the chat


async def test_a_worker_that_cannot_start_is_explained_and_the_job_kept(tmp_path: Path) -> None:
    config = write_config(tmp_path, backend="wan", model=tmp_path / "no-such-model")
    async with running_bot(config) as bot:
        await bot.service.start(CHAT, OWNER, picture_bytes(), "waits for the GPU")
        for _ in range(600):
            if any("could not start" in e.text for e in bot.chat.of("edit")):
                break
            await asyncio.sleep(0.05)
        [queued] = [s for s in bot.chat.of("text") if s.text.startswith("⏳ Segment 1")]
        edits = [e.text for e in bot.chat.of("edit") if e.message_id == queued.message_id]
        assert any("still queued: the GPU worker could not start" in t for t in edits)
        assert await session_state(bot) is SessionState.GENERATING
        assert [s.status for s in await bot.store.list_segments((await bot.store.list_active_sessions())[0].id)] == [
            SegmentStatus.QUEUED
        ]


async def test_posts_that_failed_are_retried_once_the_platform_is_back(tmp_path: Path) -> None:
    async with running_bot(write_config(tmp_path)) as bot:
        svc, chat = bot.service, bot.chat
        chat.fail_posts = True
        await svc.start(CHAT, OWNER, picture_bytes(), "while the platform is down")
        for _ in range(400):
            if await session_state(bot) is SessionState.REVIEWING:
                break
            await asyncio.sleep(0.02)
        await asyncio.sleep(0.2)
        assert chat.of("segment") == []
        await svc.post_unposted()  # still down: nothing posted, nothing lost
        chat.fail_posts = False
        await svc.post_unposted()
        await svc.post_unposted()
        [posted] = chat.of("segment")
        seg = posted.post.segment_id
        await svc.control(CHAT, OWNER, seg, Action.APPROVE)

        chat.fail_posts = True
        await svc.command(CHAT, OWNER, "finish")
        for _ in range(400):
            if any("sending it failed" in t for t in chat.texts()):
                break
            await asyncio.sleep(0.05)
        assert any("sending it failed" in t for t in chat.texts())
        chat.fail_posts = False
        await svc.post_unposted()
        await svc.post_unposted()
        assert len(chat.of("final")) == 1
        assert len(chat.of("segment")) == 1


async def test_status_tells_running_from_queued_next_in_line(tmp_path: Path) -> None:
    async with running_bot(write_config(tmp_path, step_delay=0.5)) as bot:
        svc, chat = bot.service, bot.chat
        other = ChatRef("telegram", "200", "")
        await svc.start(CHAT, OWNER, picture_bytes(), "runs first")
        for _ in range(400):
            if bot.dispatcher.running:
                break
            await asyncio.sleep(0.02)
        await svc.start(other, "8", picture_bytes(), "waits behind it")
        await svc.command(CHAT, OWNER, "status")
        assert chat.texts(CHAT)[-1].splitlines()[0].endswith("Segment 1 (take 1) is running now.")
        await svc.command(other, "8", "status")
        assert chat.texts(other)[-1].splitlines()[0].endswith("Segment 1 (take 1) is queued, next in line.")


async def test_status_with_a_worker_that_cannot_start_says_queued(tmp_path: Path) -> None:
    config = write_config(tmp_path, backend="wan", model=tmp_path / "no-such-model")
    async with running_bot(config) as bot:
        await bot.service.start(CHAT, OWNER, picture_bytes(), "waits for the GPU")
        await bot.service.command(CHAT, OWNER, "status")
        assert bot.chat.texts()[-1].splitlines()[0].endswith("Segment 1 (take 1) is queued, next in line.")
