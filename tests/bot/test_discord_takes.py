"""Takes on Discord (simcord): the review message pages through a segment's takes (◀ ▶ edit its
attachments and buttons), and ``/settings takes:N`` brings N takes back as one review."""

from __future__ import annotations

from pathlib import Path

from bot.ports import Action
from bot.store import SegmentStatus
from tests.bot.test_discord_flow import review_messages, segment_id_of, studio, until
from tests.bot.test_discord_flow_review import labels, live_controls, note, now, said, whole_take


async def test_paging_on_discord_edits_the_review_message(tmp_path: Path) -> None:
    async with studio(tmp_path) as s:
        thread, row = await s.session("the sun rises")
        take1 = await whole_take(s, thread, 1)
        await s.alice.click(take1, label="🔁 Regenerate")
        take2 = await whole_take(s, thread, 2)
        first, second = segment_id_of(take1), segment_id_of(take2)
        await until(s.env, lambda: labels(thread, take2)[-2:] == ["◀", "take 2 of 2"], "the pager")
        assert now(thread, take2).attachments[0].filename == "segment01_take2.mp4"

        # ◀ shows take 1 in take 2's message: the video, the caption and buttons that name take 1.
        # (The press is answered by the edit itself: no note.)
        page = await s.alice.click(take2, label="◀")
        assert not page.followups
        await until(s.env, lambda: "take 1 ·" in now(thread, take2).content, "take 1 shown")
        shown = now(thread, take2)
        assert shown.attachments[0].filename.endswith(".mp4") and "take1" in shown.attachments[0].filename
        assert live_controls(thread, take2)[0] == (first, Action.APPROVE)
        assert labels(thread, take2)[-2:] == ["take 1 of 2", "▶"]
        assert len(review_messages(thread)) == 2  # nothing new posted

        # ✅ on that page approves take 1; the message says so, take 2 is discarded.
        assert note(await s.alice.click(take2, label="✅ Approve")) == "✅ Approved segment 1, take 1."
        await said(s, thread, "Segment 1 approved")
        statuses = [seg.status for seg in await s.bot.store.list_segments(row.id)]
        assert statuses == [SegmentStatus.APPROVED, SegmentStatus.REJECTED]
        await until(s.env, lambda: labels(thread, take2) == ["🏁 Finish"], "the approved page")
        assert "take 1 ·" in now(thread, take2).content and live_controls(thread, take2) == [(first, Action.FINISH)]
        assert second not in [seg for seg, _ in live_controls(thread, take1)]


async def test_settings_takes_on_discord_is_one_review(tmp_path: Path) -> None:
    async with studio(tmp_path) as s:
        thread, row = await s.session()
        await said(s, thread, "Got the picture")
        await s.alice.slash(thread, "settings", takes=2)
        await said(s, thread, "Settings updated")
        await s.alice.send(thread, "the sun rises")
        await until(s.env, lambda: len(review_messages(thread)) == 1, "the review")
        review = review_messages(thread)[0]
        await until(s.env, lambda: any("of 2" in label for label in labels(thread, review)), "both takes")
        assert len(review_messages(thread)) == 1
        seeds = {seg.seed for seg in await s.bot.store.list_segments(row.id)}
        assert len(seeds) == 2
