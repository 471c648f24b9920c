"""The boundary between the conversation service and the chat platforms.

Adapters (Discord, Telegram) implement ``ChatPort`` to deliver what the service says, and call
the ``Conversation`` methods with what users do. Everything here is platform-neutral: ids are
strings, media are file paths in the data dir.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Protocol


@dataclass(frozen=True)
class ChatRef:
    """Where a session lives: a platform, a chat (Telegram chat, Discord channel) and a thread."""

    platform: str
    chat_id: str
    thread_id: str = ""


class Action(StrEnum):
    APPROVE = "approve"
    REGENERATE = "regen"
    UNDO = "undo"
    FINISH = "finish"


#: Review controls carry the segment id, so a button keeps working after a restart.
#: Short enough for Telegram's 64-byte callback data and Discord's 100-character custom_id.
_CONTROL = re.compile(r"^seg:(?P<segment>[0-9]{1,18}):(?P<action>approve|regen|undo|finish)$")


def control_id(segment_id: int, action: Action) -> str:
    return f"seg:{segment_id}:{action.value}"


def parse_control(data: str) -> tuple[int, Action] | None:
    match = _CONTROL.match(data or "")
    if match is None:
        return None
    return int(match["segment"]), Action(match["action"])


@dataclass(frozen=True)
class SegmentPost:
    """A finished segment to show for review: the video, its hand-off frame and the controls."""

    segment_id: int
    index: int  # 1-based position in the chain
    attempt: int  # 1 for the first take, 2 for the first regeneration, ...
    video: Path
    last_frame: Path
    caption: str
    width: int
    height: int
    frames: int
    seconds: float
    preview: bool
    #: (label, control id) pairs, in display order.
    controls: tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class FinalPost:
    """The joined video, possibly in parts when it could not be made to fit the upload limit."""

    parts: tuple[Path, ...]
    caption: str


class ChatPort(Protocol):
    """What the service needs from a chat platform. Every method may raise; the service logs and
    carries on (a failed edit never loses a segment)."""

    platform: str

    def upload_limit(self, chat: ChatRef) -> int:
        """Largest file, in bytes, this chat accepts."""
        ...

    async def send_text(self, chat: ChatRef, text: str) -> str:
        """Send a message; return its id."""
        ...

    async def edit_text(self, chat: ChatRef, message_id: str, text: str) -> None: ...

    async def post_segment(self, chat: ChatRef, post: SegmentPost) -> dict[str, str]:
        """Post a segment for review; return the ids of what was posted (``video``, ``frame``...)."""
        ...

    async def close_controls(self, chat: ChatRef, message_ids: dict[str, str], note: str) -> None:
        """The review is over (approved/replaced): remove or disable the controls, add ``note``."""
        ...

    async def post_final(self, chat: ChatRef, post: FinalPost) -> list[str]: ...


#: Shows a text to the acting user only (a Discord ephemeral message). Adapters that can pass one
#: with an action; notes meant for that user alone (a refusal, a stale button) then go there
#: instead of into the chat.
PrivateReply = Callable[[str], Awaitable[object]]


class Conversation(Protocol):
    """What adapters call. ``user_id`` is the platform's user id as a string."""

    async def start(
        self,
        chat: ChatRef,
        user_id: str,
        image: bytes | None,
        prompt: str | None,
        *,
        is_admin: bool = False,
        reply: PrivateReply | None = None,
    ) -> None:
        """``/start``, with an image (the file's bytes) or without one (the bot will ask)."""
        ...

    async def image(self, chat: ChatRef, user_id: str, image: bytes) -> None: ...

    async def text(self, chat: ChatRef, user_id: str, text: str) -> None:
        """A plain message: the next prompt, when the session expects one."""
        ...

    async def control(
        self,
        chat: ChatRef,
        user_id: str,
        segment_id: int,
        action: Action,
        *,
        is_admin: bool = False,
        reply: PrivateReply | None = None,
    ) -> None:
        """A review button or reaction. Ignored silently when not the owner's (or an admin's)."""
        ...

    async def reaction(
        self, chat: ChatRef, user_id: str, message_id: str, action: Action, *, is_admin: bool = False
    ) -> None:
        """A reaction on one of the messages of a posted segment (the service finds which, from the
        message ids post_segment returned, so this works after a restart)."""
        ...

    async def command(
        self,
        chat: ChatRef,
        user_id: str,
        name: str,
        argument: str = "",
        *,
        is_admin: bool = False,
        reply: PrivateReply | None = None,
    ) -> None:
        """finish, undo, cancel, status, help, settings (``argument`` like ``seconds=3``)."""
        ...
