"""Every press names its take: stale Undo / Finish presses, Approve & finish, private answers to
presses, invisible prompts, a second picture, captions."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from bot.core import (
    REVIEW_CONTROLS,
    Approve,
    ApproveAndFinish,
    ApproveSegment,
    CancelJob,
    Control,
    DropLastApproved,
    Effect,
    EnqueueSegment,
    Event,
    Finish,
    ImageReceived,
    JobFailed,
    Picture,
    PromptText,
    Regenerate,
    RejectSegment,
    Say,
    SegmentKey,
    Session,
    Start,
    StartAssembly,
    State,
    Undo,
    UserEvent,
    Via,
    clean_prompt,
    review_caption,
    step,
)
from bot.ports import Action
from shared.protocol import FailureKind
from tests.bot.test_core import (
    ADMINS,
    OWNER,
    PICTURE,
    STRANGER,
    awaiting_prompt,
    done,
    fresh,
    generating,
    kinds,
    reviewing,
    run,
    says,
)

STALE = Say("That take is no longer up for review.", ephemeral=True)


def press(kind: type[UserEvent], key: SegmentKey, user: str = OWNER) -> Event:
    return kind(user_id=user, via=Via.CONTROL, segment=key)  # type: ignore[call-arg]


def private(effects: Sequence[Effect]) -> list[str]:
    return [e.text for e in effects if isinstance(e, Say) and e.ephemeral]


# -- Undo ------------------------------------------------------------------------------------------


def test_double_tap_on_undo_discards_the_take_and_keeps_the_approved_segment() -> None:
    s = reviewing(1)  # segment 1 approved, segment 2 take 1 under review
    take = SegmentKey(1, 1)
    s, first = run(s, press(Undo, take))
    assert RejectSegment("s1", take) in first and s.state is State.AWAITING_PROMPT
    assert private(first) == ["↩ Take discarded."]
    again, second = run(s, press(Undo, take))
    assert again == s and second == [STALE]
    assert [seg.key for seg in again.approved] == [SegmentKey(0, 1)]
    assert DropLastApproved not in kinds(second)


def test_old_undo_buttons_do_nothing_once_the_state_moved_on() -> None:
    s = reviewing(1)
    old = SegmentKey(1, 1)
    s, _ = run(s, press(Regenerate, old))  # take 2 is being made
    # Take 1 is kept: its Undo (on a page of the review message) discards it, and only it.
    for state in (s, run(s, done(SegmentKey(1, 2)))[0]):
        after, fx = run(state, press(Undo, old))
        assert after.kept == () and after.state is state.state and RejectSegment("s1", old) in fx
        again, fx = run(after, press(Undo, old))
        assert again == after and fx == [STALE]
    # The approved segment's own Undo (a keyboard that failed to close) does not remove it either.
    s = awaiting_prompt(2)
    after, fx = run(s, press(Undo, SegmentKey(1, 1)))
    assert after == s and fx == [Say("Segment 2 is already approved.", ephemeral=True)]


def test_typed_undo_still_acts_on_the_current_state() -> None:
    s, fx = run(reviewing(1), Undo(user_id=OWNER))
    assert kinds(fx) == [RejectSegment, Say] and private(fx) == []
    s, fx = run(s, Undo(user_id=OWNER))
    assert fx[0] == DropLastApproved("s1", SegmentKey(0, 1))
    s, fx = run(generating(1), Undo(user_id=OWNER))
    assert fx[0] == CancelJob("s1", SegmentKey(1, 1))


# -- Finish ----------------------------------------------------------------------------------------


def test_old_finish_button_of_a_replaced_take_does_not_join() -> None:
    s = reviewing(1)
    old = SegmentKey(1, 1)
    s, _ = run(s, press(Regenerate, old))
    after, fx = run(s, press(Finish, old))  # while take 2 is being made
    assert after == s and StartAssembly not in kinds(fx) and len(private(fx)) == 1
    s, _ = run(s, done(SegmentKey(1, 2)), Undo(user_id=OWNER))  # take 2 discarded too
    for key in (old, SegmentKey(1, 2)):
        after, fx = run(s, press(Finish, key))
        assert after == s and fx == [STALE]


def test_finish_kept_on_the_last_approved_segment() -> None:
    s, fx = run(reviewing(1), press(Approve, SegmentKey(1, 1)))
    [approval] = [e for e in fx if isinstance(e, ApproveSegment)]
    assert approval.keep_controls == (Control.FINISH,)
    last = SegmentKey(1, 1)
    # Valid while that segment is the last approved and the session awaits a prompt...
    joined, fx = run(s, press(Finish, last))
    assert joined.state is State.ASSEMBLING and private(fx) == ["🏁 Joining the video…"]
    [assembly] = [e for e in fx if isinstance(e, StartAssembly)]
    assert [seg.key for seg in assembly.segments] == [SegmentKey(0, 1), last]
    # ...not while the next segment is being made (a typed /finish would stop it, not a button)...
    busy, _ = run(s, PromptText(user_id=OWNER, text="next"))
    after, fx = run(busy, press(Finish, last))
    assert after == busy and says(fx) == [
        "Segment 3 is still being made — /finish stops it and joins the approved segments."
    ]
    # ...nor once a later segment is approved: its own Finish is the one to use.
    later, _ = run(busy, done(SegmentKey(2, 1)), Approve(user_id=OWNER))
    after, fx = run(later, press(Finish, last))
    assert after == later and says(fx) == ["That button is out of date — use 🏁 Finish on segment 3, or /finish."]
    # After /undo removes it, it is no longer approved at all; segment 1's Finish is valid again.
    undone, _ = run(s, Undo(user_id=OWNER))
    assert run(undone, press(Finish, last))[1] == [STALE]
    assert run(undone, press(Finish, SegmentKey(0, 1)))[0].state is State.ASSEMBLING


def test_finish_while_reviewing_asks_and_changes_nothing() -> None:
    s = reviewing(1)
    question = "Segment 2 take 1 is still under review: 🏁 Approve & finish includes it, ↩ Undo drops it."
    for event in (
        Finish(user_id=OWNER),  # typed
        press(Finish, SegmentKey(1, 1)),  # the take's own old Finish button
        press(Finish, SegmentKey(0, 1)),  # the Finish kept on segment 1
    ):
        after, fx = run(s, event)
        assert after == s and fx == [Say(question, ephemeral=True)]


def test_typed_finish_while_generating_stops_the_job_as_before() -> None:
    s, fx = run(generating(1), Finish(user_id=OWNER))
    assert s.state is State.ASSEMBLING
    assert kinds(fx) == [CancelJob, Say, StartAssembly, Say]
    assert says(fx)[0] == "Segment 2 wasn't approved, so it's left out."


# -- Approve & finish ------------------------------------------------------------------------------


def test_approve_and_finish_in_one_press() -> None:
    s = reviewing(1)
    take = SegmentKey(1, 1)
    s, fx = run(s, press(ApproveAndFinish, take))
    assert s.state is State.ASSEMBLING and [seg.key for seg in s.approved] == [SegmentKey(0, 1), take]
    assert kinds(fx) == [Say, ApproveSegment, StartAssembly, Say]
    assert fx[1] == ApproveSegment("s1", take)  # no controls kept: the join is under way
    assert private(fx) == ["✅ Approved segment 2 — joining the video…"]
    assert says(fx)[1] == "Segment 2 approved. Joining 2 segments (10.1 s)…"
    # A second tap while joining changes nothing.
    after, fx = run(s, press(ApproveAndFinish, take))
    assert after == s and kinds(fx) == [Say]


def test_approve_and_finish_on_a_stale_take_is_refused() -> None:
    s = reviewing(1)
    # A discarded take (undone) is stale; a kept one (regenerated) may still be approved.
    s, _ = run(s, press(Undo, SegmentKey(1, 1)), PromptText(user_id=OWNER, text="again"), done(SegmentKey(1, 2)))
    after, fx = run(s, press(ApproveAndFinish, SegmentKey(1, 1)))
    assert after == s and fx == [STALE]
    # Pressed on the approved take after a failed join: it finishes.
    s, _ = run(awaiting_prompt(1), press(ApproveAndFinish, SegmentKey(0, 1)))
    assert s.state is State.ASSEMBLING


def test_review_controls_are_the_ports_actions() -> None:
    assert [c.value for c in REVIEW_CONTROLS] == [a.value for a in (Action.APPROVE, Action.REGENERATE, Action.UNDO,
                                                                    Action.APPROVE_FINISH)]  # fmt: skip
    assert {c.value for c in Control} <= {a.value for a in Action}


# -- private answers -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("build", "event", "note"),
    [
        (reviewing, press(Approve, SegmentKey(1, 1)), "✅ Approved segment 2."),
        (reviewing, press(Regenerate, SegmentKey(1, 1)), "🔁 Regenerating segment 2…"),
        (reviewing, press(Undo, SegmentKey(1, 1)), "↩ Take discarded."),
        (lambda: awaiting_prompt(1), press(Finish, SegmentKey(0, 1)), "🏁 Joining the video…"),
    ],
)
def test_every_accepted_press_is_confirmed_privately(build: object, event: Event, note: str) -> None:
    s = build()  # type: ignore[operator]
    after, fx = step(s, event, admins=ADMINS)
    assert after != s
    assert private(fx) == [note]
    assert any(not isinstance(e, Say) for e in fx)  # and it did something
    # Typed, the same action is answered by its public message only.
    typed = type(event)(user_id=OWNER)  # type: ignore[call-arg]
    assert private(step(s, typed, admins=ADMINS)[1]) == []


def test_a_strangers_press_is_refused_privately_and_a_strangers_message_ignored() -> None:
    s = reviewing(1)
    for kind in (Approve, Regenerate, Undo, Finish, ApproveAndFinish):
        after, fx = run(s, press(kind, SegmentKey(1, 1), user=STRANGER))
        assert after == s and fx == [Say("Only the person who started this session can do that.", ephemeral=True)]
    assert run(s, PromptText(user_id=STRANGER, text="hi")) == (s, [])


def test_a_reaction_is_not_confirmed_and_a_strangers_reaction_is_ignored() -> None:
    # A reaction shows itself in the chat: no private confirmation (a DM per ✅ would be noise),
    # and a stranger's emoji is chatter. A stale one is still explained to its author.
    s = reviewing(1)
    after, fx = run(s, Approve(user_id=OWNER, via=Via.REACTION, segment=SegmentKey(1, 1)))
    assert after.state is State.AWAITING_PROMPT and private(fx) == []
    assert run(s, Approve(user_id=STRANGER, via=Via.REACTION, segment=SegmentKey(1, 1))) == (s, [])
    assert run(after, Regenerate(user_id=OWNER, via=Via.REACTION, segment=SegmentKey(1, 1)))[1] != []


# -- invisible prompts -----------------------------------------------------------------------------

INVISIBLE = ["\u200b", "\u200c", "\u200d", "\u2060", "\ufeff", "\u00ad", "\u200e\u200f", "\u202a\u202c", "\u3000"]


@pytest.mark.parametrize("text", [*INVISIBLE, "\u200b \u2060\t\ufeff", "\x00\x1f"])
def test_a_prompt_with_nothing_visible_is_no_prompt(text: str) -> None:
    s = awaiting_prompt(0)
    after, fx = run(s, PromptText(user_id=OWNER, text=text))
    assert after == s and "Send the prompt as text" in says(fx)[0]
    # A Start prompt of it asks for the first prompt.
    s, fx = run(fresh(), Start(user_id=OWNER, picture=PICTURE, prompt=text))
    assert s.state is State.AWAITING_PROMPT and "Send the first prompt" in says(fx)[-1]
    # A Regenerate prompt of it keeps the take's prompt.
    _, fx = run(reviewing(0), Regenerate(user_id=OWNER, prompt=text))
    [enqueue] = [e for e in fx if isinstance(e, EnqueueSegment)]
    assert enqueue.segment.prompt == "next"


def test_invisible_characters_are_trimmed_from_a_prompts_ends_only() -> None:
    assert clean_prompt("\u200b a cat\u2060 \ufeff") == "a cat"
    family = "a family 👨\u200d👩\u200d👧 walks"  # zero-width joiners inside an emoji stay
    assert clean_prompt(family) == family
    _, fx = run(awaiting_prompt(0), PromptText(user_id=OWNER, text="\u200bwaves\u200b"))
    [enqueue] = fx
    assert isinstance(enqueue, EnqueueSegment) and enqueue.segment.prompt == "waves"


# -- a second picture ------------------------------------------------------------------------------

OTHER = Picture("other.png", 480, 832)


def test_a_second_picture_replaces_the_start_after_a_failed_take() -> None:
    s, _ = run(generating(0), JobFailed(segment=SegmentKey(0, 1), kind=FailureKind.OOM))
    assert s.current is not None
    s, fx = run(s, ImageReceived(user_id=OWNER, picture=OTHER))
    assert s.first_image == "other.png" and s.current is None and s.state is State.AWAITING_PROMPT
    assert "Got the picture" in says(fx)[0]
    s, fx = run(s, PromptText(user_id=OWNER, text="go"))
    [enqueue] = fx
    assert isinstance(enqueue, EnqueueSegment) and enqueue.segment.start_image == "other.png"
    assert enqueue.segment.key == SegmentKey(0, 2)  # never a reused take number


@pytest.mark.parametrize(
    ("build", "hint"),
    [
        (lambda: reviewing(0), "To start from this picture instead, ↩ Undo the take of segment 1"),
        (lambda: generating(0), "To start from this picture instead, /undo to stop segment 1"),
        (lambda: reviewing(1), "/cancel, then /start"),
        (lambda: awaiting_prompt(1), "/cancel, then /start"),
    ],
)
def test_a_second_picture_with_a_take_or_an_approval_explains_how(build: object, hint: str) -> None:
    s: Session = build()  # type: ignore[operator]
    after, fx = run(s, ImageReceived(user_id=OWNER, picture=OTHER))
    assert after == s and hint in says(fx)[0]


def test_undo_then_the_picture_again_replaces_it() -> None:
    s, _ = run(reviewing(0), Undo(user_id=OWNER), ImageReceived(user_id=OWNER, picture=OTHER))
    assert s.first_image == "other.png" and s.start_image == "other.png"


# -- captions --------------------------------------------------------------------------------------


def test_review_caption_is_two_short_lines() -> None:
    long = "a very long prompt " * 30
    s, _ = run(awaiting_prompt(0), PromptText(user_id=OWNER, text=long), done(SegmentKey(0, 1), seed=123))
    assert s.current is not None
    first, second = review_caption(s.current).split("\n")
    assert first == "Segment 1 · take 1 · 5.1 s · seed 123"
    assert second.startswith("“a very long prompt") and second.endswith("…”") and len(second) <= 152
