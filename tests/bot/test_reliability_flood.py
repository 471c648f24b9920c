"""A small flood through the Telegram front end (bench/reliability.py floods 1,000 messages from
50 users): every message answered, no apology, jobs per user within the quota. Event-loop lag is
measured and reported there, not asserted here: on a shared CI machine it says more about the
neighbours than about the bot."""

from __future__ import annotations

from pathlib import Path

from tests.bot.flood import flood


async def test_a_small_flood_is_answered_in_full(tmp_path: Path) -> None:
    figures = await flood(tmp_path, users=8, per_user=6, big=0, timeout=120)
    assert figures.messages == 48
    assert (figures.answered, figures.unanswered, figures.apologies) == (48, 0, 0)
    assert 1 <= figures.max_jobs_per_user <= figures.queued_jobs_per_user_quota
    assert figures.max_jobs_in_all <= 8  # one take at a time per session
