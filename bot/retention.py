"""Removing old sessions' media (``storage.retention_days``), on a timer in ``framechain run`` and
as ``framechain prune``.

Which sessions: finished or cancelled ones whose last change is older than the retention, and
*abandoned* ones: not over, waiting on their user (for a picture, a prompt or a review) with no
activity for that long. An abandoned session is cancelled quietly (nobody is messaged), then its
media go. A session with work still pending (a job queued or running, a join) is never touched,
nor a finished one whose final video has not been delivered yet. With ``storage.keep_finals``
the final videos (``final*.mp4``) of finished sessions stay. The database keeps every row.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shutil
import time
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

from bot.conversation import delivery
from bot.store import SessionRow, SessionState, Store
from shared.config import Config

log = logging.getLogger("framechain.retention")

#: States in which a session waits on its user; no activity for retention_days = abandoned.
WAITING = (SessionState.AWAITING_IMAGE, SessionState.AWAITING_PROMPT, SessionState.REVIEWING)
OVER = (SessionState.FINISHED, SessionState.CANCELLED)
DAY = 86400.0

#: Holds a session while it is pruned, so no action runs on it meanwhile (the service's lock).
Hold = Callable[[str], AbstractAsyncContextManager[None]]


@asynccontextmanager
async def _no_hold(session_id: str) -> AsyncIterator[None]:
    yield


@dataclass
class PruneReport:
    sessions: list[str] = field(default_factory=list)
    abandoned: list[str] = field(default_factory=list)
    files: int = 0
    bytes: int = 0

    def summary(self) -> str:
        return (
            f"{len(self.sessions)} session{'s' if len(self.sessions) != 1 else ''} pruned "
            f"({len(self.abandoned)} abandoned), {self.files} files, {self.bytes / 1e6:.1f} MB freed"
        )


def _keep(path: Path, row: SessionRow, keep_finals: bool) -> bool:
    return (
        keep_finals and row.state is SessionState.FINISHED and path.name.startswith("final") and path.suffix == ".mp4"
    )


def _remove_media(folder: Path, row: SessionRow, keep_finals: bool, dry_run: bool, report: PruneReport) -> None:
    if not folder.is_dir():
        return
    files = [p for p in folder.rglob("*") if p.is_file() and not _keep(p, row, keep_finals)]
    for path in files:
        with contextlib.suppress(OSError):
            size = path.stat().st_size
            if not dry_run:
                path.unlink()
            report.files += 1
            report.bytes += size
    if not dry_run and not any(folder.rglob("*.*")):
        shutil.rmtree(folder, ignore_errors=True)


def _due(row: SessionRow, cutoff: float) -> bool:
    if row.updated_at >= cutoff:
        return False
    # A finished session's final still to be delivered needs its files.
    return not (row.state is SessionState.FINISHED and row.final_video is not None and delivery.FINAL not in row.posted)


async def prune(
    store: Store,
    config: Config,
    *,
    now: float | None = None,
    dry_run: bool = False,
    hold: Hold = _no_hold,
) -> PruneReport:
    """Remove the media of sessions over or abandoned for longer than ``storage.retention_days``
    (nothing when it is 0). ``dry_run`` reports what would go and changes nothing."""
    report = PruneReport()
    days = config.storage.retention_days
    if days <= 0:
        return report
    cutoff = (time.time() if now is None else now) - days * DAY
    sessions_dir = config.data_dir / "sessions"
    for row in await store.list_sessions((*OVER, *WAITING)):
        if not _due(row, cutoff):
            continue
        folder = sessions_dir / row.id
        async with hold(row.id):
            row = await store.get_session(row.id)
            if not _due(row, cutoff):
                continue  # it moved on meanwhile
            if row.state in WAITING:
                report.abandoned.append(row.id)
                if not dry_run:
                    row = await store.update_session(row.id, state=SessionState.CANCELLED)
                    log.info("session %s abandoned for over %d days: cancelled", row.id, days)
            before = report.files
            await asyncio.to_thread(_remove_media, folder, row, config.storage.keep_finals, dry_run, report)
            if report.files > before or row.id in report.abandoned:
                report.sessions.append(row.id)
    if report.sessions and not dry_run:
        log.info("pruned: %s", report.summary())
    return report


async def keep_pruning(store: Store, config: Config, hold: Hold = _no_hold) -> None:
    """Prune now and every ``storage.prune_interval_hours`` until cancelled."""
    if config.storage.retention_days <= 0:
        return
    while True:
        try:
            await prune(store, config, hold=hold)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("pruning old sessions failed")
        await asyncio.sleep(config.storage.prune_interval_hours * 3600)
