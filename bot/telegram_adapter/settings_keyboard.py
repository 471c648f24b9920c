"""The ``/settings`` keyboard: segment length, steps, seed and takes per prompt, with the current
values marked.

Each button names the session it was shown for (a prefix of its id) and that session's owner,
so a press after the session ended closes the keyboard instead of changing the next session,
and a press on someone else's keyboard changes nothing of the presser's own session.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass

from telegram import Bot, InlineKeyboardButton, InlineKeyboardMarkup, Message
from telegram.error import BadRequest, TelegramError

from bot.ports import ChatRef, Conversation, PrivateReply
from bot.telegram_adapter.retry import RetryPolicy, with_retries
from shared.config import LimitsConfig
from shared.params import SECONDS_TO_FRAMES

log = logging.getLogger("framechain.telegram")

SETTINGS_PREFIX = "set:"
#: Steps offered on the keyboard (those within limits.max_steps).
STEP_CHOICES = (4, 8, 12, 20, 30)
#: Enough of a session id to tell the sessions of one chat apart; keeps callback data short.
SESSION_PREFIX = 12
MARK = "• "

SETTINGS_HINT = "Tap to change the settings for the next take, or type them, e.g. /settings seconds=3 steps=8 seed=42"
#: What a keyboard becomes when its session ends.
SETTINGS_ENDED = "This session has ended, so its settings are closed."
SETTINGS_CLOSED = "This session has ended, so its settings are closed. Send /start with a picture to begin a new one."
OTHER_SESSION = "These settings belong to another session. Send /settings for yours."

_PRESS = re.compile(r"^set:(?P<session>[0-9A-Za-z-]{1,32}):(?P<owner>[0-9A-Za-z_-]{1,24}):(?P<argument>\S+)$")


@dataclass(frozen=True)
class SettingsPress:
    argument: str  # like ``seconds=3``
    #: The session and owner the keyboard was shown for; None on keyboards from before they were named.
    session: str | None = None
    owner: str | None = None

    def for_session(self, settings: Mapping[str, str]) -> bool:
        return self.session is None or settings.get("session", "").startswith(self.session)


def parse_settings_press(data: str) -> SettingsPress | None:
    if not data.startswith(SETTINGS_PREFIX):
        return None
    match = _PRESS.match(data)
    if match is None:
        return SettingsPress(data[len(SETTINGS_PREFIX) :])
    return SettingsPress(match["argument"], match["session"], match["owner"])


def settings_keyboard(limits: LimitsConfig, current: Mapping[str, str]) -> InlineKeyboardMarkup:
    """Buttons for the settings a tap can change, the values ``current`` has marked with •."""
    tag = f"{SETTINGS_PREFIX}{current['session'][:SESSION_PREFIX]}:{current['owner']}:"

    def button(label: str, argument: str) -> InlineKeyboardButton:
        marked = current.get(argument.split("=", 1)[0]) == argument.split("=", 1)[1]
        return InlineKeyboardButton(MARK + label if marked else label, callback_data=tag + argument)

    lengths = [button(f"{s} s", f"seconds={s}") for s in sorted(SECONDS_TO_FRAMES)]
    offered = {n for n in STEP_CHOICES if n <= limits.max_steps}
    if current.get("steps", "").isdigit():
        offered.add(int(current["steps"]))  # a typed value shows too
    steps = [button(f"{n} steps", f"steps={n}") for n in sorted(offered)]
    seed = [button("🎲 Random seed", "seed=random")]
    if current.get("seed", "random") != "random":
        seed.append(button(f"Seed {current['seed']}", f"seed={current['seed']}"))
    # Takes per prompt (shown once a session tells how many it makes: keyboards from before did not).
    takes = (
        [button("1 take" if n == 1 else f"{n} takes", f"takes={n}") for n in range(1, 5)] if "takes" in current else []
    )
    rows = [lengths, *(steps[i : i + 3] for i in range(0, len(steps), 3)), seed, takes]
    return InlineKeyboardMarkup([row for row in rows if row])


class SettingsKeyboards:
    """Shows the keyboard for ``/settings`` and handles its presses."""

    def __init__(self, bot: Bot, conversation: Conversation, limits: LimitsConfig, retry: RetryPolicy) -> None:
        self._bot = bot
        self._conversation = conversation
        self._limits = limits
        self._retry = retry
        #: The keyboards shown since start, per session id: (chat id, message id). Kept in memory
        #: only: after a restart an old keyboard still closes itself when pressed.
        self._shown: dict[str, set[tuple[int, int]]] = {}

    def shown(self, message: Message, current: Mapping[str, str]) -> None:
        """Remember a keyboard just sent, so it follows its session's changes."""
        self._shown.setdefault(current["session"], set()).add((message.chat.id, message.message_id))

    async def refresh(self, session_id: str, current: dict[str, str] | None) -> None:
        """The session's settings changed (mark the new values) or it ended (close its keyboards)."""
        shown = self._shown.get(session_id, set()) if current is not None else self._shown.pop(session_id, set())
        for chat_id, message_id in sorted(shown):
            try:
                if current is None:
                    await self._close_message(chat_id, message_id, SETTINGS_ENDED)
                else:
                    await self._edit_message(chat_id, message_id, settings_keyboard(self._limits, current))
            except TelegramError as exc:  # deleted by the user, too old to edit: nothing to show
                log.info("settings keyboard %s/%s not refreshed: %s", chat_id, message_id, exc)

    async def current(self, chat: ChatRef, user_id: str) -> dict[str, str] | None:
        return await self._conversation.current_settings(chat, user_id)

    def keyboard(self, current: Mapping[str, str]) -> InlineKeyboardMarkup:
        """The keyboard for a session's settings (``Conversation.current_settings``)."""
        return settings_keyboard(self._limits, current)

    async def press(
        self, message: Message, chat: ChatRef, user_id: str, data: str, reply: PrivateReply, *, is_admin: bool
    ) -> None:
        """Change the setting, then mark the new values on the keyboard; close a keyboard whose
        session is over. What the presser is told goes to ``reply``."""
        press = parse_settings_press(data)
        if press is None:
            return
        before = await self._conversation.current_settings(chat, user_id)
        if before is None or not press.for_session(before):
            # Nothing live here, or the presser's own session is a newer one: the keyboard's is over.
            if before is None or press.owner == user_id:
                await self._close(message, SETTINGS_CLOSED)
                await reply(SETTINGS_CLOSED)
            else:
                await reply(OTHER_SESSION)
            return
        await self._conversation.command(chat, user_id, "settings", press.argument, is_admin=is_admin, reply=reply)
        after = await self._conversation.current_settings(chat, user_id)
        if after is not None and after != before and press.for_session(after):
            await self._edit(message, settings_keyboard(self._limits, after))

    async def _edit(self, message: Message, markup: InlineKeyboardMarkup) -> None:
        await self._edit_message(message.chat.id, message.message_id, markup)

    async def _edit_message(self, chat_id: int, message_id: int, markup: InlineKeyboardMarkup) -> None:
        try:
            await with_retries(
                "editMessageReplyMarkup",
                lambda: self._bot.edit_message_reply_markup(
                    chat_id=chat_id, message_id=message_id, reply_markup=markup
                ),
                self._retry,
            )
        except BadRequest as exc:
            if "not modified" not in str(exc).lower():
                raise

    async def _close(self, message: Message, note: str) -> None:
        await self._close_message(message.chat.id, message.message_id, note)

    async def _close_message(self, chat_id: int, message_id: int, note: str) -> None:
        """The message keeps only ``note``; without its keyboard it can be pressed no more."""
        try:
            await with_retries(
                "editMessageText",
                lambda: self._bot.edit_message_text(note, chat_id=chat_id, message_id=message_id),
                self._retry,
            )
        except BadRequest as exc:
            if "not modified" not in str(exc).lower():
                raise
