"""Where the service's messages go: the platforms' chat ports, and the two ways of telling a user
something (into the chat, or privately to the acting user)."""

from __future__ import annotations

import logging

from bot.ports import ChatPort, ChatRef, PrivateReply
from bot.store import SessionRow

log = logging.getLogger("framechain.service")


def chat_of(row: SessionRow) -> ChatRef:
    """The chat a session lives in."""
    return ChatRef(row.platform.value, row.chat_id, row.thread_id)


class Chats:
    """The chat ports, one per platform."""

    def __init__(self) -> None:
        self.ports: dict[str, ChatPort] = {}

    def add(self, port: ChatPort) -> None:
        self.ports[port.platform] = port

    def port(self, chat: ChatRef) -> ChatPort:
        return self.ports[chat.platform]

    async def answer(self, chat: ChatRef, text: str, reply: PrivateReply | None, *, typed: bool = True) -> None:
        """A note for the acting user alone: privately where the adapter gave a way (``reply``).
        Without one, the answer to a typed command goes into the chat (the command is there, and
        the user waits for an answer); any other note (a reaction's) is dropped, never posted
        into the chat for everyone."""
        if reply is None:
            if typed:
                await self.say(chat, text)
            else:
                log.debug("no private channel for a note in %s; dropped: %s", chat, text)
            return
        try:
            await reply(text)
        except Exception:
            log.exception("could not answer privately in %s", chat)

    async def say(self, chat: ChatRef, text: str) -> None:
        try:
            await self.port(chat).send_text(chat, text)
        except Exception:
            log.exception("could not send a message to %s", chat)
