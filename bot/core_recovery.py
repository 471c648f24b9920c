"""Reading a session back from the store, and bringing it together after a crash. Pure, no I/O.

The store holds a session's state and its takes separately, and they are written in one
transaction, but a take's job report is stored *before* the core hears of it (the worker's
result must not be lost), so a crash in between leaves, say, a done take under a session still
``generating``. :func:`restore` is how the running service reads a session (such a take is still
being reported); :func:`reconcile`, run once at start-up, brings every pair that disagrees to
the state its takes imply, listed in :data:`RECONCILE`. Re-exported by :mod:`bot.core`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace

from bot.core_model import Effect, PostSegment, Say, Segment, Session, State, Take, TakeStatus
from bot.core_settings import review_caption

_S, _T = State, TakeStatus

#: Which stored take each saved state reads as its ``current`` while the service runs. While
#: generating, the take may already be stored done or failed: its report is on its way.
_CURRENT: Mapping[State, frozenset[TakeStatus]] = {
    _S.GENERATING: frozenset({_T.PENDING, _T.DONE, _T.FAILED}),
    _S.REVIEWING: frozenset({_T.DONE}),
    _S.AWAITING_PROMPT: frozenset({_T.FAILED}),
}

#: (saved state, status of the newest take at the next chain position, None for no take) ->
#: the state the session is brought to on start-up. Pairs not listed agree already, or (an
#: interrupted join, a session that is over) are the service's to resume as they are.
RECONCILE: Mapping[tuple[State, TakeStatus | None], State] = {
    (_S.GENERATING, _T.DONE): _S.REVIEWING,  # the take was made: post it for review
    (_S.GENERATING, _T.FAILED): _S.AWAITING_PROMPT,  # it failed: retry or a new prompt
    (_S.GENERATING, _T.SETTLED): _S.AWAITING_PROMPT,
    (_S.GENERATING, None): _S.AWAITING_PROMPT,
    (_S.REVIEWING, _T.PENDING): _S.GENERATING,  # its job is queued again and will report
    (_S.REVIEWING, _T.FAILED): _S.AWAITING_PROMPT,
    (_S.REVIEWING, _T.SETTLED): _S.AWAITING_PROMPT,
    (_S.REVIEWING, None): _S.AWAITING_PROMPT,
    (_S.AWAITING_PROMPT, _T.PENDING): _S.GENERATING,
    (_S.AWAITING_PROMPT, _T.DONE): _S.REVIEWING,
}


def restore(base: Session, saved: State, take: Take | None) -> Session:
    """The session as the running service sees it.

    ``base`` holds everything but the state and the current take (its own ``state`` and
    ``current`` are ignored; ``awaiting_image`` with no take is always a valid base); ``take`` is
    the newest stored take at the next chain position. Raises ValueError if they disagree in a
    way only :func:`reconcile` can mend."""
    current = None
    if take is not None and _status(take) in _CURRENT.get(saved, frozenset()):
        current = take.segment
        if saved is State.GENERATING:
            current = replace(current, result=None)
    return replace(base, state=saved, current=current, kept=_kept(saved, take), making=_making(saved, take))


def _making(state: State, take: Take | None) -> tuple[Segment, ...]:
    """The other takes of a batch being made beside the current one (see ``Session.making``)."""
    if take is None or state is not State.GENERATING:
        return ()
    # A take of the batch may be stored done or failed already: its report is on its way.
    return tuple(replace(m, result=None) for m in take.making)


def _kept(state: State, take: Take | None) -> tuple[Segment, ...]:
    """The earlier takes a session in ``state`` keeps up for approval (see ``Session.kept``)."""
    return take.earlier if take is not None and state in _KEEPS else ()


#: The states that keep earlier takes of the next chain position.
_KEEPS = frozenset({_S.GENERATING, _S.REVIEWING, _S.AWAITING_PROMPT})


def reconcile(base: Session, saved: State, take: Take | None) -> tuple[Session, list[Effect]]:
    """The session brought to the state its takes imply, and what to do about it (post the take
    for review, tell the user). A session that agrees is returned as :func:`restore` reads it,
    with no effects. Arguments as for :func:`restore`."""
    status = _status(take) if take is not None else None
    target = RECONCILE.get((saved, status))
    if target is None:
        return restore(base, saved, take), []
    if target is State.REVIEWING:
        assert take is not None
        s = replace(base, state=target, current=take.segment, kept=_kept(target, take))
        return s, [PostSegment(s.id, take.segment, review_caption(take.segment))]
    if target is State.GENERATING:
        assert take is not None
        current = replace(take.segment, result=None)
        return replace(base, state=target, current=current, kept=_kept(target, take), making=_making(target, take)), []
    number = len(base.approved) + 1
    if status is TakeStatus.FAILED:
        assert take is not None
        s = replace(base, state=target, current=replace(take.segment, result=None), kept=_kept(target, take))
        return s, [Say(f"Segment {number} couldn't be made. /regenerate to try again, or send a new prompt.")]
    s = replace(base, state=target, current=None, kept=_kept(target, take))
    return s, [Say(f"Segment {number} was stopped by a restart. Send a prompt for it.")]


def _status(take: Take) -> TakeStatus:
    # A done take whose files are not all recorded cannot be reviewed: it counts as failed.
    if take.status is TakeStatus.DONE and take.segment.result is None:
        return TakeStatus.FAILED
    return take.status
