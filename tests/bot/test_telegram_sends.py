"""A Bot API call that creates a message is never retried after a failure that may have reached
Telegram: the message may exist, and a second try could post it twice. The errors are the ones
python-telegram-bot raises for httpx's (``raise TimedOut from httpx.ReadTimeout``...)."""

from __future__ import annotations

import httpx
import pytest
from telegram.error import BadRequest, NetworkError, TimedOut

from bot.ports import MaybeSent
from bot.telegram_adapter.retry import RetryPolicy, may_have_reached, with_retries

FAST = RetryPolicy(attempts=3, base_delay=0.0)


def raised_from(error: Exception, cause: Exception) -> Exception:
    error.__cause__ = cause
    return error


ON_THE_WAY = [
    raised_from(TimedOut(), httpx.ReadTimeout("read")),
    raised_from(TimedOut(), httpx.WriteTimeout("write")),
    raised_from(NetworkError("httpx.RemoteProtocolError: gone"), httpx.RemoteProtocolError("gone")),
    raised_from(NetworkError("httpx.ReadError: reset"), httpx.ReadError("reset")),
]
NOT_SENT = [
    raised_from(TimedOut(), httpx.ConnectTimeout("connect")),
    raised_from(TimedOut("Pool timeout"), httpx.PoolTimeout("pool")),
    raised_from(NetworkError("httpx.ConnectError: refused"), httpx.ConnectError("refused")),
    NetworkError("Bad Gateway (502)"),  # Telegram answered
    BadRequest("Chat not found"),
]


@pytest.mark.parametrize("error", ON_THE_WAY + NOT_SENT, ids=repr)
def test_what_may_have_reached_telegram(error: Exception) -> None:
    assert may_have_reached(error) is (error in ON_THE_WAY)  # type: ignore[arg-type]


@pytest.mark.parametrize("error", ON_THE_WAY, ids=repr)
async def test_a_message_create_that_may_have_reached_telegram_is_not_tried_again(error: Exception) -> None:
    tries: list[int] = []

    async def send() -> str:
        tries.append(1)
        raise error

    with pytest.raises(MaybeSent):
        await with_retries("sendVideo", send, FAST, creates=True)
    assert len(tries) == 1
    # Any other call (an edit: doing it twice does no harm) is tried again.
    tries.clear()
    with pytest.raises(type(error)):
        await with_retries("editMessageText", send, FAST)
    assert len(tries) == FAST.attempts


async def test_a_message_create_that_never_left_is_tried_again() -> None:
    tries: list[int] = []

    async def send() -> str:
        tries.append(1)
        if len(tries) == 1:
            raise raised_from(NetworkError("httpx.ConnectError: refused"), httpx.ConnectError("refused"))
        return "sent"

    assert await with_retries("sendVideo", send, FAST, creates=True) == "sent"
    assert len(tries) == 2
