"""The quotas' pure part: the quota day, durations, the refusals and the /status line."""

from __future__ import annotations

import pytest

from bot.core import (
    Quota,
    Session,
    Status,
    day_start,
    duration_text,
    gpu_time_used_up_text,
    next_reset,
    quota_text,
    status_text,
    step,
)

#: 2025-01-01 00:00 UTC.
NEW_YEAR = 1_735_689_600.0
HOUR = 3600.0


@pytest.mark.parametrize(
    ("now", "hour", "reset"),
    [
        (NEW_YEAR, 0, NEW_YEAR + 24 * HOUR),  # exactly at the reset: the day has just begun
        (NEW_YEAR - 1, 0, NEW_YEAR),
        (NEW_YEAR + 20 * HOUR + 48 * 60, 0, NEW_YEAR + 24 * HOUR),
        (NEW_YEAR + 5 * HOUR, 6, NEW_YEAR + 6 * HOUR),
        (NEW_YEAR + 7 * HOUR, 6, NEW_YEAR + 30 * HOUR),
    ],
)
def test_the_quota_day_resets_at_the_configured_hour_utc(now: float, hour: int, reset: float) -> None:
    assert next_reset(now, hour) == reset
    assert day_start(now, hour) == reset - 24 * HOUR <= now < reset


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(0, "0 s"), (0.2, "1 s"), (45, "45 s"), (245, "4 min 5 s"), (720, "12 min"), (3600, "1 h"), (11520, "3 h 12 min")],
)
def test_durations_read_as_people_say_them(seconds: float, text: str) -> None:
    assert duration_text(seconds) == text


def test_the_gpu_refusal_names_the_limit_and_when_it_resets() -> None:
    text = gpu_time_used_up_text(3700.0, 3600, 0, 3 * HOUR + 12 * 60)
    assert text == (
        "You've used your GPU time for today (1 h 1 min of 1 h). "
        "It resets at 00:00 UTC, in 3 h 12 min; send this again then."
    )


def test_quota_line_shows_what_is_left() -> None:
    q = Quota(
        gpu_seconds_used=600,
        gpu_seconds_limit=3600,
        reset_hour=0,
        resets_in=3 * HOUR + 12 * 60,
        jobs_pending=1,
        jobs_limit=4,
        sessions_active=1,
        sessions_limit=3,
    )
    assert quota_text(q) == (
        "Your quota: GPU time today 10 min of 1 h used, 50 min left (resets at 00:00 UTC, in 3 h 12 min); "
        "1 of 4 segments waiting; 1 of 3 active sessions."
    )
    assert "no daily limit" in quota_text(Quota(gpu_seconds_limit=0))
    assert "0 s left" in quota_text(Quota(gpu_seconds_used=4000, gpu_seconds_limit=3600))
    assert quota_text(Quota(exempt=True)) == "Quotas: none apply to you (admin)."


def test_status_carries_the_asking_users_quota() -> None:
    s = Session(id="s", owner_id="owner")
    q = Quota(exempt=True)
    assert status_text(s) == "Waiting for the start picture."
    assert status_text(s, None, q) == "Waiting for the start picture.\nQuotas: none apply to you (admin)."
    # Anyone may ask: a stranger's /status shows their own quota, and changes nothing.
    new, effects = step(s, Status(user_id="stranger", quota=q))
    assert new is s and [e.text for e in effects] == [status_text(s, None, q)]  # type: ignore[attr-defined]
