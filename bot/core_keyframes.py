"""End keyframes (/end): the frame the next segment should end on. Pure; part of the core's rules
(:mod:`bot.core` re-exports and dispatches to it).

- ``/end`` with a picture sets the session's keyframe; every new take aims at it (its
  ``Segment.end_image``) until a take aimed at it is approved, which clears it. A regenerate of
  that segment, or a retry after a failure, aims at it again.
- It is taken in every state before assembling: before the start picture (the first segment ends
  on it), while waiting for a prompt, and while a take is made or under review (that take was
  queued without it: a regenerate, or the next segment, aims at it).
- ``/end clear`` removes it; ``/end`` alone says whether one is set.
- Undoing an approved segment that was aimed at a keyframe sets that keyframe again, unless
  another one is set meanwhile (see ``bot.core._on_undo``).
- Where some worker cannot aim at a keyframe (a ComfyUI server), ``Limits.keyframes`` is False
  and /end is refused with the reason.
"""

from __future__ import annotations

from dataclasses import replace

from bot.core_model import Effect, EndFrame, Event, Limits, Say, Segment, Session, State

NO_KEYFRAMES = (
    "End keyframes aren't available on this server: it renders on a ComfyUI server, whose graph has no end-frame input."
)
HOW = (
    "Send /end with a picture (sent with it, or as a reply to one) to set the frame "
    "the next segment should end on; /end clear removes it."
)


def on_end_frame(s: Session, e: Event, limits: Limits) -> tuple[Session, list[Effect]]:
    assert isinstance(e, EndFrame)
    if not limits.keyframes:
        return s, [Say(NO_KEYFRAMES)]
    if e.clear:
        if s.end_image is None:
            return s, [Say("There's no end keyframe to clear.")]
        return replace(s, end_image=None), [
            Say("End keyframe removed: the next segment ends wherever its prompt leads.")
        ]
    if e.picture is None:
        if s.end_image is None:
            return s, [Say(f"No end keyframe is set. {HOW}")]
        return s, [Say(f"🎯 The next segment is aimed at the end keyframe you sent. {HOW}")]
    s = replace(s, end_image=e.picture.path)
    return s, [Say(f"🎯 Got the end keyframe. {_applies_to(s)} (/end clear removes it.)")]


def _applies_to(s: Session) -> str:
    number = len(s.approved) + 1
    if s.state is State.AWAITING_IMAGE:
        return "The first segment will end on this picture. Now send the start picture."
    cur = s.current
    if s.state in (State.GENERATING, State.REVIEWING) and cur is not None:
        made = "is being made" if s.state is State.GENERATING else "was made"
        return (
            f"Segment {cur.number} {made} without it: 🔁 regenerate it to aim it there, or approve it "
            f"and segment {cur.number + 1} will end on this picture."
        )
    return f"Segment {number} will end on this picture: send its prompt."


def after_approval(s: Session, approved: Segment) -> Session:
    """Approving a take aimed at the session's keyframe uses the keyframe up."""
    if approved.end_image is not None and approved.end_image == s.end_image:
        return replace(s, end_image=None)
    return s


def after_undo(s: Session, dropped: Segment) -> Session:
    """Undoing an approved take aimed at a keyframe sets that keyframe again (approval's
    inverse), unless the user has set another one since."""
    if dropped.end_image is not None and s.end_image is None:
        return replace(s, end_image=dropped.end_image)
    return s
