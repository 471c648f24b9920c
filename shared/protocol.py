"""Messages between the bot and a worker process: one JSON object per line, each with ``type``.

bot -> worker: ``generate``, ``cancel``, ``shutdown``
worker -> bot: ``ready``, ``queued``, ``progress``, ``preview``, ``done``, ``failed``

Media travel as file paths inside the data directory, never inline.
"""

from __future__ import annotations

import json
import types
import typing
from dataclasses import asdict, dataclass, field, fields
from enum import Enum, StrEnum
from typing import Any, ClassVar


class FailureKind(StrEnum):
    OOM = "oom"
    BAD_INPUT = "bad_input"
    CANCELLED = "cancelled"
    INTERNAL = "internal"


class ProtocolError(ValueError):
    """A line that is not a valid protocol message."""


@dataclass(frozen=True)
class Generate:
    type: ClassVar[str] = "generate"
    job_id: str
    image: str
    prompt: str
    out_dir: str
    negative_prompt: str = ""
    width: int = 640
    height: int = 640
    frames: int = 81
    fps: int = 16
    steps: int = 20
    guidance: float = 3.5
    guidance_2: float = 3.5
    seed: int | None = None
    #: Colour matching: path of the reference image, or None for off.
    color_reference: str | None = None
    color_strength: float = 1.0
    color_lightness: bool = True
    #: Basename (no extension) for the segment files written into out_dir.
    name: str = "segment"
    #: An end keyframe: path of the picture the segment should end on (Wan first-last-frame),
    #: or None to end wherever the prompt leads.
    end_image: str | None = None
    #: A live preview after every this many steps (never after the last: the result follows);
    #: 0 for none.
    preview_every: int = 0
    #: Drift figures (shared.drift): the session's first picture, which the take's last frame is
    #: measured against; None measures the take on its own.
    drift_reference: str | None = None
    #: How the segment continues from its predecessor: "frame" (from ``image``, today's way) or
    #: "svi" (SVI 2.0 Pro: from ``previous_latents``, the approved predecessor's latent file,
    #: anchored on ``anchor_image``, the session's first picture). A worker that cannot make an
    #: svi take makes a frame one from ``image`` and says why in ``done.note``.
    continuity: str = "frame"
    anchor_image: str | None = None
    previous_latents: str | None = None
    #: Latent frames of the predecessor that condition the take (svi).
    motion_latents: int = 1


@dataclass(frozen=True)
class Cancel:
    type: ClassVar[str] = "cancel"
    job_id: str


@dataclass(frozen=True)
class Shutdown:
    type: ClassVar[str] = "shutdown"


@dataclass(frozen=True)
class Ready:
    type: ClassVar[str] = "ready"
    backend: str
    device: str
    preview: bool = False
    info: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Progress:
    type: ClassVar[str] = "progress"
    job_id: str
    step: int
    total: int


@dataclass(frozen=True)
class Queued:
    """The job waits behind other people's jobs in the queue of what the backend drives (a
    ComfyUI server's own queue), sent when the number ahead changes; ``progress`` follows once
    it runs."""

    type: ClassVar[str] = "queued"
    job_id: str
    #: Jobs ahead of ours there, the running one included.
    ahead: int
    #: Where it waits, for the user ("the ComfyUI server").
    where: str = ""
    #: Seconds until it should start, when the backend can tell (from the jobs it has timed there).
    eta: float | None = None


@dataclass(frozen=True)
class Preview:
    """A small picture of what the job's step ``step`` predicts the clean video to be (a strip
    of a few of its frames), written into the job's out_dir; the next preview replaces it."""

    type: ClassVar[str] = "preview"
    job_id: str
    path: str
    step: int
    total: int


@dataclass(frozen=True)
class Done:
    type: ClassVar[str] = "done"
    job_id: str
    video: str
    last_frame: str
    frames: int
    seconds: float
    seed: int
    width: int
    height: int
    preview: bool = False
    #: The take's drift figures (shared.drift.DriftFigures.to_json), measured on the frames as
    #: written; None from a worker that does not measure them.
    drift: dict[str, float] | None = None
    #: The take's final latents (``<name>.latent.safetensors``), where the backend keeps them.
    latents: str | None = None
    #: The continuity the take was made with ("frame" or "svi"), and why not "svi" when that was
    #: asked for and could not be done ("" otherwise).
    continuity: str = "frame"
    note: str = ""


@dataclass(frozen=True)
class Failed:
    type: ClassVar[str] = "failed"
    job_id: str | None
    kind: FailureKind
    message: str


Message = Generate | Cancel | Shutdown | Ready | Queued | Progress | Preview | Done | Failed

_TYPES: dict[str, type[Any]] = {
    cls.type: cls for cls in (Generate, Cancel, Shutdown, Ready, Queued, Progress, Preview, Done, Failed)
}


def encode(message: Message) -> str:
    """One line of JSON, newline-terminated."""
    body = {"type": message.type, **asdict(message)}
    if isinstance(message, Failed):
        body["kind"] = message.kind.value
    return json.dumps(body, ensure_ascii=False) + "\n"


def _matches(tp: Any, value: Any) -> bool:
    """A shallow type check of one decoded JSON value against a field annotation."""
    if tp is Any or (isinstance(tp, type) and issubclass(tp, Enum)):
        return True
    args = typing.get_args(tp)
    if args and typing.get_origin(tp) in (typing.Union, types.UnionType):
        return any(_matches(a, value) for a in args)
    if tp is type(None):
        return value is None
    if tp is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if tp is int:
        return isinstance(value, int) and not isinstance(value, bool)
    origin = typing.get_origin(tp) or tp
    return isinstance(value, origin)


def decode(line: str | bytes) -> Message:
    """Parse one line; raise ProtocolError naming what is wrong."""
    try:
        body = json.loads(line)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ProtocolError(f"not JSON: {exc}") from None
    if not isinstance(body, dict):
        raise ProtocolError("a message must be a JSON object")
    kind = body.pop("type", None)
    cls = _TYPES.get(kind) if isinstance(kind, str) else None
    if cls is None:
        raise ProtocolError(f"unknown message type {kind!r}")
    names = {f.name for f in fields(cls)}
    unknown = sorted(set(body) - names)
    if unknown:
        raise ProtocolError(f"{kind}: unknown field(s) {', '.join(unknown)}")
    if cls is Failed:
        try:
            body["kind"] = FailureKind(str(body.get("kind")))
        except ValueError:
            raise ProtocolError(f"failed: unknown kind {body.get('kind')!r}") from None
    hints = typing.get_type_hints(cls)
    for name, value in body.items():
        if not _matches(hints[name], value):
            raise ProtocolError(f"{kind}: {name} has the wrong type ({type(value).__name__})")
    try:
        message: Message = cls(**body)
    except TypeError as exc:
        raise ProtocolError(f"{kind}: {exc}") from None
    return message
