"""Retrying Bot API calls through network trouble and flood control.

Transient failures (timeouts, connection errors, 5xx answers) are retried with exponential
backoff; ``RetryAfter`` (HTTP 429) waits exactly as long as Telegram asks. Everything else
(``BadRequest``, ``Forbidden``, an invalid token, an upload that is too large) is final and
raised at once. A call that creates a message (``creates``) is not retried after a failure that
may have reached Telegram (a timeout or a connection lost once the request was on its way): the
message may exist, so it is raised as ``bot.ports.MaybeSent`` and the service decides (it never
sends it twice).
"""

from __future__ import annotations

import asyncio
import datetime as dtm
import logging
import warnings
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

import httpx
from telegram.error import BadRequest, NetworkError, RetryAfter, TelegramError
from telegram.warnings import PTBDeprecationWarning

from bot.ports import MaybeSent

log = logging.getLogger("framechain.telegram")

T = TypeVar("T")


@dataclass(frozen=True)
class RetryPolicy:
    #: Tries in all, the first included.
    attempts: int = 5
    #: Wait after the first transient failure, doubled after each further one.
    base_delay: float = 1.0
    max_delay: float = 30.0
    #: A flood wait longer than this is not sat out: the call fails instead.
    max_retry_after: float = 300.0

    def backoff(self, failures: int) -> float:
        return float(min(self.max_delay, self.base_delay * 2 ** (failures - 1)))


DEFAULT_RETRY = RetryPolicy()


class Superseded(Exception):
    """A newer call made this one pointless while it waited (an older progress text)."""


def retry_after_seconds(exc: RetryAfter) -> float:
    # PTB 22 warns when reading retry_after as an int; it becomes a timedelta later.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PTBDeprecationWarning)
        value = exc.retry_after
    return value.total_seconds() if isinstance(value, dtm.timedelta) else float(value)


def is_transient(exc: TelegramError) -> bool:
    """Worth another try: flood control, timeouts, connection failures and server errors."""
    if isinstance(exc, RetryAfter):
        return True
    if not isinstance(exc, NetworkError) or isinstance(exc, BadRequest):
        return False
    # PTB reports 413 as a plain NetworkError; trying again cannot make the file smaller.
    return "too large" not in str(exc).lower()


def may_have_reached(exc: TelegramError) -> bool:
    """Whether the request may have been carried out although it failed: its connection broke or
    timed out after it was on its way. Not an answer Telegram gave (a 5xx, a 400: it says what
    happened), nor a failure while connecting."""
    if not isinstance(exc, NetworkError) or isinstance(exc, BadRequest):
        return False
    cause = exc.__cause__
    if not isinstance(cause, httpx.HTTPError):
        return False
    return not isinstance(cause, (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout))


async def with_retries(
    what: str,
    call: Callable[[], Awaitable[T]],
    policy: RetryPolicy,
    *,
    still_wanted: Callable[[], bool] | None = None,
    on_flood: Callable[[float], None] | None = None,
    creates: bool = False,
) -> T:
    """Await ``call()`` until it succeeds, a failure is final, or the tries run out.

    ``creates``: the call makes a message, so a failure that may have reached Telegram
    (:func:`may_have_reached`) is raised as :class:`~bot.ports.MaybeSent` instead of retried.

    ``still_wanted`` is checked after each wait; when it says no, :class:`Superseded` is raised.
    ``on_flood`` hears of each flood wait (seconds), so related calls can hold back too."""
    failures = 0
    while True:
        try:
            return await call()
        except TelegramError as exc:
            if creates and may_have_reached(exc):
                raise MaybeSent(f"telegram {what}: {exc}") from exc
            failures += 1
            if not is_transient(exc) or failures >= policy.attempts:
                raise
            if isinstance(exc, RetryAfter):
                delay = retry_after_seconds(exc)
                if on_flood is not None:
                    on_flood(delay)
                if delay > policy.max_retry_after:
                    raise
            else:
                delay = policy.backoff(failures)
            log.warning("telegram %s failed (%s); try %d in %.1f s", what, exc, failures + 1, delay)
        await asyncio.sleep(delay)
        if still_wanted is not None and not still_wanted():
            raise Superseded(what)
