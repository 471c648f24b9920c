"""What the core answers when it refuses an event or confirms a press: pure texts, no I/O.

A refused event leaves the session unchanged; its answer is at most one :class:`Say`. Notes
for the acting user alone are ``ephemeral``. Re-exported by :mod:`bot.core`.
"""

from __future__ import annotations

from bot.core_model import (
    Approve,
    ApproveAndFinish,
    Cancel,
    ChangeSettings,
    Effect,
    Event,
    Finish,
    ImageReceived,
    PromptText,
    Regenerate,
    Say,
    SegmentKey,
    Session,
    Start,
    State,
    Status,
    Undo,
    UserEvent,
    Via,
)
from bot.core_settings import settings_text, status_text

ENDED = "This session has ended. Send /start with a picture to begin a new one."
STALE = "That take is no longer up for review."


def refuse_stranger(event: UserEvent) -> list[Effect]:
    if event.via in (Via.MESSAGE, Via.REACTION):
        return []
    return [Say("Only the person who started this session can do that.", ephemeral=True)]


def pressed(e: UserEvent, text: str) -> list[Effect]:
    """A control press's private confirmation (typed commands are answered by the public text)."""
    return [Say(text, ephemeral=True)] if e.via is Via.CONTROL else []


def not_accepted(s: Session, event: Event) -> list[Effect]:
    """The answer to an event the current state does not accept."""
    if not isinstance(event, UserEvent):
        return []  # a late report about a stopped or superseded job
    if isinstance(event, Status):
        return [Say(status_text(s, event.queue_position, event.quota, drift=event.drift))]
    if isinstance(event, ChangeSettings) and not event.changes:
        return [Say(f"Settings: {settings_text(s.settings)}")]
    if s.state is State.FINISHED and isinstance(event, (Finish, ApproveAndFinish, Cancel)):
        return [Say("This session is already finished.", ephemeral=True)]
    if s.state is State.CANCELLED and isinstance(event, Cancel):
        return [Say("This session is already cancelled.", ephemeral=True)]
    if s.state.over:
        return [Say(ENDED, ephemeral=event.via is not Via.MESSAGE)]
    if s.state is State.REVIEWING and isinstance(event, Finish):
        return [finish_under_review(s, event)]
    if isinstance(event, (Approve, Regenerate, ApproveAndFinish)):
        return [stale_review(s, event.segment)]
    # A press (a button or a reaction) is answered to its presser alone, as every press is.
    private = isinstance(event, ChangeSettings) or event.via in (Via.CONTROL, Via.REACTION)
    return [Say(busy_text(s, event), ephemeral=private)]


def stale_review(s: Session, key: SegmentKey | None) -> Say:
    if key is not None and any(seg.key == key for seg in s.approved):
        text = f"Segment {key.idx + 1} is already approved."
    elif key is not None:
        text = STALE
    elif s.state is State.GENERATING and s.current is not None:
        text = f"Segment {s.current.number} is still being made."
    else:
        text = "There is no segment waiting for review."
    return Say(text, ephemeral=True)


def finish_under_review(s: Session, e: Finish) -> Say:
    """Finishing never silently leaves the take under review out: it asks, and changes nothing."""
    cur = s.current
    assert cur is not None
    if e.segment is not None and e.segment != cur.key and not is_last_approved(s, e.segment):
        return stale_review(s, e.segment)
    take = f"Segment {cur.number} take {cur.attempt}"
    if not s.approved:
        return Say(f"{take} is still under review: 🏁 Approve & finish makes it the video.", ephemeral=True)
    return Say(f"{take} is still under review: 🏁 Approve & finish includes it, ↩ Undo drops it.", ephemeral=True)


def is_last_approved(s: Session, key: SegmentKey) -> bool:
    return bool(s.approved) and s.approved[-1].key == key


def busy_text(s: Session, event: UserEvent) -> str:
    cur = s.current
    if isinstance(event, Start):
        return "A session is already running here — /finish or /cancel it first."
    if s.state is State.ASSEMBLING:
        return "I'm joining the video now — hang on, it will arrive here."
    if isinstance(event, ImageReceived):
        return second_picture_text(s)
    if isinstance(event, (Undo, Finish)):  # only awaiting_image refuses these while active
        return "Nothing to do yet — send the start picture first."
    if isinstance(event, PromptText) and s.state is State.GENERATING and cur is not None:
        return (
            f"Still working on segment {cur.number} — I'll post it for review when it's ready. "
            "Send the next prompt after that."
        )
    if isinstance(event, PromptText) and cur is not None:
        return (
            f"Segment {cur.number} is waiting for review: approve ✅ or regenerate 🔁 it first "
            "(/regenerate <prompt> redoes it with a new prompt)."
        )
    if isinstance(event, ChangeSettings) and cur is not None:
        return f"Settings can't change while segment {cur.number} is being made — try again once it's ready."
    return "That can't be done right now."


def second_picture_text(s: Session) -> str:
    if s.approved:
        return (
            "This session already has its start picture, and the next segment continues from the last "
            "approved one. To start over from another picture, /cancel, then /start."
        )
    if s.state is State.GENERATING:
        return "To start from this picture instead, /undo to stop segment 1, then send the picture again."
    return "To start from this picture instead, ↩ Undo the take of segment 1, then send the picture again."
