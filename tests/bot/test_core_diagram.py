"""The transition table, the committed diagram and step() agree with each other."""

from __future__ import annotations

import itertools
from dataclasses import replace
from pathlib import Path

from bot.core import (
    EVENT_TYPES,
    TRANSITIONS,
    Approve,
    ApproveAndFinish,
    AssemblyDone,
    AssemblyFailed,
    Cancel,
    ChangeSettings,
    EndFrame,
    Event,
    Finish,
    ImageReceived,
    JobFailed,
    JobProgress,
    Limits,
    Picture,
    PromptText,
    Regenerate,
    Say,
    SegmentKey,
    Session,
    Settings,
    ShowTake,
    Start,
    State,
    Status,
    Undo,
    UserEvent,
    Via,
    diagram_markdown,
    mermaid_diagram,
    step,
)
from shared.protocol import FailureKind
from tests.bot.test_core import (
    ADMIN,
    ADMINS,
    OWNER,
    STRANGER,
    assembling,
    awaiting_prompt,
    cancelled,
    done,
    finished,
    fresh,
    generating,
    reviewing,
    run,
)

DIAGRAM = Path(__file__).resolve().parents[2] / "bot" / "core_diagram.md"
SMALL = Limits(max_segments=2, max_prompt_chars=30)


def test_committed_diagram_matches_the_table() -> None:
    assert DIAGRAM.read_text(encoding="utf-8") == diagram_markdown(), (
        "bot/core_diagram.md is out of date; regenerate it (see the command at its top)"
    )


def test_diagram_has_every_state_and_edge() -> None:
    text = mermaid_diagram()
    for state in State:
        assert state.value in text
    for (source, event), targets in TRANSITIONS.items():
        for target in targets:
            edge = next(line for line in text.splitlines() if line.strip().startswith(f"{source} --> {target} :"))
            assert event.__name__ in edge


def test_table_covers_known_states_and_events_only() -> None:
    for state, event in TRANSITIONS:
        assert isinstance(state, State) and event in EVENT_TYPES
    assert all(not state.over for state, _ in TRANSITIONS)  # nothing leaves finished or cancelled


def sessions() -> list[Session]:
    failed, _ = run(generating(), JobFailed(segment=SegmentKey(1, 1), kind=FailureKind.INTERNAL))
    pending, _ = run(fresh(), PromptText(user_id=OWNER, text="waves"))
    early_cancel, _ = run(fresh(), Cancel(user_id=OWNER))
    seeded = replace(reviewing(0), settings=Settings(seed=3))
    # Takes kept beside the newest: being made, under review, and after the newest was undone.
    kept_generating, _ = run(reviewing(1), Regenerate(user_id=OWNER))
    kept_reviewing, _ = run(kept_generating, done(SegmentKey(1, 2)))
    kept_waiting, _ = run(kept_reviewing, Undo(user_id=OWNER))
    # A batch of three takes (settings takes=3): none done, one done, and two done.
    three = replace(awaiting_prompt(1), settings=Settings(takes=3))
    batch, _ = run(three, PromptText(user_id=OWNER, text="three ways"))
    batch_one, _ = run(batch, done(SegmentKey(1, 2)))
    batch_two, _ = run(batch_one, done(SegmentKey(1, 3)))
    return [
        batch,
        batch_one,
        batch_two,
        kept_generating,
        kept_reviewing,
        kept_waiting,
        fresh(),
        pending,
        awaiting_prompt(0),
        awaiting_prompt(1),
        awaiting_prompt(2),  # at SMALL's limit
        failed,
        generating(0),
        generating(1),
        reviewing(0),
        reviewing(1),
        seeded,
        assembling(),
        finished(),
        cancelled(),
        early_cancel,
    ]


def events(s: Session, user: str) -> list[Event]:
    picture = Picture("p.png", 640, 480)
    keys: list[SegmentKey | None] = [
        None,
        SegmentKey(0, 1),
        SegmentKey(1, 1),
        SegmentKey(1, 2),
        SegmentKey(1, 3),
        SegmentKey(5, 1),
    ]
    if s.current is not None:
        keys.append(s.current.key)
    long = "x" * 31
    out: list[Event] = []
    for pic, prompt in itertools.product([None, picture, Picture("bad.png", 0, 0)], [None, "", "go", long]):
        out.append(Start(user_id=user, picture=pic, prompt=prompt))
    out += [
        ImageReceived(user_id=user, picture=picture),
        ImageReceived(user_id=user, picture=Picture("b", 0, 1)),
    ]
    out += [PromptText(user_id=user, text=t) for t in ("", "a cat", long)]
    for key, via in itertools.product(keys, Via):
        out.append(Approve(user_id=user, segment=key, via=via))
        out.append(ApproveAndFinish(user_id=user, segment=key, via=via))
        out.append(Undo(user_id=user, segment=key, via=via))
        out.append(Finish(user_id=user, segment=key, via=via))
        for prompt in (None, "new", long):
            out.append(Regenerate(user_id=user, segment=key, prompt=prompt, via=via))
    out += [ShowTake(user_id=user, segment=key, via=via) for key in keys if key is not None for via in Via]
    out += [Undo(user_id=user), Finish(user_id=user), Cancel(user_id=user)]
    out += [EndFrame(user_id=user, picture=picture), EndFrame(user_id=user, clear=True), EndFrame(user_id=user)]
    out += [Status(user_id=user, queue_position=p) for p in (None, 0, 2)]
    for changes in ((), (("steps", "4"),), (("size", "512x512"),), (("seconds", "9"),), (("bogus", "1"),)):
        out.append(ChangeSettings(user_id=user, changes=changes))
    for key in keys:
        if key is None:
            continue
        out += [JobProgress(segment=key, step=1, total=4), done(key)]
        out += [JobFailed(segment=key, kind=kind, message="m") for kind in FailureKind]
    out += [AssemblyDone(path="final.mp4"), AssemblyFailed(), AssemblyFailed(message="too big")]
    return out


def test_step_never_leaves_the_table() -> None:
    """Every sample event in every sample session, by owner, admin and stranger, under two sets of
    limits: a session that changes follows the table; a refused pair changes nothing and only
    talks; and every edge of the table is actually taken by some run."""
    taken: set[tuple[State, type[Event], State]] = set()
    runs = 0
    for s, user, limits in itertools.product(sessions(), (OWNER, ADMIN, STRANGER), (Limits(), SMALL)):
        for event in events(s, user):
            new, effects = step(s, event, admins=ADMINS, limits=limits)
            runs += 1
            allowed = TRANSITIONS.get((s.state, type(event)))
            if allowed is None:
                assert new == s, (s.state, event)
                assert all(isinstance(e, Say) for e in effects), (s.state, event, effects)
                continue
            if new != s or any(not isinstance(e, Say) for e in effects):
                assert new.state in allowed, (s.state, event, new.state)
                taken.add((s.state, type(event), new.state))
            if user == STRANGER and isinstance(event, UserEvent):
                assert new == s, event
    table = {(state, event, target) for (state, event), targets in TRANSITIONS.items() for target in targets}
    assert taken == table, f"never taken: {table - taken}"
    assert runs > 5000
