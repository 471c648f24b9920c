"""Drift figures through the service (real store, dispatcher and preview workers, a fake chat):
stored on each take from the worker's done message, shown by /status and on the storyboard."""

from __future__ import annotations

from pathlib import Path

from bot.conversation.drift import tile_lines
from bot.conversation.storyboard import Panel, compose
from bot.ports import Action, ChatRef
from shared.drift import DriftFigures
from tests.bot.service_harness import picture_bytes, running_bot, write_config

CHAT = ChatRef("telegram", "100", "")
OWNER = "7"


async def test_each_take_keeps_its_drift_and_status_shows_the_newest_segments(tmp_path: Path) -> None:
    async with running_bot(write_config(tmp_path)) as bot:
        svc, chat = bot.service, bot.chat
        await svc.start(CHAT, OWNER, picture_bytes(grain=40), "the sun rises")
        [first] = await chat.wait_for("segment", 1)
        row = await bot.store.get_segment(first.post.segment_id)
        assert row.drift is not None
        figures = DriftFigures.from_json(row.drift)
        assert figures is not None and figures.has_reference  # measured against the first picture

        await svc.command(CHAT, OWNER, "status")
        assert "Drift" not in chat.texts()[-1]  # nothing approved yet
        await svc.control(CHAT, OWNER, first.post.segment_id, Action.APPROVE)
        await svc.command(CHAT, OWNER, "status")
        status = [t for t in chat.texts() if "segment approved" in t][-1]
        assert "📈 Drift at segment 1: luma " in status and "against the first picture" in status
        assert "seam" not in status  # no seam before the first segment

        await svc.text(CHAT, OWNER, "a bird flies past")
        [_, second] = await chat.wait_for("segment", 2)
        await svc.control(CHAT, OWNER, second.post.segment_id, Action.APPROVE)
        await svc.command(CHAT, OWNER, "status")
        status = [t for t in chat.texts() if "segments approved" in t][-1]
        assert "📈 Drift at segment 2: " in status and "seam 1→2: motion " in status

        # The storyboard's tiles carry the short drift note, the start picture none.
        session_id = row.session_id
        made = await svc.storyboards.sheet(await bot.store.get_session(session_id))
        assert made is not None
        approved = await bot.store.approved_segments(session_id)
        notes = tile_lines(approved)
        assert notes[0].startswith("L") and "seam" not in notes[0]
        assert "seam" in notes[1] and "px/f" in notes[1]
        start = (await bot.store.get_session(session_id)).first_image
        assert start is not None
        panels = [Panel(start)] + [
            Panel(s.last_frame, s.prompt, n) for s, n in zip(approved, notes, strict=True) if s.last_frame
        ]
        sheet = compose(panels)
        assert [t.note for t in sheet.tiles] == ["", *notes]
