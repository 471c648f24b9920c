"""The slash commands. Each one only translates its options and hands over to the client.

No ``from __future__ import annotations`` here: discord.py reads the parameter annotations at
decoration time, and some of them (``Range`` bounds) come from the configuration in the closure.
"""

from typing import Any, Protocol

import discord
from discord import app_commands

from bot.core_model import MAX_TAKES
from shared.config import Config
from shared.params import SECONDS_TO_FRAMES

#: Discord's cap on a string option.
OPTION_CHARS = 6000


class CommandHandler(Protocol):
    async def start_command(
        self, interaction: discord.Interaction[Any], image: discord.Attachment, prompt: str | None
    ) -> None: ...

    async def session_command(self, interaction: discord.Interaction[Any], name: str, argument: str = "") -> None: ...

    async def end_command(
        self, interaction: discord.Interaction[Any], image: discord.Attachment | None, clear: bool
    ) -> None: ...

    async def settings_command(
        self, interaction: discord.Interaction[Any], changes: tuple[tuple[str, str], ...]
    ) -> None: ...


def build_commands(handler: CommandHandler, config: Config) -> list[app_commands.Command[Any, Any, None]]:
    prompt_chars = max(1, min(config.limits.prompt_chars, OPTION_CHARS))
    max_steps = config.limits.max_steps

    @app_commands.command(name="start", description="Start animating a picture, in a new thread")
    @app_commands.describe(
        image="The start picture (PNG, JPEG or WebP)",
        prompt="What happens in the first segment; you can also send it in the thread",
    )
    async def start(
        interaction: discord.Interaction[Any],
        image: discord.Attachment,
        prompt: app_commands.Range[str, 1, prompt_chars] | None = None,
    ) -> None:
        await handler.start_command(interaction, image, prompt)

    @app_commands.command(name="finish", description="Join the approved segments into the final video")
    async def finish(interaction: discord.Interaction[Any]) -> None:
        await handler.session_command(interaction, "finish")

    @app_commands.command(name="regenerate", description="Make the segment under review again")
    @app_commands.describe(prompt="A new prompt for it; empty keeps the old one")
    async def regenerate(
        interaction: discord.Interaction[Any], prompt: app_commands.Range[str, 1, prompt_chars] | None = None
    ) -> None:
        await handler.session_command(interaction, "regenerate", (prompt or "").strip())

    @app_commands.command(name="end", description="Set the picture the next segment should end on")
    @app_commands.describe(
        image="The end keyframe (PNG, JPEG or WebP); leave it out to see whether one is set",
        clear="Remove the end keyframe",
    )
    async def end(
        interaction: discord.Interaction[Any], image: discord.Attachment | None = None, clear: bool = False
    ) -> None:
        await handler.end_command(interaction, image, clear)

    @app_commands.command(name="undo", description="Drop the newest segment (or stop the one being made)")
    async def undo(interaction: discord.Interaction[Any]) -> None:
        await handler.session_command(interaction, "undo")

    @app_commands.command(name="cancel", description="End this session without a final video")
    async def cancel(interaction: discord.Interaction[Any]) -> None:
        await handler.session_command(interaction, "cancel")

    @app_commands.command(name="status", description="Where this session and its queue stand")
    async def status(interaction: discord.Interaction[Any]) -> None:
        await handler.session_command(interaction, "status")

    @app_commands.command(name="help", description="How framechain works")
    async def help_(interaction: discord.Interaction[Any]) -> None:
        await handler.session_command(interaction, "help")

    @app_commands.command(name="settings", description="Show or change this session's settings")
    @app_commands.describe(
        seconds="Length of each new segment",
        steps=f"Denoising steps (1-{max_steps}); fewer is faster",
        seed="A whole number for reproducible takes, or 'random'",
        size="WIDTHxHEIGHT, e.g. 832x480 (only before the first segment is approved)",
        negative="Negative prompt; 'default' or 'none'",
        continuity="Continue each segment from the last frame, or from the last latents (SVI, where configured)",
        takes="Takes each prompt renders, with different seeds, to choose from",
    )
    @app_commands.choices(
        seconds=[app_commands.Choice(name=f"{s} seconds", value=s) for s in sorted(SECONDS_TO_FRAMES)]
    )
    @app_commands.choices(
        continuity=[
            app_commands.Choice(name="from the last frame", value="frame"),
            app_commands.Choice(name="from the last latents (SVI)", value="svi"),
        ]
    )
    async def settings(
        interaction: discord.Interaction[Any],
        seconds: app_commands.Choice[int] | None = None,
        steps: app_commands.Range[int, 1, max_steps] | None = None,
        seed: app_commands.Range[str, 1, 20] | None = None,
        size: app_commands.Range[str, 3, 20] | None = None,
        negative: app_commands.Range[str, 1, OPTION_CHARS] | None = None,
        continuity: app_commands.Choice[str] | None = None,
        takes: app_commands.Range[int, 1, MAX_TAKES] | None = None,
    ) -> None:
        # Values go over as they are: never joined into "name=value" text to be split again.
        pairs = [
            ("seconds", None if seconds is None else str(seconds.value)),
            ("steps", None if steps is None else str(steps)),
            ("seed", seed),
            ("size", size),
            ("negative", negative),
            ("continuity", None if continuity is None else continuity.value),
            ("takes", None if takes is None else str(takes)),
        ]
        await handler.settings_command(interaction, tuple((name, value) for name, value in pairs if value is not None))

    # Sessions live in server threads, so none of this is offered in DMs.
    commands: list[app_commands.Command[Any, Any, None]] = [
        start,
        finish,
        regenerate,
        end,
        undo,
        cancel,
        status,
        help_,
        settings,
        *build_admin_commands(handler),
    ]
    return [app_commands.guild_only()(command) for command in commands]


def build_admin_commands(handler: CommandHandler) -> list[app_commands.Command[Any, Any, None]]:
    """The admins' commands (``bot.core_admin``); anyone else who uses one is refused privately."""

    @app_commands.command(name="queue", description="Admin: every job, its owner, place, worker and estimate")
    async def queue(interaction: discord.Interaction[Any]) -> None:
        await handler.session_command(interaction, "queue")

    @app_commands.command(name="gpu", description="Admin: each worker, its state, running job and memory")
    async def gpu(interaction: discord.Interaction[Any]) -> None:
        await handler.session_command(interaction, "gpu")

    @app_commands.command(name="stop", description="Admin: stop anyone's job")
    @app_commands.describe(job="The job number /queue shows")
    async def stop(interaction: discord.Interaction[Any], job: app_commands.Range[str, 1, 24]) -> None:
        await handler.session_command(interaction, "stop", job.strip())

    @app_commands.command(name="pause", description="Admin: hold the queue (running jobs finish)")
    async def pause(interaction: discord.Interaction[Any]) -> None:
        await handler.session_command(interaction, "pause")

    @app_commands.command(name="resume", description="Admin: let the queue run again")
    async def resume(interaction: discord.Interaction[Any]) -> None:
        await handler.session_command(interaction, "resume")

    @app_commands.command(name="ban", description="Admin: refuse a user everything")
    @app_commands.describe(user="A user id (or telegram:ID for a Telegram user)")
    async def ban(interaction: discord.Interaction[Any], user: app_commands.Range[str, 1, 40]) -> None:
        await handler.session_command(interaction, "ban", user.strip())

    @app_commands.command(name="unban", description="Admin: lift a ban")
    @app_commands.describe(user="A user id (or telegram:ID for a Telegram user)")
    async def unban(interaction: discord.Interaction[Any], user: app_commands.Range[str, 1, 40]) -> None:
        await handler.session_command(interaction, "unban", user.strip())

    return [queue, gpu, stop, pause, resume, ban, unban]
