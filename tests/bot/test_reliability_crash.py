"""A few runs of the crash-consistency figure (bench/reliability.py runs 100): the bot killed with
SIGKILL at a random moment of a scripted session, or in the middle of a message's delivery,
restarted on the same data, and driven on to its final video with nothing lost and nothing posted
twice."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.bot.crash_runs import KILL_POINTS, run_many, run_targeted


def test_random_kills_lose_nothing_and_post_nothing_twice(tmp_path: Path) -> None:
    window, runs = run_many(tmp_path, kills=3, seed=7)
    assert window > 0
    assert [r.problems for r in runs] == [[] for _ in runs]
    assert sum(r.killed for r in runs) == 3
    assert all(r.finished and r.integrity_at_end == "ok" for r in runs)


@pytest.mark.parametrize("role", ["video", "frame", "final.1"])
def test_a_kill_in_the_middle_of_a_delivery_loses_nothing_and_posts_nothing_twice(tmp_path: Path, role: str) -> None:
    # Right after the platform accepted the message, before the bot heard back; once it was told;
    # and once the bot recorded it would send it, before the platform got it.
    points = tuple(p for p in KILL_POINTS if p.split(":")[-1] == role)
    runs = run_targeted(tmp_path, points)
    assert [(r.kill, r.problems) for r in runs] == [(f"after {p}", []) for p in points]
    assert all(r.killed and r.finished for r in runs)
    assert sum(r.duplicate_posts + r.duplicate_finals for r in runs) == 0
    assert sum(r.lost_posts + r.missing_files for r in runs) == 0
    accepted, told, before = runs
    # Accepted unheard: in doubt, so the user is asked, but it is there: no tap.
    assert (accepted.notices, accepted.sent_again) == (1, 0)
    assert (told.notices, told.sent_again) == (0, 0)
    # Never reached the platform: the notice's Send again brings it.
    assert (before.notices, before.sent_again) == (1, 1)
