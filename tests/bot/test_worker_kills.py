"""A worker killed in each phase of a job (while loading, while generating, while writing its
files): the job is retried once on a fresh worker, and a second death is reported to the user."""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path

import pytest

from bot.ports import ChatRef
from bot.store import SegmentStatus
from tests.bot.service_harness import Bot, picture_bytes, running_bot, write_config
from worker.video import probe

CHAT = ChatRef("telegram", "100", "")
OWNER = "7"
STEPS = 4


def kill_worker(bot: Bot) -> None:
    worker = bot.dispatcher.workers["cpu"]
    assert worker is not None and worker.pid is not None
    os.kill(worker.pid, signal.SIGKILL)


def arm(bot: Bot, phase: str, times: int) -> list[str]:
    """Kill the worker ``times`` times at ``phase`` of the job; returns the phases killed in.

    loading: as soon as the job is handed to the worker, before any step (a real model is still
    loading then); generating: after the first step; writing: after the last step, while the
    worker stamps and encodes the frames and writes the mp4 and hand-off PNG."""
    kills: list[str] = []
    started, progress = bot.service.job_started, bot.service.job_progress

    def due() -> bool:
        return len(kills) < times

    async def on_started(job_id: str, device: str) -> None:
        await started(job_id, device)
        if phase == "loading" and due():
            kills.append(phase)
            kill_worker(bot)

    async def on_progress(job_id: str, step: int, total: int) -> None:
        await progress(job_id, step, total)
        if due() and ((phase == "generating" and step == 1) or (phase == "writing" and step == total)):
            kills.append(phase)
            kill_worker(bot)

    bot.service.job_started = on_started  # type: ignore[method-assign]
    bot.service.job_progress = on_progress  # type: ignore[method-assign]
    return kills


def config(tmp_path: Path) -> Path:
    # 81 frames at 128 px: writing the files takes long enough to be killed in.
    return write_config(tmp_path, step_delay=0.15, size=128, frames=81, steps=STEPS)


@pytest.mark.parametrize("phase", ["loading", "generating", "writing"])
async def test_a_kill_is_retried_once(tmp_path: Path, phase: str) -> None:
    async with running_bot(config(tmp_path)) as bot:
        kills = arm(bot, phase, times=1)
        await bot.service.start(CHAT, OWNER, picture_bytes(), "survives one crash")
        [sent] = await bot.chat.wait_for("segment", 1)
        segment = await bot.store.get_segment(sent.post.segment_id)
        assert kills == [phase]
        assert segment.tries == 2 and segment.status is SegmentStatus.DONE
        assert segment.video is not None and probe(segment.video).frames == 81  # whole, not half a file
        assert not any("went wrong" in t for t in bot.chat.texts())


@pytest.mark.parametrize("phase", ["loading", "generating", "writing"])
async def test_a_second_kill_is_reported(tmp_path: Path, phase: str) -> None:
    async with running_bot(config(tmp_path)) as bot:
        kills = arm(bot, phase, times=2)
        await bot.service.start(CHAT, OWNER, picture_bytes(), "crashes twice")
        for _ in range(600):
            if any("went wrong" in t for t in bot.chat.texts()):
                break
            await asyncio.sleep(0.05)
        assert kills == [phase, phase]
        assert any("went wrong" in t and "/regenerate" in t for t in bot.chat.texts())
        [segment] = await bot.store.list_segments((await bot.store.get_segment(1)).session_id)
        assert segment.tries == 2 and segment.status is SegmentStatus.FAILED
        assert bot.chat.of("segment") == []
        # Nothing half-written where a whole file is expected.
        folder = bot.config.data_dir / "sessions" / segment.session_id
        assert list(folder.glob("seg001-take1.*")) == []
        # The queue moves on: a fresh worker makes the retry.
        await bot.service.command(CHAT, OWNER, "regenerate")
        await bot.chat.wait_for("segment", 1)
