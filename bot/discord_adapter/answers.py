"""Answers meant for one user alone: ephemeral interaction responses, and a DM for reactions.

Discord wants every interaction answered within 3 seconds, else the user sees "This interaction
failed". A button press is answered with the service's private note itself when it comes in
time, else with a silent deferred update (the note, if any, follows as an ephemeral follow-up).
A reaction has no interaction, so its note goes to the user's DMs; never into the thread.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import discord

from bot.discord_adapter.port import NO_MENTIONS, clip
from bot.ports import PrivateReply

log = logging.getLogger("framechain.discord")

#: How long a press waits for the service's answer before acknowledging it silently; well inside
#: Discord's 3 s, leaving room for the round trip.
ANSWER_WITHIN = 2.0


async def tell(interaction: discord.Interaction[Any], text: str) -> None:
    """Answer privately: the first response, the deferred placeholder, or a follow-up."""
    text = clip(text)
    if not interaction.response.is_done():
        await interaction.response.send_message(text, ephemeral=True, allowed_mentions=NO_MENTIONS)
    elif interaction.response.type is discord.InteractionResponseType.deferred_channel_message:
        await interaction.edit_original_response(content=text, allowed_mentions=NO_MENTIONS)
    else:
        await interaction.followup.send(text, ephemeral=True, allowed_mentions=NO_MENTIONS)


class PressAnswer:
    """The one answer a component interaction gets, from whichever side comes first: the
    service's note (``reply``) or the acknowledgement (``acknowledge``)."""

    def __init__(self, interaction: discord.Interaction[Any]) -> None:
        self._interaction = interaction
        self._lock = asyncio.Lock()

    async def reply(self, text: str) -> None:
        async with self._lock:
            await tell(self._interaction, text)

    async def acknowledge(self) -> None:
        """A deferred update: the press is answered, the message stays as it is."""
        async with self._lock:
            if not self._interaction.response.is_done():
                await self._interaction.response.defer()


async def answer_press(
    interaction: discord.Interaction[Any],
    handle: Callable[[PrivateReply], Awaitable[None]],
    *,
    within: float = ANSWER_WITHIN,
) -> None:
    """Run ``handle(reply)`` for a press and make sure the press is answered within ``within``
    seconds, with the note itself where it comes in time."""
    answer = PressAnswer(interaction)
    work = asyncio.ensure_future(handle(answer.reply))
    try:
        await asyncio.wait_for(asyncio.shield(work), within)
    except TimeoutError:
        # The session is busy (e.g. posting a video): answer now, the note follows if any.
        await answer.acknowledge()
        await work
    await answer.acknowledge()


def dm_reply(client: discord.Client, user_id: int, where: str) -> PrivateReply:
    """A private channel for a reaction's note: a DM naming the session (``where``, a channel
    mention). Best effort: a user who does not accept DMs simply gets no note."""

    async def reply(text: str) -> None:
        try:
            user = client.get_user(user_id) or await client.fetch_user(user_id)
            await user.send(clip(f"{where}: {text}"), allowed_mentions=NO_MENTIONS)
        except discord.HTTPException as exc:
            log.info("discord: could not DM %s a note (%s): %s", user_id, exc, text)

    return reply
