"""The boundary between the conversation service and the chat platforms.

Adapters (Discord, Telegram) implement ``ChatPort`` to deliver what the service says, and call
the ``Conversation`` methods with what users do. Everything here is platform-neutral: ids are
strings, media are file paths in the data dir.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Protocol

from bot.ops_view import OpsSnapshot
from shared.pictures import Accepted


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
    #: Approve the take under review and join the video in one press.
    APPROVE_FINISH = "apfin"
    #: Stop the take being made (the ✖ Stop on its progress message).
    STOP = "stop"
    #: ◀ ▶ on a review message: show this take there instead.
    SHOW = "show"
    #: Send a take again whose post a crash left in doubt (the notice's 📤 Send again).
    RESEND = "resend"
    #: The same for the final video (the control names the session's last approved take).
    RESEND_FINAL = "refinal"


#: Review controls carry the segment id, so a button keeps working after a restart.
#: Short enough for Telegram's 64-byte callback data and Discord's 100-character custom_id.
_CONTROL = re.compile(
    r"^seg:(?P<segment>[0-9]{1,18}):(?P<action>approve|regen|undo|finish|apfin|stop|show|resend|refinal)$"
)


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
    #: Roles (``video``, ``frame``) already posted before a restart: the port sends only the rest.
    already: frozenset[str] = frozenset()
    #: The ◀ ▶ row under the controls, (label, control id) pairs; an empty id is an inert label
    #: ("take 2 of 3"). Empty: one take, no paging.
    pager: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class ReviewPage:
    """What a review message shows after ◀ ▶ (or once a take of it is approved): one take's
    video, hand-off frame and caption, with controls that name that take."""

    #: The take's files, or None to leave the message's media as they are.
    video: Path | None
    last_frame: Path | None
    caption: str
    width: int
    height: int
    seconds: float
    controls: tuple[tuple[str, str], ...]
    pager: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class FinalPost:
    """The joined video, possibly in parts when it could not be made to fit the upload limit."""

    parts: tuple[Path, ...]
    caption: str
    #: Part numbers (1-based) already posted before a restart: the port sends only the rest.
    already: frozenset[int] = frozenset()


#: Called by a port as soon as the platform has accepted one message of a post, with its role
#: (``video``, ``frame``; ``final.1``, ``final.2``… for the parts of a final) and the message
#: id. The service records it at once, so a crash in the middle of a post never makes the
#: restart send that message again.
Sent = Callable[[str, str], Awaitable[None]]


async def _discard(role: str, message_id: str) -> None:
    return None


#: For callers that only want the returned ids.
IGNORE_SENT: Sent = _discard

#: Called by a port right before it asks the platform to create a message carrying ``roles``
#: (one message may carry several: a Discord take's video and frame). The service records that
#: the message may exist from now on, so a crash before ``sent`` leaves the restart knowing it is
#: in doubt, and returns the idempotency key to send it with (a Discord nonce): the same key
#: again when it is sent again after such a crash.
Sending = Callable[[tuple[str, ...]], Awaitable[str]]


async def _fresh_key(roles: tuple[str, ...]) -> str:
    return new_send_key()


def new_send_key() -> str:
    """A key for one message: short enough for a Discord nonce (25 characters)."""
    return secrets.token_hex(8)


#: For callers that record nothing before a send.
NO_INTENT: Sending = _fresh_key


class MaybeSent(Exception):
    """A send failed after its request may have reached the platform (a timeout or a connection
    lost once it was on its way): the message may exist. A port raises it instead of the platform
    library's error so the service never sends the message again blindly; any other error raised
    after ``Sending`` means the platform created no message."""


class ChatPort(Protocol):
    """What the service needs from a chat platform. Every method may raise; the service logs and
    carries on (a failed edit never loses a segment)."""

    platform: str
    #: Seconds within which the platform takes a message sent again with the same idempotency key
    #: (``Sending``) as the one already made, instead of posting it twice; 0: it has no such key.
    resend_window: float

    def upload_limit(self, chat: ChatRef) -> int:
        """Largest file, in bytes, this chat accepts."""
        ...

    async def send_text(self, chat: ChatRef, text: str, controls: tuple[tuple[str, str], ...] = ()) -> str:
        """Send a message, with ``controls`` ((label, control id) pairs: a progress message's ✖ Stop)
        that stay on it through every edit; return its id."""
        ...

    async def edit_text(self, chat: ChatRef, message_id: str, text: str) -> None:
        """Change a message's text (a progress message's caption once it shows a picture)."""
        ...

    async def edit_media(self, chat: ChatRef, message_id: str, path: Path, text: str) -> str:
        """Put the picture ``path`` (a small PNG) with ``text`` as caption into a progress
        message; return the id of the message that shows it now: the same one, or where the
        platform cannot add a picture to a text message, a new one (the old one is deleted)."""
        ...

    async def send_photo(self, chat: ChatRef, path: Path, caption: str) -> str:
        """Send a picture (a JPEG or PNG well under the upload limit) with a caption; return the
        message's id."""
        ...

    async def post_segment(
        self, chat: ChatRef, post: SegmentPost, sent: Sent = IGNORE_SENT, sending: Sending = NO_INTENT
    ) -> dict[str, str]:
        """Post a segment for review, skipping the roles in ``post.already``; call ``sending``
        right before each message is asked for (and send it with the key it returns), ``sent``
        for each message as soon as the platform accepted it, before anything else, and return
        the ids of what was posted (``video``, ``frame``...). Adding reactions or other
        decorations is best effort and never raises once the video is up."""
        ...

    async def settings_changed(self, chat: ChatRef, session_id: str, current: dict[str, str] | None) -> None:
        """The session's settings changed (``current``, as ``Conversation.current_settings`` gives
        them) or it ended (None): refresh or close whatever the platform shows of them."""
        ...

    async def delete_message(self, chat: ChatRef, message_id: str) -> None:
        """Remove a message the bot sent (a progress message once its result is posted)."""
        ...

    async def close_controls(
        self, chat: ChatRef, message_ids: dict[str, str], note: str, keep: tuple[tuple[str, str], ...] = ()
    ) -> None:
        """The review is over (approved/replaced): remove or disable the controls, add ``note``.
        The ``keep`` controls, (label, control id) pairs like those of ``SegmentPost.controls``,
        stay (or come back) on the message that carried the controls: a 🏁 Finish on the take
        just approved. Closing the same message again with the same note changes nothing."""
        ...

    async def post_final(
        self, chat: ChatRef, post: FinalPost, sent: Sent = IGNORE_SENT, sending: Sending = NO_INTENT
    ) -> list[str]:
        """Post every part not in ``post.already``, in order, calling ``sending(("final.N",))``
        right before each is asked for and ``sent("final.N", id)`` as soon as it is accepted;
        return the ids posted."""
        ...

    async def show_review(self, chat: ChatRef, message_ids: dict[str, str], page: ReviewPage) -> None:
        """Turn a posted review (``message_ids`` as ``post_segment`` returned them) into ``page``:
        its video (and the hand-off frame, where it has its own message or attachment) when
        ``page.video`` is set, the caption, and the controls with the pager row."""
        ...


#: Shows a text to the acting user only (a Discord ephemeral message, a Telegram callback toast).
#: Adapters pass one with every action they can answer privately; notes meant for that user alone
#: (a refusal, a stale button, a button's confirmation) go there and never into the chat.
PrivateReply = Callable[[str], Awaitable[object]]


class Conversation(Protocol):
    """What adapters call. ``user_id`` is the platform's user id as a string."""

    async def start(
        self,
        chat: ChatRef,
        user_id: str,
        image: bytes | Accepted | None,
        prompt: str | None,
        *,
        is_admin: bool = False,
        reply: PrivateReply | None = None,
    ) -> None:
        """``/start``, with an image (the file's bytes, or the picture an adapter has checked
        already with ``shared.pictures``, so it is not decoded twice) or without one (the bot
        will ask)."""
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
        message_id: str | None = None,
    ) -> None:
        """A review button or reaction. Ignored silently when not the owner's (or an admin's).
        ``message_id``: the message the button was on (◀ ▶ pages that message)."""
        ...

    async def reaction(
        self,
        chat: ChatRef,
        user_id: str,
        message_id: str,
        action: Action,
        *,
        is_admin: bool = False,
        reply: PrivateReply | None = None,
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
        """finish, undo, cancel, status, help, settings (``argument`` like ``seconds=3``); and the
        admin commands queue, gpu, stop, pause, resume, ban, unban (``bot.core_admin``)."""
        ...

    async def end_frame(
        self,
        chat: ChatRef,
        user_id: str,
        image: bytes | None,
        *,
        clear: bool = False,
        is_admin: bool = False,
        reply: PrivateReply | None = None,
    ) -> None:
        """``/end``: ``image`` (the file's bytes) is the frame the next segment should end on;
        ``clear`` removes it; neither says whether one is set."""
        ...

    async def change_settings(
        self,
        chat: ChatRef,
        user_id: str,
        changes: tuple[tuple[str, str], ...],
        *,
        is_admin: bool = False,
        reply: PrivateReply | None = None,
    ) -> None:
        """Settings changes as (name, value) pairs, e.g. a slash command's options; a value is
        taken as it is (a negative prompt may contain ``=``). Empty: show the settings."""
        ...

    async def banned(self, platform: str, user_id: str) -> bool:
        """Whether an admin banned this user (``/ban``): refused like a stranger, before anything
        of theirs is downloaded. Admins are never banned."""
        ...

    async def ops_snapshot(self) -> OpsSnapshot:
        """Every job and worker now, as ``/queue`` and ``/gpu`` show them: for a front end's
        operator page (the web's /ops). Read only; the caller checks that an admin asks."""
        ...

    async def current_settings(self, chat: ChatRef, user_id: str) -> dict[str, str] | None:
        """The settings of the session a command from ``user_id`` here would act on (``session``,
        ``owner``, ``seconds``, ``steps``, ``seed``: a number or ``random``), or None when no
        session is live here. Read only: a settings keyboard shows them."""
        ...

    async def new_session_refusal(self, platform: str, user_id: str, *, is_admin: bool = False) -> str | None:
        """Why ``user_id`` may not start another session now (a quota: the limit named), or
        None. Read only; ``start`` checks again. For an adapter that has to prepare a place for
        a session first (Discord's thread) and can refuse privately before it does."""
        ...

    async def refusal_due(self, platform: str, user_id: str) -> bool:
        """A user the adapter refused (``bot.access``: not in the allow lists; nothing of theirs
        is passed on): True when they are to be told so now, which is at most once per
        ``limits.refusal_notice_hours``, across restarts."""
        ...
