"""Recording one post's messages as they go out (``bot.conversation.delivery`` reads them back).

Right before a message is asked for, its intent (the idempotency key it is sent with, and the
time); the moment the platform accepted it, its id, before anything else is awaited. When the
send fails with an error that proves the platform created nothing (any error but
``bot.ports.MaybeSent``), the intent goes again: the message is plainly unsent and is sent again
like any other. When it may have been created (``MaybeSent``, a crash, a cancellation) the intent
stays, and the next try treats the message as in doubt.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from bot.conversation import delivery
from bot.ports import MaybeSent, new_send_key

#: Sets ``posted[key] = value`` on the segment or session the post belongs to.
Record = Callable[[str, Any], Awaitable[object]]


class PostRecorder:
    """The ``sending`` and ``sent`` callbacks of one ``ChatPort.post_segment``/``post_final`` call.
    ``again``: roles in doubt to send with the key of their intent (``delivery.Plan.again``)."""

    def __init__(
        self, record: Record, again: Mapping[str, str] = {}, *, wall_clock: Callable[[], float] = time.time
    ) -> None:
        self._record = record
        self._again = again
        self._clock = wall_clock
        #: Roles asked for and not (yet) reported accepted.
        self._in_flight: set[str] = set()

    async def sending(self, roles: tuple[str, ...]) -> str:
        key = next((self._again[r] for r in roles if self._again.get(r)), "") or new_send_key()
        for role in roles:
            await self._record(delivery.intent_key(role), delivery.intent(key, self._clock()))
        self._in_flight.update(roles)
        return key

    async def sent(self, role: str, message_id: str) -> None:
        await self._record(role, message_id)
        self._in_flight.discard(role)

    async def failed(self, exc: BaseException) -> None:
        """The port raised ``exc``: the messages in flight were not created, unless it may have been."""
        if isinstance(exc, MaybeSent) or not isinstance(exc, Exception):
            return
        for role in sorted(self._in_flight):
            await self._record(delivery.intent_key(role), None)
        self._in_flight.clear()
