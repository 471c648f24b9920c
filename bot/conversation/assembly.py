"""Joining a finished session's approved segments into its final video, off the event loop; the
outcome goes back to the core as an event (``AssemblyDone`` or ``AssemblyFailed``)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from pathlib import Path

from bot import core
from bot.conversation.alerts import AdminAlerts
from bot.conversation.media import Media
from bot.disk import DiskSpace, admin_note, is_disk_full
from bot.store import SessionRow
from shared.config import Config
from shared.smooth_playback import x2_overlap, x2_path

log = logging.getLogger("framechain.service")

#: Where a join's outcome goes: the session's id and the event for the core.
Report = Callable[[str, core.Event], Awaitable[None]]


class Assemblies:
    """The joins running now, one per session at most."""

    def __init__(self, config: Config, media: Media, report: Report, *, disk: DiskSpace, alerts: AdminAlerts) -> None:
        self.config = config
        self.media = media
        self.report = report
        self.disk = disk
        self.alerts = alerts
        self._running: dict[str, asyncio.Task[None]] = {}

    def running(self) -> list[asyncio.Task[None]]:
        return list(self._running.values())

    def start(self, row: SessionRow, segments: tuple[core.Segment, ...]) -> None:
        previous = self._running.pop(row.id, None)
        if previous is not None:
            previous.cancel()
        task = asyncio.create_task(self._assemble(row, segments), name=f"assemble-{row.id}")
        self._running[row.id] = task

    def cancel(self, session_id: str) -> None:
        task = self._running.pop(session_id, None)
        if task is not None:
            task.cancel()

    async def _assemble(self, row: SessionRow, segments: tuple[core.Segment, ...]) -> None:
        from worker.video import join_segments

        done = [s.result for s in segments if s.result is not None]
        masters = [Path(r.video) for r in done]
        # Each later take drops the head frames it shares with its predecessor, once (SVI: 4).
        overlaps = [0, *(r.overlap for r in done[1:])]
        masters, overlaps, fps, note = self._smooth(masters, overlaps)
        out = self.media.session_dir(row.id) / "final.mp4"
        event: core.Event
        try:
            # Checked first, so a low disk is said plainly instead of failing half-way.
            problem = self.disk.join_problem(masters)
            if problem:
                await self.alerts.tell("disk", admin_note(problem, self.config.data_dir))
                event = core.AssemblyFailed(message=f"{problem}; the bot's admins have been told")
            else:
                result = await asyncio.to_thread(join_segments, masters, out, fps, overlaps=overlaps)
                log.info("session %s joined: %d frames at %d fps, %d bytes", row.id, result.frames, fps, result.bytes)
                event = core.AssemblyDone(path=str(result.path), note=note)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            if is_disk_full(exc):
                log.error("joining session %s failed: the disk is full (%s)", row.id, exc)
                await self.alerts.tell("disk", admin_note("it is full", self.config.data_dir))
                event = core.AssemblyFailed(message="the server's disk is full; the bot's admins have been told")
            else:
                log.exception("joining session %s failed", row.id)
                event = core.AssemblyFailed(message="")
        finally:
            self._running.pop(row.id, None)
        await self.report(row.id, event)

    def _smooth(self, masters: list[Path], overlaps: list[int]) -> tuple[list[Path], list[int], int, str]:
        """What the final is joined from: with smooth playback, the takes' 2x copies at twice the
        frame rate (each overlap scaled, so J frames at 1x give 2J-1), when every take has one;
        else the masters, and a note saying why the final is not smooth."""
        g = self.config.generation
        if not g.smooth_playback:
            return masters, overlaps, g.fps, ""
        copies = [x2_path(m) for m in masters]
        if all(c.is_file() for c in copies):
            note = f"(smooth playback: {g.final_fps} fps, in-between frames drawn by RIFE)"
            return copies, [x2_overlap(n) for n in overlaps], g.final_fps, note
        missing = sum(not c.is_file() for c in copies)
        note = (
            f"(at {g.fps} fps, not {g.final_fps}: {missing} of the segments "
            "have no smooth-playback copy, made before it was turned on or its interpolation failed)"
        )
        return masters, overlaps, g.fps, note
