"""The hostile-input corpus through both chat front ends and ``framechain render``: every case
gets its clear answer, nothing is queued or written, and no exception reaches the platform library."""

from __future__ import annotations

from pathlib import Path

from tests.bot.hostile_runner import Outcome, run_discord, run_render, run_telegram
from tests.hostile_text import TEXT_CASES


def failures(outcomes: list[Outcome]) -> list[str]:
    return [f"{o.platform}/{o.case}: {o.problem} (answer: {o.answer!r})" for o in outcomes if not o.ok]


def test_the_corpus_has_at_least_30_text_cases() -> None:
    assert len(TEXT_CASES) >= 30
    assert {c.kind for c in TEXT_CASES} == {"text", "command", "settings"}


async def test_every_case_through_telegram(tmp_path: Path) -> None:
    outcomes = await run_telegram(tmp_path)
    assert not failures(outcomes)
    assert len([o for o in outcomes if not o.skipped]) >= 30


async def test_every_case_through_discord(tmp_path: Path) -> None:
    outcomes = await run_discord(tmp_path)
    assert not failures(outcomes)
    assert len([o for o in outcomes if not o.skipped]) >= 30


def test_every_case_through_render(tmp_path: Path) -> None:
    assert not failures(run_render(tmp_path))
