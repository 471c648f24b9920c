"""A recording ``Conversation`` for adapter tests: the service is the outside of an adapter, so
its tests write down what the adapter asks of the conversation instead of running one."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from bot.access import RefusalNotices
from bot.ops_view import OpsSnapshot
from bot.ports import Action, ChatRef, PrivateReply
from shared.pictures import Accepted


@dataclass(frozen=True)
class Call:
    method: str
    chat: ChatRef
    user_id: str
    args: dict[str, Any] = field(default_factory=dict)


class RecordingConversation:
    """Implements ``bot.ports.Conversation`` by writing down every call."""

    def __init__(self, fail: bool = False, private_answer: str = "") -> None:
        self.calls: list[Call] = []
        self.refusals = RefusalNotices()
        #: What ``new_session_refusal`` answers (a quota's sentence), None: a session may start.
        self.session_refusal: str | None = None
        #: Raise after recording every call, as a broken service would.
        self.fail = fail
        #: A text whose handling raises instead of being recorded.
        self.fail_on_text: str | None = None
        #: Texts whose handling waits for this event (to hold one chat up).
        self.hold: dict[str, asyncio.Event] = {}
        #: Awaited by a control (a button press) before it answers, as behind a busy session.
        self.busy: Callable[[], Awaitable[object]] | None = None
        #: Given to the adapter's private reply, as the service does for a refusal or a stale press.
        self.private_answer = private_answer
        #: Said a second time through the private reply, as a service with two notes would.
        self.second_answer = ""
        #: What ``current_settings`` answers (None: no live session here); changed by a
        #: ``settings`` command the way the service would.
        self.settings: dict[str, str] | None = None
        #: (platform, user id) pairs ``banned`` says yes to.
        self.bans: set[tuple[str, str]] = set()
        self._changed = asyncio.Condition()

    async def _record(self, method: str, chat: ChatRef, user_id: str, **args: Any) -> None:
        async with self._changed:
            self.calls.append(Call(method, chat, user_id, args))
            self._changed.notify_all()
        if self.fail:
            raise RuntimeError("the service broke")

    def of(self, method: str) -> list[Call]:
        return [call for call in self.calls if call.method == method]

    async def wait(self, count: int, timeout: float = 10.0) -> list[Call]:
        async with self._changed:
            await asyncio.wait_for(self._changed.wait_for(lambda: len(self.calls) >= count), timeout)
        return list(self.calls)

    async def _answer(self, reply: PrivateReply | None) -> None:
        if reply is not None and self.private_answer:
            await reply(self.private_answer)
        if reply is not None and self.second_answer:
            await reply(self.second_answer)

    async def start(
        self,
        chat: ChatRef,
        user_id: str,
        image: bytes | Accepted | None,
        prompt: str | None,
        *,
        is_admin: bool = False,
        reply: PrivateReply | None = None,
    ) -> None:
        await self._record("start", chat, user_id, image=image, prompt=prompt, is_admin=is_admin)

    async def image(self, chat: ChatRef, user_id: str, image: bytes) -> None:
        await self._record("image", chat, user_id, image=image)

    async def text(self, chat: ChatRef, user_id: str, text: str) -> None:
        if text == self.fail_on_text:
            raise RuntimeError("the service fell over")
        if text in self.hold:
            await self.hold[text].wait()
        await self._record("text", chat, user_id, text=text)

    async def control(
        self,
        chat: ChatRef,
        user_id: str,
        segment_id: int,
        action: Action,
        *,
        is_admin: bool = False,
        reply: PrivateReply | None = None,
        message_id: str | None = None,
    ) -> None:
        await self._record("control", chat, user_id, segment_id=segment_id, action=action, is_admin=is_admin)
        if self.busy is not None:
            await self.busy()
        await self._answer(reply)

    async def reaction(
        self,
        chat: ChatRef,
        user_id: str,
        message_id: str,
        action: Action,
        *,
        is_admin: bool = False,
        reply: PrivateReply | None = None,
    ) -> None:
        await self._record("reaction", chat, user_id, message_id=message_id, action=action, is_admin=is_admin)
        await self._answer(reply)

    async def command(
        self,
        chat: ChatRef,
        user_id: str,
        name: str,
        argument: str = "",
        *,
        is_admin: bool = False,
        reply: PrivateReply | None = None,
    ) -> None:
        await self._record("command", chat, user_id, name=name, argument=argument, is_admin=is_admin)
        if name == "settings" and self.settings is not None and "=" in argument:
            key, value = argument.split("=", 1)
            self.settings = {**self.settings, key: value}
        await self._answer(reply)

    async def end_frame(
        self,
        chat: ChatRef,
        user_id: str,
        image: bytes | None,
        *,
        clear: bool = False,
        is_admin: bool = False,
        reply: PrivateReply | None = None,
    ) -> None:
        await self._record("end_frame", chat, user_id, image=image, clear=clear, is_admin=is_admin)
        await self._answer(reply)

    async def change_settings(
        self,
        chat: ChatRef,
        user_id: str,
        changes: tuple[tuple[str, str], ...],
        *,
        is_admin: bool = False,
        reply: PrivateReply | None = None,
    ) -> None:
        await self._record("change_settings", chat, user_id, changes=changes, is_admin=is_admin)
        await self._answer(reply)

    async def banned(self, platform: str, user_id: str) -> bool:
        return (platform, user_id) in self.bans

    async def ops_snapshot(self) -> OpsSnapshot:
        return OpsSnapshot(paused=False, queue=(), workers=())

    async def current_settings(self, chat: ChatRef, user_id: str) -> dict[str, str] | None:
        return None if self.settings is None else dict(self.settings)

    async def new_session_refusal(self, platform: str, user_id: str, *, is_admin: bool = False) -> str | None:
        return self.session_refusal

    async def refusal_due(self, platform: str, user_id: str) -> bool:
        # Not recorded: the adapter asks it for every refused update (a refused user's
        # update never reaches the conversation proper); decided in memory as the service does.
        return await self.refusals.due(platform, user_id)
