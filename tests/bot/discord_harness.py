"""Helpers for the Discord adapter tests: a recording ``Conversation`` (the outside of the
adapter, so a fake) and small builders for configs, pictures and segment posts."""

from __future__ import annotations

import dataclasses
import io
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PIL import Image

from bot.ports import Action, ChatRef, PrivateReply, SegmentPost, control_id
from shared.config import Config, DiscordConfig, LimitsConfig


@dataclass(frozen=True)
class Call:
    method: str
    chat: ChatRef
    user_id: str
    args: dict[str, Any] = field(default_factory=dict)


class RecordingConversation:
    """Implements ``bot.ports.Conversation`` by writing down every call."""

    def __init__(self, fail: bool = False, private_answer: str = "") -> None:
        self.calls: list[Call] = []
        self.fail = fail
        #: Given to the adapter's private reply, as the service does for a refusal or a stale press.
        self.private_answer = private_answer

    def _record(self, method: str, chat: ChatRef, user_id: str, **args: Any) -> None:
        self.calls.append(Call(method, chat, user_id, args))
        if self.fail:
            raise RuntimeError("the service broke")

    def of(self, method: str) -> list[Call]:
        return [call for call in self.calls if call.method == method]

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
        self._record("start", chat, user_id, image=image, prompt=prompt, is_admin=is_admin)

    async def image(self, chat: ChatRef, user_id: str, image: bytes) -> None:
        self._record("image", chat, user_id, image=image)

    async def text(self, chat: ChatRef, user_id: str, text: str) -> None:
        self._record("text", chat, user_id, text=text)

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
        self._record("control", chat, user_id, segment_id=segment_id, action=action, is_admin=is_admin)
        if reply is not None and self.private_answer:
            await reply(self.private_answer)

    async def reaction(
        self, chat: ChatRef, user_id: str, message_id: str, action: Action, *, is_admin: bool = False
    ) -> None:
        self._record("reaction", chat, user_id, message_id=message_id, action=action, is_admin=is_admin)

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
        self._record("command", chat, user_id, name=name, argument=argument, is_admin=is_admin)
        if reply is not None and self.private_answer:
            await reply(self.private_answer)


def make_config(data_dir: Path, *, image_bytes: int = 1024 * 1024, **discord: Any) -> Config:
    return Config(
        data_dir=data_dir,
        discord=DiscordConfig(**discord),
        limits=dataclasses.replace(LimitsConfig(), image_bytes=image_bytes),
    )


def picture(width: int = 64, height: int = 48) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), (200, 40, 40)).save(buffer, "PNG")
    return buffer.getvalue()


def segment_post(
    folder: Path, segment_id: int, *, index: int = 1, attempt: int = 1, video_bytes: int = 4096
) -> SegmentPost:
    """A post whose files are stand-ins: the adapter only uploads them."""
    folder.mkdir(parents=True, exist_ok=True)
    video = folder / f"seg{segment_id}.mp4"
    video.write_bytes(b"\x00" * video_bytes)
    frame = folder / f"seg{segment_id}.png"
    frame.write_bytes(picture())
    controls = tuple(
        (label, control_id(segment_id, action))
        for label, action in (
            ("Approve", Action.APPROVE),
            ("Regenerate", Action.REGENERATE),
            ("Undo", Action.UNDO),
            ("Finish", Action.FINISH),
        )
    )
    return SegmentPost(
        segment_id=segment_id,
        index=index,
        attempt=attempt,
        video=video,
        last_frame=frame,
        caption=f"Segment {index}, take {attempt}: 81 frames, 5.0 s",
        width=640,
        height=640,
        frames=81,
        seconds=5.0,
        preview=True,
        controls=controls,
    )
