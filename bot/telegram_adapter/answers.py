"""Answering a button press: every callback query is answered exactly once.

Telegram shows a spinner on the pressed button until the query is answered, and an answer's text
as a toast (or, with ``show_alert``, a dialog) to the presser alone. The first note the service
has for the presser answers at once; a press the service says nothing about is answered empty
when its handling ends, so no spinner is left turning and no empty toast precedes a note.
"""

from __future__ import annotations

import logging

from telegram import Bot
from telegram.error import BadRequest

from bot.telegram_adapter.port import clip
from bot.telegram_adapter.retry import RetryPolicy, with_retries

log = logging.getLogger("framechain.telegram")

#: answerCallbackQuery shows at most 200 characters.
CALLBACK_TEXT_LIMIT = 200
#: A note longer than this is shown as an alert (a toast of two lines is cut off on phones).
ALERT_FROM = 80


class CallbackAnswer:
    """The one answer to one callback query. ``say`` is a :data:`~bot.ports.PrivateReply`."""

    def __init__(self, bot: Bot, query_id: str, retry: RetryPolicy) -> None:
        self._bot = bot
        self._query_id = query_id
        self._retry = retry
        self.answered = False
        #: Notes that came after the answer was given (a query has one answer).
        self.unsaid: list[str] = []

    async def say(self, text: str) -> None:
        text = text.strip()
        if self.answered:
            if text:
                self.unsaid.append(text)
                log.info("telegram: a second note for one press not shown: %r", text)
            return
        await self._send(text or None)

    async def close(self) -> None:
        """Answer empty if nothing was said."""
        if not self.answered:
            await self._send(None)

    async def _send(self, text: str | None) -> None:
        self.answered = True  # before the call: a note arriving meanwhile must not answer again
        shown = None if text is None else clip(text, CALLBACK_TEXT_LIMIT)
        alert = shown is not None and len(shown) > ALERT_FROM
        try:
            await with_retries(
                "answerCallbackQuery",
                lambda: self._bot.answer_callback_query(self._query_id, text=shown, show_alert=alert),
                self._retry,
            )
        except BadRequest as exc:  # too old: the press still counts
            log.info("telegram: callback query not answered: %s", exc)
