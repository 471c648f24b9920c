"""Helpers for the Discord adapter tests: small builders for configs, pictures and segment posts,
a running simcord world with the client in it, and the recording ``Conversation`` they share
with the Telegram tests."""

from __future__ import annotations

import contextlib
import dataclasses
import io
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import discord
import simcord
from PIL import Image

from bot.discord_adapter import DiscordFrontEnd, build_discord
from bot.ports import Action, ChatRef, SegmentPost, control_id
from shared.config import Config, DiscordConfig, LimitsConfig
from tests.bot.recording_conversation import Call, RecordingConversation


def make_config(data_dir: Path, *, image_bytes: int = 1024 * 1024, **discord: Any) -> Config:
    # Most tests are about other things: they serve everyone (open = true) unless they say who
    # may use the bot (the access cases are in test_access.py).
    discord.setdefault("open", not any(key.startswith("allowed_") for key in discord))
    return Config(
        data_dir=data_dir,
        discord=DiscordConfig(**discord),
        limits=dataclasses.replace(LimitsConfig(), image_bytes=image_bytes),
    )


def picture(width: int = 80, height: int = 64) -> bytes:
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


@dataclass
class World:
    env: simcord.Env
    front: DiscordFrontEnd
    conversation: RecordingConversation
    data_dir: Path
    guild: simcord.GuildHandle
    channel: simcord.ChannelHandle
    alice: simcord.MemberActor
    bob: simcord.MemberActor

    async def restart(self, **discord_config: Any) -> None:
        """A new process: a new client and conversation on the same data dir (and Discord)."""
        self.conversation = RecordingConversation()
        self.front = build_discord(make_config(self.data_dir, **discord_config), self.conversation)
        await self.env.restart_bot(self.front.client)

    def command_syncs(self) -> list[str]:
        return [e.path for e in self.env.http_requests if e.method == "PUT" and e.path.endswith("/commands")]


@contextlib.asynccontextmanager
async def running(tmp_path: Path, guild_id: int | None = None, **discord_config: Any) -> AsyncIterator[World]:
    conversation = RecordingConversation()
    data_dir = tmp_path / "data"
    front = build_discord(make_config(data_dir, **discord_config), conversation)
    async with simcord.run(front.client) as env:
        guild = env.create_guild("Studio", id=guild_id)
        channel = guild.create_text_channel("animations")
        alice = guild.add_member(env.create_user("alice"))
        bob = guild.add_member(env.create_user("bob"))
        yield World(env, front, conversation, data_dir, guild, channel, alice, bob)


async def open_session(w: World, prompt: str = "a red fox trots") -> tuple[ChatRef, simcord.ChannelHandle]:
    await w.alice.slash(w.channel, "start", image=("fox.png", picture()), prompt=prompt)
    (start,) = w.conversation.of("start")
    (thread,) = [t for t in w.channel.threads if str(t.id) == start.chat.thread_id]
    return start.chat, thread


def buttons(message: discord.Message) -> list[discord.Button]:
    rows = [row for row in message.components if isinstance(row, discord.ActionRow)]
    return [child for row in rows for child in row.children if isinstance(child, discord.Button)]


__all__ = [
    "Call",
    "RecordingConversation",
    "World",
    "buttons",
    "make_config",
    "open_session",
    "picture",
    "running",
    "segment_post",
]
