"""One line per check: a mark, what was found, and what to do about it.

    ✓  fine
    !  the bot runs, but something deserves a look (an open bot, a token file others can read)
    ✗  the bot cannot run (or its first segment would fail) until this is fixed

``framechain doctor`` exits 0 when no line is ✗, whatever the warnings.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass


class Mark(enum.Enum):
    OK = "✓"
    WARN = "!"
    FAIL = "✗"


@dataclass(frozen=True)
class Check:
    mark: Mark
    #: What was checked, short: "python", "gpu cuda:0", "generation.vae".
    topic: str
    #: What was found, one sentence.
    found: str
    #: What to do, for a warning or a failure ("" when there is nothing to do).
    fix: str = ""

    def line(self) -> str:
        text = f"{self.mark.value} {self.topic}: {self.found}"
        return f"{text} — {self.fix}" if self.fix and self.mark is not Mark.OK else text


def ok(topic: str, found: str) -> Check:
    return Check(Mark.OK, topic, found)


def warn(topic: str, found: str, fix: str = "") -> Check:
    return Check(Mark.WARN, topic, found, fix)


def fail(topic: str, found: str, fix: str = "") -> Check:
    return Check(Mark.FAIL, topic, found, fix)


def can_run(checks: Iterable[Check]) -> bool:
    return all(c.mark is not Mark.FAIL for c in checks)
