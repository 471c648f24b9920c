"""Helpers for the Discord adapter tests: small builders for configs, pictures and segment posts,
and the recording ``Conversation`` they share with the Telegram tests."""

from __future__ import annotations

import dataclasses
import io
from pathlib import Path
from typing import Any

from PIL import Image

from bot.ports import Action, SegmentPost, control_id
from shared.config import Config, DiscordConfig, LimitsConfig
from tests.bot.recording_conversation import Call, RecordingConversation


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


__all__ = ["Call", "RecordingConversation", "make_config", "picture", "segment_post"]
