"""Takes to choose from: ``settings takes = N`` queues N takes of one prompt at once, and ◀ ▶
pages the review through them (bot.core_takes)."""

from __future__ import annotations

from dataclasses import replace

from bot.core import (
    Approve,
    ApproveSegment,
    CancelJob,
    ChangeSettings,
    Control,
    EnqueueSegment,
    JobFailed,
    PageTake,
    PostSegment,
    PromptText,
    Regenerate,
    RejectSegment,
    Say,
    SegmentKey,
    Session,
    Settings,
    ShowTake,
    State,
    Take,
    TakeStatus,
    Undo,
    Via,
    reconcile,
    restore,
)
from shared.protocol import FailureKind
from tests.bot.test_core import OWNER, awaiting_prompt, done, run, says


def batch(n: int = 3, seed: int | None = None) -> Session:
    s = replace(awaiting_prompt(1), settings=Settings(takes=n, seed=seed))
    s, _ = run(s, PromptText(user_id=OWNER, text="three ways"))
    return s


def test_takes_setting_is_checked() -> None:
    s, fx = run(awaiting_prompt(1), ChangeSettings(user_id=OWNER, changes=(("takes", "3"),)))
    assert s.settings.takes == 3 and "3 takes per prompt" in says(fx)[0]
    for bad in ("0", "5", "two"):
        after, fx = run(s, ChangeSettings(user_id=OWNER, changes=(("takes", bad),)))
        assert after == s and "takes must be a whole number from 1 to 4" in says(fx)[0]


def test_a_prompt_queues_n_takes_with_different_seeds() -> None:
    s = replace(awaiting_prompt(1), settings=Settings(takes=3, seed=40))
    s, fx = run(s, PromptText(user_id=OWNER, text="three ways"))
    queued = [e.segment for e in fx if isinstance(e, EnqueueSegment)]
    assert [t.key for t in queued] == [SegmentKey(1, 1), SegmentKey(1, 2), SegmentKey(1, 3)]
    assert [t.seed for t in queued] == [40, 41, 42] and {t.batch for t in queued} == {1}
    assert s.state is State.GENERATING and s.current == queued[-1] and s.making == tuple(queued[:2])


def test_the_first_take_done_is_posted_at_once_and_approvable() -> None:
    s = batch()
    s, fx = run(s, done(SegmentKey(1, 2), seed=22))
    [post] = [e for e in fx if isinstance(e, PostSegment)]
    assert post.segment.key == SegmentKey(1, 2) and "seed 22" in post.caption
    assert s.state is State.GENERATING and [k.attempt for k in s.kept] == [2]
    # Approving it stops the two still being made.
    after, fx = run(s, Approve(user_id=OWNER, segment=SegmentKey(1, 2), via=Via.CONTROL))
    assert CancelJob("s1", SegmentKey(1, 1)) in fx and CancelJob("s1", SegmentKey(1, 3)) in fx
    assert after.approved[-1].key == SegmentKey(1, 2) and after.making == ()


def test_once_all_are_done_the_newest_is_under_review_and_any_may_be_approved() -> None:
    s = batch()
    for attempt, seed in ((3, 33), (1, 11), (2, 22)):
        s, fx = run(s, done(SegmentKey(1, attempt), seed=seed))
        assert any(isinstance(e, PostSegment) for e in fx)
    assert s.state is State.REVIEWING and s.current is not None and s.current.attempt == 3
    assert [k.attempt for k in s.kept] == [1, 2]
    seeds = {t.result.seed for t in (*s.kept, s.current) if t.result is not None}
    assert seeds == {11, 22, 33}
    s, fx = run(s, Approve(user_id=OWNER, segment=SegmentKey(1, 1), via=Via.CONTROL))
    assert RejectSegment("s1", SegmentKey(1, 2)) in fx and RejectSegment("s1", SegmentKey(1, 3)) in fx
    assert ApproveSegment("s1", SegmentKey(1, 1), keep_controls=(Control.FINISH,)) in fx
    assert s.approved[-1].key == SegmentKey(1, 1)


def test_a_failed_take_of_a_batch_is_left_out() -> None:
    s = batch()
    s, fx = run(s, JobFailed(segment=SegmentKey(1, 1), kind=FailureKind.OOM))
    assert s.state is State.GENERATING and len(s.making) == 1 and "the other takes go on" in says(fx)[0]
    s, _ = run(s, done(SegmentKey(1, 2)))
    s, fx = run(s, JobFailed(segment=SegmentKey(1, 3), kind=FailureKind.INTERNAL))
    assert s.state is State.REVIEWING and s.current is not None and s.current.attempt == 2
    assert "take 2 is up for review" in says(fx)[0]


def test_stop_on_one_take_stops_only_it_and_typed_undo_stops_all() -> None:
    s = batch()
    after, fx = run(s, Undo(user_id=OWNER, segment=SegmentKey(1, 1), via=Via.CONTROL))
    assert CancelJob("s1", SegmentKey(1, 1)) in fx and after.state is State.GENERATING
    assert [t.attempt for t in (*after.making, after.current) if t is not None] == [2, 3]
    after, fx = run(s, Undo(user_id=OWNER))
    assert [e.segment.attempt for e in fx if isinstance(e, CancelJob)] == [1, 2, 3]
    assert after.state is State.AWAITING_PROMPT


def test_paging_shows_any_take_up_and_changes_nothing() -> None:
    s = batch()
    s, _ = run(s, done(SegmentKey(1, 1)), done(SegmentKey(1, 3)))
    for key in (SegmentKey(1, 1), SegmentKey(1, 3)):
        after, fx = run(s, ShowTake(user_id=OWNER, segment=key))
        assert after == s and fx == [PageTake("s1", key)]
    # A take still being made, or one gone, cannot be shown.
    after, fx = run(s, ShowTake(user_id=OWNER, segment=SegmentKey(1, 2)))
    assert after == s and fx == [Say("That take is no longer up for review.", ephemeral=True)]
    # A stranger's page press changes nothing.
    after, fx = run(s, ShowTake(user_id="someone", segment=SegmentKey(1, 1)))
    assert after == s and not any(isinstance(e, PageTake) for e in fx)


def test_regenerate_with_takes_n_makes_one_more_take() -> None:
    s = batch(2)
    s, _ = run(s, done(SegmentKey(1, 1)), done(SegmentKey(1, 2)))
    s, fx = run(s, Regenerate(user_id=OWNER, segment=SegmentKey(1, 1), via=Via.CONTROL))
    assert [e.segment.key for e in fx if isinstance(e, EnqueueSegment)] == [SegmentKey(1, 3)]
    assert [k.attempt for k in s.kept] == [1, 2]


def test_restore_reads_a_batch_back() -> None:
    s = batch()
    s, _ = run(s, done(SegmentKey(1, 3)))
    base = replace(s, state=State.AWAITING_IMAGE, current=None, kept=(), making=())
    assert s.current is not None
    take = Take(s.current, TakeStatus.PENDING, earlier=s.kept, making=s.making)
    assert restore(base, State.GENERATING, take) == s
    assert reconcile(base, State.GENERATING, take) == (s, [])
