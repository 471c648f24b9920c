"""``ChatPort`` for Discord: everything the service says becomes an ordinary channel message.

Messages go through ``get_partial_messageable`` (a channel id is enough, nothing needs to be in
the cache), so they work for threads the client has not seen since a restart. The interaction
token is never used here: it expires after 15 minutes, and a segment can take longer.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable
from pathlib import Path

import aiohttp
import discord

from bot.discord_adapter.review import review_view
from bot.ports import IGNORE_SENT, NO_INTENT, ChatRef, FinalPost, MaybeSent, ReviewPage, SegmentPost, Sending, Sent

log = logging.getLogger("framechain.discord")

#: Discord's limit for servers without boosts and for DMs.
DEFAULT_UPLOAD_LIMIT = 10 * 1024 * 1024
MESSAGE_CHARS = 2000
APPROVE_EMOJI = "✅"
REGENERATE_EMOJI = "🔁"
FINISH_EMOJI = "🏁"
#: The reactions the bot puts on a take, as shortcuts for its buttons.
REVIEW_EMOJIS = (APPROVE_EMOJI, REGENERATE_EMOJI, FINISH_EMOJI)
#: No post of the bot pings anyone, whatever a prompt (repeated in captions) contains. Set as the
#: client's default and passed on every call, so no path can forget it.
NO_MENTIONS = discord.AllowedMentions.none()
#: A message created with the nonce of one made shortly before (discord.py sends ``enforce_nonce``
#: with every nonce) is that message, not a second one. Discord keeps nonces "for a few minutes";
#: a restart later than this asks the user instead of sending again (``bot.conversation.notices``).
NONCE_WINDOW = 60.0


def clip(text: str, limit: int = MESSAGE_CHARS) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


class DiscordPort:
    platform = "discord"
    resend_window = NONCE_WINDOW

    def __init__(self, client: discord.Client, *, cap: int = 0) -> None:
        self._client = client
        #: An operator's own ceiling on uploads, in bytes (0 = none).
        self._cap = cap

    def _channel(self, chat: ChatRef) -> discord.PartialMessageable:
        return self._client.get_partial_messageable(int(chat.thread_id or chat.chat_id))

    def upload_limit(self, chat: ChatRef) -> int:
        limit = DEFAULT_UPLOAD_LIMIT
        for channel_id in (chat.thread_id, chat.chat_id):
            channel = self._client.get_channel(int(channel_id)) if channel_id else None
            guild = getattr(channel, "guild", None)
            if isinstance(guild, discord.Guild):
                limit = guild.filesize_limit
                break
        return min(limit, self._cap) if self._cap else limit

    async def send_private(self, user_id: str, text: str) -> None:
        """A DM to a user (alerts for the bot's admins)."""
        user = self._client.get_user(int(user_id)) or await self._client.fetch_user(int(user_id))
        await user.send(clip(text), allowed_mentions=NO_MENTIONS)

    async def send_text(self, chat: ChatRef, text: str, controls: tuple[tuple[str, str], ...] = ()) -> str:
        channel = self._channel(chat)
        if controls:  # edits of the content or attachments keep the buttons
            message = await channel.send(clip(text), view=review_view(controls), allowed_mentions=NO_MENTIONS)
        else:
            message = await channel.send(clip(text), allowed_mentions=NO_MENTIONS)
        return str(message.id)

    async def send_photo(self, chat: ChatRef, path: Path, caption: str) -> str:
        message = await self._channel(chat).send(
            clip(caption), file=discord.File(path, filename=path.name), allowed_mentions=NO_MENTIONS
        )
        return str(message.id)

    async def edit_text(self, chat: ChatRef, message_id: str, text: str) -> None:
        await (
            self._channel(chat)
            .get_partial_message(int(message_id))
            .edit(content=clip(text), allowed_mentions=NO_MENTIONS)
        )

    async def edit_media(self, chat: ChatRef, message_id: str, path: Path, text: str) -> str:
        """The message's attachments become the picture (a text message can take one)."""
        picture = discord.File(path, filename=path.name)
        message = self._channel(chat).get_partial_message(int(message_id))
        await message.edit(content=clip(text), attachments=[picture], allowed_mentions=NO_MENTIONS)
        return message_id

    async def post_segment(
        self, chat: ChatRef, post: SegmentPost, sent: Sent = IGNORE_SENT, sending: Sending = NO_INTENT
    ) -> dict[str, str]:
        """One message: the video, the hand-off frame, the caption and the buttons; where both
        files together would exceed the upload limit the frame follows in a second message. Each
        message is sent with the nonce ``sending`` gives and handed to ``sent`` as soon as it
        exists; only then does the bot add the ✅ 🔁 🏁 reactions, best effort."""
        channel = self._channel(chat)
        stem = f"segment{post.index:02d}_take{post.attempt}"

        def frame() -> discord.File:  # opened only when sent
            return discord.File(post.last_frame, filename=stem + "_last_frame" + post.last_frame.suffix)

        ids: dict[str, str] = {}
        if "video" not in post.already:
            together = "frame" not in post.already and (
                _size(post.video) + _size(post.last_frame) <= self.upload_limit(chat)
            )
            files = [discord.File(post.video, filename=stem + post.video.suffix)]
            nonce = await sending(("video", "frame") if together else ("video",))
            message = await _create(
                channel.send(
                    clip(post.caption),
                    files=[*files, frame()] if together else files,
                    view=review_view(post.controls, post.pager),
                    allowed_mentions=NO_MENTIONS,
                    nonce=nonce,
                )
            )
            ids["video"] = str(message.id)
            await sent("video", ids["video"])
            if together:
                ids["frame"] = ids["video"]
                await sent("frame", ids["frame"])
            await self._add_reactions(message, post.segment_id)
        if "frame" not in post.already and "frame" not in ids:
            nonce = await sending(("frame",))
            message = await _create(channel.send(file=frame(), allowed_mentions=NO_MENTIONS, nonce=nonce))
            ids["frame"] = str(message.id)
            await sent("frame", ids["frame"])
        return ids

    async def _add_reactions(self, message: discord.Message, segment_id: int) -> None:
        for emoji in REVIEW_EMOJIS:
            try:
                await message.add_reaction(emoji)
            except Exception as exc:
                # The take is posted and recorded, its buttons work: a missing reaction only
                # costs a shortcut, and must never make the post look failed (and be sent again).
                log.warning("segment %d: could not add %s: %s", segment_id, emoji, exc)

    async def close_controls(
        self, chat: ChatRef, message_ids: dict[str, str], note: str, keep: tuple[tuple[str, str], ...] = ()
    ) -> None:
        """Remove the buttons (but the ``keep`` ones, on the video's message) and the bot's own
        reactions; append ``note`` to the caption once."""
        channel = self._channel(chat)
        me = self._client.user
        for message_id in dict.fromkeys(message_ids.values()):
            message = await channel.fetch_message(int(message_id))
            content = message.content
            if note and not content.endswith(note):
                content = clip(f"{content}\n{note}".strip())
            kept = keep if message_id == message_ids.get("video") else ()
            if message.components or content != message.content or kept:
                await message.edit(
                    content=content, view=review_view(kept) if kept else None, allowed_mentions=NO_MENTIONS
                )
            if me is None:
                continue
            for reaction in message.reactions:
                if reaction.me and str(reaction.emoji) in REVIEW_EMOJIS:
                    await message.remove_reaction(reaction.emoji, me)

    async def post_final(
        self, chat: ChatRef, post: FinalPost, sent: Sent = IGNORE_SENT, sending: Sending = NO_INTENT
    ) -> list[str]:
        channel = self._channel(chat)
        ids: list[str] = []
        count = len(post.parts)
        for number, part in enumerate(post.parts, start=1):
            if number in post.already:
                continue
            text = post.caption if number == 1 else ""
            if count > 1:
                text = f"{text}\nPart {number} of {count}".strip()
            name = f"framechain{part.suffix}" if count == 1 else f"framechain_part{number}{part.suffix}"
            nonce = await sending((f"final.{number}",))
            message = await _create(
                channel.send(
                    clip(text) or None,
                    file=discord.File(part, filename=name),
                    allowed_mentions=NO_MENTIONS,
                    nonce=nonce,
                )
            )
            ids.append(str(message.id))
            await sent(f"final.{number}", ids[-1])
        return ids

    async def show_review(self, chat: ChatRef, message_ids: dict[str, str], page: ReviewPage) -> None:
        """◀ ▶: the review message's attachments become the other take's video (and its hand-off
        frame, in the same message or in the frame's own), with its caption and buttons."""
        channel = self._channel(chat)
        target = message_ids.get("video")
        if not target:
            return
        message = channel.get_partial_message(int(target))
        view = review_view(page.controls, page.pager) if page.controls or page.pager else None
        if page.video is None or page.last_frame is None:
            await message.edit(content=clip(page.caption), view=view, allowed_mentions=NO_MENTIONS)
            return
        frame = page.last_frame
        files = [discord.File(page.video, filename=page.video.name)]
        together = message_ids.get("frame") == target
        if together:
            files.append(discord.File(frame, filename=frame.name))
        await message.edit(content=clip(page.caption), attachments=files, view=view, allowed_mentions=NO_MENTIONS)
        other = message_ids.get("frame")
        if other and not together:
            await channel.get_partial_message(int(other)).edit(attachments=[discord.File(frame, filename=frame.name)])

    async def settings_changed(self, chat: ChatRef, session_id: str, current: dict[str, str] | None) -> None:
        """Nothing to refresh: Discord's /settings answers are ephemeral and show no live controls."""

    async def delete_message(self, chat: ChatRef, message_id: str) -> None:
        await self._channel(chat).get_partial_message(int(message_id)).delete()


async def _create(send: Awaitable[discord.Message]) -> discord.Message:
    """A message create: an answer from Discord (``HTTPException``) means nothing was made; a
    connection that broke or timed out on the way may have made it (``MaybeSent``: sent again
    only with its nonce, or offered to the user)."""
    try:
        return await send
    except (discord.HTTPException, aiohttp.ClientConnectorError):
        raise  # an answer, or no connection made: nothing was created
    except (aiohttp.ClientError, TimeoutError, OSError) as exc:
        raise MaybeSent(f"discord: creating a message failed on the way: {exc!r}") from exc


def _size(path: Path) -> int:
    return path.stat().st_size
