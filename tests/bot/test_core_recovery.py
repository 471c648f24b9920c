"""reconcile(): after a crash, a session whose saved state and newest take disagree is brought to
the state the take implies; restore() reads a running session as before."""

from __future__ import annotations

import itertools
from dataclasses import replace

import pytest

from bot.core import (
    RECONCILE,
    Approve,
    ApproveSegment,
    PostSegment,
    Say,
    Segment,
    SegmentResult,
    Session,
    State,
    Take,
    TakeStatus,
    reconcile,
    restore,
    review_caption,
)
from tests.bot.test_core import OWNER, awaiting_prompt, run

RESULT = SegmentResult("seg1.1.mp4", "seg1.1.png", 81, 5)


def base() -> Session:
    """One approved segment; the state and the current take come from the store."""
    s = awaiting_prompt(1)
    return replace(s, state=State.AWAITING_IMAGE, attempts=(1, 1))


def take(status: TakeStatus | None) -> Take | None:
    if status is None:
        return None
    s = awaiting_prompt(1)
    segment = Segment(
        idx=1, attempt=1, prompt="next", negative_prompt="", seed=None, start_image=s.start_image or "",
        width=640, height=640, frames=81, steps=20,
        result=RESULT if status is TakeStatus.DONE else None,
    )  # fmt: skip
    return Take(segment, status)


_T = TakeStatus
# (saved state, newest take) -> (state after reconcile, current take's status or None, effects)
CASES = {
    (State.GENERATING, _T.PENDING): (State.GENERATING, "pending", []),
    (State.GENERATING, _T.DONE): (State.REVIEWING, "done", [PostSegment]),
    (State.GENERATING, _T.FAILED): (State.AWAITING_PROMPT, "failed", [Say]),
    (State.GENERATING, _T.SETTLED): (State.AWAITING_PROMPT, None, [Say]),
    (State.GENERATING, None): (State.AWAITING_PROMPT, None, [Say]),
    (State.REVIEWING, _T.PENDING): (State.GENERATING, "pending", []),
    (State.REVIEWING, _T.DONE): (State.REVIEWING, "done", []),
    (State.REVIEWING, _T.FAILED): (State.AWAITING_PROMPT, "failed", [Say]),
    (State.REVIEWING, _T.SETTLED): (State.AWAITING_PROMPT, None, [Say]),
    (State.REVIEWING, None): (State.AWAITING_PROMPT, None, [Say]),
    (State.AWAITING_PROMPT, _T.PENDING): (State.GENERATING, "pending", []),
    (State.AWAITING_PROMPT, _T.DONE): (State.REVIEWING, "done", [PostSegment]),
    (State.AWAITING_PROMPT, _T.FAILED): (State.AWAITING_PROMPT, "failed", []),
    (State.AWAITING_PROMPT, _T.SETTLED): (State.AWAITING_PROMPT, None, []),
    (State.AWAITING_PROMPT, None): (State.AWAITING_PROMPT, None, []),
}


@pytest.mark.parametrize(("saved", "status"), list(CASES), ids=lambda v: getattr(v, "value", str(v)))
def test_each_state_and_take(saved: State, status: TakeStatus | None) -> None:
    state, current, effect_kinds = CASES[(saved, status)]
    new, effects = reconcile(base(), saved, take(status))
    assert new.state is state
    assert [type(e) for e in effects] == effect_kinds
    if current is None:
        assert new.current is None
    else:
        assert new.current is not None and new.current.key == (1, 1)
        assert (new.current.result is not None) == (current == "done")
    # The table lists exactly the pairs that change; the others agree already.
    assert RECONCILE.get((saved, status), saved) is state
    # A reconciled session agrees with its take: reconciling it again changes nothing.
    assert reconcile(base(), state, take(status)) == (new, [])


def test_a_done_take_left_generating_is_posted_for_review_and_can_be_approved() -> None:
    new, effects = reconcile(base(), State.GENERATING, take(TakeStatus.DONE))
    [post] = effects
    assert isinstance(post, PostSegment) and post.segment == new.current
    assert post.caption == review_caption(post.segment)
    s, fx = run(new, Approve(user_id=OWNER))
    assert s.state is State.AWAITING_PROMPT and ApproveSegment in [type(e) for e in fx]


def test_the_notes_say_what_to_do() -> None:
    _, effects = reconcile(base(), State.GENERATING, take(TakeStatus.FAILED))
    assert effects == [Say("Segment 2 couldn't be made. /regenerate to try again, or send a new prompt.")]
    _, effects = reconcile(base(), State.REVIEWING, None)
    assert effects == [Say("Segment 2 was stopped by a restart. Send a prompt for it.")]


def test_a_done_take_without_its_files_counts_as_failed() -> None:
    broken = take(TakeStatus.DONE)
    assert broken is not None
    broken = replace(broken, segment=replace(broken.segment, result=None))
    new, effects = reconcile(base(), State.GENERATING, broken)
    assert new.state is State.AWAITING_PROMPT and [type(e) for e in effects] == [Say]


@pytest.mark.parametrize("saved", [State.ASSEMBLING, State.FINISHED, State.CANCELLED])
def test_states_without_a_take_are_left_alone(saved: State) -> None:
    s = replace(base(), final_video="final.mp4" if saved is State.FINISHED else None)
    for status in (None, *TakeStatus):
        new, effects = reconcile(s, saved, take(status))
        assert (new.state, new.current, effects) == (saved, None, [])


def test_restore_reads_a_running_session_as_before() -> None:
    # While generating, a take already stored done or failed is still the one being made.
    for status in (TakeStatus.PENDING, TakeStatus.DONE, TakeStatus.FAILED):
        s = restore(base(), State.GENERATING, take(status))
        assert s.current is not None and s.current.result is None
    s = restore(base(), State.REVIEWING, take(TakeStatus.DONE))
    assert s.current is not None and s.current.result == RESULT
    assert restore(base(), State.AWAITING_PROMPT, take(TakeStatus.SETTLED)).current is None
    with pytest.raises(ValueError, match="generating needs a current take"):
        restore(base(), State.GENERATING, None)


def test_every_pair_of_the_table_is_tested() -> None:
    tested = {pair for pair in CASES if RECONCILE.get(pair) is not None}
    assert tested == set(RECONCILE)
    saved_states = {State.AWAITING_PROMPT, State.GENERATING, State.REVIEWING}
    assert set(CASES) == set(itertools.product(saved_states, (None, *TakeStatus)))
