"""Takes: several takes of one segment to choose from. Pure; part of the core's rules (:mod:`bot.core`
re-exports and dispatches to it).

- ``settings takes = N`` (1–4): a prompt queues N takes at once, one batch (``Segment.batch``),
  each its own job with its own seed (a fixed seed S gives take k the seed S + k - 1; random
  draws one per take), so the dispatcher runs them side by side where devices are idle.
- While any take of the batch is made the session is ``generating``: ``current`` is the newest
  take being made, ``making`` the others; a take done meanwhile is kept (``Session.kept``) and
  posted at once, so the first is up for review as soon as it is ready and may be approved while
  the others are made (they are stopped). Once none is made any more the newest done take is
  under review; a take that failed or was stopped beside done ones is simply left out.
- Regenerate makes one more take (whatever ``takes`` is): the user asked for one more look, and
  N more would cost N jobs of their quota for one press. A new prompt makes a new batch of N.
- ◀ ▶ (:class:`ShowTake`) pages the review message through the takes up for review; it changes
  nothing in the session, and every control on the page names the take shown, so an old press
  is still judged by the take it names.
- Regenerate and Undo may name any take up for review (a page of the review message): Regenerate
  redoes the segment with that take's prompt, Undo discards that take.
"""

from __future__ import annotations

from dataclasses import replace

from bot.core_model import (
    SEED_LIMIT,
    CancelJob,
    Effect,
    Event,
    JobDone,
    LeaveOut,
    Limits,
    PageTake,
    PostSegment,
    RejectSegment,
    Say,
    Segment,
    SegmentKey,
    SegmentResult,
    Session,
    ShowTake,
    State,
    UserEvent,
)
from bot.core_refusals import pressed, stale_review
from bot.core_settings import review_caption

Transition = tuple[Session, list[Effect]]


def takes_up(s: Session) -> tuple[Segment, ...]:
    """The takes of the next chain position up for review (done, not rejected), oldest first."""
    reviewed = (s.current,) if s.state is State.REVIEWING and s.current is not None else ()
    return tuple(sorted((*s.kept, *reviewed), key=lambda t: t.attempt))


def being_made(s: Session) -> tuple[Segment, ...]:
    """The takes being made, oldest first (``current`` is the newest)."""
    if s.state is not State.GENERATING or s.current is None:
        return ()
    return tuple(sorted((*s.making, s.current), key=lambda t: t.attempt))


def new_takes(s: Session, prompt: str, count: int) -> tuple[Segment, ...]:
    """``count`` new takes at the next chain position, one batch, oldest first."""
    assert s.start_image is not None
    idx = len(s.approved)
    first = s.next_attempt(idx)
    settings = s.settings
    # Joined segments must share one size: the first approved segment fixes it.
    width, height = (s.approved[0].width, s.approved[0].height) if s.approved else (settings.width, settings.height)
    return tuple(
        Segment(
            idx=idx,
            attempt=attempt,
            prompt=prompt,
            negative_prompt=settings.negative_prompt,
            seed=None if settings.seed is None else (settings.seed + attempt - 1) % SEED_LIMIT,
            start_image=s.start_image,
            width=width,
            height=height,
            frames=settings.frames,
            steps=settings.steps,
            end_image=s.end_image,
            batch=first if count > 1 else 0,
        )
        for attempt in range(first, first + count)
    )


def on_show(s: Session, e: Event, limits: Limits) -> Transition:
    assert isinstance(e, ShowTake)
    if not any(t.key == e.segment for t in takes_up(s)):
        return s, [stale_review(s, e.segment)]
    # The page itself answers the press: no note.
    return s, [PageTake(s.id, e.segment)]


def on_take_done(s: Session, e: JobDone) -> Transition | None:
    """A take of a batch (or the only take) is done; None when the report names no take being made."""
    made = being_made(s)
    take = next((t for t in made if t.key == e.segment), None)
    if take is None:
        return None
    seg = replace(take, result=SegmentResult(e.video, e.last_frame, e.frames, e.seed, e.overlap))
    rest = tuple(t for t in made if t.key != e.segment)
    post = PostSegment(s.id, seg, review_caption(seg))
    if rest:
        # Others are still being made: this one is posted and kept, approvable at once.
        kept = tuple(sorted((*s.kept, seg), key=lambda t: t.attempt))
        return replace(s, current=rest[-1], making=rest[:-1], kept=kept), [post]
    done = sorted((*s.kept, seg), key=lambda t: t.attempt)
    return replace(s, state=State.REVIEWING, current=done[-1], kept=tuple(done[:-1]), making=()), [post]


def drop_made(s: Session, key: SegmentKey) -> Session | None:
    """The session without take ``key``, one of several being made; None when it is not one of
    several (the caller's usual rules apply)."""
    made = being_made(s)
    if len(made) < 2 or all(t.key != key for t in made):
        return None
    rest = tuple(t for t in made if t.key != key)
    return replace(s, current=rest[-1], making=rest[:-1])


def after_batch_failure(s: Session, key: SegmentKey, why: str) -> Transition | None:
    """A take of a batch failed while others are still made: it is left out."""
    new = drop_made(s, key)
    if new is None:
        return None
    others = len(being_made(new))
    rest = "the other take goes on" if others == 1 else "the other takes go on"
    text = f"Take {key.attempt} of segment {key.idx + 1} {why}; {rest}."
    return new, [LeaveOut(s.id, key), Say(text)]


def stop_one(s: Session, key: SegmentKey, e: Event) -> Transition | None:
    """✖ Stop (an Undo press) on one of several takes being made: only that one stops."""
    new = drop_made(s, key)
    if new is None:
        return None
    assert s.current is not None
    text = f"↩ Stopped take {key.attempt} of segment {s.current.number}."
    assert isinstance(e, UserEvent)
    return new, [*pressed(e, text), CancelJob(s.id, key)]


def discard_kept(s: Session, key: SegmentKey, e: Event) -> Transition | None:
    """Undo pressed on a page showing a kept take: that take is discarded, the rest stay."""
    chosen = next((k for k in s.kept if k.key == key), None)
    if chosen is None:
        return None
    assert isinstance(e, UserEvent)
    s = replace(s, kept=tuple(k for k in s.kept if k.key != key))
    note = pressed(e, f"↩ Take {chosen.attempt} discarded.")
    return s, [*note, RejectSegment(s.id, key)]


def review_batch(s: Session) -> Session | None:
    """No take is being made any more but some of the batch are done: the newest done take is
    under review (the store reads it so, ``bot.conversation.sessions``); None when no take of
    the batch is done."""
    cur = s.current
    if cur is None or s.state is not State.GENERATING or s.making:
        return None
    mates = [k for k in s.kept if cur.batch and k.batch_of == cur.batch_of]
    if not mates:
        return None
    kept = tuple(k for k in s.kept if k != mates[-1])
    return replace(s, state=State.REVIEWING, current=mates[-1], kept=kept)
