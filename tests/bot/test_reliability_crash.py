"""A few runs of the crash-consistency figure (bench/reliability.py runs 100): the bot killed with
SIGKILL at a random moment of a scripted session, restarted on the same data, and driven on to
its final video with nothing lost and nothing posted twice."""

from __future__ import annotations

from pathlib import Path

from tests.bot.crash_runs import run_many


def test_random_kills_lose_nothing_and_post_nothing_twice(tmp_path: Path) -> None:
    window, runs = run_many(tmp_path, kills=3, seed=7)
    assert window > 0
    assert [r.problems for r in runs] == [[] for _ in runs]
    assert sum(r.killed for r in runs) == 3
    assert all(r.finished and r.integrity_at_end == "ok" for r in runs)
