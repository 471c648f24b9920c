"""The Discord client: turns slash commands, thread messages, reactions and button clicks into
``Conversation`` calls.

A session lives in a thread the bot opens on ``/start`` (private where the server allows it and
the configuration asks for it, else public, on a short starter message). After the first
answer to ``/start`` everything happens through ordinary thread messages (see ``port.py``).

Who may use the bot at all is :mod:`bot.access` (closed by default), checked here for every
command, button, reaction and thread message before anything is downloaded: a refused user is
told privately (the command's or button's ephemeral answer, else a DM at most once in a while)
and nothing of theirs reaches the conversation; a user an admin banned (``/ban``) is refused
the same way. What is let in is forwarded with ``is_admin`` and
the service decides whose session it is (it ignores non-owners' clicks and reactions). The bot's
own reactions and other bots are never forwarded.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Awaitable, Callable
from typing import Any, Final, Literal

import discord
from discord import app_commands

from bot.access import AccessRule, Actor
from bot.core import clean_prompt
from bot.discord_adapter.answers import ANSWER_WITHIN, answer_press, dm_reply, tell
from bot.discord_adapter.commands import build_commands
from bot.discord_adapter.port import APPROVE_EMOJI, FINISH_EMOJI, NO_MENTIONS, REGENERATE_EMOJI, clip
from bot.discord_adapter.review import ReviewButton
from bot.discord_adapter.sync import sync_commands
from bot.ports import Action, ChatRef, Conversation, PrivateReply
from shared.config import Config
from shared.pictures import Refused, check_picture_off_loop, too_large_text

log = logging.getLogger("framechain.discord")

PLATFORM = "discord"
#: 🏁 on a take finishes; the core decides what a stale one does.
REACTIONS = {APPROVE_EMOJI: Action.APPROVE, REGENERATE_EMOJI: Action.REGENERATE, FINISH_EMOJI: Action.FINISH}
#: A week, the longest Discord offers: a session may sit idle between segments.
THREAD_ARCHIVE_MINUTES: Final[Literal[10080]] = 10080
THREAD_NAME_CHARS = 100
HASH_FILE = "discord_commands.hash"


class Refusal(Exception):
    """Something the acting user is told, in these words, instead of it being done."""


def image_problem(attachment: discord.Attachment, limit: int) -> str | None:
    """Why this attachment can't be a start picture, from what Discord says about it (nothing is
    downloaded), or None. ``shared.pictures.check_picture`` then checks the bytes themselves."""
    kind = (attachment.content_type or "").split(";")[0].strip().lower()
    if not kind.startswith("image/"):
        return f"{attachment.filename} is not a picture; attach a PNG, JPEG or WebP image."
    if kind == "image/svg+xml":
        return f"{attachment.filename} is a drawing (SVG), not a picture; attach a PNG, JPEG or WebP image."
    if attachment.size == 0:
        return f"{attachment.filename} is empty; attach a PNG, JPEG or WebP image."
    if attachment.size > limit:
        return too_large_text(attachment.size, limit)
    return None


def thread_name(prompt: str | None, user: discord.abc.User) -> str:
    name = " ".join(clean_prompt(prompt or "").split()) or f"{user.display_name}'s animation"
    return clip(name, THREAD_NAME_CHARS)


class FramechainClient(discord.Client):
    def __init__(self, config: Config, conversation: Conversation) -> None:
        intents = discord.Intents.default()
        intents.message_content = True  # prompts are plain messages in the thread
        super().__init__(intents=intents, allowed_mentions=NO_MENTIONS)
        self.config = config
        self.conversation = conversation
        self.access = AccessRule.for_discord(config.discord)
        #: How long a button press waits for the service's note before it is acknowledged.
        self.answer_within = ANSWER_WITHIN
        self.tree: app_commands.CommandTree[FramechainClient] = app_commands.CommandTree(self)
        self.tree.error(self._on_tree_error)
        guilds = [discord.Object(guild_id) for guild_id in config.discord.guild_ids]
        for command in build_commands(self, config):
            if guilds:
                self.tree.add_command(command, guilds=guilds)
            else:
                self.tree.add_command(command)

    async def setup_hook(self) -> None:
        self.add_dynamic_items(ReviewButton)
        if self.application_id is None:  # set by login(), which calls this hook
            raise RuntimeError("no application id after login")
        await sync_commands(
            self.tree,
            application_id=self.application_id,
            guild_ids=self.config.discord.guild_ids,
            hash_file=self.config.data_dir / HASH_FILE,
        )

    async def on_ready(self) -> None:
        log.info("discord: logged in as %s (%s guilds)", self.user, len(self.guilds))

    # -- who -------------------------------------------------------------------------------------

    def is_admin(self, user_id: int) -> bool:
        return self.access.is_admin(user_id)

    def allows(self, user: discord.abc.User | None, user_id: int, guild_id: int | None) -> bool:
        """May this user use the bot here? Roles count only as the member of ``guild_id``."""
        roles = frozenset(role.id for role in user.roles) if isinstance(user, discord.Member) else frozenset()
        return self.access.allows(Actor(user_id, role_ids=roles, guild_id=guild_id))

    async def banned(self, user_id: int) -> bool:
        """Banned by an admin (``/ban``): refused like a stranger. Admins never are."""
        return not self.is_admin(user_id) and await self.conversation.banned(PLATFORM, str(user_id))

    async def _check(self, interaction: discord.Interaction[Any]) -> None:
        """Refuse (privately, as the interaction's answer) a user the bot does not serve."""
        user = interaction.user
        if await self.banned(user.id):
            log.info("discord: refused user %s (banned)", user.id)
            raise Refusal(self.access.banned_refusal(user.id))
        if not self.allows(user, user.id, interaction.guild_id):
            log.info("discord: refused user %s (not in the allow lists)", user.id)
            raise Refusal(self.access.refusal(user.id))

    async def _refuse_by_dm(self, user_id: int, where: str, *, banned: bool = False) -> None:
        """A refused user's message or reaction has no private answer: a DM, once in a while."""
        if await self.conversation.refusal_due(PLATFORM, str(user_id)):
            log.info("discord: refused user %s (%s)", user_id, "banned" if banned else "not in the allow lists")
            text = self.access.banned_refusal(user_id) if banned else self.access.refusal(user_id)
            await dm_reply(self, user_id, where)(text)

    # -- where -----------------------------------------------------------------------------------

    async def _channel(self, channel_id: int) -> Any:
        return self.get_channel(channel_id) or await self.fetch_channel(channel_id)

    async def chat_for(self, channel_id: int) -> ChatRef:
        """The session address of a channel: a thread is (parent, thread), anything else (id, "")."""
        channel = await self._channel(channel_id)
        if isinstance(channel, discord.Thread):
            return ChatRef(PLATFORM, str(channel.parent_id), str(channel.id))
        return ChatRef(PLATFORM, str(channel_id))

    def _is_session_thread(self, channel: object) -> bool:
        """Sessions live only in threads this bot opened; messages elsewhere are not for us."""
        return isinstance(channel, discord.Thread) and self.user is not None and channel.owner_id == self.user.id

    # -- /start ----------------------------------------------------------------------------------

    async def start_command(
        self, interaction: discord.Interaction[Any], image: discord.Attachment, prompt: str | None
    ) -> None:
        try:
            await self._start(interaction, image, prompt)
        except Exception as exc:
            await self.report(exc, interaction=interaction)

    async def _start(
        self, interaction: discord.Interaction[Any], image: discord.Attachment, prompt: str | None
    ) -> None:
        user = interaction.user
        await self._check(interaction)
        problem = image_problem(image, self.config.limits.image_bytes)
        if problem is not None:
            raise Refusal(problem)
        parent = self._thread_parent(interaction.channel)
        # Everything after this may take longer than the 3 s Discord allows for an answer.
        await interaction.response.defer(ephemeral=True, thinking=True)
        # Over a quota (active sessions): a private answer, not a thread that can only say so.
        quota = await self.conversation.new_session_refusal(PLATFORM, str(user.id), is_admin=self.is_admin(user.id))
        if quota is not None:
            raise Refusal(quota)
        data = await image.read()
        # The file itself is checked before a thread is opened: a bad one gets a private answer
        # with the reason, not a thread that can only say it could not read the picture. The
        # checked picture goes on to the service, which does not decode it again.
        picture = await check_picture_off_loop(data, self.config.limits)
        if isinstance(picture, Refused):
            raise Refusal(picture.reason)
        thread = await self._open_thread(interaction, parent, prompt)
        await interaction.edit_original_response(
            content=f"Your session is in {thread.mention}.", allowed_mentions=NO_MENTIONS
        )
        chat = ChatRef(PLATFORM, str(parent.id), str(thread.id))
        await self.conversation.start(chat, str(user.id), picture, prompt, is_admin=self.is_admin(user.id))

    def _thread_parent(self, channel: object) -> discord.TextChannel:
        if isinstance(channel, discord.Thread):
            channel = channel.parent
        if not isinstance(channel, discord.TextChannel):
            raise Refusal("Use /start in a text channel: each session gets its own thread there.")
        return channel

    async def _open_thread(
        self, interaction: discord.Interaction[Any], channel: discord.TextChannel, prompt: str | None
    ) -> discord.Thread:
        user = interaction.user
        name = thread_name(prompt, user)
        private = (
            self.config.discord.private_threads
            and not channel.is_news()
            and channel.permissions_for(channel.guild.me).create_private_threads
        )
        try:
            if private:
                thread = await channel.create_thread(
                    name=name,
                    type=discord.ChannelType.private_thread,
                    invitable=False,
                    auto_archive_duration=THREAD_ARCHIVE_MINUTES,
                )
                await thread.add_user(user)
                return thread
            about = f": {clip(' '.join(prompt.split()), 200)}" if prompt else ""
            starter = await channel.send(f"{user.mention} started an animation{about}", allowed_mentions=NO_MENTIONS)
            return await starter.create_thread(name=name, auto_archive_duration=THREAD_ARCHIVE_MINUTES)
        except discord.Forbidden as exc:
            raise Refusal(
                "I can't open a thread here. I need Send Messages, Create Public Threads (or Create "
                "Private Threads) and Send Messages in Threads in this channel."
            ) from exc

    # -- the other commands ----------------------------------------------------------------------

    async def session_command(self, interaction: discord.Interaction[Any], name: str, argument: str = "") -> None:
        async def forward(chat: ChatRef, user_id: int, reply: PrivateReply) -> None:
            await self.conversation.command(
                chat, str(user_id), name, argument, is_admin=self.is_admin(user_id), reply=reply
            )

        await self._command(interaction, forward)

    async def end_command(
        self, interaction: discord.Interaction[Any], image: discord.Attachment | None, clear: bool
    ) -> None:
        """``/end image:`` sets the frame the next segment ends on, ``/end clear:True`` removes it.
        The attachment is checked like a start picture (by Discord's metadata here, by its bytes
        in the service)."""

        async def forward(chat: ChatRef, user_id: int, reply: PrivateReply) -> None:
            data = None
            if image is not None and not clear:
                problem = image_problem(image, self.config.limits.image_bytes)
                if problem is not None:
                    raise Refusal(problem)
                data = await image.read()
            await self.conversation.end_frame(
                chat, str(user_id), data, clear=clear, is_admin=self.is_admin(user_id), reply=reply
            )

        await self._command(interaction, forward)

    async def settings_command(
        self, interaction: discord.Interaction[Any], changes: tuple[tuple[str, str], ...]
    ) -> None:
        """``/settings``: its options reach the service as (name, value) pairs, never as text to
        be split again (a negative prompt may contain ``=``)."""

        async def forward(chat: ChatRef, user_id: int, reply: PrivateReply) -> None:
            await self.conversation.change_settings(
                chat, str(user_id), changes, is_admin=self.is_admin(user_id), reply=reply
            )

        await self._command(interaction, forward)

    async def _command(
        self,
        interaction: discord.Interaction[Any],
        forward: Callable[[ChatRef, int, PrivateReply], Awaitable[None]],
    ) -> None:
        """Forward a command. What is meant for the caller alone (a refusal, /help) replaces the
        deferred "thinking" placeholder; otherwise the service answers in the channel and the
        placeholder is removed."""
        try:
            await self._check(interaction)
            await interaction.response.defer(ephemeral=True, thinking=True)
            if interaction.channel_id is None:
                raise Refusal("Use this in a session thread.")
            chat = await self.chat_for(interaction.channel_id)
            private: list[str] = []

            async def reply(text: str) -> None:
                private.append(text)

            await forward(chat, interaction.user.id, reply)
            if private:
                await interaction.edit_original_response(content=clip("\n".join(private)), allowed_mentions=NO_MENTIONS)
            else:
                await interaction.delete_original_response()
        except Exception as exc:
            await self.report(exc, interaction=interaction)

    # -- review ----------------------------------------------------------------------------------

    async def review_pressed(self, interaction: discord.Interaction[Any], segment_id: int, action: Action) -> None:
        """Every press is answered privately within Discord's 3 s: with the service's note for the
        presser (a refusal, a stale take) or, when it says nothing, a silent deferred update."""
        try:
            if interaction.user.bot or interaction.channel_id is None:
                await interaction.response.defer()
                return
            await self._check(interaction)
            chat = await self.chat_for(interaction.channel_id)
            user_id = interaction.user.id

            async def handle(reply: PrivateReply) -> None:
                pressed_on = str(interaction.message.id) if interaction.message is not None else None
                await self.conversation.control(
                    chat,
                    str(user_id),
                    segment_id,
                    action,
                    is_admin=self.is_admin(user_id),
                    reply=reply,
                    message_id=pressed_on,
                )

            await answer_press(interaction, handle, within=self.answer_within)
        except Exception as exc:
            await self.report(exc, interaction=interaction)

    async def on_raw_reaction_add(self, payload: discord.RawReactionActionEvent) -> None:
        action = REACTIONS.get(str(payload.emoji))
        if action is None or self.user is None or payload.user_id == self.user.id:
            return
        if payload.member is not None and payload.member.bot:
            return
        try:
            channel = await self._channel(payload.channel_id)
            if not self._is_session_thread(channel):
                return
            banned = await self.banned(payload.user_id)
            if banned or not self.allows(payload.member, payload.user_id, payload.guild_id):
                await self._refuse_by_dm(payload.user_id, channel.mention, banned=banned)
                return
            chat = ChatRef(PLATFORM, str(channel.parent_id), str(channel.id))
            # No interaction to answer: a note for the reacting user alone goes to their DMs.
            reply = dm_reply(self, payload.user_id, channel.mention)
            await self.conversation.reaction(
                chat,
                str(payload.user_id),
                str(payload.message_id),
                action,
                is_admin=self.is_admin(payload.user_id),
                reply=reply,
            )
        except Exception as exc:
            await self.report(exc)

    # -- prompts ---------------------------------------------------------------------------------

    async def on_message(self, message: discord.Message) -> None:
        if message.author.bot or not self._is_session_thread(message.channel):
            return
        if message.type not in (discord.MessageType.default, discord.MessageType.reply):
            return
        thread = message.channel
        assert isinstance(thread, discord.Thread)
        chat = ChatRef(PLATFORM, str(thread.parent_id), str(thread.id))
        user_id = str(message.author.id)
        try:
            banned = await self.banned(message.author.id)
            if banned or not self.allows(message.author, message.author.id, thread.guild.id):
                await self._refuse_by_dm(message.author.id, thread.mention, banned=banned)  # nothing is read
                return
            pictures = [a for a in message.attachments if (a.content_type or "").startswith("image/")]
            if pictures:
                problem = image_problem(pictures[0], self.config.limits.image_bytes)
                if problem is not None:
                    raise Refusal(problem)
                await self.conversation.image(chat, user_id, await pictures[0].read())
            text = message.content.strip()
            if text:
                await self.conversation.text(chat, user_id, text)
        except Exception as exc:
            await self.report(exc, reply_to=message)

    # -- the one error handler -------------------------------------------------------------------

    async def _on_tree_error(self, interaction: discord.Interaction[Any], error: app_commands.AppCommandError) -> None:
        original = error.original if isinstance(error, app_commands.CommandInvokeError) else error
        await self.report(original, interaction=interaction)

    async def report(
        self,
        error: BaseException,
        *,
        interaction: discord.Interaction[Any] | None = None,
        reply_to: discord.Message | None = None,
    ) -> None:
        """Tell the user what went wrong: a :class:`Refusal` in its own words, anything else as a
        short apology with an id that is also in the log, beside the traceback."""
        if isinstance(error, Refusal):
            text = str(error)
        else:
            error_id = uuid.uuid4().hex[:8]
            log.error("discord: error %s", error_id, exc_info=error)
            text = f"Sorry, something went wrong (error id {error_id})."
        try:
            if interaction is not None:
                await tell(interaction, text)
            elif reply_to is not None:
                await reply_to.reply(text, mention_author=False, allowed_mentions=NO_MENTIONS)
        except discord.HTTPException:
            log.warning("discord: could not tell the user: %s", text, exc_info=True)
