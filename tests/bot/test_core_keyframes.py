"""End keyframes in the core (/end): which take aims at one, when it is used up, what is said,
in every state."""

from __future__ import annotations

from dataclasses import replace

import pytest

from bot.core import (
    Approve,
    ApproveAndFinish,
    EndFrame,
    EnqueueSegment,
    JobFailed,
    Limits,
    Picture,
    PostSegment,
    PromptText,
    Regenerate,
    Say,
    Session,
    Start,
    State,
    Status,
    Undo,
    review_caption,
    step,
)
from shared.protocol import FailureKind
from tests.bot.test_core import (
    ADMINS,
    OWNER,
    PICTURE,
    SESSIONS,
    STRANGER,
    awaiting_prompt,
    done,
    fresh,
    run,
    says,
)

KEYFRAME = Picture("data/sessions/s1/picture-2.png", 800, 600)
OTHER = Picture("data/sessions/s1/picture-3.png", 800, 600)


def end(picture: Picture | None = KEYFRAME, *, clear: bool = False, user: str = OWNER) -> EndFrame:
    return EndFrame(user_id=user, picture=picture, clear=clear)


def enqueued(effects: list[object]) -> EnqueueSegment:
    [effect] = [e for e in effects if isinstance(e, EnqueueSegment)]
    return effect


@pytest.mark.parametrize("state", [State.AWAITING_IMAGE, State.AWAITING_PROMPT, State.GENERATING, State.REVIEWING])
def test_end_sets_the_keyframe_in_every_state_before_the_join(state: State) -> None:
    before = SESSIONS[state]()
    after, effects = step(before, end(), admins=ADMINS)
    assert after == _with_keyframe(before, KEYFRAME.path)
    [text] = says(effects)
    assert text.startswith("🎯 Got the end keyframe.") and "/end clear" in text
    if state in (State.GENERATING, State.REVIEWING):
        # The take already queued has no keyframe: the user is told how to aim at it.
        assert before.current is not None and before.current.end_image is None
        assert f"Segment {before.current.number}" in text and "regenerate" in text


@pytest.mark.parametrize("state", [State.ASSEMBLING, State.FINISHED, State.CANCELLED])
def test_end_is_refused_once_the_video_is_being_joined_or_over(state: State) -> None:
    before = SESSIONS[state]()
    after, effects = step(before, end(), admins=ADMINS)
    assert after == before and len(says(effects)) == 1 and effects[0].__class__ is Say


@pytest.mark.parametrize("state", list(State))
def test_a_stranger_cannot_set_or_clear_it(state: State) -> None:
    before = SESSIONS[state]()
    if not state.over:
        before = _with_keyframe(before, KEYFRAME.path)
    for event in (end(user=STRANGER), end(None, clear=True, user=STRANGER)):
        after, effects = step(before, event, admins=ADMINS)
        assert after == before
        assert effects == [Say("Only the person who started this session can do that.", ephemeral=True)]


def test_the_next_take_aims_at_it_and_approval_uses_it_up() -> None:
    s, _ = run(awaiting_prompt(1), end())
    s, effects = run(s, PromptText(user_id=OWNER, text="she reaches the door"))
    take = enqueued(effects).segment
    assert take.end_image == KEYFRAME.path and take.number == 2
    s, effects = run(s, done(take.key))
    [post] = [e for e in effects if isinstance(e, PostSegment)]
    assert "🎯 aimed at your end keyframe" in post.caption.splitlines()[0]
    s, _ = run(s, Approve(user_id=OWNER))
    assert s.end_image is None and s.approved[-1].end_image == KEYFRAME.path
    # The segment after it ends wherever its prompt leads.
    s, effects = run(s, PromptText(user_id=OWNER, text="she opens it"))
    assert enqueued(effects).segment.end_image is None


def test_a_regenerate_and_a_retry_keep_aiming_at_it() -> None:
    s, _ = run(awaiting_prompt(0), end(), PromptText(user_id=OWNER, text="walk"))
    assert s.current is not None
    s, _ = run(s, done(s.current.key))
    s, effects = run(s, Regenerate(user_id=OWNER, prompt="run"))
    take = enqueued(effects).segment
    assert (take.attempt, take.end_image) == (2, KEYFRAME.path)
    s, _ = run(s, JobFailed(segment=take.key, kind=FailureKind.OOM))
    s, effects = run(s, Regenerate(user_id=OWNER))
    assert enqueued(effects).segment.end_image == KEYFRAME.path
    assert s.end_image == KEYFRAME.path


def test_set_while_reviewing_aims_the_regenerate_not_the_take_under_review() -> None:
    s, _ = run(awaiting_prompt(1), PromptText(user_id=OWNER, text="walk"))
    assert s.current is not None
    s, _ = run(s, done(s.current.key), end())
    assert s.current is not None and s.current.end_image is None
    assert "🎯" not in review_caption(s.current)
    # Approving the take that was not aimed at it keeps the keyframe for the next segment.
    s, _ = run(s, Approve(user_id=OWNER))
    assert s.end_image == KEYFRAME.path
    s, effects = run(s, PromptText(user_id=OWNER, text="next"))
    assert enqueued(effects).segment.end_image == KEYFRAME.path


def test_a_new_keyframe_set_during_review_survives_approving_the_old_one() -> None:
    s, _ = run(awaiting_prompt(0), end(KEYFRAME), PromptText(user_id=OWNER, text="walk"))
    assert s.current is not None
    s, _ = run(s, done(s.current.key), end(OTHER), ApproveAndFinish(user_id=OWNER))
    assert s.state is State.ASSEMBLING and s.end_image == OTHER.path


def test_clear_removes_it_and_bare_end_says_whether_one_is_set() -> None:
    s = awaiting_prompt(1)
    _, effects = run(s, end(None))
    assert says(effects)[0].startswith("No end keyframe is set.")
    _, effects = run(s, end(None, clear=True))
    assert says(effects) == ["There's no end keyframe to clear."]
    s, _ = run(s, end())
    _, effects = run(s, end(None))
    assert "aimed at the end keyframe" in says(effects)[0]
    s, effects = run(s, end(None, clear=True))
    assert s.end_image is None and says(effects)[0].startswith("End keyframe removed")
    s, effects = run(s, PromptText(user_id=OWNER, text="go"))
    assert enqueued(effects).segment.end_image is None


def test_set_before_the_start_picture_aims_the_first_segment() -> None:
    s, effects = run(fresh(), end())
    assert "Now send the start picture" in says(effects)[0]
    s, _ = run(s, EndFrame(user_id=OWNER, picture=None))
    s = awaiting_prompt_from(s)
    s, effects = run(s, PromptText(user_id=OWNER, text="go"))
    assert enqueued(effects).segment.end_image == KEYFRAME.path


def awaiting_prompt_from(s: Session) -> Session:
    s, _ = run(s, Start(user_id=OWNER, picture=PICTURE))
    assert s.state is State.AWAITING_PROMPT
    return s


def test_undoing_the_segment_aimed_at_it_sets_it_again() -> None:
    s, _ = run(awaiting_prompt(1), end(), PromptText(user_id=OWNER, text="walk"))
    assert s.current is not None
    s, _ = run(s, done(s.current.key), Approve(user_id=OWNER))
    assert s.end_image is None
    s, effects = run(s, Undo(user_id=OWNER))
    assert s.end_image == KEYFRAME.path and "end keyframe again" in says(effects)[0]
    s, effects = run(s, PromptText(user_id=OWNER, text="walk again"))
    assert enqueued(effects).segment.end_image == KEYFRAME.path


def test_status_mentions_a_keyframe() -> None:
    s, _ = run(awaiting_prompt(1), end())
    _, effects = run(s, Status(user_id=STRANGER))
    assert "end keyframe is set" in says(effects)[0]


def test_refused_where_a_worker_cannot_aim_at_it() -> None:
    s = awaiting_prompt(1)
    after, effects = step(s, end(), limits=Limits(keyframes=False))
    assert after == s and "ComfyUI" in says(effects)[0]


def _with_keyframe(s: Session, path: str) -> Session:
    return replace(s, end_image=path)
