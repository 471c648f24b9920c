"""The Telegram front end: python-telegram-bot's ``Application``, long polling, update handlers.

Updates become :class:`~bot.ports.Conversation` calls; the conversation answers through
:class:`~bot.telegram_adapter.port.TelegramPort` (``TelegramFrontEnd.port``).

- ``/start`` as the caption of a photo, or of an image sent as a file (full quality), optionally
  followed by the first prompt; or a bare ``/start``, then the picture. A picture's size is
  checked from the update's metadata before anything is downloaded.
- ``/end`` as the caption of a picture, or as a reply to one, sets the frame the next segment
  ends on; ``/end clear`` removes it.
- Any other text is a prompt (groups with privacy mode on deliver only replies to the bot). A
  long paste the client sent in pieces reaches the conversation joined, as one prompt
  (:mod:`bot.telegram_adapter.paste`).
- Review buttons carry ``bot.ports.control_id`` data; 👍/👎/🏆 (or 🏁) reactions on a segment's
  messages approve/regenerate/finish (Telegram delivers them where ``message_reaction`` is an
  allowed update and, in groups, the bot is an admin).
- Every button press is answered once; what the service has to say to the presser alone is the
  answer's toast (:mod:`bot.telegram_adapter.answers`). A reaction cannot be answered
  privately: such notes are only logged, never posted in the chat.
- Who may use the bot at all is :mod:`bot.access` (closed by default), checked for every update
  before anything is downloaded: a refused user's update never reaches the conversation, and the
  user is told privately (their own chat, or the button's toast), at most once in a while. Who may
  act on a session is the service's business; this module tells it whether the user is an admin.
- A user an admin banned (``/ban``; ``Conversation.banned``) is refused the same way, whatever the
  lists say. The admin commands (``bot.core_admin``) are forwarded like the others; they are
  registered with ``setMyCommands`` only in each admin's private chat.
- A chat is a Telegram chat; a forum topic is its thread. Updates of one chat are handled in
  order, different chats concurrently (one user's download never holds up another chat).
- Polling survives network failures (PTB retries ``getUpdates`` forever, with backoff); a
  handler's exception is logged by one error handler, and the user gets an apology with an id.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dtm
import logging
import re
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from dataclasses import dataclass
from typing import Any

from telegram import (
    BotCommand,
    BotCommandScopeChat,
    InlineKeyboardMarkup,
    Message,
    ReactionTypeEmoji,
    ReplyParameters,
    Update,
)
from telegram.error import BadRequest, Forbidden, InvalidToken, TelegramError
from telegram.ext import (
    ApplicationBuilder,
    BaseUpdateProcessor,
    CallbackQueryHandler,
    ContextTypes,
    MessageHandler,
    MessageReactionHandler,
    filters,
)

from bot.access import AccessRule, Actor
from bot.ports import Action, ChatRef, Conversation, parse_control
from bot.telegram_adapter.answers import CallbackAnswer
from bot.telegram_adapter.imports import spare_failed_sniffio_imports
from bot.telegram_adapter.paste import CAPTION_CUTS, PASTE_WAIT, TEXT_CUTS, PasteJoiner, PasteKey
from bot.telegram_adapter.port import (
    NOOP,
    PLATFORM,
    TEXT_LIMIT,
    TelegramPort,
    clip,
    download_limit_bytes,
)
from bot.telegram_adapter.retry import DEFAULT_RETRY, RetryPolicy, with_retries
from bot.telegram_adapter.settings_keyboard import SETTINGS_HINT, SETTINGS_PREFIX, SettingsKeyboards
from shared.config import Config
from shared.pictures import too_large_text

log = logging.getLogger("framechain.telegram")

#: Registered with setMyCommands, in menu order.
COMMANDS: tuple[tuple[str, str], ...] = (
    ("start", "Start a video: send a picture with /start and the first prompt"),
    ("finish", "Join the approved segments into the final video"),
    ("undo", "Remove the newest segment"),
    ("regenerate", "Redo the segment under review (optionally with a new prompt)"),
    ("end", "The picture the next segment ends on (a photo's caption, or a reply); /end clear"),
    ("cancel", "End this session"),
    ("status", "Where this session stands"),
    ("settings", "Segment length, steps and seed"),
    ("help", "How framechain works"),
)
#: The admin commands (``bot.core_admin``), registered only in each admin's private chat.
ADMIN_COMMANDS: tuple[tuple[str, str], ...] = (
    ("queue", "Admin: every job, its owner, place, worker and estimate"),
    ("gpu", "Admin: each worker, its state, running job and memory"),
    ("stop", "Admin: stop anyone's job: /stop <job>"),
    ("pause", "Admin: hold the queue (running jobs finish)"),
    ("resume", "Admin: let the queue run again"),
    ("ban", "Admin: refuse a user everything: /ban <user id>"),
    ("unban", "Admin: lift a ban: /unban <user id>"),
)
#: Commands handed to Conversation.command (start has its own method).
FORWARDED = frozenset(
    {"finish", "undo", "cancel", "status", "settings", "help", "regenerate", "approve"} | {n for n, _ in ADMIN_COMMANDS}
)
#: Commands with methods of their own.
OWN_METHODS = frozenset({"start", "end"})
ALLOWED_UPDATES = ("message", "callback_query", "message_reaction")
#: Review reactions. Telegram's fixed set offers 👍, 👎 and 🏆 (finish); 🏁 is the finish of
#: the other platforms, for clients that can send it. Anything else is not a review.
REACTIONS = {"👍": Action.APPROVE, "👎": Action.REGENERATE, "🏆": Action.FINISH, "🏁": Action.FINISH}
#: Concurrent updates in all; one chat's are still handled one at a time.
MAX_CONCURRENT_UPDATES = 64

NOT_A_PICTURE = "That file isn't a picture. Send a photo, or an image file (JPEG, PNG or WebP)."
#: In a group, to a refused user the bot cannot write to privately (they never opened a chat
#: with it): no user id in the group, just where to get it.
NOT_ALLOWED_HERE = (
    "Sorry, this bot only works for the people its owner has allowed. "
    "Message me privately to get your user id for the owner."
)

_COMMAND = re.compile(r"^/(?P<name>[A-Za-z0-9_]{1,32})(?:@(?P<bot>[A-Za-z0-9_]+))?(?:\s+(?P<arg>.*))?$", re.S)


@dataclass(frozen=True)
class Command:
    name: str
    argument: str


def parse_command(text: str, bot_username: str) -> Command | None:
    """``/name[@bot] [argument]`` addressed to this bot, or None (not a command, or another bot's)."""
    match = _COMMAND.match(text.strip())
    if match is None:
        return None
    addressed = match["bot"]
    if addressed and addressed.lower() != bot_username.lower():
        return None
    return Command(match["name"].lower(), (match["arg"] or "").strip())


def chat_of(message: Message) -> ChatRef:
    """Only forum topics are threads: in other supergroups message_thread_id names a reply chain."""
    thread = str(message.message_thread_id) if message.is_topic_message and message.message_thread_id else ""
    return ChatRef(PLATFORM, str(message.chat.id), thread)


def _unshown(chat: ChatRef, user_id: str) -> Callable[[str], Awaitable[None]]:
    async def reply(text: str) -> None:
        log.info("telegram: note for %s in %s not shown (a reaction has no private answer): %s", user_id, chat, text)

    return reply


def _is_image_type(mime_type: str | None, file_name: str | None) -> bool:
    if mime_type:
        return mime_type.startswith("image/") and "svg" not in mime_type
    return (file_name or "").lower().rsplit(".", 1)[-1] in {"jpg", "jpeg", "png", "webp", "bmp", "tif", "tiff"}


class _PerChatOrder(BaseUpdateProcessor):
    """Handles updates of different chats concurrently and those of one chat in arrival order."""

    def __init__(self, max_concurrent_updates: int) -> None:
        super().__init__(max_concurrent_updates)
        self._locks: dict[int, asyncio.Lock] = {}
        self._users: dict[int, int] = {}

    async def do_process_update(self, update: object, coroutine: Awaitable[Any]) -> None:
        chat = update.effective_chat if isinstance(update, Update) else None
        if chat is None:
            await coroutine
            return
        async with self.in_order(chat.id):
            await coroutine

    @contextlib.asynccontextmanager
    async def in_order(self, chat_id: int | str) -> AsyncIterator[None]:
        """Runs the block in turn with the chat's updates (a paste delivered after its wait)."""
        key = int(chat_id)
        lock = self._locks.setdefault(key, asyncio.Lock())
        self._users[key] = self._users.get(key, 0) + 1
        try:
            async with lock:
                yield
        finally:
            self._users[key] -= 1
            if not self._users[key]:
                del self._users[key], self._locks[key]

    async def initialize(self) -> None:
        pass

    async def shutdown(self) -> None:
        pass


class TelegramFrontEnd:
    """The running Telegram bot. Build it with :func:`build_telegram`; ``start``/``stop`` it from
    the process's event loop (it shares the loop with the other front ends)."""

    def __init__(
        self,
        config: Config,
        conversation: Conversation,
        *,
        retry: RetryPolicy = DEFAULT_RETRY,
        poll_timeout: float = 30.0,
        paste_wait: float = PASTE_WAIT,
    ) -> None:
        telegram = config.telegram
        if not telegram.token:
            raise ValueError("telegram.token is not set (nor FRAMECHAIN_TELEGRAM_TOKEN)")
        self.config = config
        self.conversation = conversation
        self.retry = retry
        self.poll_timeout = poll_timeout
        spare_failed_sniffio_imports()
        order = _PerChatOrder(MAX_CONCURRENT_UPDATES)
        #: The pieces of long pastes, joined before they reach the conversation.
        self.pastes = PasteJoiner(order.in_order, wait=paste_wait)
        self.application = (
            ApplicationBuilder()
            .token(telegram.token.get())
            .base_url(telegram.api_base_url)
            .base_file_url(telegram.api_file_url)
            .concurrent_updates(order)
            .connect_timeout(10.0)
            .read_timeout(30.0)
            .write_timeout(30.0)
            .media_write_timeout(600.0)
            .build()
        )
        self.port = TelegramPort(self.application.bot, telegram, retry)
        self.settings = SettingsKeyboards(self.application.bot, conversation, config.limits, retry)
        self.port.settings_listener = self.settings.refresh
        download_limit = download_limit_bytes(telegram)
        self.image_limit = min(config.limits.image_bytes, download_limit or config.limits.image_bytes)
        self.access = AccessRule.for_telegram(telegram)
        app = self.application
        app.add_handler(MessageHandler(filters.UpdateType.MESSAGE, self._on_message))
        app.add_handler(CallbackQueryHandler(self._on_callback))
        app.add_handler(MessageReactionHandler(self._on_reaction))
        app.add_error_handler(self._on_error)

    # --- lifecycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        """Connect (getMe, retried through network trouble), register the commands, poll.
        Raises (``InvalidToken``, a network error that outlasted the retries) with nothing left
        running."""
        try:
            await self._start()
        except BaseException:
            await self.stop()
            raise

    async def _start(self) -> None:
        app = self.application
        await with_retries("getMe", app.initialize, self.retry)
        log.info("telegram: logged in as @%s", app.bot.username)
        try:
            await with_retries(
                "setMyCommands",
                lambda: app.bot.set_my_commands([BotCommand(name, text) for name, text in COMMANDS]),
                self.retry,
            )
        except TelegramError:
            log.warning("telegram: could not register the commands", exc_info=True)
        await self._register_admin_commands()
        assert app.updater is not None
        await app.updater.start_polling(
            timeout=dtm.timedelta(seconds=self.poll_timeout),
            allowed_updates=list(ALLOWED_UPDATES),
            bootstrap_retries=self.retry.attempts,
            error_callback=self._on_poll_error,
        )
        await app.start()

    async def stop(self) -> None:
        app = self.application
        await self.port.close()
        if app.updater is not None and app.updater.running:
            await app.updater.stop()
        if app.running:
            await app.stop()
        await app.shutdown()

    async def _register_admin_commands(self) -> None:
        """Each admin's private chat with the bot also lists the admin commands (others never see
        them; typed anyway, they are refused)."""
        commands = [BotCommand(name, text) for name, text in (*COMMANDS, *ADMIN_COMMANDS)]
        for admin in sorted(self.access.admins):

            def register(admin: int = admin) -> Awaitable[bool]:
                return self.application.bot.set_my_commands(commands, scope=BotCommandScopeChat(admin))

            try:
                await with_retries("setMyCommands", register, self.retry)
            except TelegramError as exc:  # e.g. an admin who never opened a chat with the bot
                log.info("telegram: could not list the admin commands for %s: %s", admin, exc)

    def _on_poll_error(self, exc: TelegramError) -> None:
        # PTB keeps polling with backoff; a traceback per failed poll would flood the log.
        log.warning("telegram: polling failed (%s); retrying", exc)

    # --- updates -----------------------------------------------------------------------------

    def _is_admin(self, user_id: int) -> bool:
        return self.access.is_admin(user_id)

    def _allowed(self, user_id: int, chat_id: int) -> bool:
        return self.access.allows(Actor(user_id, chat_id=chat_id))

    async def _banned(self, user_id: int) -> bool:
        """Banned by an admin (``/ban``): refused like a stranger. Admins never are."""
        return not self._is_admin(user_id) and await self.conversation.banned(PLATFORM, str(user_id))

    def _refusal(self, user_id: int, *, banned: bool) -> str:
        return self.access.banned_refusal(user_id) if banned else self.access.refusal(user_id)

    async def _refuse(self, user_id: int, message: Message | None = None, *, banned: bool = False) -> None:
        """Tell a refused user, privately and at most once in a while, with their user id. In
        their own chat with the bot that is a reply; from a group, a message to them (which
        Telegram allows once they have opened a chat with the bot), else a short reply without
        the id in the group, where they addressed the bot."""
        if not await self.conversation.refusal_due(PLATFORM, str(user_id)):
            return
        where = f" in chat {message.chat.id}" if message is not None else ""
        log.info("telegram: refused user %s%s (%s)", user_id, where, "banned" if banned else "not in the allow lists")
        text = self._refusal(user_id, banned=banned)
        if message is not None and message.chat.id == user_id:
            await self._reply(message, text)
            return
        try:
            await with_retries("sendMessage", lambda: self.application.bot.send_message(user_id, text), self.retry)
        except (Forbidden, BadRequest) as exc:
            log.info("telegram: could not tell refused user %s privately (%s)", user_id, exc)
            if message is not None:
                await self._reply(message, NOT_ALLOWED_HERE)

    async def _on_message(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        message = update.message
        if message is None or message.from_user is None or message.from_user.is_bot:
            return
        user = message.from_user
        chat = chat_of(message)
        user_id, admin = str(user.id), self._is_admin(user.id)
        text = message.text or message.caption or ""
        command = parse_command(text, self.application.bot.username)
        has_file = bool(message.photo or message.document)
        banned = await self._banned(user.id)
        if banned or not self._allowed(user.id, message.chat.id):
            # Nothing of theirs is downloaded or passed on. In a group only what is addressed to
            # the bot (its commands, replies to it) is answered; other chatter is none of ours.
            ours = command is not None and (command.name in OWN_METHODS or command.name in FORWARDED)
            if message.chat.type == "private" or ours or self._replies_to_bot(message):
                await self._refuse(user.id, message, banned=banned)
            return
        key: PasteKey = (chat.chat_id, chat.thread_id, user_id)

        def paste(text: str, deliver: Callable[[str], Awaitable[None]], *, whole: str | None = None) -> Awaitable[None]:
            """``text`` on to ``deliver``, joined first with the rest of a paste it begins."""
            cuts = CAPTION_CUTS if message.caption is not None else TEXT_CUTS
            return self.pastes.text(key, text, deliver, cuts=cuts, whole=whole, spawn=spawn)

        def spawn(coroutine: Coroutine[Any, Any, None]) -> None:
            # A paste delivered after its wait fails like a handler would: logged, apologised for.
            self.application.create_task(coroutine, update=update)

        ours = command is not None and (command.name in OWN_METHODS or command.name in FORWARDED)
        if self.pastes.pending(key) and message.text and not has_file and not ours:
            await paste(message.text, self._prompt(chat, user_id))  # the next piece of a paste
            return
        await self.pastes.flush(key)  # what was pasted before this comes first
        if command is None and text.startswith("/"):
            return  # another bot's command, or not a command at all ("/ something")
        if command is not None and command.name == "start":
            image = await self._image_of(message, answer=True) if has_file else None
            if has_file and image is None:
                return

            async def start(prompt: str | None) -> None:
                await self.conversation.start(chat, user_id, image, prompt or None, is_admin=admin)

            if command.argument:
                await paste(command.argument, start, whole=text)
            else:
                await start(None)
        elif command is not None and command.name == "end":
            await self._end_frame(message, chat, user_id, command.argument, admin=admin)
        elif command is not None and command.name == "regenerate" and command.argument:

            async def regenerate(prompt: str) -> None:
                await self.conversation.command(chat, user_id, "regenerate", prompt, is_admin=admin)

            await paste(command.argument, regenerate, whole=text)
        elif command is not None and command.name in FORWARDED:
            await self.conversation.command(chat, user_id, command.name, command.argument, is_admin=admin)
            if command.name == "settings" and not command.argument:
                current = await self.settings.current(chat, user_id)
                if current is not None:  # without a session the service said so
                    sent = await self._reply(message, SETTINGS_HINT, self.settings.keyboard(current))
                    self.settings.shown(sent, current)
        elif command is not None:
            if message.chat.type == "private":
                await self._reply(message, f"I don't know /{command.name}. Send /help for the commands.")
        elif has_file:
            replying_to_bot = self._replies_to_bot(message)
            image = await self._image_of(message, answer=message.chat.type == "private" or replying_to_bot)
            if image is None:
                return
            await self.conversation.image(chat, user_id, image)
            if message.caption:
                await paste(message.caption, self._prompt(chat, user_id))
        elif message.text:
            await paste(message.text, self._prompt(chat, user_id))

    async def _end_frame(self, message: Message, chat: ChatRef, user_id: str, argument: str, *, admin: bool) -> None:
        """``/end``: the picture is this message's (a photo captioned /end) or the one it replies
        to (any picture in the chat, the bot's hand-off frames included); ``/end clear`` removes it."""
        if argument.lower() == "clear":
            await self.conversation.end_frame(chat, user_id, None, clear=True, is_admin=admin)
            return
        source = message
        if not (message.photo or message.document) and message.reply_to_message is not None:
            source = message.reply_to_message
        image = None
        if source.photo or source.document:
            image = await self._image_of(source, answer=True)
            if image is None:
                return
        await self.conversation.end_frame(chat, user_id, image, is_admin=admin)

    def _replies_to_bot(self, message: Message) -> bool:
        return bool(
            message.reply_to_message
            and message.reply_to_message.from_user
            and message.reply_to_message.from_user.id == self.application.bot.id
        )

    def _prompt(self, chat: ChatRef, user_id: str) -> Callable[[str], Awaitable[None]]:
        async def deliver(text: str) -> None:
            await self.conversation.text(chat, user_id, text)

        return deliver

    async def _image_of(self, message: Message, *, answer: bool) -> bytes | None:
        """The picture's bytes, or None after telling the user (when ``answer``) what is wrong."""
        media: Any
        if message.photo:
            media = max(message.photo, key=lambda size: size.width * size.height)
        elif message.document and _is_image_type(message.document.mime_type, message.document.file_name):
            media = message.document
        else:
            if answer:
                await self._reply(message, NOT_A_PICTURE)
            return None
        limit = self.image_limit
        if media.file_size is not None and media.file_size > limit:
            await self._reply(message, too_large_text(media.file_size, limit))
            return None
        try:
            tg_file = await with_retries("getFile", media.get_file, self.retry)
        except BadRequest as exc:
            if "too big" not in str(exc).lower():
                raise
            await self._reply(message, too_large_text(0, limit))
            return None
        if tg_file.file_size is not None and tg_file.file_size > limit:
            await self._reply(message, too_large_text(tg_file.file_size, limit))
            return None
        data = await with_retries("file download", tg_file.download_as_bytearray, self.retry)
        if len(data) > limit:
            await self._reply(message, too_large_text(len(data), limit))
            return None
        return bytes(data)

    async def _on_callback(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        query = update.callback_query
        if query is None:
            return
        # Every press is answered once: with the service's note for the presser (a refusal, a
        # stale button) as the toast, never in the chat; or empty when it has none.
        answer = CallbackAnswer(self.application.bot, query.id, self.retry)
        try:
            message = query.message
            if message is None:
                return
            banned = await self._banned(query.from_user.id)
            if banned or not self._allowed(query.from_user.id, message.chat.id):
                # The press has to be answered anyway, and a toast is seen by the presser alone.
                await answer.say(self._refusal(query.from_user.id, banned=banned))
                return
            chat = chat_of(message) if isinstance(message, Message) else ChatRef(PLATFORM, str(message.chat.id))
            user_id, admin = str(query.from_user.id), self._is_admin(query.from_user.id)
            await self.pastes.flush((chat.chat_id, chat.thread_id, user_id))
            data = query.data or ""
            control = parse_control(data)
            if control is not None:
                segment_id, action = control
                pressed_on = str(message.message_id)
                await self.conversation.control(
                    chat, user_id, segment_id, action, is_admin=admin, reply=answer.say, message_id=pressed_on
                )
            elif data.startswith(SETTINGS_PREFIX) and isinstance(message, Message):
                await self.settings.press(message, chat, user_id, data, answer.say, is_admin=admin)
            elif data != NOOP:
                log.info("telegram: unknown callback data %r", data)
        finally:
            await answer.close()

    async def _on_reaction(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        reaction = update.message_reaction
        if reaction is None or reaction.user is None:
            return  # anonymous reactions have no user to act for
        old = {r.emoji for r in reaction.old_reaction if isinstance(r, ReactionTypeEmoji)}
        new = [r.emoji for r in reaction.new_reaction if isinstance(r, ReactionTypeEmoji) and r.emoji not in old]
        actions = [REACTIONS[emoji] for emoji in new if emoji in REACTIONS]
        if not actions:
            return
        banned = await self._banned(reaction.user.id)
        if banned or not self._allowed(reaction.user.id, reaction.chat.id):
            await self._refuse(reaction.user.id, banned=banned)
            return
        chat, user_id = ChatRef(PLATFORM, str(reaction.chat.id)), str(reaction.user.id)
        await self.pastes.flush((chat.chat_id, "", user_id))
        # A reaction update names no topic; the service finds the segment by chat and message.
        # Telegram has no way to answer a reaction privately, and notes for the reacting user
        # alone (a stale or a stranger's reaction) never go into the chat: they are only logged.
        await self.conversation.reaction(
            chat,
            user_id,
            str(reaction.message_id),
            actions[0],
            is_admin=self._is_admin(reaction.user.id),
            reply=_unshown(chat, user_id),
        )

    async def _reply(self, message: Message, text: str, markup: InlineKeyboardMarkup | None = None) -> Message:
        thread = chat_of(message).thread_id
        return await with_retries(
            "sendMessage",
            lambda: self.application.bot.send_message(
                message.chat.id,
                clip(text, TEXT_LIMIT),
                reply_parameters=ReplyParameters(message.message_id, allow_sending_without_reply=True),
                reply_markup=markup,
                message_thread_id=int(thread) if thread else None,
            ),
            self.retry,
        )

    async def _on_error(self, update: object, context: ContextTypes.DEFAULT_TYPE) -> None:
        """The one error handler: log with an id, apologise in the chat, never raise."""
        error_id = uuid.uuid4().hex[:8]
        log.error("telegram: handling an update failed (error %s)", error_id, exc_info=context.error)
        if isinstance(context.error, InvalidToken):
            return
        chat = update.effective_chat if isinstance(update, Update) else None
        if chat is None:
            return
        message = update.effective_message if isinstance(update, Update) else None
        thread = chat_of(message).thread_id if isinstance(message, Message) else ""
        try:
            await self.application.bot.send_message(
                chat.id,
                f"Sorry, something went wrong on my side (error {error_id}).",
                message_thread_id=int(thread) if thread else None,
            )
        except TelegramError as exc:
            log.warning("telegram: could not apologise in chat %s: %s", chat.id, exc)


def build_telegram(
    config: Config,
    conversation: Conversation,
    *,
    retry: RetryPolicy = DEFAULT_RETRY,
    poll_timeout: float = 30.0,
    paste_wait: float = PASTE_WAIT,
) -> TelegramFrontEnd:
    """The Telegram front end for ``config.telegram``; add ``.port`` to the conversation service,
    then ``await start()``."""
    return TelegramFrontEnd(config, conversation, retry=retry, poll_timeout=poll_timeout, paste_wait=paste_wait)
