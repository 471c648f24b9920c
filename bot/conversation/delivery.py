"""What of a post has already been delivered, read from the message ids the service records.

Each message of a post is recorded the moment the platform has accepted it (the port's ``sent``
callback), under its role: ``video`` and ``frame`` on a segment; ``final.1``, ``final.2``… on a
session for the parts of its final video. After a crash, a post is resumed with exactly the
roles that have no record, so nothing is sent twice and nothing is left out. A role recorded as
``""`` was deliberately not sent (a hand-off frame the platform refused); ``None`` records a
message that was deleted (a progress message once its result is up).

The window between the platform accepting a message and its record is closed with an intent:
``sending.<role>`` (:data:`SENDING`) is recorded right before the message is asked for, with the
idempotency key it is sent with and the time. After a crash, a role with an intent and no record
is in doubt (:func:`plan`): on a platform that deduplicates by key (Discord's nonce, for a few
minutes) it is sent again with the same key; elsewhere (Telegram has no such key) it is never sent
blindly again: the user gets a short notice with a 📤 Send again button and, for a take, its review
buttons, and the role is recorded as :data:`UNSURE` followed by the notice's id.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
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


#: Prefix of a role's intent record: ``{"key": idempotency key, "at": wall-clock time}``.
SENDING: Final = "sending."
#: Prefix of the record of a role a crash left in doubt, followed by the id of the notice that
#: offered to send it again.
UNSURE: Final = "?"


def intent_key(role: str) -> str:
    return SENDING + role


def intent(key: str, at: float) -> dict[str, Any]:
    return {"key": key, "at": at}


def is_unsure(value: Any) -> bool:
    return isinstance(value, str) and value.startswith(UNSURE)


def unsure(notice_id: str) -> str:
    return UNSURE + notice_id


@dataclass(frozen=True)
class Plan:
    """What a (resumed) post sends, worked out from the records of its roles."""

    #: Roles not to send: recorded (with an id, as not sent, or as in doubt).
    already: frozenset[str]
    #: Roles in doubt to send again with the key of their intent: the platform deduplicates them.
    again: Mapping[str, str] = field(default_factory=dict)
    #: Roles in doubt that must not be sent blindly: the user is asked instead.
    doubtful: frozenset[str] = frozenset()


def plan(posted: Mapping[str, Any], roles: Iterable[str], *, window: float, now: float, resend: bool = False) -> Plan:
    """Which of ``roles`` to send, again or not, for a platform that deduplicates a send repeated
    with the same key within ``window`` seconds (0: it cannot). ``resend``: the user asked for the
    roles in doubt (a notice's Send again): they are sent afresh."""
    already: set[str] = set()
    again: dict[str, str] = {}
    doubtful: set[str] = set()
    for role in roles:
        if role in posted:
            if not (resend and is_unsure(posted[role])):
                already.add(role)
            continue
        sending = posted.get(intent_key(role))
        if not isinstance(sending, Mapping) or resend:
            continue  # never asked for (or asked for again by the user): a plain send
        at = sending.get("at")
        if window > 0 and isinstance(at, (int, float)) and 0 <= now - at < window:
            again[role] = str(sending.get("key", ""))
        else:
            doubtful.add(role)
    return Plan(frozenset(already), again, frozenset(doubtful))


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
    a role recorded as not sent). A role in doubt names its notice, which carries the controls."""
    messages: dict[str, str] = {}
    for role, message_id in posted.items():
        if role not in SEGMENT_ROLES or message_id in (None, ""):
            continue
        text = str(message_id)
        messages[role] = text[len(UNSURE) :] if is_unsure(text) else text
    return {role: m for role, m in messages.items() if m}
