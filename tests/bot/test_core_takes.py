"""Takes: regenerating keeps the earlier takes of a segment, each with its own ✅ Approve, and
approving any one discards the others."""

from __future__ import annotations

from dataclasses import replace

import pytest

from bot.core import (
    RECONCILE,
    Approve,
    ApproveAndFinish,
    ApproveSegment,
    Cancel,
    CancelJob,
    Control,
    EnqueueSegment,
    Finish,
    ImageReceived,
    JobFailed,
    KeepTake,
    Picture,
    PromptText,
    Regenerate,
    RejectSegment,
    Say,
    SegmentKey,
    Session,
    StartAssembly,
    State,
    Take,
    TakeStatus,
    Undo,
    Via,
    reconcile,
    restore,
)
from shared.protocol import FailureKind
from tests.bot.test_core import OWNER, done, kinds, reviewing, run, says


def three_takes(*, third_done: bool = True) -> Session:
    """Segment 2 with takes 1 and 2 kept and take 3 under review (or still being made)."""
    s = reviewing(1)
    for attempt in (1, 2):
        s, fx = run(s, Regenerate(user_id=OWNER, segment=SegmentKey(1, attempt), via=Via.CONTROL))
        assert KeepTake("s1", SegmentKey(1, attempt)) in fx
        if attempt == 1:
            s, _ = run(s, done(SegmentKey(1, 2), seed=22))
    if third_done:
        s, _ = run(s, done(SegmentKey(1, 3), seed=33))
    return s


def test_regenerate_keeps_the_take_under_review() -> None:
    s = reviewing(1)
    s, fx = run(s, Regenerate(user_id=OWNER, segment=SegmentKey(1, 1), via=Via.CONTROL))
    assert kinds(fx) == [Say, KeepTake, EnqueueSegment]
    assert not any(isinstance(e, RejectSegment) for e in fx)
    assert s.state is State.GENERATING and [k.key for k in s.kept] == [SegmentKey(1, 1)]
    assert s.kept[0].result is not None


def test_approve_take_1_after_take_3_exists() -> None:
    s = three_takes()
    assert s.state is State.REVIEWING and [k.attempt for k in s.kept] == [1, 2]
    s, fx = run(s, Approve(user_id=OWNER, segment=SegmentKey(1, 1), via=Via.CONTROL))
    assert fx[:4] == [
        Say("✅ Approved segment 2, take 1.", ephemeral=True),
        RejectSegment("s1", SegmentKey(1, 2)),
        RejectSegment("s1", SegmentKey(1, 3)),
        ApproveSegment("s1", SegmentKey(1, 1), keep_controls=(Control.FINISH,)),
    ]
    assert s.state is State.AWAITING_PROMPT and s.kept == () and s.current is None
    assert s.approved[-1].key == SegmentKey(1, 1) and s.start_image == "seg1.1.png"
    # The other takes' buttons are stale now.
    again, fx = run(s, Approve(user_id=OWNER, segment=SegmentKey(1, 3), via=Via.CONTROL))
    assert again == s and kinds(fx) == [Say]


def test_approve_an_earlier_take_while_the_next_is_being_made_stops_it() -> None:
    s = three_takes(third_done=False)
    assert s.state is State.GENERATING
    s, fx = run(s, Approve(user_id=OWNER, segment=SegmentKey(1, 2), via=Via.CONTROL))
    assert RejectSegment("s1", SegmentKey(1, 1)) in fx and CancelJob("s1", SegmentKey(1, 3)) in fx
    assert s.approved[-1].key == SegmentKey(1, 2) and s.approved[-1].result is not None
    assert s.approved[-1].result.seed == 22
    # The stopped job's late report is ignored.
    after, fx = run(s, done(SegmentKey(1, 3)))
    assert after == s and fx == []


def test_typed_approve_takes_the_one_under_review_never_one_being_made() -> None:
    s = three_takes()
    after, fx = run(s, Approve(user_id=OWNER))
    assert after.approved[-1].key == SegmentKey(1, 3)
    making = three_takes(third_done=False)
    after, fx = run(making, Approve(user_id=OWNER))
    assert after == making and kinds(fx) == [Say]


def test_undo_discards_the_newest_take_and_keeps_the_earlier_ones_approvable() -> None:
    s = three_takes()
    s, fx = run(s, Undo(user_id=OWNER, segment=SegmentKey(1, 3), via=Via.CONTROL))
    assert RejectSegment("s1", SegmentKey(1, 3)) in fx
    assert "Approve an earlier take (takes 1, 2)" in says(fx)[-1]
    assert s.state is State.AWAITING_PROMPT and [k.attempt for k in s.kept] == [1, 2]
    # Typed /undo now discards the newest kept take, never the approved segment before it.
    s, fx = run(s, Undo(user_id=OWNER))
    assert fx[0] == RejectSegment("s1", SegmentKey(1, 2)) and len(s.approved) == 1
    s, fx = run(s, Approve(user_id=OWNER, segment=SegmentKey(1, 1), via=Via.CONTROL))
    assert s.approved[-1].key == SegmentKey(1, 1)
    # A typed /approve in awaiting_prompt approves the newest kept take.
    s2 = three_takes()
    s2, _ = run(s2, Undo(user_id=OWNER))
    s2, _ = run(s2, Approve(user_id=OWNER))
    assert s2.approved[-1].key == SegmentKey(1, 2)


def test_a_new_prompt_adds_a_take_beside_the_kept_ones() -> None:
    s = three_takes()
    s, _ = run(s, Undo(user_id=OWNER))
    s, fx = run(s, PromptText(user_id=OWNER, text="something else"))
    [enqueue] = fx
    assert isinstance(enqueue, EnqueueSegment) and enqueue.segment.key == SegmentKey(1, 4)
    assert [k.attempt for k in s.kept] == [1, 2]


def test_a_failed_take_keeps_the_earlier_ones() -> None:
    s = three_takes(third_done=False)
    s, fx = run(s, JobFailed(segment=SegmentKey(1, 3), kind=FailureKind.OOM))
    assert s.state is State.AWAITING_PROMPT and len(s.kept) == 2
    assert "The earlier takes are still there to ✅ Approve." in says(fx)[0]
    s, _ = run(s, Approve(user_id=OWNER, segment=SegmentKey(1, 1), via=Via.CONTROL))
    assert s.approved[-1].key == SegmentKey(1, 1)


def test_finish_and_cancel_discard_the_kept_takes() -> None:
    s = three_takes()
    s, fx = run(s, ApproveAndFinish(user_id=OWNER, segment=SegmentKey(1, 3), via=Via.CONTROL))
    assert RejectSegment("s1", SegmentKey(1, 1)) in fx and RejectSegment("s1", SegmentKey(1, 2)) in fx
    assert s.state is State.ASSEMBLING and s.kept == ()

    s, _ = run(three_takes(), Undo(user_id=OWNER))
    s, fx = run(s, Finish(user_id=OWNER))
    assert [e for e in fx if isinstance(e, RejectSegment)] == [
        RejectSegment("s1", SegmentKey(1, 1)),
        RejectSegment("s1", SegmentKey(1, 2)),
    ]
    assert any(isinstance(e, StartAssembly) for e in fx) and "left out" in says(fx)[0]

    s, fx = run(three_takes(third_done=False), Cancel(user_id=OWNER))
    assert s.state is State.CANCELLED and s.kept == ()
    assert CancelJob("s1", SegmentKey(1, 3)) in fx and RejectSegment("s1", SegmentKey(1, 1)) in fx


def test_a_second_picture_waits_for_the_kept_takes() -> None:
    s = reviewing(0)
    s, _ = run(s, Regenerate(user_id=OWNER), Undo(user_id=OWNER))
    assert s.state is State.AWAITING_PROMPT and s.kept
    after, fx = run(s, ImageReceived(user_id=OWNER, picture=Picture("other.png", 640, 480)))
    assert after == s and kinds(fx) == [Say]


def test_seeds_differ_between_takes_and_each_caption_reports_its_own() -> None:
    s = three_takes()
    seeds = [k.result.seed for k in s.kept if k.result is not None]
    assert s.current is not None and s.current.result is not None
    assert len({*seeds, s.current.result.seed}) == 3


def test_approve_and_finish_on_a_kept_take_joins_it() -> None:
    # A 🏁 reaction on a kept take's message means approve & finish that take.
    s, fx = run(three_takes(), ApproveAndFinish(user_id=OWNER, segment=SegmentKey(1, 2), via=Via.REACTION))
    assert s.state is State.ASSEMBLING and s.approved[-1].key == SegmentKey(1, 2)
    assert RejectSegment("s1", SegmentKey(1, 1)) in fx and RejectSegment("s1", SegmentKey(1, 3)) in fx
    waiting, _ = run(three_takes(), Undo(user_id=OWNER))
    s, _ = run(waiting, ApproveAndFinish(user_id=OWNER, segment=SegmentKey(1, 1), via=Via.REACTION))
    assert s.state is State.ASSEMBLING and s.approved[-1].key == SegmentKey(1, 1)


def _stored(status: TakeStatus) -> Take:
    """Take 3 of segment 2 as the store holds it, with takes 1 and 2 kept (done) before it."""
    s = three_takes()
    assert s.current is not None
    newest = s.current if status is TakeStatus.DONE else replace(s.current, result=None)
    return Take(newest, status, earlier=s.kept)


def _base() -> Session:
    s = three_takes()
    return replace(s, state=State.AWAITING_IMAGE, current=None, kept=())


@pytest.mark.parametrize("saved", [State.GENERATING, State.REVIEWING, State.AWAITING_PROMPT])
@pytest.mark.parametrize("status", list(TakeStatus))
def test_a_restart_keeps_the_earlier_takes(saved: State, status: TakeStatus) -> None:
    new, _ = reconcile(_base(), saved, _stored(status))
    assert [k.attempt for k in new.kept] == [1, 2]
    if saved is RECONCILE.get((saved, status), saved):
        assert restore(_base(), saved, _stored(status)).kept == new.kept


@pytest.mark.parametrize("saved", [State.ASSEMBLING, State.FINISHED, State.CANCELLED])
def test_sessions_past_review_keep_no_takes(saved: State) -> None:
    base = replace(_base(), final_video="final.mp4")
    assert restore(base, saved, _stored(TakeStatus.SETTLED)).kept == ()
