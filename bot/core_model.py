"""The conversation core's vocabulary: sessions, segments, settings, events and effects.

Plain frozen dataclasses, no I/O and no rules beyond each value's own consistency; the rules
are in :mod:`bot.core`, which re-exports everything here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Literal, NamedTuple

from shared.color_reference import COLOR_MATCHES, ColorMatch
from shared.params import (
    DEFAULT_FPS,
    DEFAULT_HEIGHT,
    DEFAULT_STEPS,
    DEFAULT_WIDTH,
    SIDE_MULTIPLE,
    WAN_NEGATIVE_PROMPT,
    ParameterError,
    frames_for_seconds,
)
from shared.protocol import FailureKind

#: ``settings takes = N`` renders at most this many takes per prompt.
MAX_TAKES = 4
#: Seeds are 0 <= seed < 2**63: what the worker and the store (signed int64) accept.
SEED_LIMIT = 2**63

SizeMode = Literal["fit", "fixed"]

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
    #: The configured segment size (width, height); see :func:`shared.params.segment_size`:
    #: "fit" keeps a start picture's aspect ratio within this many pixels, "fixed" uses it as is.
    size: tuple[int, int] = (DEFAULT_WIDTH, DEFAULT_HEIGHT)
    size_mode: SizeMode = "fit"
    #: Largest area a user may choose with /settings size.
    max_pixels: int = 1280 * 720
    #: Whether every worker can aim a segment at an end keyframe (/end); a ComfyUI server cannot.
    keyframes: bool = True
    #: Whether sessions may switch to SVI latent continuity (the SVI LoRAs are configured).
    svi: bool = False

    def __post_init__(self) -> None:
        for name in ("max_prompt_chars", "max_negative_chars", "max_segments", "max_steps"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.size_mode not in ("fit", "fixed"):
            raise ValueError(f"size_mode must be 'fit' or 'fixed', got {self.size_mode!r}")
        if self.pixel_budget < SIDE_MULTIPLE * SIDE_MULTIPLE:
            raise ValueError(f"pixel_budget must be at least {SIDE_MULTIPLE**2}, got {self.pixel_budget}")
        if self.max_pixels < self.pixel_budget:
            raise ValueError(f"max_pixels ({self.max_pixels}) must be >= pixel_budget ({self.pixel_budget})")

    @property
    def pixel_budget(self) -> int:
        return self.size[0] * self.size[1]


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
    #: What new segments are colour-matched to (shared.color_reference).
    color_match: ColorMatch = "auto"
    #: How each segment continues from the one before: "frame" (its last frame) or "svi" (its
    #: last latents, SVI 2.0 Pro; only where the server has the SVI LoRAs, Limits.svi).
    continuity: str = "frame"
    #: Takes each prompt renders at once, with different seeds (``bot.core_takes``).
    takes: int = 1

    def __post_init__(self) -> None:
        # Limit-independent checks; a row from the store or the config must already pass these.
        frames_for_seconds(self.seconds)
        if self.color_match not in COLOR_MATCHES:
            raise ParameterError(f"color_match must be one of {', '.join(COLOR_MATCHES)}, got {self.color_match!r}")
        if self.continuity not in ("frame", "svi"):
            raise ParameterError(f"continuity must be 'frame' or 'svi', got {self.continuity!r}")
        if not _is_int(self.takes) or not 1 <= self.takes <= MAX_TAKES:
            raise ParameterError(f"takes must be 1 to {MAX_TAKES}, got {self.takes!r}")
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
    #: Head frames this take drops when joined after another: 1 (the re-rendered hand-off frame),
    #: 4 for a take continued from latents (SVI overlaps its predecessor by one latent frame).
    overlap: int = 1


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
    #: The end keyframe this take was aimed at (Wan first-last-frame), or None.
    end_image: str | None = None
    #: The first attempt of the takes queued together with this one (one prompt with
    #: ``takes = N``); 0: it was queued alone (its batch is itself).
    batch: int = 0

    @property
    def key(self) -> SegmentKey:
        return SegmentKey(self.idx, self.attempt)

    @property
    def batch_of(self) -> int:
        """The batch this take belongs to: the first attempt queued with it."""
        return self.batch or self.attempt

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
    #: The end keyframe (/end) every new take aims at until a take aimed at it is approved.
    end_image: str | None = None
    #: Earlier takes of the next chain position that were regenerated, not rejected: each is
    #: done (with a result) and keeps its ✅ Approve until one take of the position is approved.
    kept: tuple[Segment, ...] = ()
    #: Other takes of the next chain position being made beside ``current`` (the rest of a
    #: ``takes = N`` batch), oldest first; ``current`` is the newest take being made.
    making: tuple[Segment, ...] = ()

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
    for k in s.kept:
        # While a batch is made, a take done first may be newer than the one still being made.
        newer_ok = s.state is State.GENERATING
        if (
            k.idx != len(s.approved)
            or k.result is None
            or (cur is not None and (k.attempt == cur.attempt or (k.attempt > cur.attempt and not newer_ok)))
        ):
            problems.append(f"kept take {k.key} must be an earlier done take of the next chain position")
    for m in s.making:
        if s.state is not State.GENERATING or cur is None or m.idx != cur.idx or m.result is not None:
            problems.append(f"take {m.key} being made needs a generating session, beside the current take")
        elif m.attempt >= cur.attempt or m.attempt > s.next_attempt(m.idx) - 1:
            problems.append(f"take {m.key} being made must be older than the current take")
    if s.kept and s.state not in (State.GENERATING, State.REVIEWING, State.AWAITING_PROMPT):
        problems.append(f"{s.state.value} keeps no earlier takes")
    if s.state is State.FINISHED and s.final_video is None:
        problems.append("finished needs the final video")
    return problems


def joined_seconds(segments: tuple[Segment, ...] | list[Segment]) -> float:
    """Segments 2..N drop their head frames when joined (``SegmentResult.overlap``: the first
    frame, which repeats the previous hand-off, or an SVI take's overlap)."""
    frames = [s.result.frames if s.result else s.frames for s in segments]
    dropped = sum(s.result.overlap if s.result else 1 for s in list(segments)[1:])
    return (sum(frames) - dropped) / DEFAULT_FPS if frames else 0.0


# -- events ---------------------------------------------------------------------------------------


class Via(StrEnum):
    """How a user event arrived; decides whether a stranger is answered."""

    COMMAND = "command"  # a typed or slash command: a stranger gets a short refusal
    MESSAGE = "message"  # a plain message or picture: chatter, strangers are ignored
    CONTROL = "control"  # a button: a stranger is told privately that it is not theirs
    #: A reaction: visible to everyone already, so an accepted one gets no confirmation and a
    #: stranger's is ignored; a stale one is still answered privately.
    REACTION = "reaction"


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
    #: The take the button was on; None (a typed command) means whatever is newest now.
    segment: SegmentKey | None = None


@dataclass(frozen=True, kw_only=True)
class Finish(UserEvent):
    #: The take the button was on (one under review, or the last approved segment's kept
    #: button); None (a typed command) acts on the current state.
    segment: SegmentKey | None = None


@dataclass(frozen=True, kw_only=True)
class ApproveAndFinish(UserEvent):
    """Approve the take under review and join the video, in one press."""

    segment: SegmentKey | None = None


@dataclass(frozen=True, kw_only=True)
class Cancel(UserEvent):
    pass


@dataclass(frozen=True, kw_only=True)
class ShowTake(UserEvent):
    """◀ ▶ on a review message: show ``segment`` (a take up for review) there instead. Changes
    nothing in the session; which take a message shows is the adapters' to keep."""

    segment: SegmentKey
    via: Via = Via.CONTROL


@dataclass(frozen=True, kw_only=True)
class EndFrame(UserEvent):
    """/end: set the frame the next segment ends on (``picture``), remove it (``clear``), or,
    with neither, say whether one is set."""

    picture: Picture | None = None
    clear: bool = False


@dataclass(frozen=True)
class Quota:
    """One user's quotas and what is left of them, for /status: numbers the service reads from
    the configuration and the store (see ``bot.conversation.quotas``)."""

    #: An admin: no quota applies.
    exempt: bool = False
    gpu_seconds_used: float = 0.0
    #: GPU seconds a day; 0: no daily limit.
    gpu_seconds_limit: int = 0
    #: The day starts at this hour, UTC; the next start is ``resets_in`` seconds away.
    reset_hour: int = 0
    resets_in: float = 0.0
    jobs_pending: int = 0
    jobs_limit: int = 1
    sessions_active: int = 0
    sessions_limit: int = 1


@dataclass(frozen=True, kw_only=True)
class Status(UserEvent):
    #: Filled in by the service from the dispatcher: 0 running now, k >= 1 the k-th in the
    #: queue (1: next in line), None unknown.
    queue_position: int | None = None
    #: The asking user's quotas (not the owner's: anyone may ask); None: not shown.
    quota: Quota | None = None
    #: The drift line of the newest approved segment (bot.conversation.drift); "": none.
    drift: str = ""


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
    #: See SegmentResult.overlap.
    overlap: int = 1


@dataclass(frozen=True, kw_only=True)
class JobFailed(Event):
    segment: SegmentKey
    kind: FailureKind
    #: Shown to the user only for bad_input; internal details belong in the log.
    message: str = ""


@dataclass(frozen=True, kw_only=True)
class AssemblyDone(Event):
    path: str
    #: A line the final's caption ends with (how it was joined, e.g. at 32 fps), or "".
    note: str = ""


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
    ApproveAndFinish,
    Cancel,
    Status,
    ChangeSettings,
    EndFrame,
    ShowTake,
)
SYSTEM_EVENTS: tuple[type[Event], ...] = (JobProgress, JobDone, JobFailed, AssemblyDone, AssemblyFailed)
EVENT_TYPES: tuple[type[Event], ...] = (*USER_EVENTS, *SYSTEM_EVENTS)


# -- effects --------------------------------------------------------------------------------------


class Control(StrEnum):
    """A control on a posted take; the values are those of ``bot.ports.Action``."""

    APPROVE = "approve"
    REGENERATE = "regen"
    UNDO = "undo"
    FINISH = "finish"
    APPROVE_FINISH = "apfin"


#: The controls of a take under review, in display order.
REVIEW_CONTROLS: tuple[Control, ...] = (Control.APPROVE, Control.REGENERATE, Control.UNDO, Control.APPROVE_FINISH)
#: The controls an earlier take keeps once it is regenerated.
KEPT_CONTROLS: tuple[Control, ...] = (Control.APPROVE,)


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
    """Store: the take becomes approved and its last frame the session's start image. Its
    review controls close, except ``keep_controls``, which stay on its message."""

    session_id: str
    segment: SegmentKey
    keep_controls: tuple[Control, ...] = ()


@dataclass(frozen=True)
class KeepTake(Effect):
    """The take under review was regenerated: it stays done (nothing to store) and its
    controls shrink to ``KEPT_CONTROLS``, so it can still be approved."""

    session_id: str
    segment: SegmentKey


@dataclass(frozen=True)
class LeaveOut(Effect):
    """Store: a take of a batch that failed beside others is left out (settled), so that the
    session reads back without it."""

    session_id: str
    segment: SegmentKey


@dataclass(frozen=True)
class PageTake(Effect):
    """Show the take (up for review) in the review message whose ◀ ▶ was pressed: its video,
    caption and controls, which name it. Nothing is stored but which take that message shows."""

    session_id: str
    segment: SegmentKey


@dataclass(frozen=True)
class RejectSegment(Effect):
    """Store: the take (under review, or a kept earlier one) is rejected; its controls close."""

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


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


# -- what the store holds (for recovery) ----------------------------------------------------------


class TakeStatus(StrEnum):
    """A stored take's status, as far as the rules care."""

    PENDING = "pending"  # queued or running: its job will report
    DONE = "done"  # made, not reviewed yet
    FAILED = "failed"
    SETTLED = "settled"  # rejected or cancelled: nothing more will happen to it


@dataclass(frozen=True)
class Take:
    """The newest stored take at a session's next chain position, with its status."""

    segment: Segment
    status: TakeStatus
    #: The other takes at that position still done (regenerated, or done first in a batch), oldest first:
    #: they become ``Session.kept`` in a state that keeps takes.
    earlier: tuple[Segment, ...] = ()
    #: The other takes still queued or running at that position (the rest of a batch), oldest
    #: first; ``segment`` is then the newest of them.
    making: tuple[Segment, ...] = ()
