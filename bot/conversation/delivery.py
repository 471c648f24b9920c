"""What of a post has already been delivered, read from the message ids the service records.

Each message of a post is recorded the moment the platform has accepted it (the port's ``sent``
callback), under its role: ``video`` and ``frame`` on a segment; ``final.1``, ``final.2``… on a
session for the parts of its final video. After a crash, a post is resumed with exactly the
roles that have no record, so nothing is sent twice and nothing is left out. A role recorded as
``""`` was deliberately not sent (a hand-off frame the platform refused); ``None`` records a
message that was deleted (a progress message once its result is up).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

#: The messages of a segment post; the post is complete when each has a record.
SEGMENT_ROLES: Final = frozenset({"video", "frame"})
#: The take's progress message (on a segment's record).
PROGRESS: Final = "progress"
#: On a session: the final is delivered (the parts' ids, or "unsendable").
FINAL: Final = "final"
#: On a session: the part files the final is sent as, chosen once, before the first is sent.
FINAL_PARTS: Final = "final.parts"
#: On a session: the storyboard sheet sent after the final (its id; "" while it is sent, or when it
#: could not be: it is sent at most once).
FINAL_STORYBOARD: Final = "final.storyboard"


def segment_already(posted: Mapping[str, Any]) -> frozenset[str]:
    """The roles of a segment post that need not be sent (again)."""
    return frozenset(role for role in SEGMENT_ROLES if role in posted)


def segment_delivered(posted: Mapping[str, Any]) -> bool:
    return segment_already(posted) == SEGMENT_ROLES


def part_key(number: int) -> str:
    return f"final.{number}"


def final_already(posted: Mapping[str, Any], count: int) -> frozenset[int]:
    """The part numbers (1-based) of a final in ``count`` parts that were already sent."""
    return frozenset(n for n in range(1, count + 1) if part_key(n) in posted)


def control_messages(posted: Mapping[str, Any]) -> dict[str, str]:
    """The messages of a segment post that may carry its controls (not the progress message, nor
    a role recorded as not sent)."""
    return {
        role: str(message_id)
        for role, message_id in posted.items()
        if role in SEGMENT_ROLES and message_id not in (None, "")
    }
