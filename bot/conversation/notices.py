"""The notice a restart posts instead of a message a crash left in doubt, on a platform that cannot
be asked to send it again without risking a second copy (Telegram: the Bot API has no idempotency
key). Whether the platform took the message before the crash is unknown; the user, who sees the
chat, knows: the notice says what may be missing and carries a 📤 Send again button (and, for a take,
its review buttons, so the review goes on either way)."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass

from bot.ports import Action, control_id

SEND_AGAIN = "📤 Send again"
#: Whether the platform took it is unknown: a crash, or a connection lost on the way back.
CUT_SHORT = "Sending {what} was cut short (by a restart or a lost connection)."
#: Left on a notice once what it offered was sent again.
SENT_AGAIN = "📤 Sent again below"

#: The review buttons of a take (the order of its video message's).
REVIEW = (
    ("✅ Approve", Action.APPROVE),
    ("🔁 Regenerate", Action.REGENERATE),
    ("↩ Undo", Action.UNDO),
    ("🏁 Approve & finish", Action.APPROVE_FINISH),
)


@dataclass(frozen=True)
class Notice:
    text: str
    controls: tuple[tuple[str, str], ...]


def take_notice(segment_id: int, number: int, roles: Collection[str]) -> Notice:
    """For the ``roles`` (``video``, ``frame``) of take ``segment_id`` (segment ``number``)."""
    if "video" in roles:
        what = "its video" if "frame" not in roles else "its video and last frame"
        controls = tuple((label, control_id(segment_id, action)) for label, action in REVIEW)
    else:
        what, controls = "its last frame", ()
    text = f"⚠ {CUT_SHORT.format(what=f'segment {number}')} If {what} is not above, tap {SEND_AGAIN}."
    if controls:
        text += " You can review it with the buttons here too."
    return Notice(text, ((SEND_AGAIN, control_id(segment_id, Action.RESEND)), *controls))


def final_notice(last_approved: int, parts: int, missing: Collection[int]) -> Notice:
    """For the parts ``missing`` (1-based) of a final in ``parts`` parts; the button names the
    session's last approved take."""
    if parts == 1:
        what = "your video"
    else:
        what = "part " + ", ".join(str(n) for n in sorted(missing)) + f" of your video (in {parts} parts)"
    text = f"⚠ {CUT_SHORT.format(what=what)} If it is not above, tap {SEND_AGAIN}."
    return Notice(text, ((SEND_AGAIN, control_id(last_approved, Action.RESEND_FINAL)),))
