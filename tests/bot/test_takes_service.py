"""``settings takes = N`` through the real service, store, dispatcher and preview workers: the
takes of one prompt run side by side on idle devices, one after another on one, and each counts
as a job for the quotas."""

from __future__ import annotations

import asyncio
from pathlib import Path

from bot.dispatcher import FairQueue, Job
from bot.ports import Action, ChatRef
from bot.store import SegmentRow, SegmentStatus
from shared.protocol import Generate
from tests.bot.service_harness import picture_bytes, running_bot, write_config

CHAT = ChatRef("telegram", "700", "")
OWNER = "7"


async def made(tmp_path: Path, devices: tuple[str, ...], takes: int = 2, extra: str = "") -> list[SegmentRow]:
    async with running_bot(write_config(tmp_path, devices=devices, step_delay=0.3, extra=extra)) as bot:
        svc = bot.service
        await svc.start(CHAT, OWNER, picture_bytes(), None)
        await svc.command(CHAT, OWNER, "settings", f"takes={takes}")
        await svc.text(CHAT, OWNER, "side by side")
        [row] = await bot.store.list_active_sessions()
        await bot.chat.wait_for("segment", 1)
        rows = await bot.store.list_segments(row.id)
        assert len(rows) == takes
        for _ in range(1200):  # until every take is made and its report taken
            rows = await bot.store.list_segments(row.id)
            if all(r.status is SegmentStatus.DONE and r.caption is not None for r in rows):
                break
            await asyncio.sleep(0.05)
        # All of them come back as one review message.
        assert len(bot.chat.of("segment")) == 1
        return rows


def overlap(a: SegmentRow, b: SegmentRow) -> bool:
    assert a.started_at and a.finished_at and b.started_at and b.finished_at
    return a.started_at < b.finished_at and b.started_at < a.finished_at


async def test_takes_run_at_once_on_two_workers(tmp_path: Path) -> None:
    first, second = await made(tmp_path, ("cpu:0", "cpu:1"))
    assert overlap(first, second)
    assert first.seed != second.seed


async def test_takes_run_one_after_another_on_one_worker(tmp_path: Path) -> None:
    first, second = await made(tmp_path, ("cpu",))
    assert not overlap(first, second)
    assert first.seed != second.seed


async def test_each_take_counts_as_a_job_for_the_quota(tmp_path: Path) -> None:
    config = write_config(tmp_path, extra="[limits]\nqueued_jobs_per_user = 2\n")
    async with running_bot(config) as bot:
        svc = bot.service
        await svc.start(CHAT, OWNER, picture_bytes(), None)
        await svc.command(CHAT, OWNER, "settings", "takes=3")
        await svc.text(CHAT, OWNER, "too many")
        [row] = await bot.store.list_active_sessions()
        assert await bot.store.list_segments(row.id) == []
        assert "This prompt needs 3 places for its 3 takes" in bot.chat.texts()[-1]
        await svc.command(CHAT, OWNER, "settings", "takes=2")
        await svc.text(CHAT, OWNER, "two fit")
        assert len(await bot.store.list_segments(row.id)) == 2


async def test_the_fair_queue_counts_each_take_as_a_job() -> None:
    queue = FairQueue()
    for job_id, owner in (("a1", "alice"), ("a2", "alice"), ("a3", "alice"), ("b1", "bob")):
        await queue.put(Job(message=Generate(job_id=job_id, image="i.png", prompt="p", out_dir="."), owner=owner))
    # Alice's three takes are three jobs: Bob's one waits behind one of them, not all three.
    assert [job.job_id for job in queue.order()] == ["a1", "b1", "a2", "a3"]


async def test_a_reaction_on_a_paged_review_acts_on_the_take_it_shows(tmp_path: Path) -> None:
    async with running_bot(write_config(tmp_path)) as bot:
        svc = bot.service
        await svc.start(CHAT, OWNER, picture_bytes(), "first")
        [post1] = await bot.chat.wait_for("segment", 1)
        await svc.control(CHAT, OWNER, post1.post.segment_id, Action.REGENERATE)
        posts = await bot.chat.wait_for("segment", 2)
        take1, take2 = post1.post.segment_id, posts[1].post.segment_id
        message = posts[1].message_id
        # ◀ on take 2's message shows take 1 there; a ✅ reaction on it approves take 1.
        await svc.control(CHAT, OWNER, take1, Action.SHOW, message_id=message)
        [page] = bot.chat.of("page")
        assert page.message_id == message and page.post.video is not None and "take 1" in page.text
        await svc.reaction(CHAT, OWNER, message, Action.APPROVE)
        assert (await bot.store.get_segment(take1)).status is SegmentStatus.APPROVED
        assert (await bot.store.get_segment(take2)).status is SegmentStatus.REJECTED
