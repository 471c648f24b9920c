"""The service, store and dispatcher with a real worker process running the tiny Wan2.2 model."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from bot.ports import Action
from bot.store import SegmentStatus, SessionState
from tests.bot.service_harness import picture_bytes, running_bot, write_config
from tests.bot.test_service import CHAT, OWNER, segment_posts
from worker.video import probe, read_frames


async def test_full_session_on_the_tiny_wan_model(tmp_path: Path, tiny_wan_dir: Path) -> None:
    config = write_config(tmp_path, backend="wan", model=tiny_wan_dir, size=32, steps=2)
    async with running_bot(config) as bot:
        chat, svc, store = bot.chat, bot.service, bot.store
        await svc.start(CHAT, OWNER, picture_bytes(), None)
        await svc.text(CHAT, OWNER, "the sun rises")
        # The first job waits for the worker to load the model: allow for a busy machine.
        [first] = [s.post.segment_id for s in await chat.wait_for("segment", 1, CHAT, timeout=120)]
        post = chat.of("segment")[0].post
        assert (post.width, post.height, post.frames) == (32, 32, 33)
        assert not post.preview and "preview" not in post.caption
        assert read_frames(post.video).shape == (33, 32, 32, 3)
        assert np.asarray(Image.open(post.last_frame)).shape == (32, 32, 3)

        await svc.control(CHAT, OWNER, first, Action.REGENERATE)
        [_, take2] = await segment_posts(bot, 2)
        assert chat.of("segment")[1].post.attempt == 2
        assert (await store.get_segment(first)).status is SegmentStatus.DONE  # kept beside take 2
        await svc.control(CHAT, OWNER, take2, Action.APPROVE)
        assert (await store.get_segment(take2)).status is SegmentStatus.APPROVED
        assert (await store.get_segment(first)).status is SegmentStatus.REJECTED

        await svc.text(CHAT, OWNER, "a bird flies past")
        [*_, seg2] = await segment_posts(bot, 3)
        # Segment 2 starts from segment 1's lossless hand-off frame.
        assert (await store.get_segment(seg2)).start_image == (await store.get_segment(take2)).last_frame
        await svc.control(CHAT, OWNER, seg2, Action.APPROVE)

        await svc.text(CHAT, OWNER, "clouds gather")
        [*_, seg3] = await segment_posts(bot, 4)
        await svc.control(CHAT, OWNER, seg3, Action.APPROVE)
        await svc.command(CHAT, OWNER, "undo")
        assert (await store.get_segment(seg3)).status is SegmentStatus.REJECTED
        row = await store.find_active_session(CHAT.platform, CHAT.chat_id, CHAT.thread_id, OWNER)
        assert row is not None and row.start_image == (await store.get_segment(seg2)).last_frame

        await svc.command(CHAT, OWNER, "finish")
        [final] = await chat.wait_for("final")
        # Two approved segments joined: 33 frames, then 32 more after the shared frame.
        info = probe(final.post.parts[0])
        assert info.frames == 33 + 32 and (info.width, info.height) == (32, 32)
        row = await store.get_session(row.id)
        assert row.state is SessionState.FINISHED and row.final_video is not None and row.final_video.exists()
