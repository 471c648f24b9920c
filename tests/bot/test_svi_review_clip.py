"""An svi take's review clip starts after the frames it shares with its predecessor; its master
stays whole for the join (tiny Wan2.2 in a real worker, a tiny LoRA standing in for SVI)."""

from __future__ import annotations

from pathlib import Path

from bot.ports import Action, SegmentPost
from tests.bot.service_harness import picture_bytes, running_bot, write_config
from tests.bot.test_service import CHAT, OWNER
from tests.worker.test_wan_lora import write_lora
from worker.video import probe

FRAMES = 33


async def test_the_posted_svi_take_leaves_out_its_overlap(tmp_path: Path, tiny_wan_dir: Path) -> None:
    lora = write_lora(tmp_path / "svi.safetensors", seed=3, strength=0.3)
    extra = f'[[generation.loras]]\npath = "{lora}"\nrole = "svi"\n'
    config = write_config(tmp_path, backend="wan", model=tiny_wan_dir, size=32, steps=2, frames=FRAMES, extra=extra)
    async with running_bot(config) as bot:
        chat, svc = bot.chat, bot.service
        await svc.start(CHAT, OWNER, picture_bytes(), None)
        await svc.command(CHAT, OWNER, "settings", "continuity=svi")
        await svc.text(CHAT, OWNER, "the sun rises")
        [first] = await chat.wait_for("segment", 1, CHAT, timeout=120)
        assert isinstance(first.post, SegmentPost)
        # The first segment is ordinary image-to-video: posted whole.
        assert probe(first.post.video).frames == first.post.frames == FRAMES
        await svc.control(CHAT, OWNER, first.post.segment_id, Action.APPROVE)

        await svc.text(CHAT, OWNER, "a bird flies past")
        [_, second] = await chat.wait_for("segment", 2, CHAT, timeout=120)
        assert isinstance(second.post, SegmentPost)
        row = await bot.store.get_segment(second.post.segment_id)
        assert row.params["continuity"] == "svi" and row.params["overlap"] == 4
        assert row.video is not None and probe(row.video).frames == FRAMES  # the master, whole
        assert second.post.video != row.video
        assert probe(second.post.video).frames == second.post.frames == FRAMES - 4
        assert second.post.seconds == (FRAMES - 4) / 16
