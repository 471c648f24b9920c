"""Long pastes: Telegram clients send a text over the message limit as several messages.

A message long enough to be one piece of a split paste is held for a moment (``wait``); the
following texts of the same user in the same chat and topic are joined to it, in message order,
and the whole paste is handed on as one text. So the prompt length limit is applied once, to the
length the user typed, and a paste never turns into several prompts.

How clients cut: Telegram for Android cuts at exactly 4096 UTF-16 code units; Telegram Desktop
cuts at the best break (paragraph, sentence, word) in the second half of the limit. The server
trims the whitespace a cut leaves at either end. So any text from half the limit up is a
possible piece; shorter texts (every ordinary prompt) are handed on at once, never delayed. A
piece shorter than the limit ends where whitespace was trimmed away: one space joins it to the
next. A caption that fills its own limit (1024, 2048 for Premium users, within a few characters
of trimmed whitespace) is the first piece of a paste that goes on in text messages.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger("framechain.telegram")

#: Where a client may cut, as (shortest piece, limit) in UTF-16 code units: a message's text,
#: and a media caption (hard cuts only: those limits are far below an ordinary long prompt's).
Cut = tuple[int, int]
TEXT_CUTS: tuple[Cut, ...] = ((2048, 4096),)
CAPTION_CUTS: tuple[Cut, ...] = ((1024 - 8, 1024), (2048 - 8, 2048), (4096 - 8, 4096))
#: How long to wait for the next piece of a paste; clients send the pieces within a second.
PASTE_WAIT = 1.5

#: (chat id, topic id, user id): whose paste a piece belongs to.
PasteKey = tuple[str, str, str]
Deliver = Callable[[str], Awaitable[None]]
#: Runs a coroutine in the order of the chat's updates (under the chat's update lock).
InOrder = Callable[[str], contextlib.AbstractAsyncContextManager[None]]
#: Starts a background task whose failure is reported like a handler's.
Spawn = Callable[[Coroutine[Any, Any, None]], object]


def utf16_length(text: str) -> int:
    """Telegram counts text in UTF-16 code units (an emoji outside the BMP is two)."""
    return len(text.encode("utf-16-le")) // 2


def piece_of_paste(text: str, cuts: tuple[Cut, ...]) -> bool:
    """Long enough to be a piece of a paste the client cut at one of ``cuts``."""
    length = utf16_length(text)
    return any(shortest <= length <= limit for shortest, limit in cuts)


@dataclass
class _Paste:
    deliver: Deliver
    deadline: float
    parts: list[str] = field(default_factory=list)
    #: Per part, whether it filled its limit (a hard cut, mid-word: joined without a space).
    full: list[bool] = field(default_factory=list)

    def add(self, text: str, cuts: tuple[Cut, ...], whole: str | None = None) -> None:
        self.parts.append(text)
        self.full.append(utf16_length(whole or text) in {limit for _, limit in cuts})

    def text(self) -> str:
        joined = self.parts[0]
        for before, full, part in zip(self.parts, self.full, self.parts[1:], strict=False):
            hard_cut = full or before[-1:].isspace() or part[:1].isspace()
            joined += part if hard_cut else " " + part
        return joined


class PasteJoiner:
    """Joins the pieces of long pastes. Call :meth:`text` for every text that may be a prompt,
    and :meth:`flush` before anything else from the same user is handled, both in the order of
    the chat's updates."""

    def __init__(self, in_order: InOrder, *, wait: float = PASTE_WAIT) -> None:
        self._in_order = in_order
        self.wait = wait
        self._pending: dict[PasteKey, _Paste] = {}

    def pending(self, key: PasteKey) -> bool:
        return key in self._pending

    async def text(
        self,
        key: PasteKey,
        text: str,
        deliver: Deliver,
        *,
        spawn: Spawn,
        cuts: tuple[Cut, ...] = TEXT_CUTS,
        whole: str | None = None,
    ) -> None:
        """``text`` from ``key``'s user: continues their paste, starts one, or goes to ``deliver``
        at once. A paste is delivered through the ``deliver`` of its first piece, by a task
        started with ``spawn`` when no shorter last piece ends it first. ``whole`` is the
        message ``text`` was taken from (a command's argument), as the client measured it."""
        loop = asyncio.get_running_loop()
        paste = self._pending.get(key)
        if paste is not None:
            paste.add(text, TEXT_CUTS)
            if piece_of_paste(text, TEXT_CUTS):
                paste.deadline = loop.time() + self.wait  # more may follow
                return
            del self._pending[key]  # a shorter piece is the last one
            await self._deliver(paste)
            return
        if not piece_of_paste(whole or text, cuts):
            await deliver(text)
            return
        paste = _Paste(deliver, loop.time() + self.wait)
        paste.add(text, cuts, whole)
        self._pending[key] = paste
        spawn(self._expire(key, paste))

    async def flush(self, key: PasteKey) -> None:
        """Something other than text from this user: the paste before it goes first. A key with
        no topic (a reaction names none) flushes the user's pastes in every topic of the chat."""
        chat, thread, user = key
        for pending in [k for k in self._pending if k[0] == chat and k[2] == user and (k[1] == thread or not thread)]:
            await self._deliver(self._pending.pop(pending))

    async def _expire(self, key: PasteKey, paste: _Paste) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(max(0.0, paste.deadline - loop.time()))
            async with self._in_order(key[0]):
                if self._pending.get(key) is not paste:
                    return  # delivered by its last piece or by a flush
                if loop.time() < paste.deadline:
                    continue  # a piece came while this waited for its turn
                del self._pending[key]
                await self._deliver(paste)
                return

    async def _deliver(self, paste: _Paste) -> None:
        text = paste.text()
        if len(paste.parts) > 1:
            log.info("telegram: joined a paste of %d messages, %d characters", len(paste.parts), len(text))
        await paste.deliver(text)
