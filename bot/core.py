"""The conversation core: a pure state machine, no I/O. ``step(session, event) -> (session, effects)``.

The service layer rebuilds a :class:`Session` from store rows, feeds it one :class:`Event`,
persists the returned session and performs the returned :class:`Effect` objects in order.

States (:class:`State`, stored as their string values)::

    awaiting_image -> awaiting_prompt -> generating -> reviewing -> (approve) awaiting_prompt
                                                                 -> (regenerate) generating
    awaiting_prompt -> (finish) assembling -> finished;   cancelled from any state not over

:data:`TRANSITIONS` lists every (state, event type) the machine *accepts*, with the states it
may move to; ``step`` checks itself against it and ``bot/core_diagram.md`` is generated from it.
Any other pair is refused: the session is returned unchanged and the effects are at most a
:class:`Say`.

Segments are named by :class:`SegmentKey` ``(idx, attempt)``, unique within a session (the
store's ``UNIQUE (session_id, idx, attempt)``); the service maps its row ids to keys and back.

Rules, decided here once so every platform behaves the same:

- Who may act: the session's owner and the configured admins. Anyone else is refused: a typed
  command gets a short private refusal; plain messages, pictures, buttons and reactions
  (``via`` MESSAGE or CONTROL) are ignored silently, because in a shared chat they are chatter.
  Anyone may ask for ``Status`` or view the settings (``ChangeSettings`` with no changes).
- Review actions name the take they were pressed on. A stale or repeated press (an old take,
  a take already approved, a press after the state moved on) changes nothing and gets a short
  private note, so nothing is ever approved twice.
- A prompt while generating or reviewing is refused with a hint (it is not queued); a prompt
  before the start picture is kept and used when the picture arrives. A prompt longer than
  ``Limits.max_prompt_chars`` is refused with its length and the limit; the session is unchanged.
- Regenerate redoes the take under review (or the last failed one) with the same prompt or a new
  one. Seeds: with ``Settings.seed`` random every take gets a fresh random seed; with a fixed seed
  S, take k of a segment uses S + k - 1, so a regenerate always changes the seed reproducibly.
- Undo removes the newest thing and never more: while generating it stops the job, while
  reviewing it discards the take under review, otherwise it drops the last approved segment (its
  predecessor's hand-off frame, or the first picture, becomes the start image again).
- Finish joins the approved segments only. A take under review or being generated is left out
  (the job is stopped) and the user is told; with nothing approved, finish is refused.
- Settings change in awaiting_image, awaiting_prompt and reviewing (they apply to the next take).
  The size is fixed once a segment is approved, because joined segments must match.
- A failed job returns to awaiting_prompt; /regenerate retries the failed take, or a new prompt
  replaces it. Job and assembly reports that do not match the current take are stale (the job
  was stopped or superseded) and ignored without effects.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import NamedTuple

from shared.params import (
    DEFAULT_FPS,
    DEFAULT_HEIGHT,
    DEFAULT_STEPS,
    DEFAULT_WIDTH,
    SECONDS_TO_FRAMES,
    SIDE_MULTIPLE,
    WAN_NEGATIVE_PROMPT,
    ParameterError,
    fit_size,
    frames_for_seconds,
)
from shared.protocol import FailureKind

#: Seeds are 0 <= seed < 2**63: what the worker and the store (signed int64) accept.
SEED_LIMIT = 2**63

# -- state ----------------------------------------------------------------------------------------


class State(StrEnum):
    AWAITING_IMAGE = "awaiting_image"
    AWAITING_PROMPT = "awaiting_prompt"
    GENERATING = "generating"
    REVIEWING = "reviewing"
    ASSEMBLING = "assembling"
    FINISHED = "finished"
    CANCELLED = "cancelled"

    @property
    def over(self) -> bool:
        return self in (State.FINISHED, State.CANCELLED)


@dataclass(frozen=True)
class Limits:
    """Server-wide limits, from the configuration."""

    max_prompt_chars: int = 1000
    max_negative_chars: int = 2000
    #: Approved segments per session.
    max_segments: int = 24
    max_steps: int = 50
    #: Area a start picture is fitted to (keeping its aspect ratio); the reference is 640x640.
    pixel_budget: int = DEFAULT_WIDTH * DEFAULT_HEIGHT
    #: Largest area a user may choose with /settings size.
    max_pixels: int = 1280 * 720

    def __post_init__(self) -> None:
        for name in ("max_prompt_chars", "max_negative_chars", "max_segments", "max_steps"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.pixel_budget < SIDE_MULTIPLE * SIDE_MULTIPLE:
            raise ValueError(f"pixel_budget must be at least {SIDE_MULTIPLE**2}, got {self.pixel_budget}")
        if self.max_pixels < self.pixel_budget:
            raise ValueError(f"max_pixels ({self.max_pixels}) must be >= pixel_budget ({self.pixel_budget})")


@dataclass(frozen=True)
class Settings:
    """Per-session generation settings; the defaults reproduce the reference workflow."""

    seconds: int = 5
    steps: int = DEFAULT_STEPS
    #: None draws a fresh random seed for every take.
    seed: int | None = None
    negative_prompt: str = WAN_NEGATIVE_PROMPT
    width: int = DEFAULT_WIDTH
    height: int = DEFAULT_HEIGHT

    def __post_init__(self) -> None:
        # Limit-independent checks; a row from the store or the config must already pass these.
        frames_for_seconds(self.seconds)
        if not _is_int(self.steps) or self.steps < 1:
            raise ParameterError(f"steps must be at least 1, got {self.steps!r}")
        if self.seed is not None and (not _is_int(self.seed) or not 0 <= self.seed < SEED_LIMIT):
            raise ParameterError(f"seed must be None or in [0, 2**63), got {self.seed!r}")
        for name in ("width", "height"):
            value = getattr(self, name)
            if not _is_int(value) or value < SIDE_MULTIPLE or value % SIDE_MULTIPLE:
                raise ParameterError(f"{name} must be a positive multiple of {SIDE_MULTIPLE}, got {value!r}")

    @property
    def frames(self) -> int:
        return frames_for_seconds(self.seconds)


class SegmentKey(NamedTuple):
    """Names one take: chain position (0-based) and attempt at that position (1-based)."""

    idx: int
    attempt: int


@dataclass(frozen=True)
class SegmentResult:
    video: str
    #: The lossless hand-off frame (PNG).
    last_frame: str
    frames: int
    #: The seed actually used.
    seed: int


@dataclass(frozen=True)
class Segment:
    """One take of one chain position: its job parameters and, once done, its result."""

    idx: int
    attempt: int
    prompt: str
    negative_prompt: str
    #: Requested seed; None lets the worker draw one (the result holds the one used).
    seed: int | None
    start_image: str
    width: int
    height: int
    frames: int
    steps: int
    result: SegmentResult | None = None

    @property
    def key(self) -> SegmentKey:
        return SegmentKey(self.idx, self.attempt)

    @property
    def number(self) -> int:
        """1-based, as users count."""
        return self.idx + 1


@dataclass(frozen=True)
class Session:
    """Everything the rules need, and nothing more; rebuilt by the service from store rows.

    ``current`` by state: generating -> the take being made (no result); reviewing -> the take
    under review (with result); awaiting_prompt -> the last take if it failed (retryable), else
    None; other states -> None.
    """

    id: str
    owner_id: str
    state: State = State.AWAITING_IMAGE
    settings: Settings = field(default_factory=Settings)
    #: The picture the session started from.
    first_image: str | None = None
    #: A prompt sent before the picture, used when the picture arrives.
    pending_prompt: str | None = None
    #: Approved segments in chain order (each with its result).
    approved: tuple[Segment, ...] = ()
    current: Segment | None = None
    #: Takes made so far at each chain position (the store's max attempt per idx), so a new take
    #: never reuses a (idx, attempt) pair, even after undo.
    attempts: tuple[int, ...] = ()
    final_video: str | None = None

    def __post_init__(self) -> None:
        problems = _invariant_problems(self)
        if problems:
            raise ValueError(f"inconsistent session {self.id!r}: {'; '.join(problems)}")

    @property
    def start_image(self) -> str | None:
        """Where the next segment starts: the last approved hand-off frame, else the first picture."""
        if self.approved:
            last = self.approved[-1].result
            assert last is not None
            return last.last_frame
        return self.first_image

    @property
    def seconds(self) -> float:
        """Length of the approved segments once joined."""
        return joined_seconds(self.approved)

    def next_attempt(self, idx: int) -> int:
        return (self.attempts[idx] if idx < len(self.attempts) else 0) + 1


def _invariant_problems(s: Session) -> list[str]:
    problems = []
    for i, seg in enumerate(s.approved):
        if seg.idx != i or seg.result is None:
            problems.append(f"approved[{i}] must have idx {i} and a result")
    if len(s.attempts) < len(s.approved):
        problems.append("attempts must cover every approved segment")
    cur = s.current
    if cur is not None and (cur.idx != len(s.approved) or cur.attempt > s.next_attempt(cur.idx) - 1):
        problems.append("current must be the next chain position, counted in attempts")
    need_current = {State.GENERATING: False, State.REVIEWING: True}
    if s.state in need_current:
        if cur is None or (cur.result is not None) != need_current[s.state]:
            problems.append(
                f"{s.state.value} needs a current take "
                + ("with a result" if need_current[s.state] else "without a result")
            )
    elif s.state is State.AWAITING_PROMPT:
        if cur is not None and cur.result is not None:
            problems.append("awaiting_prompt keeps only a failed take")
    elif cur is not None:
        problems.append(f"{s.state.value} has no current take")
    if s.state is not State.AWAITING_IMAGE and s.first_image is None and s.state is not State.CANCELLED:
        problems.append(f"{s.state.value} needs the first picture")
    if s.state is State.FINISHED and s.final_video is None:
        problems.append("finished needs the final video")
    return problems


def joined_seconds(segments: tuple[Segment, ...] | list[Segment]) -> float:
    """Segments 2..N drop their first frame when joined (it repeats the previous hand-off)."""
    frames = [s.result.frames if s.result else s.frames for s in segments]
    return (sum(frames) - max(len(frames) - 1, 0)) / DEFAULT_FPS if frames else 0.0


# -- events ---------------------------------------------------------------------------------------


class Via(StrEnum):
    """How a user event arrived; decides whether a stranger is answered."""

    COMMAND = "command"  # a typed or slash command: a stranger gets a short refusal
    MESSAGE = "message"  # a plain message or picture: chatter, strangers are ignored
    CONTROL = "control"  # a button or reaction: strangers are ignored


@dataclass(frozen=True)
class Picture:
    """An uploaded picture, saved by the service in the data dir."""

    path: str
    width: int
    height: int


@dataclass(frozen=True, kw_only=True)
class Event:
    pass


@dataclass(frozen=True, kw_only=True)
class UserEvent(Event):
    user_id: str
    via: Via = Via.COMMAND


@dataclass(frozen=True, kw_only=True)
class Start(UserEvent):
    picture: Picture | None = None
    prompt: str | None = None


@dataclass(frozen=True, kw_only=True)
class ImageReceived(UserEvent):
    picture: Picture
    via: Via = Via.MESSAGE


@dataclass(frozen=True, kw_only=True)
class PromptText(UserEvent):
    text: str
    via: Via = Via.MESSAGE


@dataclass(frozen=True, kw_only=True)
class Approve(UserEvent):
    #: The take the button was on; None (a typed command) means the one under review.
    segment: SegmentKey | None = None


@dataclass(frozen=True, kw_only=True)
class Regenerate(UserEvent):
    segment: SegmentKey | None = None
    #: A new prompt, or None to keep the take's prompt.
    prompt: str | None = None


@dataclass(frozen=True, kw_only=True)
class Undo(UserEvent):
    pass


@dataclass(frozen=True, kw_only=True)
class Finish(UserEvent):
    pass


@dataclass(frozen=True, kw_only=True)
class Cancel(UserEvent):
    pass


@dataclass(frozen=True, kw_only=True)
class Status(UserEvent):
    #: Filled in by the service from the dispatcher: 0 running now, k >= 1 the k-th in the
    #: queue (1: next in line), None unknown.
    queue_position: int | None = None


@dataclass(frozen=True, kw_only=True)
class ChangeSettings(UserEvent):
    #: (name, value) pairs as typed, e.g. (("seconds", "3"), ("seed", "random")); see
    #: :func:`parse_settings`. Empty: show the settings.
    changes: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True, kw_only=True)
class JobProgress(Event):
    segment: SegmentKey
    step: int
    total: int


@dataclass(frozen=True, kw_only=True)
class JobDone(Event):
    segment: SegmentKey
    video: str
    last_frame: str
    frames: int
    seed: int


@dataclass(frozen=True, kw_only=True)
class JobFailed(Event):
    segment: SegmentKey
    kind: FailureKind
    #: Shown to the user only for bad_input; internal details belong in the log.
    message: str = ""


@dataclass(frozen=True, kw_only=True)
class AssemblyDone(Event):
    path: str


@dataclass(frozen=True, kw_only=True)
class AssemblyFailed(Event):
    #: A user-facing reason (e.g. "the video is too large to send"), or "" for a plain apology.
    message: str = ""


USER_EVENTS: tuple[type[UserEvent], ...] = (
    Start,
    ImageReceived,
    PromptText,
    Approve,
    Regenerate,
    Undo,
    Finish,
    Cancel,
    Status,
    ChangeSettings,
)
SYSTEM_EVENTS: tuple[type[Event], ...] = (JobProgress, JobDone, JobFailed, AssemblyDone, AssemblyFailed)
EVENT_TYPES: tuple[type[Event], ...] = (*USER_EVENTS, *SYSTEM_EVENTS)


# -- effects --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Effect:
    pass


@dataclass(frozen=True)
class Say(Effect):
    text: str
    #: Only the acting user needs to see it (a refusal, a stale press): adapters may answer
    #: ephemerally or as a callback toast, or fall back to a normal message.
    ephemeral: bool = False


@dataclass(frozen=True)
class EnqueueSegment(Effect):
    """Store a new queued segment with this (idx, attempt) and queue its job; post a progress message."""

    session_id: str
    #: For fairness across users.
    owner_id: str
    segment: Segment
    #: The session's first picture (a colour-matching reference).
    first_image: str


@dataclass(frozen=True)
class CancelJob(Effect):
    """Stop the job (queued or running) and mark the take cancelled."""

    session_id: str
    segment: SegmentKey


@dataclass(frozen=True)
class UpdateProgress(Effect):
    session_id: str
    segment: SegmentKey
    step: int
    total: int


@dataclass(frozen=True)
class PostSegment(Effect):
    """Post the take's video and last frame with approve / regenerate controls."""

    session_id: str
    segment: Segment
    caption: str


@dataclass(frozen=True)
class ApproveSegment(Effect):
    """Store: the take becomes approved and its last frame the session's start image."""

    session_id: str
    segment: SegmentKey


@dataclass(frozen=True)
class RejectSegment(Effect):
    """Store: the take under review is rejected."""

    session_id: str
    segment: SegmentKey


@dataclass(frozen=True)
class DropLastApproved(Effect):
    """Store: the last approved segment is rejected; the previous hand-off becomes the start image."""

    session_id: str
    segment: SegmentKey


@dataclass(frozen=True)
class StartAssembly(Effect):
    """Join these approved segments (in order) and report AssemblyDone / AssemblyFailed."""

    session_id: str
    segments: tuple[Segment, ...]
    seconds: float


@dataclass(frozen=True)
class CancelAssembly(Effect):
    session_id: str


@dataclass(frozen=True)
class PostFinal(Effect):
    session_id: str
    path: str
    caption: str


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
    (_S.AWAITING_PROMPT, PromptText): frozenset({_S.GENERATING}),
    (_S.AWAITING_PROMPT, Regenerate): frozenset({_S.GENERATING}),
    (_S.AWAITING_PROMPT, ImageReceived): frozenset({_S.AWAITING_PROMPT}),
    (_S.AWAITING_PROMPT, Undo): frozenset({_S.AWAITING_PROMPT}),
    (_S.AWAITING_PROMPT, ChangeSettings): frozenset({_S.AWAITING_PROMPT}),
    (_S.AWAITING_PROMPT, Finish): frozenset({_S.ASSEMBLING}),
    (_S.AWAITING_PROMPT, Cancel): frozenset({_S.CANCELLED}),
    (_S.GENERATING, JobProgress): frozenset({_S.GENERATING}),
    (_S.GENERATING, JobDone): frozenset({_S.REVIEWING}),
    (_S.GENERATING, JobFailed): frozenset({_S.AWAITING_PROMPT}),
    (_S.GENERATING, Undo): frozenset({_S.AWAITING_PROMPT}),
    (_S.GENERATING, Finish): frozenset({_S.ASSEMBLING}),
    (_S.GENERATING, Cancel): frozenset({_S.CANCELLED}),
    (_S.REVIEWING, Approve): frozenset({_S.AWAITING_PROMPT}),
    (_S.REVIEWING, Regenerate): frozenset({_S.GENERATING}),
    (_S.REVIEWING, Undo): frozenset({_S.AWAITING_PROMPT}),
    (_S.REVIEWING, ChangeSettings): frozenset({_S.REVIEWING}),
    (_S.REVIEWING, Finish): frozenset({_S.ASSEMBLING}),
    (_S.REVIEWING, Cancel): frozenset({_S.CANCELLED}),
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
        return session, _refuse_stranger(event)
    key = (session.state, type(event))
    if key in TRANSITIONS:
        new, effects = _HANDLERS[type(event)](session, event, limits)
    else:
        new, effects = session, _not_accepted(session, event)
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


# -- refusals -------------------------------------------------------------------------------------

_ENDED = "This session has ended. Send /start with a picture to begin a new one."


def _refuse_stranger(event: UserEvent) -> list[Effect]:
    if event.via is not Via.COMMAND:
        return []
    return [Say("Only the person who started this session can do that.", ephemeral=True)]


def _not_accepted(s: Session, event: Event) -> list[Effect]:
    """The answer to an event the current state does not accept."""
    if not isinstance(event, UserEvent):
        return []  # a late report about a stopped or superseded job
    if isinstance(event, Status):
        return [Say(status_text(s, event.queue_position))]
    if isinstance(event, ChangeSettings) and not event.changes:
        return [Say(f"Settings: {settings_text(s.settings)}")]
    if s.state is State.FINISHED and isinstance(event, (Finish, Cancel)):
        return [Say("This session is already finished.", ephemeral=True)]
    if s.state is State.CANCELLED and isinstance(event, Cancel):
        return [Say("This session is already cancelled.", ephemeral=True)]
    if s.state.over:
        return [Say(_ENDED, ephemeral=event.via is not Via.MESSAGE)]
    if isinstance(event, (Approve, Regenerate)):
        return [_stale_review(s, event.segment)]
    return [Say(_busy_text(s, event), ephemeral=isinstance(event, ChangeSettings))]


def _stale_review(s: Session, key: SegmentKey | None) -> Say:
    if key is not None and any(seg.key == key for seg in s.approved):
        text = f"Segment {key.idx + 1} is already approved."
    elif key is not None:
        text = "That take is no longer up for review."
    elif s.state is State.GENERATING and s.current is not None:
        text = f"Segment {s.current.number} is still being made."
    else:
        text = "There is no segment waiting for review."
    return Say(text, ephemeral=True)


def _busy_text(s: Session, event: UserEvent) -> str:
    cur = s.current
    if isinstance(event, Start):
        return "A session is already running here — /finish or /cancel it first."
    if s.state is State.ASSEMBLING:
        return "I'm joining the video now — hang on, it will arrive here."
    if isinstance(event, ImageReceived):
        return "This session already has its start picture. To start over with another, /cancel, then /start."
    if isinstance(event, (Undo, Finish)):  # only awaiting_image refuses these while active
        return "Nothing to do yet — send the start picture first."
    if isinstance(event, PromptText) and s.state is State.GENERATING and cur is not None:
        return (
            f"Still working on segment {cur.number} — I'll post it for review when it's ready. "
            "Send the next prompt after that."
        )
    if isinstance(event, PromptText) and cur is not None:
        return (
            f"Segment {cur.number} is waiting for review: approve ✅ or regenerate 🔁 it first "
            "(/regenerate <prompt> redoes it with a new prompt)."
        )
    if isinstance(event, ChangeSettings) and cur is not None:
        return f"Settings can't change while segment {cur.number} is being made — try again once it's ready."
    return "That can't be done right now."


# -- handlers -------------------------------------------------------------------------------------


def _on_start(s: Session, e: Event, limits: Limits) -> Transition:
    assert isinstance(e, Start)
    effects: list[Effect] = []
    prompt = (e.prompt or "").strip() or None
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
        if s.approved or s.current is not None:
            return s, [Say(_busy_text(s, e))]
        # Before anything was generated, a new picture simply replaces the old one.
        return _take_picture(s, e.picture, None, limits, [])
    return _take_picture(s, e.picture, s.pending_prompt, limits, [])


def _take_picture(
    s: Session, picture: Picture, prompt: str | None, limits: Limits, effects: list[Effect]
) -> Transition:
    try:
        width, height = fit_size(picture.width, picture.height, limits.pixel_budget)
    except ParameterError:
        return s, [*effects, Say("I couldn't read that picture. Please send another one.")]
    s = replace(
        s,
        state=State.AWAITING_PROMPT,
        first_image=picture.path,
        pending_prompt=None,
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
    prompt = e.text.strip()
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
    if cur is None or (e.segment is not None and e.segment != cur.key):
        return s, [_stale_review(s, e.segment)]
    prompt = (e.prompt or "").strip() or cur.prompt
    if problem := _prompt_problem(prompt, limits):
        return s, [Say(problem)]
    effects: list[Effect] = []
    if cur.result is not None:  # reviewing; a failed take (awaiting_prompt) is already settled
        effects.append(RejectSegment(s.id, cur.key))
    return _enqueue(s, prompt, effects)


def _enqueue(s: Session, prompt: str, effects: list[Effect]) -> Transition:
    """A new take at the next chain position; the session moves to generating."""
    assert s.start_image is not None
    idx = len(s.approved)
    attempt = s.next_attempt(idx)
    settings = s.settings
    # Joined segments must share one size: the first approved segment fixes it.
    width, height = (s.approved[0].width, s.approved[0].height) if s.approved else (settings.width, settings.height)
    segment = Segment(
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
    )
    attempts = list(s.attempts) + [0] * (idx + 1 - len(s.attempts))
    attempts[idx] = attempt
    s = replace(s, state=State.GENERATING, current=segment, attempts=tuple(attempts), pending_prompt=None)
    assert s.first_image is not None
    return s, [*effects, EnqueueSegment(s.id, s.owner_id, segment, s.first_image)]


def _on_approve(s: Session, e: Event, limits: Limits) -> Transition:
    assert isinstance(e, Approve)
    cur = s.current
    assert cur is not None and cur.result is not None
    if e.segment is not None and e.segment != cur.key:
        return s, [_stale_review(s, e.segment)]
    s = replace(s, state=State.AWAITING_PROMPT, approved=(*s.approved, cur), current=None)
    text = f"Segment {cur.number} approved — {s.seconds:.1f} s so far. "
    if len(s.approved) >= limits.max_segments:
        text += f"That's the limit of {limits.max_segments} segments: /finish to get the video."
    else:
        text += "Send the next prompt, or /finish to get the video."
    return s, [ApproveSegment(s.id, cur.key), Say(text)]


def _on_undo(s: Session, e: Event, limits: Limits) -> Transition:
    cur = s.current
    if s.state is State.GENERATING:
        assert cur is not None
        s = replace(s, state=State.AWAITING_PROMPT, current=None)
        return s, [CancelJob(s.id, cur.key), Say(f"Stopped segment {cur.number}. Send a new prompt for it.")]
    if s.state is State.REVIEWING:
        assert cur is not None
        s = replace(s, state=State.AWAITING_PROMPT, current=None)
        more = f", or /undo again to remove segment {cur.number - 1}" if s.approved else ""
        text = f"Discarded this take of segment {cur.number}. Send a new prompt for it{more}."
        return s, [RejectSegment(s.id, cur.key), Say(text)]
    if not s.approved:
        return s, [Say("Nothing to undo yet.", ephemeral=True)]
    last = s.approved[-1]
    s = replace(s, approved=s.approved[:-1], current=None)
    source = f"the end of segment {last.number - 1}" if s.approved else "the start picture"
    text = f"Removed segment {last.number}. The next prompt continues from {source}."
    return s, [DropLastApproved(s.id, last.key), Say(text)]


def _on_finish(s: Session, e: Event, limits: Limits) -> Transition:
    cur = s.current if s.state in (State.GENERATING, State.REVIEWING) else None
    if not s.approved:
        if cur is not None:
            return s, [Say(f"Nothing is approved yet — approve segment {cur.number} first, then /finish.")]
        return s, [Say("Nothing to join yet — approve at least one segment first.")]
    effects: list[Effect] = []
    if cur is not None:
        effects.append(CancelJob(s.id, cur.key) if s.state is State.GENERATING else RejectSegment(s.id, cur.key))
        effects.append(Say(f"Segment {cur.number} wasn't approved, so it's left out."))
    s = replace(s, state=State.ASSEMBLING, current=None)
    n = len(s.approved)
    effects.append(StartAssembly(s.id, s.approved, s.seconds))
    effects.append(Say(f"Joining {n} segment{'s' if n > 1 else ''} ({s.seconds:.1f} s)…"))
    return s, effects


def _on_cancel(s: Session, e: Event, limits: Limits) -> Transition:
    effects: list[Effect] = []
    cur = s.current
    if s.state is State.GENERATING and cur is not None:
        effects.append(CancelJob(s.id, cur.key))
    elif s.state is State.REVIEWING and cur is not None:
        effects.append(RejectSegment(s.id, cur.key))
    elif s.state is State.ASSEMBLING:
        effects.append(CancelAssembly(s.id))
    effects.append(Say("Cancelled. Send /start with a picture to begin a new session."))
    return replace(s, state=State.CANCELLED, current=None, pending_prompt=None), effects


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
    if s.current is None or e.segment != s.current.key:
        return s, []
    return s, [UpdateProgress(s.id, e.segment, e.step, e.total)]


def _on_done(s: Session, e: Event, limits: Limits) -> Transition:
    assert isinstance(e, JobDone)
    cur = s.current
    if cur is None or e.segment != cur.key:
        return s, []
    seg = replace(cur, result=SegmentResult(e.video, e.last_frame, e.frames, e.seed))
    s = replace(s, state=State.REVIEWING, current=seg)
    return s, [PostSegment(s.id, seg, review_caption(seg))]


def review_caption(seg: Segment) -> str:
    """The caption of a take posted for review (also when it is posted again after a restart)."""
    assert seg.result is not None
    return (
        f"Segment {seg.number}, take {seg.attempt} · {joined_seconds([seg]):.1f} s · seed {seg.result.seed}\n"
        f"“{_clip(seg.prompt, 200)}”\nApprove ✅ or regenerate 🔁."
    )


def _on_failed(s: Session, e: Event, limits: Limits) -> Transition:
    assert isinstance(e, JobFailed)
    cur = s.current
    if cur is None or e.segment != cur.key:
        return s, []
    n = cur.number
    retry = "/regenerate to try again, or send a new prompt."
    texts = {
        FailureKind.OOM: f"Segment {n} ran out of GPU memory. Try fewer seconds or a smaller size in "
        f"/settings, then {retry}",
        FailureKind.BAD_INPUT: f"Segment {n} couldn't be made: {_clip(e.message, 300) or 'bad input'}. "
        "Send a different prompt, or /regenerate to try again.",
        FailureKind.CANCELLED: f"Segment {n} was stopped. {retry}",
        FailureKind.INTERNAL: f"Sorry — something went wrong making segment {n} "
        f"(ref {s.id}/{cur.idx}.{cur.attempt}). {retry}",
    }
    # The failed take stays as ``current`` so /regenerate can retry it.
    return replace(s, state=State.AWAITING_PROMPT), [Say(texts[FailureKind(e.kind)])]


def _on_assembly_done(s: Session, e: Event, limits: Limits) -> Transition:
    assert isinstance(e, AssemblyDone)
    s = replace(s, state=State.FINISHED, final_video=e.path)
    n = len(s.approved)
    caption = f"Here's your video: {n} segment{'s' if n > 1 else ''}, {s.seconds:.1f} s."
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
    Undo: _on_undo,
    Finish: _on_finish,
    Cancel: _on_cancel,
    ChangeSettings: _on_settings,
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


# -- settings -------------------------------------------------------------------------------------


class SettingsError(ValueError):
    """A settings change the user typed is not valid; the message says what is allowed."""


_SETTING_NAMES = {
    "seconds": "seconds",
    "length": "seconds",
    "steps": "steps",
    "seed": "seed",
    "negative": "negative",
    "negative_prompt": "negative",
    "size": "size",
}


def parse_settings(text: str) -> tuple[tuple[str, str], ...]:
    """``"seconds=3 steps=8 negative=blurry, static"`` -> pairs; ``"seed 42"`` (one setting)
    also works. A value runs to the next ``name=``, so a negative prompt may contain spaces."""
    text = text.strip()
    if not text:
        return ()
    matches = list(re.finditer(r"(?:^|\s)(\w+)\s*=", text))
    if not matches:
        name, _, value = text.partition(" ")
        return ((name.lower(), value.strip()),)
    if text[: matches[0].start()].strip():
        raise SettingsError(f"Write settings as name=value, e.g. seconds=3 steps=20 (got {_clip(text, 40)!r}).")
    pairs = []
    for i, m in enumerate(matches):
        end = matches[i + 1].start() if i + 1 < len(matches) else len(text)
        pairs.append((m.group(1).lower(), text[m.end() : end].strip()))
    return tuple(pairs)


def apply_settings(
    settings: Settings, changes: tuple[tuple[str, str], ...], *, limits: Limits, size_lock: str | None = None
) -> Settings:
    """Validate every change and apply all of them, or raise SettingsError and apply none.

    ``size_lock`` is the reason the size may not change now, if it may not."""
    values: dict[str, object] = {}
    problems: list[str] = []
    for raw_name, raw_value in changes:
        name = _SETTING_NAMES.get(raw_name.lower())
        value = raw_value.strip()
        try:
            if name is None:
                raise SettingsError(
                    f"unknown setting {raw_name!r} (try {', '.join(sorted(set(_SETTING_NAMES.values())))})"
                )
            values.update(_parse_setting(name, value, limits, size_lock))
        except SettingsError as exc:
            problems.append(str(exc))
    if problems:
        raise SettingsError("Settings not changed: " + "; ".join(problems) + ".")
    return replace(settings, **values)  # type: ignore[arg-type]


def _parse_setting(name: str, value: str, limits: Limits, size_lock: str | None) -> dict[str, object]:
    lowered = value.lower()
    if name == "seconds":
        seconds = _parse_int(lowered.removesuffix("s").strip())
        if seconds not in SECONDS_TO_FRAMES:
            raise SettingsError("seconds must be 2, 3, 4 or 5")
        return {"seconds": seconds}
    if name == "steps":
        steps = _parse_int(lowered)
        if steps is None or not 1 <= steps <= limits.max_steps:
            raise SettingsError(f"steps must be a whole number from 1 to {limits.max_steps}")
        return {"steps": steps}
    if name == "seed":
        if lowered in ("random", "none", "off", ""):
            return {"seed": None}
        seed = _parse_int(lowered)
        if seed is None or not 0 <= seed < SEED_LIMIT:
            raise SettingsError("seed must be a whole number from 0 to 2^63-1, or 'random'")
        return {"seed": seed}
    if name == "negative":
        if lowered == "default":
            return {"negative_prompt": WAN_NEGATIVE_PROMPT}
        if lowered in ("none", "off"):
            return {"negative_prompt": ""}
        if len(value) > limits.max_negative_chars:
            raise SettingsError(
                f"the negative prompt is {len(value)} characters; the limit is {limits.max_negative_chars}"
            )
        return {"negative_prompt": value}
    assert name == "size"
    if size_lock is not None:
        raise SettingsError(size_lock)
    m = re.fullmatch(r"(\d+)\s*[x×*]\s*(\d+)", lowered)
    width, height = (int(m.group(1)), int(m.group(2))) if m else (0, 0)
    if not m or width % SIDE_MULTIPLE or height % SIDE_MULTIPLE or not width or not height:
        raise SettingsError(f"size must be WIDTHxHEIGHT, each a multiple of {SIDE_MULTIPLE} (e.g. 832x480)")
    if width * height > limits.max_pixels:
        raise SettingsError(f"{width}×{height} is too large; the limit is {limits.max_pixels:,} pixels")
    return {"width": width, "height": height}


def _parse_int(text: str) -> int | None:
    return int(text) if re.fullmatch(r"\d{1,19}", text) else None


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


# -- texts ----------------------------------------------------------------------------------------


def settings_text(settings: Settings) -> str:
    if settings.negative_prompt == WAN_NEGATIVE_PROMPT:
        negative = "standard"
    elif not settings.negative_prompt:
        negative = "none"
    else:
        negative = f"“{_clip(settings.negative_prompt, 60)}”"
    seed = "random" if settings.seed is None else str(settings.seed)
    return (
        f"{settings.seconds} s per segment ({settings.frames} frames), {settings.steps} steps, "
        f"seed {seed}, size {settings.width}×{settings.height}, negative prompt {negative}."
    )


def status_text(s: Session, queue_position: int | None = None) -> str:
    n = len(s.approved)
    so_far = f"{n} segment{'' if n == 1 else 's'} approved ({s.seconds:.1f} s)"
    cur = s.current
    if s.state is State.AWAITING_IMAGE:
        return "Waiting for the start picture."
    if s.state is State.AWAITING_PROMPT:
        failed = f" Segment {cur.number} failed: /regenerate to retry." if cur is not None else ""
        return f"{so_far}. Waiting for the next prompt.{failed}"
    if s.state is State.GENERATING and cur is not None:
        if queue_position is None:
            where = "queued or running"
        elif queue_position == 0:
            where = "running now"
        elif queue_position == 1:
            where = "queued, next in line"
        else:
            ahead = queue_position - 1
            where = f"queued, {ahead} job{'' if ahead == 1 else 's'} ahead"
        return f"{so_far}. Segment {cur.number} (take {cur.attempt}) is {where}."
    if s.state is State.REVIEWING and cur is not None:
        return f"{so_far}. Segment {cur.number} is ready for review."
    if s.state is State.ASSEMBLING:
        return f"Joining {so_far.replace(' approved', '')} into the final video."
    if s.state is State.FINISHED:
        return f"Finished: {n} segment{'' if n == 1 else 's'}, {s.seconds:.1f} s."
    return "This session was cancelled."


def _clip(text: str, limit: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


# -- diagram --------------------------------------------------------------------------------------


def mermaid_diagram() -> str:
    """The Mermaid state diagram of :data:`TRANSITIONS`."""
    edges: dict[tuple[State, State], list[str]] = {}
    for (source, event), targets in TRANSITIONS.items():
        for target in sorted(targets, key=list(State).index):
            edges.setdefault((source, target), []).append(event.__name__)
    lines = ["stateDiagram-v2", f"    [*] --> {State.AWAITING_IMAGE.value}"]
    for (source, target), names in edges.items():
        lines.append(f"    {source.value} --> {target.value} : {', '.join(names)}")
    lines += [f"    {State.FINISHED.value} --> [*]", f"    {State.CANCELLED.value} --> [*]"]
    return "\n".join(lines) + "\n"


def diagram_markdown() -> str:
    """The whole of ``bot/core_diagram.md``."""
    return (
        "# Conversation core: session states\n\n"
        "Generated from `bot.core.TRANSITIONS`; `tests/bot/test_core_diagram.py` fails when this file\n"
        "and the code differ. Regenerate with\n\n"
        "    .venv/bin/python -c \"import bot.core as c; print(c.diagram_markdown(), end='')\""
        " > bot/core_diagram.md\n\n"
        "An arrow is an event the state accepts (a loop: the session changes in place). Any other\n"
        "event is refused with a short note, or ignored silently (a stranger's message, button or\n"
        "reaction; a late job report), and leaves the session unchanged. `Status`, and `ChangeSettings`\n"
        "with no changes, are answered in every state. The rules are in the docstring of `bot/core.py`.\n\n"
        "```mermaid\n" + mermaid_diagram() + "```\n"
    )
