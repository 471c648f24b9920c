"""The quotas' arithmetic and texts: when the quota day resets, and what a user is told when a
quota stops them or when they ask /status. Pure, no I/O: the numbers come from the service
(``bot.conversation.quotas``). Re-exported by :mod:`bot.core`."""

from __future__ import annotations

import math

from bot.core_model import Quota

DAY = 86_400.0


def next_reset(now: float, hour: int) -> float:
    """The first ``hour``:00 UTC strictly after ``now`` (both epoch seconds)."""
    offset = hour * 3600.0
    return (math.floor((now - offset) / DAY) + 1) * DAY + offset


def day_start(now: float, hour: int) -> float:
    """Where the quota day holding ``now`` began."""
    return next_reset(now, hour) - DAY


def duration_text(seconds: float) -> str:
    """``3 h 12 min``, ``12 min``, ``4 min 5 s``, ``45 s``: as precise as a person needs."""
    total = max(0, math.ceil(seconds))
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours} h {minutes} min" if minutes else f"{hours} h"
    if minutes:
        return f"{minutes} min {secs} s" if secs and minutes < 10 else f"{minutes} min"
    return f"{secs} s"


def reset_text(hour: int, resets_in: float) -> str:
    return f"resets at {hour:02d}:00 UTC, in {duration_text(resets_in)}"


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


# -- refusals -------------------------------------------------------------------------------------


def sessions_full_text(active: int, limit: int) -> str:
    return (
        f"You already have {_plural(active, 'active session')} — the limit is {limit} per person. "
        "/finish or /cancel one of them (in its chat) to start another."
    )


def user_queue_full_text(pending: int, limit: int) -> str:
    return (
        f"You already have {_plural(pending, 'segment')} waiting — the limit is {limit} per person; "
        "send this again once one is done."
    )


def queue_full_text(pending: int, cap: int) -> str:
    return (
        f"The queue is full: {_plural(pending, 'segment')} queued or being made, and the limit is {cap} "
        "for everyone. Send this again in a few minutes, once some are done."
    )


def gpu_time_used_up_text(used: float, limit: int, hour: int, resets_in: float) -> str:
    return (
        f"You've used your GPU time for today ({duration_text(used)} of {duration_text(limit)}). "
        f"It {reset_text(hour, resets_in)}; send this again then."
    )


# -- /status --------------------------------------------------------------------------------------


def quota_text(q: Quota) -> str:
    if q.exempt:
        return "Quotas: none apply to you (admin)."
    if q.gpu_seconds_limit:
        left = max(0.0, q.gpu_seconds_limit - q.gpu_seconds_used)
        gpu = (
            f"GPU time today {duration_text(q.gpu_seconds_used)} of {duration_text(q.gpu_seconds_limit)} used, "
            f"{duration_text(left)} left ({reset_text(q.reset_hour, q.resets_in)})"
        )
    else:
        gpu = "GPU time: no daily limit"
    return (
        f"Your quota: {gpu}; {q.jobs_pending} of {q.jobs_limit} segments waiting; "
        f"{q.sessions_active} of {_plural(q.sessions_limit, 'active session')}."
    )
