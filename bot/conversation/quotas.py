"""The quotas: how many sessions and queued jobs a user may have, how many jobs all users
together, and how much GPU time a user may use a day. The numbers come from ``[limits]`` and the
store; the texts and the day's arithmetic are pure (``bot.core_quotas``).

A quota that stops something is answered with the limit and when it frees up; nothing is
dropped without a word. Admins (the platform's ``admin_ids``) are exempt from every quota,
whether they own the session or act on someone else's. GPU time is the worker's own timing of
each finished job (``done.seconds``), charged to the session's owner in the store; a job already
queued when the day's time runs out still runs.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from bot import core
from bot.store import Platform, SegmentRow, SessionRow, Store
from shared.config import Config


class Quotas:
    def __init__(self, store: Store, config: Config, *, clock: Callable[[], float] = time.time) -> None:
        self.store = store
        self.limits = config.limits
        self.config = config
        #: Wall-clock time (epoch seconds): the quota day is a UTC day.
        self.clock = clock

    def is_admin(self, platform: Platform | str, user_id: str) -> bool:
        """A configured admin of that platform (the owner of a session need not be acting)."""
        admins: tuple[int, ...] = ()
        if Platform(platform) is Platform.TELEGRAM:
            admins = self.config.telegram.admin_ids
        elif Platform(platform) is Platform.DISCORD:
            admins = self.config.discord.admin_ids
        elif Platform(platform) is Platform.WEB:
            return user_id in self.config.web.admins
        return user_id.isdigit() and int(user_id) in admins

    def _exempt(self, platform: Platform | str, user_id: str, acting_admin: bool) -> bool:
        return acting_admin or self.is_admin(platform, user_id)

    def _day(self) -> tuple[float, float]:
        """The current quota day's start, and the seconds until the next one."""
        now = self.clock()
        hour = self.limits.quota_reset_hour_utc
        return core.day_start(now, hour), core.next_reset(now, hour) - now

    # --- what may start -----------------------------------------------------------------------

    async def new_session_refusal(self, platform: Platform | str, user_id: str, *, is_admin: bool) -> str | None:
        """Why ``user_id`` may not start another session now, or None."""
        if self._exempt(platform, user_id, is_admin):
            return None
        active = await self.store.count_active_sessions(platform, user_id)
        limit = self.limits.active_sessions_per_user
        return core.sessions_full_text(active, limit) if active >= limit else None

    async def new_job_refusal(self, row: SessionRow, *, is_admin: bool, jobs: int = 1) -> str | None:
        """Why the session may not queue ``jobs`` more takes now (a prompt with ``takes = N``
        queues N: each counts as a job), or None. The owner's quotas count (their jobs, their GPU
        time); ``is_admin``: the acting user is an admin."""
        if self._exempt(row.platform, row.owner_id, is_admin):
            return None
        lim = self.limits
        if lim.gpu_seconds_per_user_per_day:
            since, resets_in = self._day()
            used = await self.store.gpu_seconds_since(row.platform, row.owner_id, since)
            if used >= lim.gpu_seconds_per_user_per_day:
                return core.gpu_time_used_up_text(
                    used, lim.gpu_seconds_per_user_per_day, lim.quota_reset_hour_utc, resets_in
                )
        pending = await self.store.count_pending_jobs(row.platform, row.owner_id)
        if pending + jobs > lim.queued_jobs_per_user:
            text = core.user_queue_full_text(pending, lim.queued_jobs_per_user)
            if jobs > 1:
                text += f" (This prompt needs {jobs} places for its {jobs} takes; /settings takes=1 needs one.)"
            return text
        total = await self.store.count_all_pending_jobs()
        if total + jobs > lim.queued_jobs_total:
            return core.queue_full_text(total, lim.queued_jobs_total)
        return None

    # --- GPU time -----------------------------------------------------------------------------

    async def charge(self, segment: SegmentRow, seconds: float) -> None:
        """Charge a finished job's GPU time to its session's owner (once per job)."""
        row = await self.store.get_session(segment.session_id)
        await self.store.record_gpu_seconds(segment.id, row.platform, row.owner_id, seconds, at=self.clock())

    # --- /status ------------------------------------------------------------------------------

    async def of(self, platform: Platform | str, user_id: str, *, is_admin: bool) -> core.Quota:
        """What is left of one user's quotas."""
        if self._exempt(platform, user_id, is_admin):
            return core.Quota(exempt=True)
        lim = self.limits
        since, resets_in = self._day()
        return core.Quota(
            gpu_seconds_used=await self.store.gpu_seconds_since(platform, user_id, since),
            gpu_seconds_limit=lim.gpu_seconds_per_user_per_day,
            reset_hour=lim.quota_reset_hour_utc,
            resets_in=resets_in,
            jobs_pending=await self.store.count_pending_jobs(platform, user_id),
            jobs_limit=lim.queued_jobs_per_user,
            sessions_active=await self.store.count_active_sessions(platform, user_id),
            sessions_limit=lim.active_sessions_per_user,
        )
