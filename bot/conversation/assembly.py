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
        out = self.media.session_dir(row.id) / "final.mp4"
        event: core.Event
        try:
            # Checked first, so a low disk is said plainly instead of failing half-way.
            problem = self.disk.join_problem(masters)
            if problem:
                await self.alerts.tell("disk", admin_note(problem, self.config.data_dir))
                event = core.AssemblyFailed(message=f"{problem}; the bot's admins have been told")
            else:
                fps = self.config.generation.fps
                result = await asyncio.to_thread(join_segments, masters, out, fps, overlaps=overlaps)
                log.info("session %s joined: %d frames, %d bytes", row.id, result.frames, result.bytes)
                event = core.AssemblyDone(path=str(result.path))
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
