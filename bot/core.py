"""The conversation core: a pure state machine, no I/O. ``step(session, event) -> (session, effects)``.

The service layer rebuilds a :class:`Session` from store rows, feeds it one :class:`Event`,
persists the returned session and performs the returned :class:`Effect` objects in order.

The core spans a few modules, all re-exported here: the vocabulary (sessions, events, effects)
in ``bot.core_model``, settings and texts in ``bot.core_settings``, the answers to refused events
in ``bot.core_refusals``, end keyframes (/end) in ``bot.core_keyframes``, takes to choose from
(``settings takes``, ◀ ▶ paging) in ``bot.core_takes``, the quotas' day and
texts in ``bot.core_quotas``, start-up recovery in ``bot.core_recovery``; the rules are here.

States (:class:`State`, stored as their string values)::

    awaiting_image -> awaiting_prompt -> generating -> reviewing -> (approve) awaiting_prompt
                                                                 -> (regenerate) generating
    awaiting_prompt -> (finish) assembling -> finished;   reviewing -> (approve & finish) assembling
    cancelled from any state not over

:data:`TRANSITIONS` lists every (state, event type) the machine *accepts*, with the states it
may move to; ``step`` checks itself against it and ``bot/core_diagram.md`` is generated from it.
Any other pair is refused: the session is returned unchanged and the effects are at most a
:class:`Say`.

Segments are named by :class:`SegmentKey` ``(idx, attempt)``, unique within a session (the
store's ``UNIQUE (session_id, idx, attempt)``); the service maps its row ids to keys and back.

Rules, decided here once so every platform behaves the same:

- Who may act: the session's owner and the configured admins. Anyone else is refused: a typed
  command or a press (``via`` COMMAND or CONTROL) gets a short private refusal; plain messages
  and pictures (``via`` MESSAGE) are ignored silently, because in a shared chat they are chatter.
  Anyone may ask for ``Status`` or view the settings (``ChangeSettings`` with no changes).
- Every control names the take it was posted on (``segment``); a typed command (``segment``
  None) acts on the current state. A press acts only on its own take: a stale or repeated press
  (an old take, a take already approved or discarded, a press after the state moved on) changes
  nothing and gets a short private note ("That take is no longer up for review."), so nothing is
  approved twice and a second tap on ↩ Undo never removes the approved segment before it.
- Every accepted press gets one private confirmation (``Say(ephemeral=True)``), besides any
  public message; an event never produces more than one private note.
- A prompt while generating or reviewing is refused with a hint (it is not queued); a prompt
  before the start picture is kept and used when the picture arrives. Invisible characters
  (Unicode controls, format characters, separators) are trimmed from a prompt's ends, so a
  prompt with nothing visible counts as none. A prompt longer than ``Limits.max_prompt_chars`` is
  refused with its length and the limit; the session is unchanged.
- The segment size follows the start picture by :func:`shared.params.segment_size` (the one rule
  ``framechain render`` uses too): "fit" keeps its aspect ratio within the configured area,
  "fixed" is the configured size. A second picture replaces the first while nothing is approved
  and no take is pending (a failed take is dropped); with a take, the user is told to undo it
  first; after an approval, to /cancel and /start again.
- Takes: regenerate keeps the take under review (``Session.kept``; it stays ``done`` in the
  store) and its message keeps a ✅ Approve (:data:`KEPT_CONTROLS`, effect :class:`KeepTake`).
  Any kept take, or the one under review, may be approved, also while a newer one is being
  made: the others are rejected and their controls close, takes being made are stopped. Undo
  discards the newest take (a typed /undo with nothing newer: the newest kept one), so the
  earlier takes stay up; a new prompt or a failure keeps them too. Finish and cancel discard
  them. A typed /approve takes the one under review, else the newest kept one.
- ``settings takes = N`` batches, ◀ ▶ paging (:class:`ShowTake`, pure: effect :class:`PageTake`),
  and Regenerate / Undo naming a kept take (a page showing it) are in ``bot.core_takes``;
  Regenerate always makes one more take.
- Regenerate redoes the take under review (or the last failed one) with the same prompt or a new
  one. Seeds: with ``Settings.seed`` random every take gets a fresh random seed; with a fixed seed
  S, take k of a segment uses S + k - 1, so a regenerate always changes the seed reproducibly.
- Undo removes the newest thing and never more: while generating it stops the job, while
  reviewing it discards the take under review, otherwise (typed only) it drops the last approved
  segment (its predecessor's hand-off frame, or the first picture, becomes the start image again).
- Approve keeps a 🏁 Finish control on the approved take (``ApproveSegment.keep_controls``); that
  button joins the video while its segment is the last approved and the session awaits a prompt.
  ``ApproveAndFinish`` approves the take under review and joins, in one press.
- Finish joins the approved segments only. While a take is under review it asks (✅ Approve &
  finish includes it, ↩ Undo drops it) and changes nothing; while generating, a typed /finish
  stops the job and says the take is left out; with nothing approved, finish is refused.
- Settings change in awaiting_image, awaiting_prompt and reviewing (they apply to the next take).
  The size is fixed once a segment is approved, because joined segments must match.
- A failed job returns to awaiting_prompt; /regenerate retries the failed take, or a new prompt
  replaces it. Job and assembly reports that do not match the current take are stale (the job
  was stopped or superseded) and ignored without effects.
- ``/end`` with a picture sets an end keyframe that every new take aims at until one aimed at it
  is approved (rules in ``bot.core_keyframes``); the review caption says a take was aimed at it.
- After a crash, :func:`reconcile` brings a session whose saved state and newest take disagree
  to the state the take implies (:data:`RECONCILE`); :func:`restore` reads a running one.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import replace

from bot.core_keyframes import after_approval, after_undo, on_end_frame
from bot.core_model import (
    EVENT_TYPES,
    KEPT_CONTROLS,
    REVIEW_CONTROLS,
    SEED_LIMIT,
    SYSTEM_EVENTS,
    USER_EVENTS,
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
    LeaveOut,
    Limits,
    PageTake,
    Picture,
    PostFinal,
    PostSegment,
    PromptText,
    Quota,
    Regenerate,
    RejectSegment,
    Say,
    Segment,
    SegmentKey,
    SegmentResult,
    Session,
    Settings,
    ShowTake,
    SizeMode,
    Start,
    StartAssembly,
    State,
    Status,
    Take,
    TakeStatus,
    Undo,
    UpdateProgress,
    UserEvent,
    Via,
    joined_seconds,
)
from bot.core_quotas import (
    day_start,
    duration_text,
    gpu_time_used_up_text,
    next_reset,
    queue_full_text,
    quota_text,
    sessions_full_text,
    user_queue_full_text,
)
from bot.core_recovery import (
    RECONCILE,
    reconcile,
    restore,
)
from bot.core_refusals import (
    STALE,
    is_last_approved,
    not_accepted,
    pressed,
    refuse_stranger,
    second_picture_text,
    stale_review,
)
from bot.core_settings import (
    CAPTION_PROMPT_CHARS,
    SettingsError,
    apply_settings,
    clean_prompt,
    clip,
    parse_settings,
    review_caption,
    settings_text,
    status_text,
)
from bot.core_takes import (
    after_batch_failure,
    being_made,
    discard_kept,
    new_takes,
    on_show,
    on_take_done,
    review_batch,
    stop_one,
    takes_up,
)
from shared.params import ParameterError, segment_size
from shared.protocol import FailureKind

__all__ = [
    "CAPTION_PROMPT_CHARS",
    "DEFAULT_LIMITS",
    "EVENT_TYPES",
    "KEPT_CONTROLS",
    "RECONCILE",
    "REVIEW_CONTROLS",
    "SEED_LIMIT",
    "SYSTEM_EVENTS",
    "TRANSITIONS",
    "USER_EVENTS",
    "Approve",
    "ApproveAndFinish",
    "ApproveSegment",
    "AssemblyDone",
    "AssemblyFailed",
    "Cancel",
    "CancelAssembly",
    "CancelJob",
    "ChangeSettings",
    "Control",
    "DropLastApproved",
    "Effect",
    "EndFrame",
    "EnqueueSegment",
    "Event",
    "Finish",
    "ImageReceived",
    "JobDone",
    "JobFailed",
    "JobProgress",
    "KeepTake",
    "LeaveOut",
    "Limits",
    "PageTake",
    "Picture",
    "PostFinal",
    "PostSegment",
    "PromptText",
    "Quota",
    "Regenerate",
    "RejectSegment",
    "Say",
    "Segment",
    "SegmentKey",
    "SegmentResult",
    "Session",
    "Settings",
    "SettingsError",
    "ShowTake",
    "SizeMode",
    "Start",
    "StartAssembly",
    "State",
    "Status",
    "Take",
    "TakeStatus",
    "Transition",
    "TransitionError",
    "Undo",
    "UpdateProgress",
    "UserEvent",
    "Via",
    "apply_settings",
    "clean_prompt",
    "clip",
    "day_start",
    "diagram_markdown",
    "duration_text",
    "gpu_time_used_up_text",
    "joined_seconds",
    "may_act",
    "mermaid_diagram",
    "next_reset",
    "parse_settings",
    "queue_full_text",
    "quota_text",
    "reconcile",
    "restore",
    "review_caption",
    "sessions_full_text",
    "settings_text",
    "status_text",
    "step",
    "takes_up",
    "user_queue_full_text",
]

# -- the transition table -------------------------------------------------------------------------

_S = State
#: Every accepted (state, event type) and the states it may lead to (the same state when the
#: session changes in place). Pairs not listed are refused and leave the session unchanged.
TRANSITIONS: Mapping[tuple[State, type[Event]], frozenset[State]] = {
    (_S.AWAITING_IMAGE, Start): frozenset({_S.AWAITING_IMAGE, _S.AWAITING_PROMPT, _S.GENERATING}),
    (_S.AWAITING_IMAGE, ImageReceived): frozenset({_S.AWAITING_PROMPT, _S.GENERATING}),
    (_S.AWAITING_IMAGE, PromptText): frozenset({_S.AWAITING_IMAGE}),
    (_S.AWAITING_IMAGE, ChangeSettings): frozenset({_S.AWAITING_IMAGE}),
    (_S.AWAITING_IMAGE, Cancel): frozenset({_S.CANCELLED}),
    (_S.AWAITING_IMAGE, EndFrame): frozenset({_S.AWAITING_IMAGE}),
    (_S.AWAITING_PROMPT, PromptText): frozenset({_S.GENERATING}),
    (_S.AWAITING_PROMPT, Regenerate): frozenset({_S.GENERATING}),
    (_S.AWAITING_PROMPT, ImageReceived): frozenset({_S.AWAITING_PROMPT}),
    (_S.AWAITING_PROMPT, Undo): frozenset({_S.AWAITING_PROMPT}),
    (_S.AWAITING_PROMPT, ChangeSettings): frozenset({_S.AWAITING_PROMPT}),
    (_S.AWAITING_PROMPT, Finish): frozenset({_S.ASSEMBLING}),
    (_S.AWAITING_PROMPT, ApproveAndFinish): frozenset({_S.ASSEMBLING}),
    (_S.AWAITING_PROMPT, Cancel): frozenset({_S.CANCELLED}),
    (_S.AWAITING_PROMPT, EndFrame): frozenset({_S.AWAITING_PROMPT}),
    (_S.AWAITING_PROMPT, Approve): frozenset({_S.AWAITING_PROMPT}),
    (_S.GENERATING, JobProgress): frozenset({_S.GENERATING}),
    (_S.GENERATING, JobDone): frozenset({_S.REVIEWING, _S.GENERATING}),
    (_S.GENERATING, JobFailed): frozenset({_S.AWAITING_PROMPT, _S.GENERATING, _S.REVIEWING}),
    (_S.GENERATING, Undo): frozenset({_S.AWAITING_PROMPT, _S.GENERATING, _S.REVIEWING}),
    (_S.GENERATING, Finish): frozenset({_S.ASSEMBLING}),
    (_S.GENERATING, Cancel): frozenset({_S.CANCELLED}),
    (_S.GENERATING, EndFrame): frozenset({_S.GENERATING}),
    (_S.GENERATING, Approve): frozenset({_S.AWAITING_PROMPT}),
    (_S.REVIEWING, Approve): frozenset({_S.AWAITING_PROMPT}),
    (_S.REVIEWING, ApproveAndFinish): frozenset({_S.ASSEMBLING}),
    (_S.REVIEWING, Regenerate): frozenset({_S.GENERATING}),
    (_S.REVIEWING, Undo): frozenset({_S.AWAITING_PROMPT, _S.REVIEWING}),
    (_S.REVIEWING, ChangeSettings): frozenset({_S.REVIEWING}),
    (_S.REVIEWING, Cancel): frozenset({_S.CANCELLED}),
    (_S.REVIEWING, EndFrame): frozenset({_S.REVIEWING}),
    (_S.GENERATING, ShowTake): frozenset({_S.GENERATING}),
    (_S.REVIEWING, ShowTake): frozenset({_S.REVIEWING}),
    (_S.AWAITING_PROMPT, ShowTake): frozenset({_S.AWAITING_PROMPT}),
    (_S.ASSEMBLING, AssemblyDone): frozenset({_S.FINISHED}),
    (_S.ASSEMBLING, AssemblyFailed): frozenset({_S.AWAITING_PROMPT}),
    (_S.ASSEMBLING, Cancel): frozenset({_S.CANCELLED}),
}


DEFAULT_LIMITS = Limits()


class TransitionError(RuntimeError):
    """step() produced a transition outside TRANSITIONS: a bug in this module."""


# -- step -----------------------------------------------------------------------------------------

Transition = tuple[Session, list[Effect]]
_Handler = Callable[[Session, Event, Limits], Transition]


def step(
    session: Session,
    event: Event,
    *,
    admins: frozenset[str] = frozenset(),
    limits: Limits = DEFAULT_LIMITS,
) -> Transition:
    """Apply one event. Returns the new session (``session`` itself when nothing changed) and the
    effects to perform, in order."""
    if isinstance(event, UserEvent) and not _read_only(event) and not may_act(session, event.user_id, admins):
        return session, refuse_stranger(event)
    key = (session.state, type(event))
    if key in TRANSITIONS:
        new, effects = _HANDLERS[type(event)](session, event, limits)
    else:
        new, effects = session, not_accepted(session, event)
    _check(session, event, new, effects)
    return new, effects


def may_act(session: Session, user_id: str, admins: frozenset[str]) -> bool:
    return user_id == session.owner_id or user_id in admins


def _read_only(event: Event) -> bool:
    return isinstance(event, Status) or (isinstance(event, ChangeSettings) and not event.changes)


def _check(old: Session, event: Event, new: Session, effects: list[Effect]) -> None:
    allowed = TRANSITIONS.get((old.state, type(event)))
    if new != old and (allowed is None or new.state not in allowed):
        raise TransitionError(f"{old.state.value} + {type(event).__name__} -> {new.state.value} is not allowed")
    if allowed is None and any(not isinstance(e, Say) for e in effects):
        raise TransitionError(f"refused {type(event).__name__} in {old.state.value} produced {effects}")
    if sum(1 for e in effects if isinstance(e, Say) and e.ephemeral) > 1:
        raise TransitionError(f"{type(event).__name__} in {old.state.value} has two private notes: {effects}")


# -- handlers -------------------------------------------------------------------------------------


def _on_start(s: Session, e: Event, limits: Limits) -> Transition:
    assert isinstance(e, Start)
    effects: list[Effect] = []
    prompt = clean_prompt(e.prompt or "") or None
    if prompt is not None and (problem := _prompt_problem(prompt, limits)):
        effects.append(Say(problem))
        prompt = None
    if e.picture is None:
        if prompt is not None:
            s = replace(s, pending_prompt=prompt)
            effects.append(Say("Got your prompt. Now send the start picture."))
        else:
            effects.append(Say("Send me the start picture, then one prompt per segment."))
        return s, effects
    return _take_picture(s, e.picture, prompt or s.pending_prompt, limits, effects)


def _on_image(s: Session, e: Event, limits: Limits) -> Transition:
    assert isinstance(e, ImageReceived)
    if s.state is State.AWAITING_PROMPT:
        if s.approved or s.kept:
            return s, [Say(second_picture_text(s))]
        # Nothing approved yet (at most a failed take): the new picture simply replaces the old.
        return _take_picture(s, e.picture, None, limits, [])
    return _take_picture(s, e.picture, s.pending_prompt, limits, [])


def _take_picture(
    s: Session, picture: Picture, prompt: str | None, limits: Limits, effects: list[Effect]
) -> Transition:
    try:
        width, height = segment_size(picture.width, picture.height, *limits.size, limits.size_mode)
    except ParameterError:
        return s, [*effects, Say("I couldn't read that picture. Please send another one.")]
    s = replace(
        s,
        state=State.AWAITING_PROMPT,
        first_image=picture.path,
        pending_prompt=None,
        current=None,
        settings=replace(s.settings, width=width, height=height),
    )
    if prompt is not None:
        return _enqueue(s, prompt, effects)
    effects.append(
        Say(
            f"Got the picture — segments will be {width}×{height}. Send the first prompt: "
            f"what happens in the next {s.settings.seconds} seconds?"
        )
    )
    return s, effects


def _on_prompt(s: Session, e: Event, limits: Limits) -> Transition:
    assert isinstance(e, PromptText)
    prompt = clean_prompt(e.text)
    if problem := _prompt_problem(prompt, limits):
        return s, [Say(problem)]
    if s.state is State.AWAITING_IMAGE:
        return replace(s, pending_prompt=prompt), [Say("Got your prompt. Now send the start picture.")]
    if len(s.approved) >= limits.max_segments:
        return s, [
            Say(
                f"You've reached the limit of {limits.max_segments} segments. "
                "/finish to join them, or /undo to replace the last one."
            )
        ]
    return _enqueue(s, prompt, [])


def _on_regenerate(s: Session, e: Event, limits: Limits) -> Transition:
    assert isinstance(e, Regenerate)
    cur = s.current
    if cur is None and e.segment is None:
        return s, [Say("Nothing to regenerate — send a prompt for the next segment.", ephemeral=True)]
    # A page of the review message may show a kept take: its 🔁 redoes the segment with its prompt.
    named = next((t for t in takes_up(s) if t.key == e.segment), None) if e.segment is not None else cur
    if cur is None or named is None:
        return s, [stale_review(s, e.segment)]
    prompt = clean_prompt(e.prompt or "") or named.prompt
    if problem := _prompt_problem(prompt, limits):
        return s, [Say(problem)]
    effects = pressed(e, f"🔁 Regenerating segment {cur.number}…")
    if cur.result is not None:  # reviewing; a failed take (awaiting_prompt) is already settled
        # The take stays, with its Approve: the user may still prefer it to the new one.
        effects.append(KeepTake(s.id, cur.key))
        return _enqueue(s, prompt, effects, kept=(*s.kept, cur), count=1)
    return _enqueue(s, prompt, effects, count=1)


def _enqueue(
    s: Session, prompt: str, effects: list[Effect], kept: tuple[Segment, ...] | None = None, count: int | None = None
) -> Transition:
    """``count`` new takes (default: the ``takes`` setting) at the next chain position; the
    session moves to generating, keeping ``kept`` (default: the takes it kept already)."""
    takes = new_takes(s, prompt, s.settings.takes if count is None else count)
    idx = len(s.approved)
    attempts = list(s.attempts) + [0] * (idx + 1 - len(s.attempts))
    attempts[idx] = takes[-1].attempt
    s = replace(
        s,
        state=State.GENERATING,
        current=takes[-1],
        making=takes[:-1],
        attempts=tuple(attempts),
        pending_prompt=None,
        kept=s.kept if kept is None else kept,
    )
    assert s.first_image is not None
    first = s.first_image
    return s, [*effects, *(EnqueueSegment(s.id, s.owner_id, t, first) for t in takes)]


def _on_approve(s: Session, e: Event, limits: Limits) -> Transition:
    assert isinstance(e, Approve)
    reviewed = s.current if s.state is State.REVIEWING else None
    choices = (*s.kept, *([reviewed] if reviewed is not None else []))
    if e.segment is None:
        # Typed: the take under review, else the newest kept one; never one still being made.
        if s.state is State.GENERATING or not choices:
            return s, not_accepted(s, e)
        chosen = choices[-1]
    else:
        match = [t for t in choices if t.key == e.segment]
        if not match:
            return s, [stale_review(s, e.segment)]
        chosen = match[0]
    which = f", take {chosen.attempt}" if len(choices) > 1 else ""
    effects = pressed(e, f"✅ Approved segment {chosen.number}{which}.")
    effects += _discard_others(s, chosen)
    cur = chosen
    s = after_approval(
        replace(s, state=State.AWAITING_PROMPT, approved=(*s.approved, cur), current=None, kept=(), making=()), cur
    )
    text = f"Segment {cur.number} approved — {s.seconds:.1f} s so far. "
    if len(s.approved) >= limits.max_segments:
        text += f"That's the limit of {limits.max_segments} segments: 🏁 Finish (or /finish) to get the video."
    else:
        text += "Send the next prompt, or 🏁 Finish (or /finish) to get the video."
    # The approved take keeps its Finish button: the user can finish from there, no typing.
    return s, [*effects, ApproveSegment(s.id, cur.key, keep_controls=(Control.FINISH,)), Say(text)]


def _discard_others(s: Session, chosen: Segment | None) -> list[Effect]:
    """Every other take of the next chain position goes: kept ones are rejected (their
    controls close), the one under review too, and one still being made is stopped."""
    effects: list[Effect] = [RejectSegment(s.id, k.key) for k in s.kept if k != chosen]
    cur = s.current
    if s.state is State.GENERATING:
        effects += [CancelJob(s.id, t.key) for t in being_made(s)]
    elif cur is not None and cur != chosen and s.state is State.REVIEWING:
        effects.append(RejectSegment(s.id, cur.key))
    return effects


def _on_approve_and_finish(s: Session, e: Event, limits: Limits) -> Transition:
    assert isinstance(e, ApproveAndFinish)
    # The take under review, or (a 🏁 reaction on its message) a kept earlier one.
    reviewed = s.current if s.state is State.REVIEWING else None
    choices = (*s.kept, *([reviewed] if reviewed is not None else []))
    chosen = reviewed if e.segment is None else next((t for t in choices if t.key == e.segment), None)
    if chosen is None:
        # Pressed again after the approval (the join failed, say): a Finish on that take.
        if s.state is State.AWAITING_PROMPT and e.segment is not None and is_last_approved(s, e.segment):
            return _assemble(s, [*pressed(e, "🏁 Joining the video…")])
        return s, [stale_review(s, e.segment)]
    cur = chosen
    assert cur.result is not None
    effects = [
        *pressed(e, f"✅ Approved segment {cur.number} — joining the video…"),
        *_discard_others(s, cur),
        ApproveSegment(s.id, cur.key),
    ]
    s = after_approval(
        replace(s, state=State.AWAITING_PROMPT, approved=(*s.approved, cur), current=None, kept=(), making=()), cur
    )
    return _assemble(s, effects, f"Segment {cur.number} approved. ")


def _on_undo(s: Session, e: Event, limits: Limits) -> Transition:
    assert isinstance(e, Undo)
    cur = s.current
    if e.segment is not None:
        # A press acts on its own take only: never on whatever happens to be newest now. One of
        # several takes being made stops alone; a kept take shown on a page is discarded alone.
        one = stop_one(s, e.segment, e) or discard_kept(s, e.segment, e)
        if one is not None:
            return one
    if e.segment is not None and (s.state is State.AWAITING_PROMPT or cur is None or e.segment != cur.key):
        return s, [stale_review(s, e.segment)]
    if s.state is State.GENERATING:
        assert cur is not None
        made = being_made(s)
        stops = [CancelJob(s.id, t.key) for t in made]
        if (reviewed := review_batch(replace(s, making=()))) is not None:
            # The batch's done takes stay up: the newest is under review.
            text = f"Stopped the takes of segment {cur.number} still being made; the others are up for review."
            return reviewed, [*pressed(e, f"↩ Stopped segment {cur.number}."), *stops, Say(text)]
        s = replace(s, state=State.AWAITING_PROMPT, current=None, making=())
        return s, [
            *pressed(e, f"↩ Stopped segment {cur.number}."),
            *stops,
            Say(f"Stopped segment {cur.number}. Send a new prompt for it{_or_kept(s)}."),
        ]
    if s.state is State.REVIEWING:
        assert cur is not None
        s = replace(s, state=State.AWAITING_PROMPT, current=None)
        more = f", or /undo again to remove segment {cur.number - 1}" if s.approved and not s.kept else ""
        text = f"Discarded this take of segment {cur.number}. Send a new prompt for it{_or_kept(s)}{more}."
        return s, [*pressed(e, "↩ Take discarded."), RejectSegment(s.id, cur.key), Say(text)]
    if s.kept:
        # The newest thing is the newest kept take: it goes, the ones before it stay.
        newest = s.kept[-1]
        s = replace(s, kept=s.kept[:-1])
        text = f"Discarded take {newest.attempt} of segment {newest.number}. Send a new prompt for it{_or_kept(s)}."
        return s, [RejectSegment(s.id, newest.key), Say(text)]
    if not s.approved:
        return s, [Say("Nothing to undo yet.", ephemeral=True)]
    last = s.approved[-1]
    s = after_undo(replace(s, approved=s.approved[:-1], current=None), last)
    source = f"the end of segment {last.number - 1}" if s.approved else "the start picture"
    text = f"Removed segment {last.number}. The next prompt continues from {source}."
    if last.end_image is not None and s.end_image == last.end_image:
        text += " It will end on its end keyframe again (/end clear removes it)."
    return s, [DropLastApproved(s.id, last.key), Say(text)]


def _or_kept(s: Session) -> str:
    if not s.kept:
        return ""
    takes = ", ".join(str(k.attempt) for k in s.kept)
    return f", or ✅ Approve an earlier take ({'take' if len(s.kept) == 1 else 'takes'} {takes})"


def _on_finish(s: Session, e: Event, limits: Limits) -> Transition:
    assert isinstance(e, Finish)
    cur = s.current if s.state is State.GENERATING else None
    if e.segment is not None:
        # A Finish button is valid on the last approved segment while the session awaits a prompt.
        if s.state is State.AWAITING_PROMPT and is_last_approved(s, e.segment):
            return _assemble(s, pressed(e, "🏁 Joining the video…"))
        if cur is not None:
            text = f"Segment {cur.number} is still being made — /finish stops it and joins the approved segments."
            return s, [Say(text, ephemeral=True)]
        if s.approved and any(seg.key == e.segment for seg in s.approved):
            text = f"That button is out of date — use 🏁 Finish on segment {len(s.approved)}, or /finish."
            return s, [Say(text, ephemeral=True)]
        return s, [Say(STALE, ephemeral=True)]
    if not s.approved:
        if cur is not None:
            return s, [Say(f"Nothing is approved yet — segment {cur.number} is still being made.")]
        return s, [Say("Nothing to join yet — approve at least one segment first.")]
    effects: list[Effect] = []
    if cur is not None or s.kept:
        effects += [CancelJob(s.id, t.key) for t in being_made(s)]
        number = cur.number if cur is not None else s.kept[0].number
        effects.append(Say(f"Segment {number} wasn't approved, so it's left out."))
    return _assemble(s, effects)


def _assemble(s: Session, effects: list[Effect], lead: str = "") -> Transition:
    """Join the approved segments: the session moves to assembling."""
    # Takes of a segment never approved are left out of the join: they go.
    effects = [*effects, *(RejectSegment(s.id, k.key) for k in s.kept)]
    s = replace(s, state=State.ASSEMBLING, current=None, kept=(), making=())
    n = len(s.approved)
    return s, [
        *effects,
        StartAssembly(s.id, s.approved, s.seconds),
        Say(f"{lead}Joining {n} segment{'s' if n > 1 else ''} ({s.seconds:.1f} s)…"),
    ]


def _on_cancel(s: Session, e: Event, limits: Limits) -> Transition:
    effects: list[Effect] = _discard_others(s, None)
    if s.state is State.ASSEMBLING:
        effects.append(CancelAssembly(s.id))
    effects.append(Say("Cancelled. Send /start with a picture to begin a new session."))
    return replace(s, state=State.CANCELLED, current=None, pending_prompt=None, kept=(), making=()), effects


def _on_settings(s: Session, e: Event, limits: Limits) -> Transition:
    assert isinstance(e, ChangeSettings)
    if not e.changes:
        return s, [Say(f"Settings: {settings_text(s.settings)}")]
    try:
        settings = apply_settings(s.settings, e.changes, limits=limits, size_lock=_size_lock(s))
    except SettingsError as exc:
        return s, [Say(str(exc), ephemeral=True)]
    return replace(s, settings=settings), [Say(f"Settings updated: {settings_text(settings)}")]


def _size_lock(s: Session) -> str | None:
    if s.state is State.AWAITING_IMAGE:
        return "the size follows the start picture; change it after sending the picture"
    if s.approved:
        return "the size is fixed once a segment is approved (joined segments must match)"
    return None


def _on_progress(s: Session, e: Event, limits: Limits) -> Transition:
    assert isinstance(e, JobProgress)
    if all(t.key != e.segment for t in being_made(s)):
        return s, []
    return s, [UpdateProgress(s.id, e.segment, e.step, e.total)]


def _on_done(s: Session, e: Event, limits: Limits) -> Transition:
    assert isinstance(e, JobDone)
    return on_take_done(s, e) or (s, [])


def _on_failed(s: Session, e: Event, limits: Limits) -> Transition:
    assert isinstance(e, JobFailed)
    cur = s.current
    if all(t.key != e.segment for t in being_made(s)) or cur is None:
        return s, []
    n = cur.number
    why = {FailureKind.OOM: "ran out of GPU memory", FailureKind.CANCELLED: "was stopped"}
    left_out = after_batch_failure(s, e.segment, why.get(FailureKind(e.kind), "couldn't be made"))
    if left_out is not None:
        return left_out
    if (reviewed := review_batch(s)) is not None:
        assert reviewed.current is not None
        text = f"Take {cur.attempt} of segment {n} {why.get(FailureKind(e.kind), 'couldn’t be made')}; "
        return reviewed, [LeaveOut(s.id, cur.key), Say(text + f"take {reviewed.current.attempt} is up for review.")]
    retry = "/regenerate to try again, or send a new prompt."
    texts = {
        FailureKind.OOM: f"Segment {n} ran out of GPU memory. Try fewer seconds or a smaller size in "
        f"/settings, then {retry}",
        FailureKind.BAD_INPUT: f"Segment {n} couldn't be made: {clip(e.message, 300) or 'bad input'}. "
        "Send a different prompt, or /regenerate to try again.",
        FailureKind.CANCELLED: f"Segment {n} was stopped. {retry}",
        FailureKind.INTERNAL: f"Sorry — something went wrong making segment {n} "
        f"(ref {s.id}/{cur.idx}.{cur.attempt}). {retry}",
    }
    text = texts[FailureKind(e.kind)]
    if s.kept:
        text += f" The earlier {'take is' if len(s.kept) == 1 else 'takes are'} still there to ✅ Approve."
    # The failed take stays as ``current`` so /regenerate can retry it.
    return replace(s, state=State.AWAITING_PROMPT), [Say(text)]


def _on_assembly_done(s: Session, e: Event, limits: Limits) -> Transition:
    assert isinstance(e, AssemblyDone)
    s = replace(s, state=State.FINISHED, final_video=e.path)
    n = len(s.approved)
    caption = f"Here's your video: {n} segment{'s' if n > 1 else ''}, {s.seconds:.1f} s."
    if e.note:
        caption += f"\n{e.note}"
    return s, [PostFinal(s.id, e.path, caption)]


def _on_assembly_failed(s: Session, e: Event, limits: Limits) -> Transition:
    assert isinstance(e, AssemblyFailed)
    reason = f" ({e.message})" if e.message else ""
    text = f"Sorry, joining the video failed{reason}. Your approved segments are safe — /finish to try again."
    return replace(s, state=State.AWAITING_PROMPT), [Say(text)]


_HANDLERS: Mapping[type[Event], _Handler] = {
    Start: _on_start,
    ImageReceived: _on_image,
    PromptText: _on_prompt,
    Regenerate: _on_regenerate,
    Approve: _on_approve,
    ApproveAndFinish: _on_approve_and_finish,
    Undo: _on_undo,
    Finish: _on_finish,
    Cancel: _on_cancel,
    ChangeSettings: _on_settings,
    EndFrame: on_end_frame,
    ShowTake: on_show,
    JobProgress: _on_progress,
    JobDone: _on_done,
    JobFailed: _on_failed,
    AssemblyDone: _on_assembly_done,
    AssemblyFailed: _on_assembly_failed,
}


def _prompt_problem(prompt: str, limits: Limits) -> str | None:
    if not prompt:
        return "Send the prompt as text: what should happen in the next segment?"
    if len(prompt) > limits.max_prompt_chars:
        return (
            f"That prompt is {len(prompt)} characters; the limit is {limits.max_prompt_chars}. "
            "Please shorten it and send it again."
        )
    return None


# -- diagram --------------------------------------------------------------------------------------


def mermaid_diagram() -> str:
    """The Mermaid state diagram of :data:`TRANSITIONS`, and of :data:`RECONCILE` (edges taken
    once on start-up, labelled ``restart`` with the newest take's status)."""
    edges: dict[tuple[State, State], list[str]] = {}
    for (source, event), targets in TRANSITIONS.items():
        for target in sorted(targets, key=list(State).index):
            edges.setdefault((source, target), []).append(event.__name__)
    restarts: dict[tuple[State, State], list[str]] = {}
    for (source, status), target in RECONCILE.items():
        restarts.setdefault((source, target), []).append(status.value if status else "none")
    for pair, statuses in restarts.items():
        edges.setdefault(pair, []).append(f"restart (take {' / '.join(statuses)})")
    lines = ["stateDiagram-v2", f"    [*] --> {State.AWAITING_IMAGE.value}"]
    for (source, target), names in edges.items():
        lines.append(f"    {source.value} --> {target.value} : {', '.join(names)}")
    lines += [f"    {State.FINISHED.value} --> [*]", f"    {State.CANCELLED.value} --> [*]"]
    return "\n".join(lines) + "\n"


def diagram_markdown() -> str:
    """The whole of ``bot/core_diagram.md``."""
    return (
        "# Conversation core: session states\n\n"
        "Generated from `bot.core.TRANSITIONS` and `bot.core.RECONCILE`; `tests/bot/test_core_diagram.py`\n"
        "fails when this file and the code differ. Regenerate with\n\n"
        "    .venv/bin/python -c \"import bot.core as c; print(c.diagram_markdown(), end='')\""
        " > bot/core_diagram.md\n\n"
        "An arrow is an event the state accepts (a loop: the session changes in place). Any other\n"
        "event is refused with a short note, or ignored silently (a stranger's message, button or\n"
        "reaction; a late job report), and leaves the session unchanged. `Status`, and `ChangeSettings`\n"
        "with no changes, are answered in every state. The rules are in the docstring of `bot/core.py`.\n"
        "Edges labelled `restart (take …)` are not events: on start-up `reconcile` (in\n"
        "`bot/core_recovery.py`) brings a session whose saved state and newest take disagree (a crash\n"
        "between the two writes) to the state the take implies.\n\n"
        "```mermaid\n" + mermaid_diagram() + "```\n"
    )
