"""The conversation core: every (state, event) pair for owner, admin and stranger, then the rules."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable, Sequence
from dataclasses import replace

import pytest

from bot.core import (
    DEFAULT_LIMITS,
    SEED_LIMIT,
    Approve,
    ApproveAndFinish,
    ApproveSegment,
    AssemblyDone,
    AssemblyFailed,
    Cancel,
    CancelAssembly,
    CancelJob,
    ChangeSettings,
    Control,
    DropLastApproved,
    Effect,
    EndFrame,
    EnqueueSegment,
    Event,
    Finish,
    ImageReceived,
    JobDone,
    JobFailed,
    JobProgress,
    KeepTake,
    Limits,
    Picture,
    PostFinal,
    PostSegment,
    PromptText,
    Regenerate,
    RejectSegment,
    Say,
    Segment,
    SegmentKey,
    SegmentResult,
    Session,
    Settings,
    SettingsError,
    Start,
    StartAssembly,
    State,
    Status,
    Undo,
    UpdateProgress,
    UserEvent,
    Via,
    apply_settings,
    joined_seconds,
    parse_settings,
    status_text,
    step,
)
from shared.params import WAN_NEGATIVE_PROMPT, fit_size
from shared.protocol import FailureKind

OWNER = "u:owner"
ADMIN = "u:admin"
STRANGER = "u:stranger"
ADMINS = frozenset({ADMIN})
PICTURE = Picture("data/sessions/s1/first.png", 1000, 1000)


# -- building sessions by driving the machine ---------------------------------------------------


def run(session: Session, *events: Event, limits: Limits = DEFAULT_LIMITS) -> tuple[Session, list[Effect]]:
    """Apply events in order; return the final session and the last event's effects."""
    effects: list[Effect] = []
    for event in events:
        session, effects = step(session, event, admins=ADMINS, limits=limits)
    return session, effects


def done(key: SegmentKey, seed: int = 7, frames: int = 81) -> JobDone:
    tag = f"{key.idx}.{key.attempt}"
    return JobDone(segment=key, video=f"seg{tag}.mp4", last_frame=f"seg{tag}.png", frames=frames, seed=seed)


def fresh() -> Session:
    return Session(id="s1", owner_id=OWNER)


def awaiting_prompt(approved: int = 0, limits: Limits = DEFAULT_LIMITS) -> Session:
    s, _ = run(fresh(), Start(user_id=OWNER, picture=PICTURE), limits=limits)
    for i in range(approved):
        s, _ = run(s, PromptText(user_id=OWNER, text=f"prompt {i}"), limits=limits)
        s, _ = run(s, done(SegmentKey(i, 1)), Approve(user_id=OWNER, segment=SegmentKey(i, 1)), limits=limits)
    return s


def generating(approved: int = 1) -> Session:
    s, _ = run(awaiting_prompt(approved), PromptText(user_id=OWNER, text="next"))
    return s


def reviewing(approved: int = 1) -> Session:
    s = generating(approved)
    assert s.current is not None
    s, _ = run(s, done(s.current.key))
    return s


def assembling() -> Session:
    s, _ = run(awaiting_prompt(2), Finish(user_id=OWNER))
    return s


def finished() -> Session:
    s, _ = run(assembling(), AssemblyDone(path="final.mp4"))
    return s


def cancelled() -> Session:
    s, _ = run(reviewing(), Cancel(user_id=OWNER))
    return s


SESSIONS = {
    State.AWAITING_IMAGE: fresh,
    State.AWAITING_PROMPT: lambda: awaiting_prompt(1),
    State.GENERATING: generating,
    State.REVIEWING: reviewing,
    State.ASSEMBLING: assembling,
    State.FINISHED: finished,
    State.CANCELLED: cancelled,
}


def says(effects: Sequence[Effect]) -> list[str]:
    return [e.text for e in effects if isinstance(e, Say)]


def kinds(effects: Sequence[Effect]) -> list[type[Effect]]:
    return [type(e) for e in effects]


# -- the matrix: every state x every event ---------------------------------------------------------


def sample_event(name: str, s: Session, user: str) -> Event:
    """A well-formed event of each type, aimed at the session's current take where it has one."""
    key = s.current.key if s.current is not None else SegmentKey(len(s.approved), 1)
    events: dict[str, Event] = {
        "Start": Start(user_id=user, picture=PICTURE),
        "ImageReceived": ImageReceived(user_id=user, picture=PICTURE),
        "PromptText": PromptText(user_id=user, text="a cat walks"),
        "Approve": Approve(user_id=user, segment=key, via=Via.CONTROL),
        "Regenerate": Regenerate(user_id=user, segment=key, via=Via.CONTROL),
        "Undo": Undo(user_id=user),
        "Finish": Finish(user_id=user),
        "ApproveAndFinish": ApproveAndFinish(user_id=user, segment=key, via=Via.CONTROL),
        "Cancel": Cancel(user_id=user),
        "Status": Status(user_id=user),
        "ChangeSettings": ChangeSettings(user_id=user, changes=(("steps", "8"),)),
        "EndFrame": EndFrame(user_id=user, picture=Picture("data/sessions/s1/end.png", 800, 600)),
        "JobProgress": JobProgress(segment=key, step=3, total=20),
        "JobDone": done(key),
        "JobFailed": JobFailed(segment=key, kind=FailureKind.OOM),
        "AssemblyDone": AssemblyDone(path="final.mp4"),
        "AssemblyFailed": AssemblyFailed(),
    }
    return events[name]


# Expected outcome for the owner. A state (img, prompt, gen, review, asm, fin, cxl): the session
# moves there or changes in place; "say": refused, unchanged, one short message; "-": ignored,
# unchanged, no effects; "prog": unchanged, one UpdateProgress.
ABBREVIATIONS = {
    "img": State.AWAITING_IMAGE,
    "prompt": State.AWAITING_PROMPT,
    "gen": State.GENERATING,
    "review": State.REVIEWING,
    "asm": State.ASSEMBLING,
    "fin": State.FINISHED,
    "cxl": State.CANCELLED,
}
COLUMNS = list(ABBREVIATIONS.values())
# fmt: off
MATRIX = {
    #                  img      prompt    gen       review    asm       fin    cxl
    "Start":          ("prompt", "say",    "say",    "say",    "say",    "say", "say"),
    "ImageReceived":  ("prompt", "say",    "say",    "say",    "say",    "say", "say"),
    "PromptText":     ("img",    "gen",    "say",    "say",    "say",    "say", "say"),
    "Approve":        ("say",    "say",    "say",    "prompt", "say",    "say", "say"),
    "Regenerate":     ("say",    "say",    "say",    "gen",    "say",    "say", "say"),
    "Undo":           ("say",    "prompt", "prompt", "prompt", "say",    "say", "say"),
    "Finish":         ("say",    "asm",    "asm",    "say",    "say",    "say", "say"),
    "ApproveAndFinish": ("say",  "say",    "say",    "asm",    "say",    "say", "say"),
    "Cancel":         ("cxl",    "cxl",    "cxl",    "cxl",    "cxl",    "say", "say"),
    "Status":         ("say",    "say",    "say",    "say",    "say",    "say", "say"),
    "ChangeSettings": ("img",    "prompt", "say",    "review", "say",    "say", "say"),
    "EndFrame":       ("img",    "prompt", "gen",    "review", "say",    "say", "say"),
    "JobProgress":    ("-",      "-",      "prog",   "-",      "-",      "-",   "-"),
    "JobDone":        ("-",      "-",      "review", "-",      "-",      "-",   "-"),
    "JobFailed":      ("-",      "-",      "prompt", "-",      "-",      "-",   "-"),
    "AssemblyDone":   ("-",      "-",      "-",      "-",      "fin",    "-",   "-"),
    "AssemblyFailed": ("-",      "-",      "-",      "-",      "prompt", "-",   "-"),
}
# fmt: on
MATRIX_CASES = [
    pytest.param(name, state, outcome, id=f"{state.value}-{name}")
    for name, row in MATRIX.items()
    for state, outcome in zip(COLUMNS, row, strict=True)
]


@pytest.mark.parametrize(("name", "state", "outcome"), MATRIX_CASES)
def test_owner_matrix(name: str, state: State, outcome: str) -> None:
    before = SESSIONS[state]()
    assert before.state is state
    after, effects = step(before, sample_event(name, before, OWNER), admins=ADMINS)
    if outcome == "-":
        assert (after, effects) == (before, [])
    elif outcome == "say":
        assert after == before
        assert len(effects) == 1 and isinstance(effects[0], Say) and effects[0].text
    elif outcome == "prog":
        assert after == before
        assert kinds(effects) == [UpdateProgress]
    else:
        assert after.state is ABBREVIATIONS[outcome]
        assert after != before


@pytest.mark.parametrize(("name", "state", "outcome"), MATRIX_CASES)
def test_admin_acts_like_the_owner(name: str, state: State, outcome: str) -> None:
    before = SESSIONS[state]()
    as_owner = step(before, sample_event(name, before, OWNER), admins=ADMINS)
    as_admin = step(before, sample_event(name, before, ADMIN), admins=ADMINS)
    assert as_admin == as_owner


@pytest.mark.parametrize(("name", "state", "outcome"), MATRIX_CASES)
def test_stranger_changes_nothing(name: str, state: State, outcome: str) -> None:
    before = SESSIONS[state]()
    event = sample_event(name, before, STRANGER)
    after, effects = step(before, event, admins=ADMINS)
    if not isinstance(event, UserEvent):
        return  # job reports have no actor; covered by the owner matrix
    assert after == before
    if isinstance(event, Status):
        assert kinds(effects) == [Say]  # anyone may look
    elif event.via in (Via.COMMAND, Via.CONTROL):  # a typed command or a button: told privately
        assert effects == [Say("Only the person who started this session can do that.", ephemeral=True)]
    else:  # messages, pictures and reactions from others are chatter
        assert effects == []


@pytest.mark.parametrize("via", list(Via))
def test_stranger_refusal_depends_on_how_the_event_came(via: Via) -> None:
    s = reviewing()
    assert s.current is not None
    after, effects = step(s, Approve(user_id=STRANGER, segment=s.current.key, via=via))
    assert after == s
    # Typed commands and buttons are told; messages and reactions (visible chatter) are not.
    assert (effects != []) == (via in (Via.COMMAND, Via.CONTROL))


def test_stranger_may_view_settings_but_not_change_them() -> None:
    s = awaiting_prompt(1)
    _, effects = step(s, ChangeSettings(user_id=STRANGER))
    assert says(effects)[0].startswith("Settings: 5 s per segment")
    after, effects = step(s, ChangeSettings(user_id=STRANGER, changes=(("steps", "4"),)))
    assert after == s and says(effects) == ["Only the person who started this session can do that."]


# -- a whole session -------------------------------------------------------------------------------


def test_full_session_start_to_finish() -> None:
    wide = Picture("in/wide.jpg", 1920, 1080)
    s, fx = run(fresh(), Start(user_id=OWNER, picture=wide, prompt="  a boat sails  "))
    assert s.state is State.GENERATING and s.first_image == "in/wide.jpg"
    assert (s.settings.width, s.settings.height) == fit_size(1920, 1080, 640 * 640) == (848, 480)
    [enqueue] = fx
    assert enqueue == EnqueueSegment(
        session_id="s1",
        owner_id=OWNER,
        first_image="in/wide.jpg",
        segment=Segment(
            idx=0,
            attempt=1,
            prompt="a boat sails",
            negative_prompt=WAN_NEGATIVE_PROMPT,
            seed=None,
            start_image="in/wide.jpg",
            width=848,
            height=480,
            frames=81,
            steps=20,
        ),
    )
    s, fx = run(s, JobProgress(segment=SegmentKey(0, 1), step=5, total=20))
    assert fx == [UpdateProgress("s1", SegmentKey(0, 1), 5, 20)]

    s, fx = run(s, done(SegmentKey(0, 1), seed=1234))
    assert s.state is State.REVIEWING
    [post] = fx
    assert isinstance(post, PostSegment) and post.segment.result == SegmentResult("seg0.1.mp4", "seg0.1.png", 81, 1234)
    assert post.caption == "Segment 1 · take 1 · 5.1 s · seed 1234\n“a boat sails”"

    s, fx = run(s, Regenerate(user_id=OWNER, segment=SegmentKey(0, 1), via=Via.CONTROL))
    assert kinds(fx) == [Say, KeepTake, EnqueueSegment]
    assert fx[0] == Say("🔁 Regenerating segment 1…", ephemeral=True)
    s, _ = run(s, done(SegmentKey(0, 2)))
    s, fx = run(s, Approve(user_id=OWNER, segment=SegmentKey(0, 2), via=Via.CONTROL))
    assert fx[:3] == [
        Say("✅ Approved segment 1, take 2.", ephemeral=True),
        RejectSegment("s1", SegmentKey(0, 1)),
        ApproveSegment("s1", SegmentKey(0, 2), keep_controls=(Control.FINISH,)),
    ]
    assert "Segment 1 approved — 5.1 s so far" in says(fx)[1]
    assert s.start_image == "seg0.2.png"

    s, fx = run(s, PromptText(user_id=OWNER, text="it docks"))
    [enqueue] = fx
    assert isinstance(enqueue, EnqueueSegment)
    assert enqueue.segment.key == SegmentKey(1, 1) and enqueue.segment.start_image == "seg0.2.png"
    s, _ = run(s, done(SegmentKey(1, 1)), Approve(user_id=OWNER))
    assert len(s.approved) == 2 and s.seconds == pytest.approx(161 / 16)

    s, fx = run(s, Undo(user_id=OWNER))
    assert fx[0] == DropLastApproved("s1", SegmentKey(1, 1))
    assert s.start_image == "seg0.2.png" and "continues from the end of segment 1" in says(fx)[0]

    s, fx = run(s, Finish(user_id=OWNER))
    assert s.state is State.ASSEMBLING
    assert fx[0] == StartAssembly("s1", s.approved, 81 / 16)
    assert says(fx) == ["Joining 1 segment (5.1 s)…"]
    s, fx = run(s, AssemblyDone(path="final.mp4"))
    assert s.state is State.FINISHED and s.final_video == "final.mp4"
    assert fx == [PostFinal("s1", "final.mp4", "Here's your video: 1 segment, 5.1 s.")]


# -- stale and repeated presses --------------------------------------------------------------------


def test_double_approve_press_approves_once() -> None:
    s = reviewing()
    assert s.current is not None
    key = s.current.key
    press = Approve(user_id=OWNER, segment=key, via=Via.CONTROL)
    s, first = run(s, press)
    assert ApproveSegment in kinds(first)
    again, second = run(s, press)
    assert again == s
    assert second == [Say("Segment 2 is already approved.", ephemeral=True)]


def test_old_take_buttons_while_the_next_is_made() -> None:
    s = reviewing()
    old = SegmentKey(1, 1)
    s, _ = run(s, Regenerate(user_id=OWNER, segment=old, via=Via.CONTROL))
    # While the next take is made, the old one's Regenerate and Approve & finish do nothing.
    for press in (Regenerate(user_id=OWNER, segment=old), ApproveAndFinish(user_id=OWNER, segment=old)):
        after, fx = run(s, press)
        assert after == s and fx == [Say("That take is no longer up for review.", ephemeral=True)]
    # Its Undo (a page of the review message showing it) discards it alone.
    after, fx = run(s, Undo(user_id=OWNER, segment=old, via=Via.CONTROL))
    assert after.kept == () and after.state is State.GENERATING and RejectSegment("s1", old) in fx
    s, _ = run(s, done(SegmentKey(1, 2)))
    # Under review, its 🔁 (on a page showing it) makes one more take with its prompt.
    after, fx = run(s, Regenerate(user_id=OWNER, segment=old, via=Via.CONTROL))
    assert after.state is State.GENERATING and [k.attempt for k in after.kept] == [1, 2]
    # Pressing regenerate twice on the current take starts one new take only.
    s, fx = run(s, Regenerate(user_id=OWNER, segment=SegmentKey(1, 2)))
    assert kinds(fx) == [KeepTake, EnqueueSegment]
    after, fx = run(s, Regenerate(user_id=OWNER, segment=SegmentKey(1, 2)))
    assert after == s and kinds(fx) == [Say]


def test_typed_approve_with_nothing_to_review() -> None:
    s = awaiting_prompt(1)
    after, fx = run(s, Approve(user_id=OWNER))
    assert after == s and says(fx) == ["There is no segment waiting for review."]
    s = generating()
    after, fx = run(s, Approve(user_id=OWNER))
    assert after == s and says(fx) == ["Segment 2 is still being made."]


def test_late_job_reports_for_stopped_takes_are_ignored() -> None:
    s = generating()
    assert s.current is not None
    key = s.current.key
    s, fx = run(s, Undo(user_id=OWNER))
    assert fx[0] == CancelJob("s1", key)
    for late in (
        JobProgress(segment=key, step=1, total=2),
        done(key),
        JobFailed(segment=key, kind=FailureKind.CANCELLED),
    ):
        assert run(s, late) == (s, [])
    s, _ = run(s, PromptText(user_id=OWNER, text="again"))
    assert s.current is not None and s.current.key == SegmentKey(1, 2)
    assert run(s, done(key)) == (s, [])  # the stopped take's report cannot pass for the new one


# -- prompts ---------------------------------------------------------------------------------------


def test_prompt_length_limit() -> None:
    limits = Limits(max_prompt_chars=20)
    s = awaiting_prompt(limits=limits)
    after, fx = run(s, PromptText(user_id=OWNER, text="x" * 20), limits=limits)
    assert after.state is State.GENERATING
    after, fx = run(s, PromptText(user_id=OWNER, text="x" * 21), limits=limits)
    assert after == s
    assert says(fx) == ["That prompt is 21 characters; the limit is 20. Please shorten it and send it again."]
    after, fx = run(s, PromptText(user_id=OWNER, text="   "), limits=limits)
    assert after == s and "Send the prompt as text" in says(fx)[0]


def test_too_long_prompt_with_start_keeps_the_picture() -> None:
    limits = Limits(max_prompt_chars=10)
    s, fx = run(fresh(), Start(user_id=OWNER, picture=PICTURE, prompt="y" * 11), limits=limits)
    assert s.state is State.AWAITING_PROMPT and s.first_image == PICTURE.path
    assert "11 characters; the limit is 10" in says(fx)[0]
    assert "Send the first prompt" in says(fx)[1]


def test_prompt_before_picture_is_kept() -> None:
    s, fx = run(fresh(), Start(user_id=OWNER, prompt="waves"))
    assert s.state is State.AWAITING_IMAGE and s.pending_prompt == "waves"
    assert says(fx) == ["Got your prompt. Now send the start picture."]
    s, fx = run(s, PromptText(user_id=OWNER, text="bigger waves"))
    assert s.pending_prompt == "bigger waves"
    s, fx = run(s, ImageReceived(user_id=OWNER, picture=PICTURE))
    assert s.state is State.GENERATING and s.pending_prompt is None
    [enqueue] = fx
    assert isinstance(enqueue, EnqueueSegment) and enqueue.segment.prompt == "bigger waves"


def test_bare_start_asks_for_the_picture() -> None:
    s, fx = run(fresh(), Start(user_id=OWNER))
    assert s == fresh() and says(fx) == ["Send me the start picture, then one prompt per segment."]


def test_unreadable_picture() -> None:
    s, fx = run(fresh(), ImageReceived(user_id=OWNER, picture=Picture("x.png", 0, 10)))
    assert s == fresh() and says(fx) == ["I couldn't read that picture. Please send another one."]


def test_new_picture_replaces_the_first_only_before_any_segment() -> None:
    other = Picture("other.png", 480, 832)
    s, fx = run(awaiting_prompt(0), ImageReceived(user_id=OWNER, picture=other))
    assert s.first_image == "other.png" and (s.settings.width, s.settings.height) == fit_size(480, 832, 640 * 640)
    s1 = awaiting_prompt(1)
    after, fx = run(s1, ImageReceived(user_id=OWNER, picture=other))
    assert after == s1 and "already has its start picture" in says(fx)[0]


def test_prompt_while_busy_is_refused_with_a_hint() -> None:
    s = generating()
    after, fx = run(s, PromptText(user_id=OWNER, text="next"))
    assert after == s and says(fx)[0].startswith("Still working on segment 2")
    s = reviewing()
    after, fx = run(s, PromptText(user_id=OWNER, text="next"))
    assert after == s and "/regenerate <prompt>" in says(fx)[0]


def test_segment_limit() -> None:
    limits = Limits(max_segments=2)
    s = awaiting_prompt(1, limits=limits)
    s, _ = run(s, PromptText(user_id=OWNER, text="two"), done(SegmentKey(1, 1)), limits=limits)
    s, fx = run(s, Approve(user_id=OWNER), limits=limits)
    assert "That's the limit of 2 segments" in says(fx)[0]
    after, fx = run(s, PromptText(user_id=OWNER, text="three"), limits=limits)
    assert after == s and says(fx)[0].startswith("You've reached the limit of 2 segments")
    s, _ = run(s, Undo(user_id=OWNER), limits=limits)
    s, fx = run(s, PromptText(user_id=OWNER, text="two again"), limits=limits)
    assert s.state is State.GENERATING


# -- regenerate and seeds --------------------------------------------------------------------------


def _seeds(settings: Settings, takes: int, prompt: str | None = None) -> list[int | None]:
    s = replace(awaiting_prompt(0), settings=settings)
    s, fx = run(s, PromptText(user_id=OWNER, text="p"))
    seeds = []
    for attempt in range(1, takes + 1):
        [*_, enqueue] = fx
        assert isinstance(enqueue, EnqueueSegment) and enqueue.segment.attempt == attempt
        seeds.append(enqueue.segment.seed)
        s, _ = run(s, done(SegmentKey(0, attempt), seed=999))
        s, fx = run(s, Regenerate(user_id=OWNER, prompt=prompt))
    return seeds


def test_regenerate_with_random_seed_asks_for_a_fresh_one() -> None:
    assert _seeds(Settings(), 3) == [None, None, None]


def test_regenerate_with_fixed_seed_counts_up() -> None:
    assert _seeds(Settings(seed=100), 3) == [100, 101, 102]
    assert _seeds(Settings(seed=SEED_LIMIT - 1), 2) == [SEED_LIMIT - 1, 0]


def test_regenerate_with_a_new_prompt() -> None:
    s = reviewing()
    s, fx = run(s, Regenerate(user_id=OWNER, prompt="  a dog instead "))
    [keep, enqueue] = fx
    assert keep == KeepTake("s1", SegmentKey(1, 1))
    assert isinstance(enqueue, EnqueueSegment)
    assert enqueue.segment.prompt == "a dog instead" and enqueue.segment.key == SegmentKey(1, 2)
    s, _ = run(s, done(SegmentKey(1, 2)))
    after, fx = run(s, Regenerate(user_id=OWNER, prompt="z" * 2000))
    assert after == s and "2000 characters" in says(fx)[0]
    # Without a new prompt the take's prompt is kept.
    _, fx = run(s, Regenerate(user_id=OWNER))
    assert isinstance(fx[1], EnqueueSegment) and fx[1].segment.prompt == "a dog instead"


def test_failed_take_can_be_retried() -> None:
    s = generating()
    s, fx = run(s, JobFailed(segment=SegmentKey(1, 1), kind=FailureKind.OOM, message="CUDA out of memory"))
    assert s.state is State.AWAITING_PROMPT and s.current is not None
    assert "ran out of GPU memory" in says(fx)[0]
    assert "failed: /regenerate to retry" in status_text(s)
    s, fx = run(s, Regenerate(user_id=OWNER))
    [enqueue] = fx  # a failed take needs no rejection
    assert isinstance(enqueue, EnqueueSegment) and enqueue.segment.key == SegmentKey(1, 2)
    assert enqueue.segment.prompt == "next"


def test_failed_take_replaced_by_a_new_prompt() -> None:
    s = generating()
    s, _ = run(s, JobFailed(segment=SegmentKey(1, 1), kind=FailureKind.INTERNAL))
    s, fx = run(s, PromptText(user_id=OWNER, text="simpler"))
    [enqueue] = fx
    assert isinstance(enqueue, EnqueueSegment) and enqueue.segment.key == SegmentKey(1, 2)


def test_nothing_to_regenerate() -> None:
    s = awaiting_prompt(1)
    after, fx = run(s, Regenerate(user_id=OWNER))
    assert after == s and says(fx) == ["Nothing to regenerate — send a prompt for the next segment."]


@pytest.mark.parametrize(
    ("kind", "message", "expected", "hidden"),
    [
        (FailureKind.OOM, "CUDA OOM at 0x1", "Segment 2 ran out of GPU memory. Try fewer seconds", "0x1"),
        (
            FailureKind.BAD_INPUT,
            "prompt must not be empty",
            "couldn't be made: prompt must not be empty",
            None,
        ),
        (FailureKind.CANCELLED, "", "Segment 2 was stopped.", None),
        (
            FailureKind.INTERNAL,
            "Traceback: KeyError",
            "Sorry — something went wrong making segment 2 (ref s1/1.1)",
            "KeyError",
        ),
    ],
)
def test_failure_texts(kind: FailureKind, message: str, expected: str, hidden: str | None) -> None:
    _, fx = run(generating(), JobFailed(segment=SegmentKey(1, 1), kind=kind, message=message))
    [text] = says(fx)
    assert expected in text
    if hidden is not None:
        assert hidden not in text


# -- undo ------------------------------------------------------------------------------------------


def test_undo_while_reviewing_discards_only_the_take() -> None:
    s, fx = run(reviewing(), Undo(user_id=OWNER))
    assert s.state is State.AWAITING_PROMPT and len(s.approved) == 1 and s.current is None
    assert fx[0] == RejectSegment("s1", SegmentKey(1, 1))
    assert says(fx) == [
        "Discarded this take of segment 2. Send a new prompt for it, or /undo again to remove segment 1."
    ]
    s, fx = run(s, Undo(user_id=OWNER))
    assert fx[0] == DropLastApproved("s1", SegmentKey(0, 1)) and s.approved == ()
    assert s.start_image == PICTURE.path and "continues from the start picture" in says(fx)[0]
    after, fx = run(s, Undo(user_id=OWNER))
    assert after == s and says(fx) == ["Nothing to undo yet."]


def test_undo_while_generating_stops_the_job() -> None:
    s, fx = run(generating(), Undo(user_id=OWNER))
    assert s.state is State.AWAITING_PROMPT and len(s.approved) == 1
    assert fx == [CancelJob("s1", SegmentKey(1, 1)), Say("Stopped segment 2. Send a new prompt for it.")]


def test_attempts_never_repeat_after_undo() -> None:
    s = awaiting_prompt(2)  # segment 2 was take (1, 1)
    s, _ = run(s, Undo(user_id=OWNER), PromptText(user_id=OWNER, text="redo"))
    assert s.current is not None and s.current.key == SegmentKey(1, 2)
    s, _ = run(s, Undo(user_id=OWNER), Undo(user_id=OWNER), PromptText(user_id=OWNER, text="redo first"))
    assert s.current is not None and s.current.key == SegmentKey(0, 2)
    assert s.attempts == (2, 2)


# -- finish, assembly, cancel ----------------------------------------------------------------------


def test_finish_with_nothing_approved() -> None:
    s = awaiting_prompt(0)
    after, fx = run(s, Finish(user_id=OWNER))
    assert after == s and says(fx) == ["Nothing to join yet — approve at least one segment first."]
    s = reviewing(0)
    after, fx = run(s, Finish(user_id=OWNER))
    assert after == s
    assert says(fx) == ["Segment 1 take 1 is still under review: 🏁 Approve & finish makes it the video."]
    s = generating(0)
    after, fx = run(s, Finish(user_id=OWNER))
    assert after == s and says(fx) == ["Nothing is approved yet — segment 1 is still being made."]


def test_finish_while_generating_stops_the_job() -> None:
    s, fx = run(generating(2), Finish(user_id=OWNER))
    assert kinds(fx) == [CancelJob, Say, StartAssembly, Say]
    assert fx[2] == StartAssembly("s1", s.approved, 161 / 16)


def test_assembly_failure_returns_to_prompting() -> None:
    s, fx = run(assembling(), AssemblyFailed(message="the video is too large to send"))
    assert s.state is State.AWAITING_PROMPT and len(s.approved) == 2
    assert says(fx) == [
        "Sorry, joining the video failed (the video is too large to send). "
        "Your approved segments are safe — /finish to try again."
    ]
    s, fx = run(s, Finish(user_id=OWNER))
    assert s.state is State.ASSEMBLING


@pytest.mark.parametrize(
    ("build", "stop"),
    [
        (fresh, []),
        (lambda: awaiting_prompt(1), []),
        (generating, [CancelJob]),
        (reviewing, [RejectSegment]),
        (assembling, [CancelAssembly]),
    ],
)
def test_cancel_from_anywhere(build: Callable[[], Session], stop: list[type[Effect]]) -> None:
    s, fx = run(build(), Cancel(user_id=OWNER))
    assert s.state is State.CANCELLED and s.current is None
    assert kinds(fx) == [*stop, Say]


def test_after_cancel_late_reports_and_actions_do_nothing() -> None:
    s, _ = run(assembling(), Cancel(user_id=OWNER))
    assert run(s, AssemblyDone(path="final.mp4")) == (s, [])
    after, fx = run(s, Cancel(user_id=OWNER))
    assert after == s and says(fx) == ["This session is already cancelled."]
    after, fx = run(finished(), Cancel(user_id=OWNER))
    assert says(fx) == ["This session is already finished."]


# -- settings --------------------------------------------------------------------------------------


def test_parse_settings() -> None:
    assert parse_settings("") == ()
    assert parse_settings("seconds=3 steps = 8") == (("seconds", "3"), ("steps", "8"))
    assert parse_settings("seed 42") == (("seed", "42"),)
    assert parse_settings("Steps=4 negative=blurry, static, ugly hands") == (
        ("steps", "4"),
        ("negative", "blurry, static, ugly hands"),
    )
    with pytest.raises(SettingsError, match="name=value"):
        parse_settings("fast please steps=4")


def test_settings_change_applies_to_the_next_take() -> None:
    s = awaiting_prompt(0)
    changes = parse_settings("seconds=3s steps=8 seed=42 size=832x480 negative=blurry")
    s, fx = run(s, ChangeSettings(user_id=OWNER, changes=changes))
    assert s.settings == Settings(seconds=3, steps=8, seed=42, negative_prompt="blurry", width=832, height=480)
    assert says(fx) == [
        "Settings updated: 3 s per segment (49 frames), 8 steps, seed 42, size 832×480, negative prompt “blurry”, "
        "colour match auto."
    ]
    s, fx = run(s, PromptText(user_id=OWNER, text="go"))
    seg = fx[0].segment if isinstance(fx[0], EnqueueSegment) else None
    assert seg is not None
    assert (seg.frames, seg.steps, seg.seed, seg.negative_prompt, seg.width, seg.height) == (
        49, 8, 42, "blurry", 832, 480,
    )  # fmt: skip


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("seconds=6", "seconds must be 2, 3, 4 or 5"),
        ("seconds=abc", "seconds must be 2, 3, 4 or 5"),
        ("steps=0", "steps must be a whole number from 1 to 50"),
        ("steps=51", "steps must be a whole number from 1 to 50"),
        ("seed=-1", "seed must be a whole number"),
        (f"seed={2**63}", "seed must be a whole number"),
        ("size=100x100", "multiple of 16"),
        ("size=big", "multiple of 16"),
        ("size=1920x1088", "too large; the limit is 921,600 pixels"),
        ("colour=red", "unknown setting 'colour'"),
        ("negative=" + "n" * 2001, "the negative prompt is 2001 characters; the limit is 2000"),
    ],
)
def test_invalid_settings_change_nothing(text: str, problem: str) -> None:
    s = awaiting_prompt(0)
    changes = (("steps", "9"), *parse_settings(text))  # a valid change alongside is not applied either
    after, fx = run(s, ChangeSettings(user_id=OWNER, changes=changes))
    assert after == s
    [text_said] = says(fx)
    assert text_said.startswith("Settings not changed: ") and problem in text_said


def test_settings_special_values() -> None:
    limits = Limits()
    base = Settings(seed=5, negative_prompt="x")
    assert apply_settings(base, (("seed", "random"),), limits=limits).seed is None
    assert apply_settings(base, (("negative", "default"),), limits=limits).negative_prompt == WAN_NEGATIVE_PROMPT
    assert apply_settings(base, (("negative_prompt", "none"),), limits=limits).negative_prompt == ""
    assert apply_settings(base, (("length", "2"),), limits=limits).frames == 33


def test_size_is_locked_when_it_must_be() -> None:
    size = ChangeSettings(user_id=OWNER, changes=(("size", "512x512"),))
    after, fx = run(fresh(), size)
    assert after == fresh() and "the size follows the start picture" in says(fx)[0]
    s = awaiting_prompt(1)
    after, fx = run(s, size)
    assert after == s and "fixed once a segment is approved" in says(fx)[0]
    # Before anything is approved, the new size reaches a regenerated take.
    s, _ = run(reviewing(0), size)
    s, fx = run(s, Regenerate(user_id=OWNER))
    assert isinstance(fx[1], EnqueueSegment) and (fx[1].segment.width, fx[1].segment.height) == (512, 512)


def test_settings_refused_while_generating() -> None:
    s = generating()
    after, fx = run(s, ChangeSettings(user_id=OWNER, changes=(("steps", "4"),)))
    assert after == s and says(fx) == [
        "Settings can't change while segment 2 is being made — try again once it's ready."
    ]


def test_settings_values_are_checked_on_construction() -> None:
    with pytest.raises(ValueError, match="segment length"):
        Settings(seconds=7)
    with pytest.raises(ValueError, match="width"):
        Settings(width=650)
    with pytest.raises(ValueError, match="max_pixels"):
        Limits(size=(1008, 1008), max_pixels=640 * 640)


# -- status, texts, session consistency ------------------------------------------------------------


@pytest.mark.parametrize(
    ("position", "expected"),
    [
        (None, "is queued or running"),
        (0, "is running now"),
        (1, "is queued, next in line"),
        (2, "is queued, 1 job ahead"),
        (4, "is queued, 3 jobs ahead"),
    ],
)
def test_status_while_generating(position: int | None, expected: str) -> None:
    _, fx = run(generating(), Status(user_id=OWNER, queue_position=position))
    assert says(fx) == [f"1 segment approved (5.1 s). Segment 2 (take 1) {expected}."]


def test_status_texts() -> None:
    assert status_text(fresh()) == "Waiting for the start picture."
    assert status_text(awaiting_prompt(2)) == "2 segments approved (10.1 s). Waiting for the next prompt."
    assert status_text(awaiting_prompt(0)) == "No segment approved yet. Waiting for the first prompt."
    assert status_text(reviewing()) == "1 segment approved (5.1 s). Segment 2 is ready for review."
    assert status_text(assembling()) == "Joining 2 segments (10.1 s) into the final video."
    assert status_text(finished()) == "Finished: 2 segments, 10.1 s."
    assert status_text(cancelled()) == "This session was cancelled."


def test_joined_seconds_drops_the_repeated_first_frames() -> None:
    s = awaiting_prompt(3)
    assert joined_seconds(s.approved) == (81 + 80 + 80) / 16
    assert joined_seconds([]) == 0.0


def test_inconsistent_sessions_are_rejected() -> None:
    with pytest.raises(ValueError, match="generating needs a current take"):
        Session(id="x", owner_id=OWNER, state=State.GENERATING, first_image="a.png")
    s = reviewing()
    with pytest.raises(ValueError, match="next chain position"):
        replace(s, approved=())
    with pytest.raises(ValueError, match="finished needs the final video"):
        replace(awaiting_prompt(1), state=State.FINISHED)


def test_core_imports_nothing_heavy() -> None:
    code = (
        "import sys, bot.core\n"
        "heavy = {'torch', 'diffusers', 'transformers', 'numpy', 'PIL', 'asyncio', 'sqlite3'}\n"
        "heavy &= set(sys.modules)\n"
        "assert not heavy, heavy\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_colour_match_is_a_session_setting() -> None:
    s = awaiting_prompt(0)
    s, fx = run(s, ChangeSettings(user_id=OWNER, changes=parse_settings("color=first")))
    assert s.settings.color_match == "first"
    assert says(fx)[0].endswith("colour match first.")
    s, fx = run(s, ChangeSettings(user_id=OWNER, changes=parse_settings("color_match=OFF")))
    assert s.settings.color_match == "off"
    s, fx = run(s, ChangeSettings(user_id=OWNER, changes=parse_settings("color=sepia")))
    assert s.settings.color_match == "off" and "color must be auto, first" in says(fx)[0]
